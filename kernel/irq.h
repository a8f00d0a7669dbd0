/*
 * Interrupt vectors above the exceptions: device interrupts and IPIs.
 * Handlers run with interrupts off on the interrupted thread's stack,
 * and return with the spinlocks and preemption count they found and
 * interrupts still off (the lock checker reports a lock kept or
 * released, a changed count or interrupts turned on, naming the vector;
 * irq_dispatch turns them off again); the interrupt controller is
 * acknowledged after the handler returns.
 */
#ifndef KERNEL_IRQ_H
#define KERNEL_IRQ_H

#include "arch/x86_64/trap.h"

/* The kernel's fixed vectors. */
#define IRQ_VEC_TIMER    0x20
#define IRQ_VEC_COM1     0x24 /* the serial console's receive interrupt */
#define IRQ_VEC_RESCHED  0xf0 /* IPI: a thread was made runnable here */
#define IRQ_VEC_STW      0xf1 /* IPI: park for stop-the-world */
#define IRQ_VEC_TLB      0xf2 /* IPI: flush a TLB range */
#define IRQ_VEC_TEST     0xf3 /* IPI: reserved for tests */
#define IRQ_VEC_SPURIOUS 0xff /* LAPIC spurious vector: no EOI */

typedef void (*irq_handler_fn)(struct trap_frame *f);

/* Installs fn for vector (32..255); boot CPU, before it can fire. */
void irq_register(unsigned vector, irq_handler_fn fn);

/* Called by trap_dispatch for vectors >= 32. */
void irq_dispatch(struct trap_frame *f);

/* The interrupt controller's end-of-interrupt (set by the LAPIC driver). */
void irq_set_eoi(void (*eoi)(void));

/* Called on the way out of the outermost interrupt (the scheduler's
 * preemption point). Runs with interrupts off. */
void irq_set_exit_hook(void (*hook)(struct trap_frame *f));

#endif

/*
 * The kernel's inline pin for mm/ (mm/port.h, MM_PORT_INLINE; the Makefile
 * passes this header's name). Pinning is disabling interrupts: nothing else
 * then runs on this CPU (no preemption, no handler), so the span heap's
 * per-CPU caches need no lock. pushf/pop/cli and one %gs-relative load of
 * the CPU's index to pin, a test and sti to unpin: seven instructions.
 * The slow paths pin so; the fast paths are restartable sequences
 * (below). Any context but NMI.
 *
 * Included by mm/port.h after struct mm_pin, so it includes no mm/ header.
 */
#ifndef KERNEL_MM_PORT_INLINE_H
#define KERNEL_MM_PORT_INLINE_H

#include <stddef.h>

#include "arch/x86_64/cpu.h"
#include "kernel/percpu.h"

static inline __attribute__((always_inline)) struct mm_pin mm_port_pin(void)
{
	unsigned long flags = read_rflags();
	cpu_cli();
	unsigned long id;
	/* this_cpu()->id without loading the self pointer first (a 32-bit
	 * load, which clears the register's upper half). */
	__asm__ volatile("movl %%gs:%c1, %k0"
	                 : "=r"(id)
	                 : "i"(offsetof(struct cpu, id))
	                 : "memory");
	return (struct mm_pin){.state = flags, .cpu = id};
}

static inline __attribute__((always_inline)) void mm_port_unpin(struct mm_pin p)
{
	if (p.state & RFLAGS_IF)
		cpu_sti();
}

/*
 * The span heap's fast paths (a magazine's pop and push) pin nothing: they
 * are restartable sequences (mm/rseq.h), which irq_dispatch restarts when
 * an interrupt lands in one (mm_rseq_restart), and kmain sorts their
 * table before interrupts are on (heap_rseq_init). A %gs-relative load of the
 * CPU's index starts each; so a kmalloc or kfree from its magazine disables no
 * interrupt and costs one instruction for its CPU, not seven.
 */
#define MM_PORT_RSEQ          1
#define MM_PORT_RSEQ_CPU      "movl %%gs:%c[cpu_off], %k[cpu]"
#define MM_PORT_RSEQ_CPU_ARGS [cpu_off] "i"(offsetof(struct cpu, id))

#endif

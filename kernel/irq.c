/*
 * Dispatch of vectors 32..255 (see irq.h): count the nesting depth, run
 * the handler, check that it left the held locks, the preemption count
 * and interrupts (off) as it found them, acknowledge the controller, and
 * give the scheduler its chance to preempt when the outermost interrupt
 * returns to a thread.
 */
#include "irq.h"

#include "arch/x86_64/cpu.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "mm/rseq.h"

/* Written once per vector at boot, read by every CPU. */
static irq_handler_fn handlers[256];
static void (*eoi_fn)(void);
static void (*exit_hook)(struct trap_frame *f);

void irq_register(unsigned vector, irq_handler_fn fn)
{
	if (vector < 32 || vector > 255)
		panic("irq_register: vector %u is not an interrupt vector",
		      vector);
	handlers[vector] = fn;
}

void irq_set_eoi(void (*eoi)(void))
{
	eoi_fn = eoi;
}

void irq_set_exit_hook(void (*hook)(struct trap_frame *f))
{
	exit_hook = hook;
}

void irq_dispatch(struct trap_frame *f)
{
	/* Interrupted in a kmalloc's or kfree's magazine step: it starts
	 * over when this returns, as the handler may use the magazine, or
	 * switch the thread to another CPU. */
	mm_rseq_restart(&f->rip);
	struct cpu *c = this_cpu();
	unsigned vec = (unsigned)f->vector;
#if LOCKCHECK
	int nheld = c->nheld, preempt = c->preempt_count;
	/* With the count: a handler that released the interrupted code's
	 * lock and took one of its own leaves the count as it was, but not
	 * the top (what a handler takes goes on top). */
	const struct spinlock *top = nheld > 0 ? c->held[nheld - 1] : NULL;
#endif
	c->irq_depth++;
	if (handlers[vec])
		handlers[vec](f);
	else if (vec != IRQ_VEC_SPURIOUS)
		printk("irq: unexpected interrupt vector %#x on cpu %u\n", vec,
		       c->id);
	/* A handler that turned interrupts on (an irqrestore of a state
	 * that was not its own) would let any interrupt in before the EOI,
	 * and the preemption below switch threads with them on: reported,
	 * and put back off. */
	bool irqs_on = (read_rflags() & RFLAGS_IF) != 0;
	if (irqs_on)
		cpu_cli();
#if LOCKCHECK
	/* A lock kept would be the interrupted thread's from here on (never
	 * preempted, blamed at its next sleep); one released was its. */
	if (c->nheld != nheld || (nheld > 0 && c->held[nheld - 1] != top) ||
	    c->preempt_count != preempt || irqs_on)
		lockcheck_irq_return(vec, nheld, top, preempt, irqs_on);
#endif
	if (vec != IRQ_VEC_SPURIOUS && eoi_fn)
		eoi_fn();
	c->irq_depth--;
	if (c->irq_depth == 0 && exit_hook)
		exit_hook(f);
}

/*
 * Ticket spinlocks (see spinlock.h): fetch-and-add a ticket, spin until it
 * is served. FIFO, so a CPU cannot starve behind a tight unlock-relock loop
 * on another. The holder's CPU id is kept for spin_held and diagnostics.
 */
#include "spinlock.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"

void spin_init(struct spinlock *l, const char *name, enum lock_rank rank)
{
	atomic_store(&l->next, 0);
	atomic_store(&l->serving, 0);
	atomic_store(&l->holder, -1);
	atomic_store(&l->usage, 0);
	l->name = name;
	l->rank = rank;
}

void preempt_disable(void)
{
	this_cpu()->preempt_count++;
	atomic_signal_fence(memory_order_seq_cst);
}

void preempt_enable(void)
{
	atomic_signal_fence(memory_order_seq_cst);
	this_cpu()->preempt_count--;
}

static void acquire(struct spinlock *l, bool irqs_on)
{
	preempt_disable();
#if LOCKCHECK
	lockcheck_acquire(l, irqs_on);
#endif
	uint32_t ticket =
	        atomic_fetch_add_explicit(&l->next, 1, memory_order_relaxed);
	while (atomic_load_explicit(&l->serving, memory_order_acquire) !=
	       ticket)
		cpu_pause();
	atomic_store_explicit(&l->holder, (int)this_cpu()->id,
	                      memory_order_relaxed);
#if LOCKCHECK
	lockcheck_acquired(l);
#endif
}

static void release(struct spinlock *l)
{
#if LOCKCHECK
	/* A bad release is reported; in test mode it must not then corrupt
	 * the ticket of a lock someone else holds. */
	if (!lockcheck_release(l))
		return;
#endif
	atomic_store_explicit(&l->holder, -1, memory_order_relaxed);
	uint32_t s = atomic_load_explicit(&l->serving, memory_order_relaxed);
	atomic_store_explicit(&l->serving, s + 1, memory_order_release);
	preempt_enable();
}

void spin_lock(struct spinlock *l)
{
	acquire(l, (read_rflags() & RFLAGS_IF) != 0);
}

void spin_unlock(struct spinlock *l)
{
	release(l);
}

unsigned long spin_lock_irqsave(struct spinlock *l)
{
	unsigned long flags = read_rflags();
	cpu_cli();
	acquire(l, false);
	return flags;
}

void spin_unlock_irqrestore(struct spinlock *l, unsigned long irq_state)
{
	release(l);
	if (irq_state & RFLAGS_IF)
		cpu_sti();
}

bool spin_held(const struct spinlock *l)
{
	return atomic_load_explicit(&l->holder, memory_order_relaxed) ==
	       (int)this_cpu()->id;
}

/*
 * Ticket spinlocks with ranks and a run-time checker, taken in one of two
 * modes (spin_mode_init): FIFO by ticket on bare metal, test-and-set
 * under a hypervisor.
 *
 * spin_lock_irqsave disables interrupts on this CPU for as long as the
 * lock is held, so an interrupt handler that takes the same lock cannot
 * deadlock against the code it interrupted; spin_lock leaves them as they
 * are: for a lock never taken in interrupt context, or by a caller that
 * turned them off already (the scheduler's run-queue locks, printk's
 * console lock). Both disable preemption. Any context but NMI.
 *
 * The checker (lockcheck.c, always on) keeps a per-CPU stack of held
 * locks and reports: a lock taken that spin_init or SPINLOCK_INIT never
 * set up (no name, no rank of the table), naming its address; a lock
 * taken out of rank order; any lock taken while
 * a leaf is held; a lock used in interrupt context that is also taken
 * with interrupts enabled; a lock taken with interrupts enabled that does
 * not rank below every lock used in interrupt context (lockrank.h), even
 * if no interrupt came while it was held (a lock still held when an
 * out-of-order spin_unlock_irqrestore turns interrupts back on counts as
 * held with them on, and so does one released with them on, whatever
 * turned them on: an mm unpin, a bare sti); sleeping or yielding with a
 * spinlock held; releasing a lock this CPU does not hold; an interrupt handler
 * that returns holding a lock, having released the interrupted code's, with the
 * preemption count changed, or with interrupts enabled.
 *
 * Statistics, always on: every acquisition counts, and so does every one
 * that found the lock taken (contended). The holder bumps both, under the
 * lock, in the lock's own cache line, so they cost two stores. Locks in
 * the image's data (every long-lived kernel lock, and the kernel heaps'
 * mm locks) are listed on their first acquisition for the shell's
 * `locks` command (spin_list_stats); locks on stacks (the boot stack,
 * in the bss, too) or in the heap are counted but not listed, since they
 * may go away.
 */
#ifndef KERNEL_SPINLOCK_H
#define KERNEL_SPINLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/lockrank.h"

struct spinlock {
	_Atomic uint32_t next;    /* next ticket to hand out */
	_Atomic uint32_t serving; /* ticket now holding the lock */
	_Atomic int holder;       /* CPU id, or -1 */
	const char *name;
	enum lock_rank rank;
	_Atomic uint8_t usage; /* LOCK_USED_* bits, for the checker */
	/* Protected by the lock itself (written by the holder), read
	 * relaxed by spin_list_stats: */
	bool listed; /* in the list, or not eligible */
	_Atomic uint64_t acquired, contended;
};

#define SPINLOCK_INIT(lname, lrank)                            \
	{                                                      \
		.holder = -1, .name = (lname), .rank = (lrank) \
	}

/* Sets l up, unheld. A NULL name or a rank that is none is reported
 * there, naming the lock's address (lockcheck_misuse). */
void spin_init(struct spinlock *l, const char *name, enum lock_rank rank);

/*
 * How a CPU takes a lock that is held. The lock's words are the same in
 * both modes, and a lock is free when serving == next:
 *   SPIN_TICKET  it takes the next ticket and waits for it to be served:
 *                FIFO, so no CPU starves behind another's tight
 *                unlock-relock loop.
 *   SPIN_TAS     it waits for the lock to be free and then takes the
 *                next ticket only if no one took it first (a
 *                compare-and-swap of next): whoever runs when the lock
 *                comes free gets it. Under a hypervisor a vCPU may be
 *                descheduled for milliseconds, and a FIFO hand-off to a
 *                waiting vCPU the host is not running stalls every CPU
 *                behind it (lock-waiter preemption); Linux falls back to
 *                test-and-set there for the same reason (virt_spin_lock).
 *                Test-and-set alone is unfair: a CPU that releases and
 *                takes the lock again in a loop can keep it from the
 *                others, as seven CPUs printing in a loop kept the
 *                console from an eighth for thousands of lines. So a
 *                waiter that has seen SPIN_TAS_PATIENCE acquisitions by
 *                others since it began takes the next ticket and waits
 *                for it (the lock is then handed to it in order).
 * A waiter of either mode keeps mutual exclusion with holders and
 * waiters of the other, so the mode may change at any time.
 */
enum spin_mode { SPIN_TICKET, SPIN_TAS };
#define SPIN_TAS_PATIENCE 32

/* Chooses the mode at boot: "spinlock=ticket" or "spinlock=tas" on the
 * command line, else SPIN_TAS under a hypervisor (CPUID leaf 1, ECX bit
 * 31) and SPIN_TICKET on bare metal; prints the choice and why. An
 * unknown value is printed, naming it, and the default stays. Boot CPU,
 * once, after the command line is copied. */
void spin_mode_init(void);

/* The mode now, and its name ("ticket", "test-and-set"). Any context. */
enum spin_mode spin_mode(void);
const char *spin_mode_name(enum spin_mode m);

/* Sets the mode (tests); returns the one it replaces. Any context. */
enum spin_mode spin_mode_set(enum spin_mode m);

void spin_lock(struct spinlock *l);
void spin_unlock(struct spinlock *l);

/* Returns the interrupt state to hand to spin_unlock_irqrestore. */
unsigned long spin_lock_irqsave(struct spinlock *l);
void spin_unlock_irqrestore(struct spinlock *l, unsigned long irq_state);

/* True when this CPU holds l. */
bool spin_held(const struct spinlock *l);

/* One listed lock's counters (spin_list_stats). */
struct spin_stats {
	const struct spinlock *lock;
	const char *name;
	enum lock_rank rank;
	uint64_t acquired, contended;
};

/* Copies the counters of up to max listed locks, in the order they were
 * first taken, into out; returns how many it copied. At most
 * SPIN_LIST_MAX locks are listed; later ones are counted, not listed.
 * Any context; the counts are read without the locks. */
#define SPIN_LIST_MAX 256
unsigned spin_list_stats(struct spin_stats *out, unsigned max);

/* Disable and enable preemption on this CPU (nesting counts). An enable
 * without its disable (the count at 0) is reported by the lock checker
 * and leaves the count at 0. An enable that brings the count to 0 with a
 * reschedule pending (one that a tick or a resched IPI asked for while
 * preemption was off) switches there and then, when the CPU may switch:
 * interrupts on, not in an interrupt handler (there the handler's way
 * out does it). So spin_unlock and spin_unlock_irqrestore (which turns
 * interrupts back on first) may switch threads. Any context but NMI. */
void preempt_disable(void);
void preempt_enable(void);

#endif

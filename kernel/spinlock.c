/*
 * Ticket spinlocks (see spinlock.h). In SPIN_TICKET mode: fetch-and-add a
 * ticket, spin until it is served; FIFO, so a CPU cannot starve behind a
 * tight unlock-relock loop on another. In SPIN_TAS mode (under a
 * hypervisor): spin until the lock is free (serving == next), then take
 * the next ticket by compare-and-swap, which fails if anyone took one
 * since. Either way the holder owns ticket serving and its release
 * serves the next, so the modes mix:
 *   - a TAS waiter takes the lock only when serving == next, that is
 *     when no one holds it and no ticket waiter waits (each waiting
 *     ticket keeps next ahead of serving);
 *   - its compare-and-swap succeeds only if next did not move since it
 *     read it, and serving (which only a holder moves) read equal to it
 *     after that read: the lock was free and no one took it in between;
 *   - a ticket waiter after it is served when the TAS holder releases;
 *   - a TAS waiter that runs out of patience becomes a ticket waiter.
 * The holder's CPU id is kept for spin_held and diagnostics.
 */
#include "spinlock.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "kernel/bootinfo.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/spinlock_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"

TEST_HOOK_DEFINE(spin_testing_waiting);

/* The mode (spinlock.h): ticket until spin_mode_init chooses. Read
 * relaxed by every acquisition; a change needs no order with the locks
 * (the modes mix). */
static _Atomic int mode = SPIN_TICKET;

enum spin_mode spin_mode(void)
{
	return (enum spin_mode)atomic_load_explicit(&mode,
	                                            memory_order_relaxed);
}

const char *spin_mode_name(enum spin_mode m)
{
	return m == SPIN_TAS ? "test-and-set" : "ticket";
}

enum spin_mode spin_mode_set(enum spin_mode m)
{
	return (enum spin_mode)atomic_exchange_explicit(&mode, (int)m,
	                                                memory_order_relaxed);
}

void spin_mode_init(void)
{
	uint32_t r[4];
	cpuid(1, 0, r);
	bool virt = (r[2] >> 31) & 1;
	enum spin_mode m = virt ? SPIN_TAS : SPIN_TICKET;
	const char *why = virt ? "under a hypervisor" : "on bare metal";
	char v[16];
	if (cmdline_get("spinlock", v, sizeof(v))) {
		bool ticket = strcmp(v, "ticket") == 0;
		if (ticket || strcmp(v, "tas") == 0) {
			m = ticket ? SPIN_TICKET : SPIN_TAS;
			why = "from the command line";
		} else {
			printk("spinlock: spinlock=%s is neither ticket nor "
			       "tas; ignored\n",
			       v);
		}
	}
	spin_mode_set(m);
	printk("spinlock: %s, %s\n", spin_mode_name(m), why);
}

/* The listed locks (see spinlock.h): append-only. A slot is claimed with
 * a fetch-add on nlisted and then written; a reader skips a slot that is
 * still NULL. */
static struct spinlock *_Atomic listed[SPIN_LIST_MAX];
static _Atomic unsigned nlisted;

/* True for a lock in the image's data or bss: it lives forever. But for
 * the boot stack, which the bss holds: main's locals (the tests' among
 * them) go away with their frames. */
static bool in_image_data(const struct spinlock *l)
{
	uintptr_t a = (uintptr_t)l;
	if (a >= (uintptr_t)__boot_stack_guard &&
	    a < (uintptr_t)__boot_stack_top)
		return false;
	return a >= (uintptr_t)__data_start && a < (uintptr_t)__bss_end;
}

static bool already_listed(const struct spinlock *l)
{
	unsigned n = atomic_load_explicit(&nlisted, memory_order_acquire);
	for (unsigned i = 0; i < n && i < SPIN_LIST_MAX; i++)
		if (atomic_load_explicit(&listed[i], memory_order_relaxed) == l)
			return true;
	return false;
}

/* Lists l if it lives in the image. Locking: l held (so once per lock). */
static void list_lock(struct spinlock *l)
{
	l->listed = true;
	if (!in_image_data(l))
		return;
	unsigned i = atomic_fetch_add(&nlisted, 1);
	if (i < SPIN_LIST_MAX)
		atomic_store_explicit(&listed[i], l, memory_order_release);
}

void spin_init(struct spinlock *l, const char *name, enum lock_rank rank)
{
	atomic_store(&l->next, 0);
	atomic_store(&l->serving, 0);
	atomic_store(&l->holder, -1);
	atomic_store(&l->usage, 0);
	atomic_store(&l->acquired, 0);
	atomic_store(&l->contended, 0);
	/* A static lock set up again (tests do) is already in the list. */
	l->listed = in_image_data(l) && already_listed(l);
	l->name = name;
	l->rank = rank;
	/* Named here, where it is wrong: at its first use it read as a
	 * lock never set up, whose hint was to call spin_init. A wait
	 * queue's or a semaphore's lock takes their name. In test mode it
	 * goes on named "(unnamed)", or at rank TEST_LOW, and checked. */
	if (!name) {
		lockcheck_misuse("spin_init: the lock at %p has no name "
		                 "(rank %d)",
		                 (void *)l, (int)rank);
		l->name = "(unnamed)";
	}
	if (!lock_rank_exists(rank)) {
		lockcheck_misuse("spin_init(%s): the lock at %p has no rank "
		                 "(%d is none)",
		                 l->name, (void *)l, (int)rank);
		l->rank = LOCK_RANK_TEST_LOW;
	}
}

void preempt_disable(void)
{
	this_cpu()->preempt_count++;
	atomic_signal_fence(memory_order_seq_cst);
}

void preempt_enable(void)
{
	atomic_signal_fence(memory_order_seq_cst);
	struct cpu *c = this_cpu();
	if (c->preempt_count <= 0) {
		/* Reported (a panic; recorded in test mode, where the count
		 * stays at 0): below 0 it would let preemption in under the
		 * next preempt_disable's caller. */
		lockcheck_preempt_underflow();
		return;
	}
#if LOCKCHECK
	/* Each held lock holds one count (release pops it first): an enable
	 * down to the locks held is a stray one, which would let preemption
	 * in under them. Reported; the count stays. */
	if (c->preempt_count <= c->nheld) {
		lockcheck_preempt_under_lock();
		return;
	}
#endif
	/* A reschedule that came while preemption was off (a tick, a
	 * resched IPI) is acted on now, not at the next interrupt. */
	if (--c->preempt_count == 0 && c->need_resched)
		sched_resched_pending();
}

/* Spins until ticket is served. */
static void wait_served(struct spinlock *l, uint32_t ticket)
{
	while (atomic_load_explicit(&l->serving, memory_order_acquire) !=
	       ticket)
		cpu_pause();
}

/* Takes l by ticket (SPIN_TICKET); true if it had to wait. */
static bool take_ticket(struct spinlock *l)
{
	uint32_t ticket =
	        atomic_fetch_add_explicit(&l->next, 1, memory_order_relaxed);
	if (atomic_load_explicit(&l->serving, memory_order_acquire) == ticket)
		return false;
	TEST_HOOK(spin_testing_waiting, (uintptr_t)l);
	wait_served(l, ticket);
	return true;
}

/* Takes l once it is free (SPIN_TAS; the argument is at the top); true
 * if it had to wait. A waiter that has seen SPIN_TAS_PATIENCE
 * acquisitions by others since it began takes a ticket instead, so that
 * its wait is bounded (spinlock.h). */
static bool take_free(struct spinlock *l)
{
	bool waited = false;
	uint32_t first = 0;
	for (;;) {
		uint32_t n =
		        atomic_load_explicit(&l->next, memory_order_relaxed);
		uint32_t s =
		        atomic_load_explicit(&l->serving, memory_order_acquire);
		if (s == n && atomic_compare_exchange_strong_explicit(
		                      &l->next, &n, n + 1, memory_order_acquire,
		                      memory_order_relaxed))
			return waited;
		if (!waited) {
			TEST_HOOK(spin_testing_waiting, (uintptr_t)l);
			waited = true;
			first = s;
		} else if (s - first >= SPIN_TAS_PATIENCE) {
			wait_served(l,
			            atomic_fetch_add_explicit(
			                    &l->next, 1, memory_order_relaxed));
			return true;
		}
		cpu_pause();
	}
}

static void acquire(struct spinlock *l, bool irqs_on)
{
	preempt_disable();
#if LOCKCHECK
	lockcheck_acquire(l, irqs_on);
#endif
	bool contended =
	        spin_mode() == SPIN_TAS ? take_free(l) : take_ticket(l);
	atomic_store_explicit(&l->holder, (int)this_cpu()->id,
	                      memory_order_relaxed);
	/* Only the holder writes them: a load and a store, not an RMW. */
	atomic_store_explicit(
	        &l->acquired,
	        atomic_load_explicit(&l->acquired, memory_order_relaxed) + 1,
	        memory_order_relaxed);
	if (contended)
		atomic_store_explicit(
		        &l->contended,
		        atomic_load_explicit(&l->contended,
		                             memory_order_relaxed) +
		                1,
		        memory_order_relaxed);
	if (!l->listed)
		list_lock(l);
#if LOCKCHECK
	lockcheck_acquired(l);
#endif
}

/* Hands l on; the caller then calls preempt_enable, which it must when
 * this returns true (false: a bad release, reported, nothing changed). */
static bool release(struct spinlock *l)
{
#if LOCKCHECK
	/* A bad release is reported; in test mode it must not then corrupt
	 * the ticket of a lock someone else holds. */
	if (!lockcheck_release(l))
		return false;
#endif
	atomic_store_explicit(&l->holder, -1, memory_order_relaxed);
	uint32_t s = atomic_load_explicit(&l->serving, memory_order_relaxed);
	atomic_store_explicit(&l->serving, s + 1, memory_order_release);
	return true;
}

void spin_lock(struct spinlock *l)
{
	acquire(l, (read_rflags() & RFLAGS_IF) != 0);
}

void spin_unlock(struct spinlock *l)
{
	if (release(l))
		preempt_enable();
}

unsigned long spin_lock_irqsave(struct spinlock *l)
{
	unsigned long flags = read_rflags();
	cpu_cli();
	acquire(l, false);
	return flags;
}

/* Interrupts come back on before preemption does, so that a reschedule
 * that came while l was held switches in preempt_enable (see there). */
void spin_unlock_irqrestore(struct spinlock *l, unsigned long irq_state)
{
	bool released = release(l);
	if (irq_state & RFLAGS_IF) {
#if LOCKCHECK
		/* Released out of order, a lock taken after l is still held. */
		lockcheck_irqs_on();
#endif
		cpu_sti();
	}
	if (released)
		preempt_enable();
}

bool spin_held(const struct spinlock *l)
{
	return atomic_load_explicit(&l->holder, memory_order_relaxed) ==
	       (int)this_cpu()->id;
}

unsigned spin_list_stats(struct spin_stats *out, unsigned max)
{
	unsigned n = atomic_load_explicit(&nlisted, memory_order_acquire);
	if (n > SPIN_LIST_MAX)
		n = SPIN_LIST_MAX;
	unsigned k = 0;
	for (unsigned i = 0; i < n && k < max; i++) {
		struct spinlock *l =
		        atomic_load_explicit(&listed[i], memory_order_acquire);
		if (!l)
			continue;
		out[k++] = (struct spin_stats){
		        l,
		        l->name,
		        l->rank,
		        atomic_load_explicit(&l->acquired,
		                             memory_order_relaxed),
		        atomic_load_explicit(&l->contended,
		                             memory_order_relaxed),
		};
	}
	return k;
}

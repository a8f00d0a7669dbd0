/*
 * Each rule of the lock checker fires, in test (record) mode, on a
 * deliberate violation and names the locks involved. The rest of the test
 * suite runs in panic mode, so any violation elsewhere ends the run: the
 * checker is silent there by construction.
 *
 * This file: rank order, leaf locks, locks shared with interrupt handlers,
 * out-of-order irqrestore, and the release of a lock not held. The sleep
 * checks are in lockcheck_sleep_test.c, interrupt handlers' balance and
 * the held-lock stack under interrupts in lockcheck_irq_test.c.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "kernel/waitq.h"
#include "mm/port.h"
#include "tests/kernel/lockcheck_util.h"

static struct spinlock low = SPINLOCK_INIT("low", LOCK_RANK_TEST_LOW);
static struct spinlock high = SPINLOCK_INIT("high", LOCK_RANK_TEST_HIGH);
static struct spinlock leaf = SPINLOCK_INIT("leaf", LOCK_RANK_TEST_LEAF);
static struct spinlock irq_lock = SPINLOCK_INIT("irq_lock", LOCK_RANK_TEST_LOW);

static void in_order(void)
{
	unsigned long irq = spin_lock_irqsave(&low);
	spin_lock(&high);
	spin_unlock(&high);
	spin_unlock_irqrestore(&low, irq);
}

static void out_of_order(void)
{
	unsigned long irq = spin_lock_irqsave(&high);
	spin_lock(&low);
	spin_unlock(&low);
	spin_unlock_irqrestore(&high, irq);
}

KTEST(lockcheck, rank_order)
{
	KEXPECT_EQ(recorded(in_order), 0);
	KEXPECT_EQ(recorded(out_of_order), 1);
	KEXPECT(message_has("low", "high"));
	KEXPECT(message_has("lock order", "TEST_HIGH"));
}

static void under_leaf(void)
{
	unsigned long irq = spin_lock_irqsave(&leaf);
	spin_lock(&high); /* higher rank, but nothing goes under a leaf */
	spin_unlock(&high);
	spin_unlock_irqrestore(&leaf, irq);
}

KTEST(lockcheck, nothing_under_a_leaf)
{
	KEXPECT_EQ(recorded(under_leaf), 1);
	KEXPECT(message_has("while holding leaf lock leaf", "high"));
}

static _Atomic bool took_in_irq;

static void take_in_tick(void)
{
	if (atomic_load(&took_in_irq))
		return;
	spin_lock(&irq_lock);
	spin_unlock(&irq_lock);
	atomic_store(&took_in_irq, true);
}

static void irqs_on_after_irq_use(void)
{
	spin_lock(&irq_lock); /* interrupts enabled: an IRQ could deadlock */
	spin_unlock(&irq_lock);
}

KTEST(lockcheck, irq_lock_taken_with_interrupts_on)
{
	atomic_store(&took_in_irq, false);
	atomic_store(&sched_tick_hook, take_in_tick);
	while (!atomic_load(&took_in_irq))
		thread_sleep_ns(SCHED_TICK_NS);
	atomic_store(&sched_tick_hook, NULL);
	KEXPECT_EQ(recorded_without_ticks(irqs_on_after_irq_use), 1);
	KEXPECT(message_has("irq_lock", "interrupts enabled"));
	/* Reported once per lock, not on every acquisition. */
	KEXPECT_EQ(recorded_without_ticks(irqs_on_after_irq_use), 0);
}

/*
 * A lock held with interrupts on must rank below every lock an interrupt
 * handler takes (lockrank.h). Both halves are caught whether or not an
 * interrupt lands while the lock is held (here none has to): one taken
 * with interrupts on above a lock a handler takes (the run queues', in
 * every tick), and one taken by a handler at the rank of a lock held with
 * interrupts on.
 */
static struct spinlock irqs_on_high =
        SPINLOCK_INIT("irqs_on_high", LOCK_RANK_TEST_HIGH);

static void high_with_irqs_on(void)
{
	spin_lock(&irqs_on_high);
	spin_unlock(&irqs_on_high);
}

KTEST(lockcheck, irqs_on_lock_above_an_irq_lock)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	thread_sleep_ns(SCHED_TICK_NS); /* a tick took its run queue's lock */
	KEXPECT_EQ(recorded_without_ticks(high_with_irqs_on), 1);
	KEXPECT(message_has("irqs_on_high", "interrupt handler takes"));
	/* Reported once per lock. */
	KEXPECT_EQ(recorded_without_ticks(high_with_irqs_on), 0);
}

static struct spinlock irqs_on_floor =
        SPINLOCK_INIT("irqs_on_floor", LOCK_RANK_SHOOTDOWN);
static struct spinlock irq_floor =
        SPINLOCK_INIT("irq_floor", LOCK_RANK_SHOOTDOWN);
static _Atomic bool floor_taken;

static void take_floor_in_tick(void)
{
	if (atomic_load(&floor_taken))
		return;
	spin_lock(&irq_floor);
	spin_unlock(&irq_floor);
	atomic_store(&floor_taken, true);
}

static void floor_in_irq(void)
{
	spin_lock(&irqs_on_floor); /* the lowest rank: allowed */
	spin_unlock(&irqs_on_floor);
	atomic_store(&floor_taken, false);
	atomic_store(&sched_tick_hook, take_floor_in_tick);
	while (!atomic_load(&floor_taken))
		thread_sleep_ns(SCHED_TICK_NS);
	atomic_store(&sched_tick_hook, NULL);
}

KTEST(lockcheck, irq_lock_at_an_irqs_on_rank)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(recorded(floor_in_irq), 1);
	KEXPECT(message_has("irq_floor", "held with interrupts enabled"));
}

/*
 * Released out of order, an irqsave lock turns interrupts back on while a
 * lock taken after it is still held: from then on that one is held with
 * interrupts on, and is checked so. restore_inner is first taken by the
 * timer interrupt; its rank is below the run queues', so a tick landing
 * while it is held adds no violation of its own.
 */
static struct spinlock restore_outer =
        SPINLOCK_INIT("restore_outer", LOCK_RANK_STW);
static struct spinlock restore_inner =
        SPINLOCK_INIT("restore_inner", LOCK_RANK_TEST_IRQ);
static _Atomic bool inner_in_irq;

static void take_inner_in_tick(void)
{
	if (atomic_load(&inner_in_irq))
		return;
	spin_lock(&restore_inner);
	spin_unlock(&restore_inner);
	atomic_store(&inner_in_irq, true);
}

static void restore_in_order(void)
{
	unsigned long a = spin_lock_irqsave(&restore_outer);
	unsigned long b = spin_lock_irqsave(&restore_inner);
	spin_unlock_irqrestore(&restore_inner, b);
	spin_unlock_irqrestore(&restore_outer, a);
}

static void restore_out_of_order(void)
{
	unsigned long a = spin_lock_irqsave(&restore_outer);
	unsigned long b = spin_lock_irqsave(&restore_inner);
	spin_unlock_irqrestore(&restore_outer, a); /* interrupts on */
	spin_unlock_irqrestore(&restore_inner, b);
}

KTEST(lockcheck, irqrestore_out_of_order)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	atomic_store(&inner_in_irq, false);
	atomic_store(&sched_tick_hook, take_inner_in_tick);
	while (!atomic_load(&inner_in_irq))
		thread_sleep_ns(SCHED_TICK_NS);
	atomic_store(&sched_tick_hook, NULL);
	KEXPECT_EQ(recorded(restore_in_order), 0);
	KEXPECT_EQ(recorded(restore_out_of_order), 1);
	KEXPECT(message_has("restore_inner", "interrupts enabled"));
}

/*
 * mm's pin (kernel/mm_port_inline.h) is an irqsave without a lock, and mm/
 * takes its central locks inside one. Ended while such a lock is still
 * held, it turns interrupts back on under it as an out-of-order
 * irqrestore does, and the lock is checked as held with them on: here one
 * ranked above the run queues' locks, which every tick takes.
 */
static struct spinlock pinned = SPINLOCK_INIT("pinned", LOCK_RANK_TEST_HIGH);

static void unpin_after_unlock(void)
{
	struct mm_pin p = mm_port_pin();
	unsigned long irq = spin_lock_irqsave(&pinned);
	spin_unlock_irqrestore(&pinned, irq);
	mm_port_unpin(p);
}

static void unpin_under_the_lock(void)
{
	struct mm_pin p = mm_port_pin();
	unsigned long irq = spin_lock_irqsave(&pinned);
	mm_port_unpin(p); /* interrupts on, pinned still held */
	spin_unlock_irqrestore(&pinned, irq);
}

KTEST(lockcheck, unpin_under_a_lock)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	thread_sleep_ns(SCHED_TICK_NS); /* a tick took its run queue's lock */
	KEXPECT_EQ(recorded(unpin_after_unlock), 0);
	KEXPECT_EQ(recorded_without_ticks(unpin_under_the_lock), 1);
	KEXPECT(message_has("pinned", "held with interrupts enabled"));
	KEXPECT(read_rflags() & RFLAGS_IF);
}

/*
 * A lock never set up (zeroed, as in bss or a zeroed allocation) has no
 * name and no rank; its holder field reads as CPU 0. Taking it is
 * reported as such, naming its address, on every CPU: not as a
 * self-deadlock on CPU 0 and not at all elsewhere.
 */
static struct spinlock never_set_up;

static void take_never_set_up(void)
{
	unsigned long irq = spin_lock_irqsave(&never_set_up);
	spin_unlock_irqrestore(&never_set_up, irq);
}

static struct spinlock named_rankless =
        SPINLOCK_INIT("named_rankless", (enum lock_rank)0);

static void take_named_rankless(void)
{
	unsigned long irq = spin_lock_irqsave(&named_rankless);
	spin_unlock_irqrestore(&named_rankless, irq);
}

KTEST(lockcheck, lock_never_set_up)
{
	KEXPECT_EQ(recorded(take_never_set_up), 1);
	KEXPECT(message_has("was never set up", "spin_init"));
	KEXPECT(!spin_held(&never_set_up));
	/* A name is not enough: with no rank every check is about nothing. */
	KEXPECT_EQ(recorded(take_named_rankless), 1);
	KEXPECT(message_has("was never set up",
	                    "(name named_rankless, rank 0)"));
}

static void release_unheld(void)
{
	spin_unlock(&high);
}

KTEST(lockcheck, release_of_unheld_lock)
{
	KEXPECT_EQ(recorded(release_unheld), 1);
	KEXPECT(message_has("release of lock high", "does not hold"));
	/* Nothing changed: the lock can still be taken and released. */
	KEXPECT_EQ(recorded(in_order), 0);
}

/* A lock set up with no name or no rank is named at its spin_init (a wait
 * queue's and a semaphore's too): at its first use it read as a lock
 * never set up, with the hint to call the spin_init that had been
 * called. It can be used after, checked, in test mode. */
static struct spinlock unnamed;
static struct semaphore unnamed_sema;

static void init_unnamed(void)
{
	spin_init(&unnamed, NULL, LOCK_RANK_TEST_LOW);
}

static void init_rankless(void)
{
	spin_init(&unnamed, "rankless", (enum lock_rank)0);
}

static void init_unnamed_sema(void)
{
	sema_init(&unnamed_sema, NULL, 0, 1);
}

KTEST(lockcheck, spin_init_without_a_name_or_rank_says_so)
{
	KEXPECT_EQ(recorded(init_unnamed), 1);
	KEXPECT(message_has("spin_init: the lock at ", "has no name"));
	unsigned before = lockcheck_violations();
	unsigned long irq = spin_lock_irqsave(&unnamed);
	spin_unlock_irqrestore(&unnamed, irq);
	KEXPECT_EQ(lockcheck_violations(), before);
	KEXPECT_EQ(recorded(init_rankless), 1);
	KEXPECT(message_has("spin_init(rankless): the lock at ", "no rank"));
	KEXPECT_EQ(recorded(init_unnamed_sema), 1);
	KEXPECT(message_has("spin_init: the lock at ", "has no name"));
}

/*
 * spin_init sets a lock up over memory that held anything (a lock that
 * went away, freed heap memory): tickets, holder, usage bits and counts
 * are its own from then on. Here the memory says the lock is taken, held
 * by this CPU, used in interrupt handlers and held with interrupts on,
 * and reported already: a ticket left unserved would hang its first
 * acquisition, a stale holder would read as held (and panic as a
 * self-deadlock), and a stale reported bit would hide its first breach.
 */
static struct spinlock reused;
static _Atomic bool reused_claimed, reused_in_irq;

/* Every CPU's tick calls it: one of them takes the lock, once. (Until
 * this version each tested the done flag, and two CPUs' ticks could
 * both pass it: 2 acquisitions, seen at -smp 8 under load.) */
static void take_reused_in_tick(void)
{
	if (atomic_exchange(&reused_claimed, true))
		return;
	spin_lock(&reused);
	spin_unlock(&reused);
	atomic_store(&reused_in_irq, true);
}

static void reused_with_irqs_on(void)
{
	spin_lock(&reused);
	spin_unlock(&reused);
}

KTEST(lockcheck, spin_init_forgets_what_the_memory_held)
{
	memset(&reused, 0xff, sizeof(reused));
	atomic_store(&reused.next, 7);
	atomic_store(&reused.serving, 3);
	atomic_store(&reused.holder, (int)this_cpu()->id);
	spin_init(&reused, "reused", LOCK_RANK_TEST_LOW);
	KEXPECT(!spin_held(&reused));
	/* Checked before the lock is taken, which would wait for ever. */
	uint32_t next = atomic_load(&reused.next);
	uint32_t serving = atomic_load(&reused.serving);
	KASSERT_EQ(next, serving);
	uint64_t acquired = atomic_load(&reused.acquired);
	uint64_t contended = atomic_load(&reused.contended);
	KEXPECT_EQ(acquired, 0);
	KEXPECT_EQ(contended, 0);
	atomic_store(&reused_in_irq, false);
	atomic_store(&reused_claimed, false);
	atomic_store(&sched_tick_hook, take_reused_in_tick);
	while (!atomic_load(&reused_in_irq))
		thread_sleep_ns(SCHED_TICK_NS);
	atomic_store(&sched_tick_hook, NULL);
	acquired = atomic_load(&reused.acquired);
	KEXPECT_EQ(acquired, 1);
	KEXPECT_EQ(recorded_without_ticks(reused_with_irqs_on), 1);
	KEXPECT(message_has("reused", "interrupts enabled"));
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness: demo_self_deadlock).
 * A CPU that takes a lock it holds would wait for itself for ever: it
 * panics naming the lock as a self-deadlock, before the rank check could
 * call it an order violation. */
static struct spinlock self_lock =
        SPINLOCK_INIT("self_lock", LOCK_RANK_TEST_LOW);

KTEST(demo, lockcheck_self_deadlock)
{
	unsigned long irq = spin_lock_irqsave(&self_lock);
	spin_lock(&self_lock);
	spin_unlock_irqrestore(&self_lock, irq);
	KEXPECT(false); /* not reached */
}

/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness: demo_held_max).
 * The held-lock stack has room for LOCKS_HELD_MAX locks: one more panics
 * naming the limit, in test mode too, rather than write past the stack.
 * The locks share a rank, so each nested one is recorded as out of order. */
static struct spinlock many[LOCKS_HELD_MAX + 1];

KTEST(demo, lockcheck_more_locks_than_the_stack_holds)
{
	for (int i = 0; i <= LOCKS_HELD_MAX; i++)
		spin_init(&many[i], "many", LOCK_RANK_TEST_LOW);
	lockcheck_set_record(true);
	unsigned long irq = spin_lock_irqsave(&many[0]);
	for (int i = 1; i <= LOCKS_HELD_MAX; i++)
		spin_lock(&many[i]);
	for (int i = LOCKS_HELD_MAX; i >= 1; i--)
		spin_unlock(&many[i]);
	spin_unlock_irqrestore(&many[0], irq);
	lockcheck_set_record(false);
	KEXPECT(false); /* not reached */
}
#endif

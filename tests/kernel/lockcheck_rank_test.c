/*
 * The lock checker's rank rules at their edges (see lockcheck_test.c for
 * each rule's plain case): the order is checked against the highest lock
 * held, and a lock of the same rank is out of order; the rule that locks
 * held with interrupts enabled rank below every lock an interrupt handler
 * takes holds at equal ranks too, on both sides, and its report names the
 * lock on the other side.
 *
 * The checker keeps the highest rank held with interrupts on and the
 * lowest taken in a handler for the whole run, so the ranks here are
 * chosen to hold whatever ran before: nothing else is held with
 * interrupts on at rank SEMA or above (production holds only the
 * shootdown lock so), and nothing is taken by a handler below TEST_IRQ
 * except on purpose, as a breach (which publishes nothing).
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/lockcheck_util.h"

static struct spinlock outer = SPINLOCK_INIT("outer", LOCK_RANK_STW);
static struct spinlock low = SPINLOCK_INIT("low", LOCK_RANK_TEST_LOW);
static struct spinlock low_twin = SPINLOCK_INIT("low_twin", LOCK_RANK_TEST_LOW);
static struct spinlock high = SPINLOCK_INIT("high", LOCK_RANK_TEST_HIGH);

/*
 * Two locks of one rank, taken in either order on two CPUs, deadlock as
 * surely as two of different ranks; and a lock below the highest held is
 * out of order even when a lower one was taken first (the stack's bottom
 * is not its highest).
 */
static void below_the_highest_held(void)
{
	unsigned long irq = spin_lock_irqsave(&outer);
	spin_lock(&high);
	spin_lock(&low); /* above outer, below high */
	spin_unlock(&low);
	spin_unlock(&high);
	spin_unlock_irqrestore(&outer, irq);
}

static void same_rank_nested(void)
{
	unsigned long irq = spin_lock_irqsave(&low);
	spin_lock(&low_twin);
	spin_unlock(&low_twin);
	spin_unlock_irqrestore(&low, irq);
}

KTEST(lockcheck, rank_order_against_the_highest_held_and_its_rank)
{
	KEXPECT_EQ(recorded(below_the_highest_held), 1);
	KEXPECT(message_has("lock order: low (", "while holding high ("));
	KEXPECT_EQ(recorded(same_rank_nested), 1);
	KEXPECT(message_has("lock order: low_twin (", "while holding low ("));
}

/* Runs take once, in the next timer tick of any CPU (sched_tick_hook):
 * the first tick claims it, so two CPUs' ticks cannot both run it. */
static void (*tick_action)(void);
static _Atomic bool tick_claimed, tick_done;

static void run_in_tick(void)
{
	if (atomic_exchange(&tick_claimed, true))
		return;
	tick_action();
	atomic_store(&tick_done, true);
}

static void in_tick(void (*take)(void))
{
	tick_action = take;
	atomic_store(&tick_done, false);
	atomic_store(&tick_claimed, false);
	atomic_store(&sched_tick_hook, run_in_tick);
	while (!atomic_load(&tick_done))
		thread_sleep_ns(SCHED_TICK_NS);
	atomic_store(&sched_tick_hook, NULL);
}

/*
 * A handler's lock at the very rank of a lock held with interrupts on:
 * the interrupt may land while that lock is held, and the two nest in an
 * order the table does not give. Reported naming both.
 */
static struct spinlock irqs_on_sema =
        SPINLOCK_INIT("irqs_on_sema", LOCK_RANK_SEMA);
static struct spinlock irq_sema = SPINLOCK_INIT("irq_sema", LOCK_RANK_SEMA);

static void take_irq_sema(void)
{
	spin_lock(&irq_sema);
	spin_unlock(&irq_sema);
}

static void irq_sema_in_tick(void)
{
	in_tick(take_irq_sema);
}

KTEST(lockcheck, irq_lock_at_the_rank_of_an_irqs_on_lock)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	spin_lock(&irqs_on_sema); /* below every handler's lock: allowed */
	spin_unlock(&irqs_on_sema);
	KEXPECT_EQ(recorded(irq_sema_in_tick), 1);
	KEXPECT(message_has("lock irq_sema (rank SEMA) is taken in an "
	                    "interrupt handler",
	                    "at or below irqs_on_sema (rank SEMA)"));
}

/*
 * The other side: a lock held with interrupts on at the very rank of a
 * lock a handler takes (irq_test_rank, at TEST_IRQ, the lowest a handler
 * takes without a breach).
 */
static struct spinlock irq_test_rank =
        SPINLOCK_INIT("irq_test_rank", LOCK_RANK_TEST_IRQ);
static struct spinlock irqs_on_test_rank =
        SPINLOCK_INIT("irqs_on_test_rank", LOCK_RANK_TEST_IRQ);

static void take_irq_test_rank(void)
{
	spin_lock(&irq_test_rank);
	spin_unlock(&irq_test_rank);
}

static void irqs_on_at_test_rank(void)
{
	spin_lock(&irqs_on_test_rank);
	spin_unlock(&irqs_on_test_rank);
}

KTEST(lockcheck, irqs_on_lock_at_the_rank_of_an_irq_lock)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	in_tick(take_irq_test_rank); /* above every irqs-on lock: allowed */
	KEXPECT_EQ(recorded(irqs_on_at_test_rank), 1);
	KEXPECT(message_has("lock irqs_on_test_rank (rank TEST_IRQ) is held "
	                    "with interrupts enabled",
	                    "(rank TEST_IRQ), which an interrupt handler"));
}

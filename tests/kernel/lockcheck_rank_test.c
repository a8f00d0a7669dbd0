/*
 * The lock checker's rank order at its edges (see lockcheck_test.c for
 * the plain case): the order is checked against the highest lock held,
 * and a lock of the same rank is out of order.
 */
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
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

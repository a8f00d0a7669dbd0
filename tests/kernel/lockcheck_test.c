/*
 * Each rule of the lock checker fires, in test (record) mode, on a
 * deliberate violation and names the locks involved. The rest of the test
 * suite runs in panic mode, so any violation elsewhere ends the run: the
 * checker is silent there by construction.
 */
#include <stdatomic.h>

#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/thread.h"

/* Runs fn in record mode; returns how many violations it caused. */
static unsigned recorded(void (*fn)(void))
{
	unsigned before = lockcheck_violations();
	bool old = lockcheck_set_record(true);
	fn();
	lockcheck_set_record(old);
	return lockcheck_violations() - before;
}

static bool message_has(const char *a, const char *b)
{
	const char *m = lockcheck_last_violation();
	bool fa = false, fb = false;
	for (const char *p = m; *p; p++) {
		const char *x = a, *q = p;
		while (*x && *q == *x)
			x++, q++;
		fa |= !*x;
		x = b, q = p;
		while (*x && *q == *x)
			x++, q++;
		fb |= !*x;
	}
	return fa && fb;
}

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
	KEXPECT_EQ(recorded(irqs_on_after_irq_use), 1);
	KEXPECT(message_has("irq_lock", "interrupts enabled"));
	/* Reported once per lock, not on every acquisition. */
	KEXPECT_EQ(recorded(irqs_on_after_irq_use), 0);
}

static void yield_holding(void)
{
	unsigned long irq = spin_lock_irqsave(&low);
	thread_yield(); /* refused in record mode */
	thread_sleep_ns(1000);
	spin_unlock_irqrestore(&low, irq);
}

KTEST(lockcheck, sleeping_with_a_spinlock)
{
	KEXPECT_EQ(recorded(yield_holding), 2);
	KEXPECT(message_has("thread_sleep", "spinlock low"));
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

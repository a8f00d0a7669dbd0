/*
 * Each rule of the lock checker fires, in test (record) mode, on a
 * deliberate violation and names the locks involved. The rest of the test
 * suite runs in panic mode, so any violation elsewhere ends the run: the
 * checker is silent there by construction.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/lockcheck_testing.h"
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
	KEXPECT_EQ(recorded(high_with_irqs_on), 1);
	KEXPECT(message_has("irqs_on_high", "interrupt handler takes"));
	/* Reported once per lock. */
	KEXPECT_EQ(recorded(high_with_irqs_on), 0);
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

/* Pinned the way a per-CPU cache pins (interrupts off, no lock, no
 * preemption count): a sleep must still be caught. */
static void sleep_pinned(void)
{
	uint64_t flags = read_rflags();
	cpu_cli();
	thread_sleep_ns(1000); /* refused in record mode */
	if (flags & RFLAGS_IF)
		cpu_sti();
}

KTEST(lockcheck, sleeping_with_interrupts_off)
{
	KEXPECT_EQ(recorded(sleep_pinned), 1);
	KEXPECT(message_has("thread_sleep", "interrupts disabled"));
}

/*
 * thread_sleep_unlock releases one lock and sleeps. A second lock still
 * held would go to sleep with it: the next thread on this CPU would run
 * with its preemption count and its entry on the held-lock stack (and be
 * blamed for it). A caller with interrupts off before the lock sleeps
 * with them off. Both are refused, as for any other sleep. The lock
 * released ranks below the run queues', as a wait queue's does.
 */
static struct spinlock sleep_outer =
        SPINLOCK_INIT("sleep_outer", LOCK_RANK_STW);
static struct spinlock sleep_lock =
        SPINLOCK_INIT("sleep_lock", LOCK_RANK_WAITQ);

static void sleep_unlock_holding_another(void)
{
	unsigned long outer = spin_lock_irqsave(&sleep_outer);
	unsigned long inner = spin_lock_irqsave(&sleep_lock);
	thread_sleep_unlock(&sleep_lock, inner, 1000); /* refused */
	spin_unlock_irqrestore(&sleep_outer, outer);
}

static void sleep_unlock_interrupts_off(void)
{
	uint64_t flags = read_rflags();
	cpu_cli();
	unsigned long irq = spin_lock_irqsave(&sleep_lock);
	thread_sleep_unlock(&sleep_lock, irq,
	                    1000); /* refused in record mode */
	if (flags & RFLAGS_IF)
		cpu_sti();
}

static void sleep_unlock_alone(void)
{
	unsigned long irq = spin_lock_irqsave(&sleep_lock);
	thread_sleep_unlock(&sleep_lock, irq, 1000);
}

KTEST(lockcheck, sleep_unlock_with_another_lock_or_interrupts_off)
{
	KEXPECT_EQ(recorded(sleep_unlock_holding_another), 1);
	KEXPECT(message_has("thread_sleep_unlock", "spinlock sleep_outer"));
	KEXPECT_EQ(recorded(sleep_unlock_interrupts_off), 1);
	KEXPECT(message_has("thread_sleep_unlock", "interrupts disabled"));
	/* Refused, the lock was still released and nothing leaked. */
	KEXPECT(!spin_held(&sleep_lock));
	KEXPECT_EQ(this_cpu()->nheld, 0);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
	KEXPECT(read_rflags() & RFLAGS_IF);
	/* The one lock, interrupts on before it: a sleep like any other. */
	KEXPECT_EQ(recorded(sleep_unlock_alone), 0);
	KEXPECT(!spin_held(&sleep_lock));
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

/*
 * An interrupt handler returns with this CPU's held locks and preemption
 * count as it found them. One that returns holding a lock leaves it to
 * the thread it interrupted, which runs on unpreemptible and is blamed at
 * its next sleep; one that releases the interrupted code's lock lets
 * another CPU in under it. Each is reported naming the vector.
 */
static struct spinlock handler_lock =
        SPINLOCK_INIT("handler_lock", LOCK_RANK_TEST_IRQ);
static struct spinlock interrupted_lock =
        SPINLOCK_INIT("interrupted_lock", LOCK_RANK_STW);
static void (*handler_action)(void);
static _Atomic bool handler_ran;

static void test_vector(struct trap_frame *f)
{
	handler_action();
	atomic_store(&handler_ran, true);
}

/* Runs action in an interrupt handler on this CPU (a self-IPI). */
static void in_handler(void (*action)(void))
{
	handler_action = action;
	atomic_store(&handler_ran, false);
	irq_register(IRQ_VEC_TEST, test_vector);
	lapic_send_ipi(this_cpu()->apic_id, IRQ_VEC_TEST);
	while (!atomic_load(&handler_ran))
		cpu_pause();
	irq_register(IRQ_VEC_TEST, NULL);
}

static void take_handler_lock(void)
{
	spin_lock(&handler_lock);
}

static void release_interrupted_lock(void)
{
	spin_unlock(&interrupted_lock);
}

static void handler_keeps_a_lock(void)
{
	in_handler(take_handler_lock);
	spin_unlock(&handler_lock);
}

static void handler_releases_interrupted_lock(void)
{
	spin_lock(&interrupted_lock); /* interrupts on: the IPI comes in */
	in_handler(release_interrupted_lock);
}

static void handler_leaves_preemption_off(void)
{
	in_handler(preempt_disable);
	preempt_enable();
}

KTEST(lockcheck, interrupt_handler_returns_unbalanced)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(recorded(handler_keeps_a_lock), 1);
	KEXPECT(message_has("vector 0xf3", "holding spinlock handler_lock"));
	KEXPECT_EQ(recorded(handler_releases_interrupted_lock), 1);
	KEXPECT(message_has("vector 0xf3", "released a lock"));
	KEXPECT_EQ(recorded(handler_leaves_preemption_off), 1);
	KEXPECT(message_has("vector 0xf3", "preemption count 1"));
	KEXPECT_EQ(this_cpu()->nheld, 0);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
	KEXPECT(!spin_held(&handler_lock) && !spin_held(&interrupted_lock));
}

#if KTEST_HOOKS
/*
 * The held-lock stack is also read and pushed onto by interrupt handlers
 * (sched_tick takes the run-queue lock). A lock taken with interrupts on,
 * like the shootdown lock, must change the stack so that an interrupt in
 * the middle sees it whole: before the change or after, never a count
 * that covers a stale entry (a leaf released just before: a false "taken
 * while holding leaf") nor an entry half shifted out.
 *
 * Under TCG an interrupt arrives only between translated blocks, so the
 * window of a few stores is never hit by chance: lockcheck_testing_window
 * holds it open until this CPU has taken two timer ticks, as long as
 * interrupts are on there. At each tick, check_stack (sched_tick_hook)
 * compares the stack with the locks' holders.
 */
static struct spinlock irqs_on_outer =
        SPINLOCK_INIT("irqs_on_outer", LOCK_RANK_SHOOTDOWN);
static struct spinlock irqs_on_inner =
        SPINLOCK_INIT("irqs_on_inner", LOCK_RANK_STW);
static _Atomic unsigned window_cpu = MAX_CPUS;
static _Atomic unsigned window_calls, window_ticks, bad_stacks;

static uint64_t cpu_ticks(void)
{
	return *(volatile uint64_t *)&this_cpu()->ticks;
}

static void hold_window_open(uintptr_t arg)
{
	struct spinlock *l = (struct spinlock *)arg;
	if ((l != &irqs_on_outer && l != &irqs_on_inner) ||
	    this_cpu()->id != atomic_load(&window_cpu))
		return;
	atomic_fetch_add(&window_calls, 1);
	if (!(read_rflags() & RFLAGS_IF))
		return; /* no interrupt can come in: the window is shut */
	uint64_t t0 = cpu_ticks();
	while (cpu_ticks() < t0 + 2)
		cpu_pause();
	atomic_fetch_add(&window_ticks, 2);
}

/* In the timer interrupt: every entry of this CPU's stack is a lock this
 * CPU holds, once. (The converse is not checked: spinlock.c sets a lock's
 * holder just before pushing it and clears it just after popping it.) */
static void check_stack(void)
{
	struct cpu *c = this_cpu();
	if (c->id != atomic_load(&window_cpu))
		return;
	bool ok = true;
	for (int i = 0; i < c->nheld; i++) {
		ok &= atomic_load(&c->held[i]->holder) == (int)c->id;
		for (int j = i + 1; j < c->nheld; j++)
			ok &= c->held[i] != c->held[j];
	}
	if (!ok)
		atomic_fetch_add(&bad_stacks, 1);
}

static void leaf_then_lock_with_irqs_on(void)
{
	unsigned long irq = spin_lock_irqsave(&leaf);
	spin_unlock_irqrestore(&leaf, irq); /* leaves &leaf above the top */
	atomic_store(&lockcheck_testing_window, hold_window_open);
	spin_lock(&irqs_on_outer);
	atomic_store(&lockcheck_testing_window, NULL);
	spin_unlock(&irqs_on_outer);
}

static void release_below_top_with_irqs_on(void)
{
	spin_lock(&irqs_on_outer);
	spin_lock(&irqs_on_inner);
	atomic_store(&lockcheck_testing_window, hold_window_open);
	spin_unlock(&irqs_on_outer); /* not on top: the stack shifts */
	atomic_store(&lockcheck_testing_window, NULL);
	spin_unlock(&irqs_on_inner);
}

/* Runs fn, which opens the window around one push or pop, in record mode
 * with the timer checking the stack; returns the violations plus the
 * inconsistent stacks the timer saw. */
static unsigned with_stack_checked(void (*fn)(void))
{
	atomic_store(&window_cpu, this_cpu()->id); /* threads stay put */
	atomic_store(&window_calls, 0);
	atomic_store(&window_ticks, 0);
	atomic_store(&bad_stacks, 0);
	atomic_store(&sched_tick_hook, check_stack);
	unsigned n = recorded(fn);
	atomic_store(&sched_tick_hook, NULL);
	atomic_store(&window_cpu, MAX_CPUS);
	ktest_diag("window reached %u times, %u ticks in it; %u violations, "
	           "%u inconsistent stacks (last violation: %s)",
	           atomic_load(&window_calls), atomic_load(&window_ticks), n,
	           atomic_load(&bad_stacks),
	           n ? lockcheck_last_violation() : "none");
	KEXPECT_EQ(atomic_load(&window_calls), 1);
	return n + atomic_load(&bad_stacks);
}

KTEST(lockcheck, interrupt_sees_whole_stack_on_acquire)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(with_stack_checked(leaf_then_lock_with_irqs_on), 0);
}

KTEST(lockcheck, interrupt_sees_whole_stack_on_release)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(with_stack_checked(release_below_top_with_irqs_on), 0);
}
#endif /* KTEST_HOOKS */

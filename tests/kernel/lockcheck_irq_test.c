/*
 * The lock checker and interrupt handlers (see lockcheck_test.c for its
 * other rules): a handler must return with the held locks and preemption
 * count it found, and a handler that lands while a lock is pushed onto or
 * popped off this CPU's held-lock stack must see the stack whole.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/lockcheck_testing.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/lockcheck_util.h"

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
	/* Let go with interrupts off, as a handler holds it: released with
	 * them on, it would also count as held so. */
	cpu_cli();
	spin_unlock(&handler_lock);
	cpu_sti();
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

/*
 * A handler that releases the interrupted code's lock and takes one of
 * its own returns with as many locks held as it found: counted alone, the
 * stack looked balanced and nothing was said, though the interrupted
 * thread went on with its lock gone (another CPU in under it) and the
 * handler's lock kept (review).
 */
static void swap_interrupted_lock(void)
{
	spin_unlock(&interrupted_lock);
	spin_lock(&handler_lock);
}

static void handler_swaps_interrupted_lock(void)
{
	spin_lock(&interrupted_lock); /* interrupts on: the IPI comes in */
	in_handler(swap_interrupted_lock);
	cpu_cli(); /* the handler's lock, let go as a handler holds it */
	spin_unlock(&handler_lock);
	cpu_sti();
}

KTEST(lockcheck, interrupt_handler_swaps_a_lock_of_the_interrupted_code)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(recorded(handler_swaps_interrupted_lock), 1);
	KEXPECT(message_has("vector 0xf3", "released a lock"));
	KEXPECT_EQ(this_cpu()->nheld, 0);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
	KEXPECT(!spin_held(&handler_lock) && !spin_held(&interrupted_lock));
}

/*
 * A handler that releases the interrupted code's top lock and takes the
 * same lock again leaves the count and the top as they were, so
 * irq_dispatch's own check sees nothing. It is still reported: the lock
 * is taken in interrupt context though the interrupted code held it with
 * interrupts on (it must have, for the interrupt to land), a deadlock
 * waiting for a handler that comes in while another CPU holds it. The
 * lock is this test's alone, so that its usage bits start clear.
 */
static struct spinlock retaken_lock =
        SPINLOCK_INIT("retaken_lock", LOCK_RANK_STW);

static void retake_interrupted_lock(void)
{
	spin_unlock(&retaken_lock);
	spin_lock(&retaken_lock);
}

static void handler_retakes_interrupted_lock(void)
{
	spin_lock(&retaken_lock); /* interrupts on: the IPI comes in */
	in_handler(retake_interrupted_lock);
	spin_unlock(&retaken_lock);
}

KTEST(lockcheck, interrupt_handler_retakes_a_lock_of_the_interrupted_code)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT(recorded_without_ticks(handler_retakes_interrupted_lock) >= 1);
	KEXPECT(message_has("retaken_lock", "interrupt"));
	KEXPECT_EQ(this_cpu()->nheld, 0);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
	KEXPECT(!spin_held(&retaken_lock));
}

/*
 * A handler runs with interrupts off and must return so: one that turns
 * them on (an irqrestore of a state that was not its own) lets any
 * interrupt in before its EOI, and irq_dispatch's preemption point would
 * switch threads with them on. Reported naming the vector; irq_dispatch
 * turns them off again, so the rest of the return runs as it should.
 */
static void enable_interrupts(void)
{
	cpu_sti();
}

static void nothing(void)
{
}

static void handler_turns_interrupts_on(void)
{
	in_handler(enable_interrupts);
}

static void handler_leaves_them_off(void)
{
	in_handler(nothing);
}

KTEST(lockcheck, interrupt_handler_returns_with_interrupts_on)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(recorded(handler_turns_interrupts_on), 1);
	KEXPECT(message_has("vector 0xf3", "interrupts enabled"));
	KEXPECT_EQ(recorded(handler_leaves_them_off), 0);
	KEXPECT(read_rflags() & RFLAGS_IF);
}

/*
 * An irqrestore that turns interrupts back on while a lock taken after
 * its own is still held (released out of order) lets an interrupt in
 * under that lock. It is reported at the irqrestore, naming the lock: the
 * check at the lock's own release (all that lockcheck_test.c's
 * irqrestore_out_of_order needs) sees nothing if the holder turns
 * interrupts off again first. restored_outer ranks below the locks
 * interrupt handlers take, as a lock held with them on must.
 */
static struct spinlock restored_outer =
        SPINLOCK_INIT("restored_outer", LOCK_RANK_STW);
static struct spinlock irq_used_lock =
        SPINLOCK_INIT("irq_used_lock", LOCK_RANK_TEST_IRQ);

static void take_and_release_irq_used(void)
{
	spin_lock(&irq_used_lock);
	spin_unlock(&irq_used_lock);
}

static void restore_under_irq_used(void)
{
	unsigned long irq = spin_lock_irqsave(&restored_outer);
	spin_lock(&irq_used_lock);
	spin_unlock_irqrestore(&restored_outer, irq); /* interrupts on */
	cpu_cli();
	spin_unlock(&irq_used_lock);
	cpu_sti();
}

KTEST(lockcheck, irqrestore_under_an_interrupt_lock_is_reported)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	spin_init(&irq_used_lock, "irq_used_lock", LOCK_RANK_TEST_IRQ);
	in_handler(take_and_release_irq_used); /* used in a handler */
	KEXPECT_EQ(recorded(restore_under_irq_used), 1);
	KEXPECT(message_has("lock irq_used_lock", "interrupts enabled"));
	KEXPECT_EQ(this_cpu()->nheld, 0);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
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
 * compares the stack with the locks' holders. lockcheck.c now changes
 * the stack with interrupts off, which shuts the window: the test then
 * asserts that it was shut, so that one open to interrupts that no tick
 * looked into cannot pass.
 */
static struct spinlock leaf = SPINLOCK_INIT("leaf", LOCK_RANK_TEST_LEAF);
static struct spinlock irqs_on_outer =
        SPINLOCK_INIT("irqs_on_outer", LOCK_RANK_SHOOTDOWN);
static struct spinlock irqs_on_inner =
        SPINLOCK_INIT("irqs_on_inner", LOCK_RANK_STW);
static _Atomic unsigned window_cpu = MAX_CPUS;
static _Atomic unsigned window_calls, window_shut, window_ticks, bad_stacks;

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
	if (!(read_rflags() & RFLAGS_IF)) {
		/* No interrupt can come in: the window is shut (lockcheck.c
		 * changes the stack with interrupts off). */
		atomic_fetch_add(&window_shut, 1);
		return;
	}
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
	atomic_store(&window_shut, 0);
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
	/* Either the window is shut to interrupts, or the timer looked into
	 * it twice: a window open to interrupts that no tick saw would pass
	 * with nothing checked. */
	KEXPECT(atomic_load(&window_shut) == 1 ||
	        atomic_load(&window_ticks) >= 2);
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

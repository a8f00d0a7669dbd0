/*
 * The lock checker's sleep checks (see lockcheck_test.c for its other
 * rules): a thread that sleeps or yields holding a spinlock, with
 * interrupts off, or (thread_sleep_unlock) holding a lock besides the one
 * the sleep releases, is reported in test mode and refused; so is a join
 * that cannot sleep, which then leaves its thread alone.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "kernel/irq.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/lockcheck_util.h"

static struct spinlock low = SPINLOCK_INIT("low", LOCK_RANK_TEST_LOW);

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

/*
 * A thread_sleep_unlock of a lock the thread does not hold, while it
 * holds one other: one lock held and a preemption count of one look like
 * the sleep's own lock to the counts, so only the check of which lock is
 * held refuses it. The check is asked first on its own, which leaves
 * every lock as it was; then thread_sleep_unlock, refused, releases the
 * lock it was given (a second report: not held) and leaves sleep_outer
 * held. sleep_outer is taken with interrupts on (ranked below the
 * interrupt handlers' locks, as such a lock must be), so the irqrestore's
 * sti changes nothing.
 */
static struct spinlock never_taken =
        SPINLOCK_INIT("never_taken", LOCK_RANK_WAITQ);
static bool sleep_allowed;

static void may_sleep_releasing_a_lock_not_held(void)
{
	spin_lock(&sleep_outer);
	sleep_allowed = lockcheck_may_sleep_releasing(
	        "thread_sleep_unlock", &never_taken, read_rflags());
	spin_unlock(&sleep_outer);
}

static void sleep_unlock_of_a_lock_not_held(void)
{
	spin_lock(&sleep_outer);
	thread_sleep_unlock(&never_taken, read_rflags(), 1000); /* refused */
	KEXPECT(spin_held(&sleep_outer));
	spin_unlock(&sleep_outer);
}

KTEST(lockcheck, sleep_unlock_of_a_lock_not_held_holding_another)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(recorded(may_sleep_releasing_a_lock_not_held), 1);
	KEXPECT(!sleep_allowed);
	KEXPECT(message_has("thread_sleep_unlock", "spinlock sleep_outer"));
	KEXPECT_EQ(recorded(sleep_unlock_of_a_lock_not_held), 2);
	KEXPECT(message_has("release of lock never_taken", "does not hold"));
	KEXPECT_EQ(this_cpu()->nheld, 0);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
	KEXPECT(read_rflags() & RFLAGS_IF);
}

/*
 * preempt_enable without its preempt_disable: the count would go below
 * zero unreported, and the next sleep check would blame interrupts. It is
 * reported naming preempt_enable, and the count stays at zero.
 */
static void enable_unpaired(void)
{
	preempt_enable();
}

KTEST(lockcheck, preempt_enable_without_disable)
{
	KASSERT(this_cpu()->preempt_count == 0);
	unsigned n = recorded(enable_unpaired);
	int left = this_cpu()->preempt_count;
	this_cpu()->preempt_count = 0; /* for the rest of the run, if not */
	KEXPECT_EQ(n, 1);
	KEXPECT(message_has("preempt_enable", "without a matching"));
	KEXPECT_EQ(left, 0);
}

/*
 * A preempt_enable under a spinlock that was not its own disable's (a
 * stray one; the lock's own enable comes at its unlock) takes the count
 * to zero with the lock still held: preemption comes in under it, the
 * thread is switched out holding a spinlock and the next thread on this
 * CPU runs with it on the CPU's held-lock stack. Nothing was reported at
 * the enable (the count was not below zero), nor at the switch (review).
 * need_resched asks for the switch at once, as a tick would.
 */
static struct spinlock preempted_lock =
        SPINLOCK_INIT("preempted_lock", LOCK_RANK_STW);
static int count_after_enable;

static void enable_under_a_lock(void)
{
	spin_lock(&preempted_lock);
	this_cpu()->need_resched = true;
	preempt_enable(); /* stray: the lock's own is at its unlock */
	count_after_enable = this_cpu()->preempt_count;
	if (count_after_enable == 0)
		preempt_disable(); /* unreported: put the lock's back */
	spin_unlock(&preempted_lock);
}

KTEST(lockcheck, preempt_enable_under_a_spinlock)
{
	KASSERT(this_cpu()->preempt_count == 0);
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(recorded(enable_under_a_lock), 1);
	KEXPECT(message_has("preempt_enable", "preempted_lock"));
	KEXPECT_EQ(count_after_enable, 1);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
	KEXPECT_EQ(this_cpu()->nheld, 0);
}

/* A count below zero (a stray preempt_enable on a kernel without the
 * check above) is named by the sleep check, not taken for interrupts off.
 * No interrupt may land while the count is -1: its spinlock would take
 * the count to 0 and its unlock report an unpaired preempt_enable, more
 * reports recorded and the count left at 1 after the window. CR8 keeps
 * them off with interrupts still enabled, which is what the check must
 * see. */
static void sleep_with_negative_count(void)
{
	uint64_t tpr = read_cr8();
	write_cr8(15);
	this_cpu()->preempt_count--;
	thread_sleep_ns(1000); /* refused in record mode */
	this_cpu()->preempt_count++;
	write_cr8(tpr);
}

KTEST(lockcheck, sleeping_with_a_negative_preemption_count)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	KEXPECT_EQ(recorded(sleep_with_negative_count), 1);
	KEXPECT(message_has("thread_sleep", "preemption count -1"));
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
}

/*
 * A join that may not sleep (here with preemption disabled) is refused
 * like any other sleep, and leaves the thread alone: in record mode the
 * wait for its exit returns at once, and a join that went on from there
 * freed the stack and struct of a thread still blocked on a wait queue.
 * The target blocks on join_wq first, on this CPU, and is then looked
 * for by id among the live threads (thread_snapshot).
 */
static struct waitq join_wq = WAITQ_INIT("join_wq");
static bool join_gate_open;
static struct thread_handle join_target;

static bool join_gate(void *arg)
{
	return join_gate_open;
}

static void wait_at_join_gate(void *arg)
{
	KASSERT(waitq_wait_until(&join_wq, join_gate, NULL));
}

static void join_unpreemptible(void)
{
	preempt_disable();
	thread_join(join_target); /* refused in record mode */
	preempt_enable();
}

/* The state of the live thread with this id; false if there is none. */
static bool live_thread_state(uint64_t id, enum thread_state *state)
{
	unsigned n;
	struct thread_info *ti = thread_snapshot_all(&n);
	KEXPECT(ti != NULL);
	if (!ti)
		return false;
	bool found = false;
	for (unsigned i = 0; i < n && !found; i++)
		if (ti[i].id == id) {
			*state = ti[i].state;
			found = true;
		}
	kfree(ti);
	return found;
}

KTEST(lockcheck, join_that_cannot_sleep_is_refused)
{
	join_gate_open = false;
	join_target = thread_create("join_target", wait_at_join_gate, NULL,
	                            this_cpu()->id);
	KASSERT(thread_handle_ok(join_target));
	uint64_t id = join_target.id;
	enum thread_state st = THREAD_RUNNABLE;
	while (live_thread_state(id, &st) && st != THREAD_BLOCKED)
		thread_yield();
	KASSERT(st == THREAD_BLOCKED);
	KEXPECT_EQ(recorded(join_unpreemptible), 1);
	KEXPECT(message_has("thread_join", "preemption disabled"));
	/* Freed, it must not be woken (its struct on join_wq is stale). */
	KASSERT(live_thread_state(id, &st));
	KEXPECT_EQ(st, THREAD_BLOCKED);
	unsigned long irq = spin_lock_irqsave(&join_wq.lock);
	join_gate_open = true;
	waitq_wake_all_locked(&join_wq);
	spin_unlock_irqrestore(&join_wq.lock, irq);
	thread_join(join_target);
	KEXPECT(!live_thread_state(id, &st));
}

/*
 * A wait that may not sleep fails visibly. In test mode sema_acquire and
 * waitq_wait_until are refused like any sleep, and return false with no
 * unit taken and the condition unchecked: returning as if they had waited
 * let a caller in beside the semaphore's holder, or on past a condition
 * that did not hold. The report names the call and the semaphore or
 * queue. Each wrong context: a spinlock held, preemption disabled, an
 * interrupt handler (a self-IPI, as lockcheck_irq_test.c's).
 */
static struct semaphore none_sema;
static struct waitq never_wq = WAITQ_INIT("never_wq");
static bool got;

static bool never(void *arg)
{
	return false;
}

static void acquire_holding(void)
{
	unsigned long irq = spin_lock_irqsave(&low);
	got = sema_acquire(&none_sema); /* refused */
	spin_unlock_irqrestore(&low, irq);
}

static void wait_unpreemptible(void)
{
	preempt_disable();
	got = waitq_wait_until(&never_wq, never, NULL); /* refused */
	preempt_enable();
}

static _Atomic bool handler_done;

static void acquire_in_handler(struct trap_frame *f)
{
	got = sema_acquire(&none_sema); /* refused */
	atomic_store(&handler_done, true);
}

static void acquire_in_interrupt(void)
{
	atomic_store(&handler_done, false);
	irq_register(IRQ_VEC_TEST, acquire_in_handler);
	lapic_send_ipi(this_cpu()->apic_id, IRQ_VEC_TEST);
	while (!atomic_load(&handler_done))
		cpu_pause();
	irq_register(IRQ_VEC_TEST, NULL);
}

KTEST(lockcheck, wait_that_cannot_sleep_fails_visibly)
{
	sema_init(&none_sema, "none_sema", 0, 1);
	got = true;
	KEXPECT_EQ(recorded(acquire_holding), 1);
	KEXPECT(!got);
	KEXPECT(message_has("sema_acquire(none_sema) in thread",
	                    "spinlock low"));
	got = true;
	KEXPECT_EQ(recorded(wait_unpreemptible), 1);
	KEXPECT(!got);
	KEXPECT(message_has("waitq_wait_until(never_wq) in thread",
	                    "preemption disabled"));
	got = true;
	KEXPECT_EQ(recorded(acquire_in_interrupt), 1);
	KEXPECT(!got);
	KEXPECT(message_has("sema_acquire(none_sema)", "interrupt handler"));
	/* Nothing taken, nothing left behind. */
	KEXPECT(!sema_try_acquire(&none_sema));
	KEXPECT_EQ(this_cpu()->nheld, 0);
	KEXPECT_EQ(this_cpu()->preempt_count, 0);
}

/* A wait with no condition is refused naming the queue, instead of
 * calling address 0 with the queue's lock held and interrupts off. */
static void wait_without_a_condition(void)
{
	got = waitq_wait_until(&never_wq, NULL, NULL);
}

KTEST(lockcheck, wait_without_a_condition_is_refused)
{
	got = true;
	KEXPECT_EQ(recorded(wait_without_a_condition), 1);
	KEXPECT(!got);
	KEXPECT(message_has("waitq_wait_until(never_wq)",
	                    "without a condition"));
	KEXPECT(!spin_held(&never_wq.lock));
	KEXPECT_EQ(this_cpu()->nheld, 0);
}

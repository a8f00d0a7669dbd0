/*
 * What a wake leaves behind: a sleeper woken early is off its CPU's
 * sleeper list, and thread_sleep_unlock keeps its lock until the thread
 * is on that list, so a waker that needs the lock finds it asleep. Both
 * read the run queue under its lock, never the clock: the host may stall
 * a virtual CPU at any point.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/sched_internal.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "tests/kernel/smp_util.h"

/* A racy read of a live thread's state, for polling. */
static enum thread_state state_of(struct thread_handle h)
{
	return *(volatile enum thread_state *)&h.t->state;
}

/* Whether h's thread is on its CPU's sleeper list. h must be live. */
static bool on_sleeper_list(struct thread_handle h)
{
	struct runqueue *rq = rq_of(&cpus[h.cpu]);
	bool found = false;
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	for (struct thread *t = rq->sleepers; t; t = t->sleep_next)
		if (t == h.t)
			found = true;
	spin_unlock_irqrestore(&rq->lock, irq);
	return found;
}

static _Atomic bool woke;

static void sleep_for_good(void *arg)
{
	thread_sleep_ns(UINT64_MAX);
	atomic_store(&woke, true);
}

/*
 * A sleeper woken by thread_wake long before its deadline (one no tick
 * reaches) must leave the list: left there, it would be woken again by a
 * tick once it sleeps anew, and read there after the join freed it.
 */
KTEST(sched, woken_sleeper_leaves_the_sleeper_list)
{
	atomic_store(&woke, false);
	struct thread_handle h =
	        thread_create("sleeper", sleep_for_good, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(h));
	while (state_of(h) != THREAD_SLEEPING)
		thread_yield();
	KEXPECT(on_sleeper_list(h));
	thread_wake(h);
	while (!atomic_load(&woke))
		thread_yield();
	KEXPECT(!on_sleeper_list(h));
	thread_join(h);
}

/* The lock the sleeper gives up, and where it is. */
static struct spinlock held =
        SPINLOCK_INIT("sleep_unlock_test", LOCK_RANK_WAITQ);
static _Atomic bool about_to_sleep, go, sleeper_done;

/* Takes held, and once the test holds this CPU's run-queue lock (go),
 * sleeps releasing it. */
static void sleep_unlocking(void *arg)
{
	unsigned long irq = spin_lock_irqsave(&held);
	atomic_store(&about_to_sleep, true);
	while (!atomic_load(&go))
		cpu_pause();
	thread_sleep_unlock(&held, irq, UINT64_MAX);
	atomic_store(&sleeper_done, true);
}

/* Looks at held up to tries times; true if it saw it free. Serving is
 * read first: next only grows, so equal means free at that read. */
static bool seen_free(unsigned long tries)
{
	for (unsigned long i = 0; i < tries; i++) {
		uint32_t serving = atomic_load(&held.serving);
		if (atomic_load(&held.next) == serving)
			return true;
		cpu_pause();
	}
	return false;
}

/*
 * This CPU holds the sleeper's run-queue lock while the sleeper, on
 * another CPU, calls thread_sleep_unlock: it cannot get on the sleeper
 * list until we let go, so `held` must stay taken all that time. A
 * sleep_unlock that let go of held first would hand it to a waker that
 * then found the thread running and its wake lost.
 */
KTEST(sched, sleep_unlock_keeps_its_lock_until_it_sleeps)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS) {
		ktest_skip("needs a second CPU");
		return;
	}
	atomic_store(&about_to_sleep, false);
	atomic_store(&go, false);
	atomic_store(&sleeper_done, false);
	struct runqueue *rq = rq_of(&cpus[cpu]);
	struct thread_handle h =
	        thread_create("sleep_unlock", sleep_unlocking, NULL, cpu);
	KASSERT(thread_handle_ok(h));
	while (!atomic_load(&about_to_sleep))
		thread_yield();
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	atomic_store(&go, true);
	/* The sleeper now spins on rq->lock (or, released too early, has
	 * let go of held): bounded tries, as a stall of its CPU may delay
	 * the release for any length. */
	bool let_go = seen_free(2000000);
	spin_unlock_irqrestore(&rq->lock, irq);
	KEXPECT(!let_go);
	/* Wake it under held, as a waker would, until it ran. */
	while (!atomic_load(&sleeper_done)) {
		irq = spin_lock_irqsave(&held);
		thread_wake(h);
		spin_unlock_irqrestore(&held, irq);
		thread_yield();
	}
	thread_join(h);
}

/*
 * What a wake leaves behind: a sleeper woken early is off its CPU's
 * sleeper list. Read from the run queue under its lock, never the clock:
 * the host may stall a virtual CPU at any point.
 */
#include <stdatomic.h>

#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/sched_internal.h"
#include "kernel/thread.h"

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

/*
 * The scheduler's checkers (sched_check.c) on quiet state, and (in
 * KTEST_FAIL_DEMO builds only) each shown to panic, naming the fault,
 * on a run queue, a wait queue or a semaphore broken on purpose: a
 * checker that cannot fail proves nothing (tools/test-harness runs them).
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/sched_internal.h"
#include "kernel/string.h"
#include "kernel/thread.h"

static struct waitq check_wq = WAITQ_INIT("check_wq");
static struct semaphore check_sema;
static _Atomic bool check_go;

static bool go(void *arg)
{
	return atomic_load(&check_go);
}

static void wait_on_queue(void *arg)
{
	if (!waitq_wait_until(&check_wq, go, NULL))
		panic("check_test: wait refused");
}

static void wait_on_sema(void *arg)
{
	if (!sema_acquire(&check_sema))
		panic("check_test: acquire refused");
	sema_release(&check_sema);
}

static void sleep_until_woken(void *arg)
{
	thread_sleep_ns(UINT64_MAX);
}

static enum thread_state state_of(struct thread_handle h)
{
	return *(volatile enum thread_state *)&h.t->state;
}

/* A thread running fn on this CPU, once it is in state s. Panics if it
 * cannot be made (each test here needs it). */
static struct thread_handle start_until(void (*fn)(void *), enum thread_state s)
{
	struct thread_handle h =
	        thread_create("check_subject", fn, NULL, this_cpu()->id);
	if (!thread_handle_ok(h))
		panic("check_test: no memory for a thread");
	while (state_of(h) != s)
		thread_yield();
	return h;
}

/* A sleeper, a waiter on a queue and one on a semaphore, each checked
 * while it waits and after it is gone. */
KTEST(sched, checks_pass_on_waiting_threads)
{
	atomic_store(&check_go, false);
	sema_init(&check_sema, "check_sema", 0, 1);
	struct thread_handle s =
	        start_until(sleep_until_woken, THREAD_SLEEPING);
	struct thread_handle w = start_until(wait_on_queue, THREAD_BLOCKED);
	struct thread_handle m = start_until(wait_on_sema, THREAD_BLOCKED);
	sched_check();
	waitq_check(&check_wq);
	sema_check(&check_sema);
	KEXPECT(check_wq.head == w.t && check_sema.wq.head == m.t);
	thread_wake(s);
	atomic_store(&check_go, true);
	waitq_wake_all(&check_wq);
	sema_release(&check_sema);
	thread_join(s);
	thread_join(w);
	thread_join(m);
	sched_check();
	waitq_check(&check_wq);
	sema_check(&check_sema);
	KEXPECT(sema_try_acquire(&check_sema));
}

/* A made-up thread of state st, on_cpu and queued as given. */
static struct thread made_up(enum thread_state st, bool on_cpu, bool queued)
{
	struct thread t = {0};
	t.state = st;
	t.on_cpu = on_cpu;
	t.queued = queued;
	return t;
}

/* Each rule of a thread's fields against its CPU's, case by case on
 * made-up threads (the live structures never break them). */
KTEST(sched, check_state_names_each_broken_rule)
{
	static const struct {
		enum thread_state st;
		bool cur, idle, on_cpu, queued;
		const char *why; /* NULL: fine */
	} cases[] = {
	        {THREAD_RUNNING, true, false, true, false, NULL},
	        {THREAD_RUNNABLE, false, false, false, true, NULL},
	        {THREAD_RUNNABLE, false, true, false, false, NULL},
	        {THREAD_RUNNABLE, true, false, true, false, NULL},
	        {THREAD_BLOCKED, false, false, false, false, NULL},
	        {THREAD_DEAD, false, false, false, false, NULL},
	        {THREAD_DEAD + 1, false, false, false, false,
	         "a state out of range"},
	        {THREAD_RUNNING, false, false, true, false,
	         "RUNNING but not current"},
	        {THREAD_BLOCKED, true, false, false, false,
	         "on_cpu says otherwise than current"},
	        {THREAD_SLEEPING, false, false, true, false,
	         "on_cpu says otherwise than current"},
	        {THREAD_RUNNABLE, false, false, false, false,
	         "RUNNABLE, not current, not queued"},
	        {THREAD_RUNNABLE, true, false, true, true,
	         "queued but not a waiting RUNNABLE thread"},
	        {THREAD_RUNNABLE, false, true, false, true,
	         "queued but not a waiting RUNNABLE thread"},
	        {THREAD_BLOCKED, false, false, false, true,
	         "queued but not a waiting RUNNABLE thread"},
	};
	struct thread other = made_up(THREAD_RUNNING, true, false);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct thread t =
		        made_up(cases[i].st, cases[i].on_cpu, cases[i].queued);
		const char *why =
		        sched_check_state_error(&t, cases[i].cur ? &t : &other,
		                                cases[i].idle ? &t : &other);
		bool same = why == cases[i].why ||
		            (why && cases[i].why && !strcmp(why, cases[i].why));
		if (!same)
			ktest_fail_at(__FILE__, __LINE__,
			              "case %zu: %s, not %s", i,
			              why ? why : "fine",
			              cases[i].why ? cases[i].why : "fine");
	}
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): each breaks a
 * structure under its lock and runs its checker, which must panic. */

/* A sleeper list that loops back on its sleeper: "twice". */
KTEST(demo, sched_check_sleeper_listed_twice)
{
	struct thread_handle s =
	        start_until(sleep_until_woken, THREAD_SLEEPING);
	struct runqueue *rq = rq_of(this_cpu());
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	s.t->sleep_next = s.t;
	spin_unlock_irqrestore(&rq->lock, irq);
	sched_check();
	ktest_fail_at(__FILE__, __LINE__, "sched_check passed a loop");
}

/* A run queue that counts a thread it does not have. */
KTEST(demo, sched_check_miscounted_threads)
{
	struct runqueue *rq = rq_of(this_cpu());
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	rq->nthreads++;
	spin_unlock_irqrestore(&rq->lock, irq);
	sched_check();
	ktest_fail_at(__FILE__, __LINE__, "sched_check passed a bad count");
}

/* A wait queue whose one waiter follows itself. */
KTEST(demo, waitq_check_waiter_twice)
{
	atomic_store(&check_go, false);
	start_until(wait_on_queue, THREAD_BLOCKED);
	unsigned long irq = spin_lock_irqsave(&check_wq.lock);
	check_wq.head->wq_next = check_wq.head;
	spin_unlock_irqrestore(&check_wq.lock, irq);
	waitq_check(&check_wq);
	ktest_fail_at(__FILE__, __LINE__, "waitq_check passed a loop");
}

/* A semaphore with a unit free and a waiter still queued for one. */
KTEST(demo, sema_check_unit_free_beside_a_waiter)
{
	sema_init(&check_sema, "check_sema", 0, 1);
	start_until(wait_on_sema, THREAD_BLOCKED);
	unsigned long irq = spin_lock_irqsave(&check_sema.wq.lock);
	check_sema.count = 1;
	spin_unlock_irqrestore(&check_sema.wq.lock, irq);
	sema_check(&check_sema);
	ktest_fail_at(__FILE__, __LINE__, "sema_check passed a lost unit");
}
#endif

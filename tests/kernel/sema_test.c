/*
 * Semaphores against misuse (see sched_wait_test.c for their admission tests):
 * a release past the maximum and bad numbers at init are reported, naming
 * the semaphore, and let no extra holder in; a wait queue's waiter woken
 * by something else than its queue goes back on it once; waitq_wake_all
 * wakes every waiter; and waiters are woken in the order they queued.
 */
#include <stdatomic.h>

#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/stw.h"
#include "kernel/thread.h"
#include "tests/kernel/lockcheck_util.h"

static struct semaphore one;

static void release_one(void)
{
	sema_release(&one);
}

/*
 * A semaphore of one unit, taken and given back, then given back again:
 * without a maximum the second release made two units, and two holders
 * could be inside at once. It is reported, and one unit stays.
 */
KTEST(sema, release_past_the_maximum_is_refused)
{
	sema_init(&one, "one_holder", 1, 1);
	KASSERT(sema_acquire(&one));
	sema_release(&one);
	KEXPECT_EQ(recorded(release_one), 1);
	KEXPECT(message_has("sema_release(one_holder)",
	                    "all 1 of its units free"));
	KEXPECT(sema_try_acquire(&one));
	KEXPECT(!sema_try_acquire(&one)); /* no second holder */
	sema_release(&one);
}

static void release_stw(void)
{
	sema_release(&stw_sema);
}

/* Stop-the-world's semaphore, released with no stop held: the world can
 * still be stopped by one stopper at a time. */
KTEST(sema, stw_sema_released_twice_is_refused)
{
	KEXPECT_EQ(recorded(release_stw), 1);
	KEXPECT(message_has("sema_release(stw_sema)", "all 1 of its"));
	KEXPECT(sema_try_acquire(&stw_sema));
	KEXPECT(!sema_try_acquire(&stw_sema));
	sema_release(&stw_sema);
	stw_stop("sema test");
	KEXPECT(stw_stopped_by_this_cpu());
	stw_start();
}

static struct semaphore bad;
static int bad_count, bad_max;

static void init_bad(void)
{
	sema_init(&bad, "bad_sema", bad_count, bad_max);
}

KTEST(sema, init_with_bad_numbers_is_refused)
{
	static const struct {
		int count, max, clamped_count;
	} cases[] = {
	        {-1, 1, 0}, /* a negative count */
	        {0, 0, 0},  /* no unit at all */
	        {3, 2, 2},  /* more free than there are */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bad_count = cases[i].count;
		bad_max = cases[i].max;
		KEXPECT_EQ(recorded(init_bad), 1);
		KEXPECT(message_has("sema_init(bad_sema)", "wants 0 <= free"));
		int taken = 0;
		while (taken < 4 && sema_try_acquire(&bad))
			taken++;
		KEXPECT_EQ(taken, cases[i].clamped_count);
	}
	bad_count = 2;
	bad_max = 2;
	KEXPECT_EQ(recorded(init_bad), 0);
}

static void release_bad(void)
{
	sema_release(&bad);
}

/* Clamped, the semaphore works: its maximum is at least one unit, so a
 * unit taken can be given back, and only one (a maximum left at 0 made
 * every release a misuse, and one left above the count let more in). */
KTEST(sema, init_with_bad_numbers_clamps_to_a_working_semaphore)
{
	static const struct {
		int count, max;
	} cases[] = {{0, 0}, {-1, 0}, {2, 1}};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bad_count = cases[i].count;
		bad_max = cases[i].max;
		KEXPECT_EQ(recorded(init_bad), 1);
		KEXPECT_EQ(recorded(release_bad), i < 2 ? 0 : 1);
		KEXPECT(sema_try_acquire(&bad));
		KEXPECT(!sema_try_acquire(&bad));
		KEXPECT_EQ(recorded(release_bad), 0);
		KEXPECT_EQ(recorded(release_bad), 1); /* one unit in all */
	}
}

/*
 * A waiter woken by something else than its queue (a thread_wake of its
 * handle: blocked is blocked) finds its condition false, unlinks itself
 * and queues again, once. Queued twice, its entry would point at itself,
 * and the next wake of the queue would loop for ever under its lock.
 */
static struct waitq spurious_wq = WAITQ_INIT("spurious_wq");
/* Protected by spurious_wq.lock: */
static bool spurious_open;
static _Atomic unsigned spurious_checks;

static bool spurious_cond(void *arg)
{
	atomic_fetch_add(&spurious_checks, 1);
	return spurious_open;
}

static void spurious_waiter(void *arg)
{
	KASSERT(waitq_wait_until(&spurious_wq, spurious_cond, NULL));
}

/* The threads queued on spurious_wq, counted up to 8 (a cycle stops). */
static unsigned spurious_queued(void)
{
	unsigned long irq = spin_lock_irqsave(&spurious_wq.lock);
	unsigned n = 0;
	for (struct thread *t = spurious_wq.head; t && n < 8; t = t->wq_next)
		n++;
	spin_unlock_irqrestore(&spurious_wq.lock, irq);
	return n;
}

KTEST(sema, waiter_woken_from_elsewhere_queues_once)
{
	spurious_open = false;
	atomic_store(&spurious_checks, 0);
	struct thread_handle t = thread_create("spurious", spurious_waiter,
	                                       NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	while (spurious_queued() == 0)
		thread_yield();
	KEXPECT_EQ(atomic_load(&spurious_checks), 1);
	thread_wake(t); /* blocked, so made runnable: its condition is false */
	while (atomic_load(&spurious_checks) < 2 || spurious_queued() == 0)
		thread_yield();
	/* Queued twice, the wake below would never end: stop here. */
	KASSERT_EQ(spurious_queued(), 1);
	unsigned long irq = spin_lock_irqsave(&spurious_wq.lock);
	spurious_open = true;
	waitq_wake_all_locked(&spurious_wq);
	spin_unlock_irqrestore(&spurious_wq.lock, irq);
	thread_join(t);
	KEXPECT_EQ(atomic_load(&spurious_checks), 3);
}

/*
 * waitq_wake_all, the form that takes the queue's lock itself, wakes
 * every waiter: the queue is empty when it returns. A wake of the first
 * only would leave the others asleep with their condition true, waiting
 * for a wake that may never come (the producers and consumers of
 * sync_stress_test.c rarely have more than one waiter queued at once).
 */
#define WAKE_ALL_WAITERS 3
static struct waitq wake_all_wq = WAITQ_INIT("wake_all_wq");
/* Protected by wake_all_wq.lock: */
static bool wake_all_open;

static bool wake_all_cond(void *arg)
{
	return wake_all_open;
}

static void wake_all_waiter(void *arg)
{
	KASSERT(waitq_wait_until(&wake_all_wq, wake_all_cond, NULL));
}

/* The threads queued on wq, counted up to 8. */
static unsigned queued_on(struct waitq *wq)
{
	unsigned long irq = spin_lock_irqsave(&wq->lock);
	unsigned n = 0;
	for (struct thread *t = wq->head; t && n < 8; t = t->wq_next)
		n++;
	spin_unlock_irqrestore(&wq->lock, irq);
	return n;
}

KTEST(sema, wake_all_empties_the_queue)
{
	struct thread_handle t[WAKE_ALL_WAITERS];
	wake_all_open = false;
	for (unsigned i = 0; i < WAKE_ALL_WAITERS; i++) {
		t[i] = thread_create("wake_all_waiter", wake_all_waiter, NULL,
		                     THREAD_ANY_CPU);
		KASSERT(thread_handle_ok(t[i]));
	}
	while (queued_on(&wake_all_wq) < WAKE_ALL_WAITERS)
		thread_yield();
	unsigned long irq = spin_lock_irqsave(&wake_all_wq.lock);
	wake_all_open = true;
	spin_unlock_irqrestore(&wake_all_wq.lock, irq);
	waitq_wake_all(&wake_all_wq);
	/* Popped under the lock, each one woken: none is left queued. */
	KEXPECT_EQ(queued_on(&wake_all_wq), 0);
	/* Wake any left behind so that the joins end even if it failed. */
	irq = spin_lock_irqsave(&wake_all_wq.lock);
	waitq_wake_all_locked(&wake_all_wq);
	spin_unlock_irqrestore(&wake_all_wq.lock, irq);
	for (unsigned i = 0; i < WAKE_ALL_WAITERS; i++)
		thread_join(t[i]);
}

/*
 * A semaphore's waiters get its units in the order they queued: each
 * release wakes the one that has waited longest. Woken newest first, the
 * first waiter could wait for as long as others keep coming.
 */
#define ORDER_WAITERS 3
#define ORDER_UNSEEN  ((unsigned)-1)
static struct semaphore order_sema;
static _Atomic unsigned order_next;
static _Atomic unsigned order_seen[ORDER_WAITERS];

static void order_waiter(void *arg)
{
	KASSERT(sema_acquire(&order_sema));
	atomic_store(&order_seen[atomic_fetch_add(&order_next, 1)],
	             (unsigned)(uintptr_t)arg);
}

KTEST(sema, waiters_get_units_in_the_order_they_queued)
{
	struct thread_handle t[ORDER_WAITERS];
	sema_init(&order_sema, "order_sema", 0, ORDER_WAITERS);
	atomic_store(&order_next, 0);
	for (unsigned i = 0; i < ORDER_WAITERS; i++)
		atomic_store(&order_seen[i], ORDER_UNSEEN);
	for (unsigned i = 0; i < ORDER_WAITERS; i++) {
		t[i] = thread_create("order_waiter", order_waiter,
		                     (void *)(uintptr_t)i, THREAD_ANY_CPU);
		KASSERT(thread_handle_ok(t[i]));
		while (queued_on(&order_sema.wq) < i + 1)
			thread_yield(); /* queued behind the ones before */
	}
	for (unsigned i = 0; i < ORDER_WAITERS; i++) {
		sema_release(&order_sema);
		/*
		 * Wait for the record itself, not the count: a waiter takes its
		 * slot before it writes it, and a vCPU the host preempts in
		 * between would leave the slot unwritten.
		 */
		unsigned woken;
		while ((woken = atomic_load(&order_seen[i])) == ORDER_UNSEEN)
			thread_yield();
		KEXPECT_EQ(woken, i);
	}
	for (unsigned i = 0; i < ORDER_WAITERS; i++)
		thread_join(t[i]);
}

/*
 * A release with a waiter queued is that waiter's unit: a taker that
 * comes between the release and the woken waiter's run (a try_acquire,
 * here from the releasing thread, as an interrupt handler's or a looping
 * holder's would) must not get it. It did: the release only counted the
 * unit and woke the waiter, the taker took the unit, and the waiter,
 * finding none, queued again at the tail, behind the waiters that came
 * after it (a holder that releases and takes again in a loop kept it
 * from the waiter for as long as it liked).
 */
static struct semaphore keep_sema;
static _Atomic unsigned keep_next;
static _Atomic unsigned keep_seen[2];

static void keep_waiter(void *arg)
{
	KASSERT(sema_acquire(&keep_sema));
	atomic_store(&keep_seen[atomic_fetch_add(&keep_next, 1)],
	             (unsigned)(uintptr_t)arg);
	sema_release(&keep_sema);
}

/* n keep_waiters on this CPU (a woken one runs only when this thread
 * lets it), queued on keep_sema (0 of 1 free) in the order of their
 * numbers. */
static void keep_waiters_queue(struct thread_handle *t, unsigned n)
{
	sema_init(&keep_sema, "keep_sema", 0, 1);
	atomic_store(&keep_next, 0);
	for (unsigned i = 0; i < 2; i++)
		atomic_store(&keep_seen[i], ORDER_UNSEEN);
	for (unsigned i = 0; i < n; i++) {
		t[i] = thread_create("keep_waiter", keep_waiter,
		                     (void *)(uintptr_t)i, this_cpu()->id);
		KASSERT(thread_handle_ok(t[i]));
		while (queued_on(&keep_sema.wq) < i + 1)
			thread_yield();
	}
}

KTEST(sema, a_woken_waiter_keeps_its_unit_and_its_place)
{
	struct thread_handle t[2];
	keep_waiters_queue(t, 2);
	preempt_disable();
	sema_release(&keep_sema); /* waiter 0's unit */
	bool stolen = sema_try_acquire(&keep_sema);
	preempt_enable();
	KEXPECT(!stolen);
	if (stolen) {
		/* Let waiter 0 run, find nothing and queue again. */
		while (queued_on(&keep_sema.wq) < 2)
			thread_yield();
		sema_release(&keep_sema);
	}
	for (unsigned i = 0; i < 2; i++)
		thread_join(t[i]);
	unsigned first = atomic_load(&keep_seen[0]);
	unsigned second = atomic_load(&keep_seen[1]);
	KEXPECT_EQ(first, 0);
	KEXPECT_EQ(second, 1);
	/* Both gave their unit back: one free, no more. */
	KEXPECT(sema_try_acquire(&keep_sema));
	KEXPECT(!sema_try_acquire(&keep_sema));
}

static void release_keep(void)
{
	sema_release(&keep_sema);
}

/* A unit handed to a waiter that has not run yet is not free: a second
 * release then is one without its acquire, and is reported (counted only
 * as free, the handed unit made it look like a release into an empty
 * semaphore, and let an extra holder in). */
KTEST(sema, a_release_past_a_handed_unit_is_refused)
{
	struct thread_handle t[1];
	keep_waiters_queue(t, 1);
	preempt_disable();
	sema_release(&keep_sema); /* waiter 0's unit */
	KEXPECT_EQ(recorded(release_keep), 1);
	preempt_enable();
	KEXPECT(message_has("sema_release(keep_sema)",
	                    "units free or handed to a waiter"));
	thread_join(t[0]);
	KEXPECT_EQ(atomic_load(&keep_seen[0]), 0);
	KEXPECT(sema_try_acquire(&keep_sema)); /* the waiter's, given back */
	KEXPECT(!sema_try_acquire(&keep_sema));
}

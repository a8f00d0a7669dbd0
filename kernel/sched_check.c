/*
 * The scheduler's checkers: every CPU's run queue against sched.c's
 * invariants, and a wait queue (or semaphore) against waitq.c's. Tests run
 * them during and after their stresses; each panics naming what is wrong
 * and the thread it is wrong about.
 *
 * Run queue (under its lock, so no switch is half done: switched_from is
 * NULL and only the current thread is on the CPU):
 *   - live[]: each thread in the bucket of its id, homed on this CPU;
 *     nthreads counts those that are neither boot threads nor DEAD.
 *   - state: RUNNING only for the current thread; on_cpu exactly for it;
 *     queued exactly for a RUNNABLE thread that is neither current nor
 *     idle (invariant 1).
 *   - the FIFO: well formed (tail its last, head NULL with tail NULL), its
 *     threads live and queued, as many as the queued flags say (so none
 *     twice and no loop); the sleepers SLEEPING, live, sorted by wake_ns,
 *     as many as the SLEEPING states say.
 * Wait queue (under its lock, each waiter's state under its run-queue
 * lock, the order sched_prepare_block takes them in): well formed, no
 * loop, each waiter wq_queued, live, and BLOCKED, or RUNNABLE/RUNNING if a
 * thread_wake ended its wait before it could unlink itself; a semaphore's
 * counts in range (0 <= count, count + granted <= max), and no waiter
 * while a unit is free.
 */
#include "kernel/sched.h"
#include "kernel/thread.h"

#include <stdatomic.h>

#include "kernel/printk.h"
#include "kernel/sched_internal.h"

/* More waiters than this on one queue is taken for a loop. */
#define WAITQ_CHECK_MAX 100000

__attribute__((noreturn)) static void
broken(const char *who, unsigned cpu, const char *what, const struct thread *t)
{
	if (!t)
		panic("%s: cpu %u: %s", who, cpu, what);
	panic("%s: cpu %u: %s: thread %s (id %llu) state %d on_cpu %d "
	      "queued %d wq_queued %d",
	      who, cpu, what, t->name, (unsigned long long)t->id, t->state,
	      t->on_cpu, t->queued, t->wq_queued);
}

/* Whether t is live on rq. Locking: rq->lock held. */
static bool live_on(struct runqueue *rq, struct thread *t, unsigned cpu)
{
	const char *why = NULL;
	struct thread_handle h = {t, t->id, cpu};
	return thread_live_locked(rq, h, &why) == t;
}

/* Which rule of a live thread's fields against its CPU's (current c_cur,
 * idle c_idle) t breaks, or NULL. Reads only t: tested on made-up
 * threads (sched_check_test.c). */
const char *sched_check_state_error(const struct thread *t,
                                    const struct thread *c_cur,
                                    const struct thread *c_idle)
{
	bool cur = t == c_cur, idle = t == c_idle;
	if (t->state > THREAD_DEAD)
		return "a state out of range";
	if (t->state == THREAD_RUNNING && !cur)
		return "RUNNING but not current";
	if (t->on_cpu != cur)
		return "on_cpu says otherwise than current";
	bool want = t->state == THREAD_RUNNABLE && !cur && !idle;
	if (t->queued != want)
		return want ? "RUNNABLE, not current, not queued"
		            : "queued but not a waiting RUNNABLE thread";
	return NULL;
}

/* One live thread's fields against its CPU's. */
static void check_state(struct cpu *c, struct thread *t)
{
	const char *why = sched_check_state_error(t, c->current, c->idle);
	if (why)
		broken("sched_check", c->id, why, t);
}

/* Checks live[] and the states; counts the queued and the sleeping. */
static void check_live(struct cpu *c, struct runqueue *rq, unsigned *nqueued,
                       unsigned *nsleeping)
{
	unsigned counted = 0;
	for (unsigned i = 0; i < RQ_LIVE_BUCKETS; i++)
		for (struct thread *t = rq->live[i]; t; t = t->id_next) {
			if (t->cpu != c || t->id % RQ_LIVE_BUCKETS != i)
				broken("sched_check", c->id,
				       "in another CPU's or id's bucket", t);
			check_state(c, t);
			*nqueued += t->queued;
			*nsleeping += t->state == THREAD_SLEEPING;
			counted += !t->frame_struct && t->state != THREAD_DEAD;
		}
	if (counted != rq->nthreads)
		panic("sched_check: cpu %u: nthreads %u, but %u live threads "
		      "are neither boot threads nor dead",
		      c->id, rq->nthreads, counted);
}

/* The FIFO and the sleeper list against the counts check_live took. */
static void check_lists(struct cpu *c, struct runqueue *rq, unsigned nqueued,
                        unsigned nsleeping)
{
	const char *who = "sched_check";
	struct thread *last = NULL;
	unsigned n = 0;
	for (struct thread *t = rq->head; t; last = t, t = t->rq_next) {
		if (++n > nqueued)
			broken(who, c->id,
			       "more on the run queue than are queued (one "
			       "twice, or a loop)",
			       t);
		if (!t->queued || !live_on(rq, t, c->id))
			broken(who, c->id,
			       "on the run queue, not live there "
			       "or not queued",
			       t);
	}
	if (n != nqueued || rq->tail != last)
		panic("sched_check: cpu %u: run queue of %u threads ending at "
		      "%p, tail %p; %u threads queued",
		      c->id, n, (void *)last, (void *)rq->tail, nqueued);
	n = 0;
	for (struct thread *t = rq->sleepers; t; t = t->sleep_next) {
		if (++n > nsleeping || t->state != THREAD_SLEEPING ||
		    !live_on(rq, t, c->id))
			broken(who, c->id,
			       "a sleeper not SLEEPING, not live, or twice", t);
		if (t->sleep_next && t->sleep_next->wake_ns < t->wake_ns)
			broken(who, c->id, "sleepers out of wake_ns order", t);
	}
	if (n != nsleeping)
		panic("sched_check: cpu %u: %u sleepers listed, %u SLEEPING",
		      c->id, n, nsleeping);
}

/* Locking: rq->lock held. */
static void check_rq_locked(struct cpu *c, struct runqueue *rq)
{
	if (rq->switched_from)
		broken("sched_check", c->id, "a switch left half done",
		       rq->switched_from);
	if (!live_on(rq, c->current, c->id))
		broken("sched_check", c->id, "current is not live here",
		       c->current);
	unsigned nqueued = 0, nsleeping = 0;
	check_live(c, rq, &nqueued, &nsleeping);
	check_lists(c, rq, nqueued, nsleeping);
}

void sched_check(void)
{
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		struct cpu *c = &cpus[i];
		if (!atomic_load(&c->online))
			continue;
		struct runqueue *rq = rq_of(c);
		unsigned long irq = spin_lock_irqsave(&rq->lock);
		/* No idle thread yet: the CPU's scheduler is starting. */
		if (*(struct thread *volatile *)&c->idle)
			check_rq_locked(c, rq);
		spin_unlock_irqrestore(&rq->lock, irq);
	}
}

/* One waiter's scheduling state, under its run-queue lock. */
static void check_waiter(struct waitq *wq, struct thread *t)
{
	struct runqueue *rq = rq_of(t->cpu);
	spin_lock(&rq->lock);
	bool live = live_on(rq, t, t->cpu->id);
	enum thread_state s = t->state;
	spin_unlock(&rq->lock);
	if (!live || !t->wq_queued ||
	    (s != THREAD_BLOCKED && s != THREAD_RUNNABLE &&
	     s != THREAD_RUNNING))
		broken(wq->lock.name, t->cpu->id,
		       "a waiter not live, not wq_queued, or neither "
		       "blocked nor woken",
		       t);
}

/* Locking: wq->lock held, interrupts off. */
static void waitq_check_locked(struct waitq *wq)
{
	struct thread *last = NULL, *slow = wq->head;
	unsigned n = 0;
	for (struct thread *t = wq->head; t; last = t, t = t->wq_next) {
		/* slow moves at half speed: meeting it is a loop. */
		if (++n > WAITQ_CHECK_MAX || (n > 1 && t == slow))
			broken(wq->lock.name, this_cpu()->id,
			       "the waiters loop (a waiter twice)", t);
		if (n % 2 == 0)
			slow = slow->wq_next;
		check_waiter(wq, t);
	}
	if (wq->tail != last)
		panic("%s: %u waiters ending at %p, but tail %p", wq->lock.name,
		      n, (void *)last, (void *)wq->tail);
}

void waitq_check(struct waitq *wq)
{
	unsigned long irq = spin_lock_irqsave(&wq->lock);
	waitq_check_locked(wq);
	spin_unlock_irqrestore(&wq->lock, irq);
}

void sema_check(struct semaphore *s)
{
	unsigned long irq = spin_lock_irqsave(&s->wq.lock);
	waitq_check_locked(&s->wq);
	int count = s->count, granted = s->granted, max = s->max;
	bool waiters = s->wq.head != NULL;
	spin_unlock_irqrestore(&s->wq.lock, irq);
	if (count < 0 || granted < 0 || count + granted > max ||
	    (count > 0 && waiters))
		panic("sema_check(%s): %d units free, %d handed to waiters, "
		      "%d in all, %s waiting",
		      s->wq.lock.name, count, granted, max,
		      waiters ? "threads" : "none");
}

/*
 * Wait queues and semaphores (see waitq.h). A waiter checks its condition
 * under the queue's lock, queues itself, marks itself blocked, drops the
 * lock and switches away; a waker takes the lock, pops waiters and makes
 * them runnable. The condition check under the lock is what makes the
 * sleep/wake-up race benign: see sched.c for the other half.
 */
#include "kernel/thread.h"

#include "arch/x86_64/cpu.h"
#include "kernel/lockcheck.h"
#include "kernel/sched_internal.h"

void waitq_init(struct waitq *wq, const char *name)
{
	spin_init(&wq->lock, name, LOCK_RANK_WAITQ);
	wq->head = wq->tail = NULL;
}

static void append(struct waitq *wq, struct thread *t)
{
	t->wq_next = NULL;
	t->wq_queued = true;
	if (wq->tail)
		wq->tail->wq_next = t;
	else
		wq->head = t;
	wq->tail = t;
}

static void unlink(struct waitq *wq, struct thread *t)
{
	struct thread *prev = NULL;
	for (struct thread *p = wq->head; p; prev = p, p = p->wq_next) {
		if (p != t)
			continue;
		if (prev)
			prev->wq_next = p->wq_next;
		else
			wq->head = p->wq_next;
		if (wq->tail == p)
			wq->tail = prev;
		break;
	}
	t->wq_queued = false;
}

/* waitq_wait_until, refused in the checker's report as what(queue). */
static bool wait_until(struct waitq *wq, bool (*cond)(void *), void *arg,
                       const char *what)
{
	if (!lockcheck_may_sleep_on(what, wq->lock.name))
		return false; /* test mode only: the checker recorded it */
	/* Named here: the call would fault at address 0 with the queue's
	 * lock held and interrupts off, naming neither. */
	if (!cond) {
		lockcheck_misuse("%s(%s) without a condition", what,
		                 wq->lock.name);
		return false;
	}
	struct thread *self = thread_current();
	unsigned long irq = spin_lock_irqsave(&wq->lock);
	while (!cond(arg)) {
		append(wq, self);
		sched_prepare_block();
		spin_unlock(&wq->lock); /* interrupts stay off */
		sched_block();
		spin_lock(&wq->lock);
		if (self->wq_queued)
			unlink(wq, self);
	}
	spin_unlock_irqrestore(&wq->lock, irq);
	return true;
}

bool waitq_wait_until(struct waitq *wq, bool (*cond)(void *), void *arg)
{
	return wait_until(wq, cond, arg, "waitq_wait_until");
}

/* Wakes the first waiter, if any. Locking: wq->lock held. */
static void wake_first(struct waitq *wq)
{
	struct thread *t = wq->head;
	if (!t)
		return;
	unlink(wq, t);
	/* Live, so the id read here is its own: it cannot return from its
	 * wait (unlinking itself under the lock we hold) and exit. */
	thread_wake(thread_handle_of(t));
}

/* The _locked wakes check their caller's lock: without it they would
 * change the list under waiters that queue and unlink themselves. */
void waitq_wake_one_locked(struct waitq *wq)
{
	if (lockcheck_held(&wq->lock, "waitq_wake_one_locked"))
		wake_first(wq);
}

void waitq_wake_all_locked(struct waitq *wq)
{
	if (!lockcheck_held(&wq->lock, "waitq_wake_all_locked"))
		return;
	while (wq->head)
		wake_first(wq);
}

void waitq_wake_one(struct waitq *wq)
{
	unsigned long irq = spin_lock_irqsave(&wq->lock);
	wake_first(wq);
	spin_unlock_irqrestore(&wq->lock, irq);
}

void waitq_wake_all(struct waitq *wq)
{
	unsigned long irq = spin_lock_irqsave(&wq->lock);
	while (wq->head)
		wake_first(wq);
	spin_unlock_irqrestore(&wq->lock, irq);
}

void sema_init(struct semaphore *s, const char *name, int count, int max)
{
	waitq_init(&s->wq, name);
	if (count < 0 || max < 1 || count > max) {
		lockcheck_misuse("sema_init(%s): %d units free of %d; wants 0 "
		                 "<= free <= maximum, maximum >= 1",
		                 name, count, max);
		max = max < 1 ? 1 : max;
		count = count < 0 ? 0 : count > max ? max : count;
	}
	s->count = count;
	s->granted = 0;
	s->max = max;
}

/* Takes one unit if there is one. Locking: s->wq.lock held. */
static bool take(void *arg)
{
	struct semaphore *s = arg;
	if (s->count <= 0)
		return false;
	s->count--;
	return true;
}

/* sema_acquire's condition: the unit a release handed this waiter, else
 * a free one. Locking: s->wq.lock held. */
static bool take_granted(void *arg)
{
	struct semaphore *s = arg;
	struct thread *self = thread_current();
	if (!self->wq_granted)
		return take(s);
	self->wq_granted = false;
	s->granted--;
	return true;
}

bool sema_acquire(struct semaphore *s)
{
	return wait_until(&s->wq, take_granted, s, "sema_acquire");
}

bool sema_try_acquire(struct semaphore *s)
{
	unsigned long irq = spin_lock_irqsave(&s->wq.lock);
	bool ok = take(s);
	spin_unlock_irqrestore(&s->wq.lock, irq);
	return ok;
}

void sema_release(struct semaphore *s)
{
	unsigned long irq = spin_lock_irqsave(&s->wq.lock);
	bool over = s->count + s->granted >= s->max;
	if (!over && s->wq.head) {
		/* Handed to the first waiter (Linux's up() does the same):
		 * counted free, it went to whoever took first, a try_acquire
		 * or a new acquire before the woken waiter ran, and the
		 * waiter, finding none, queued again at the tail. */
		s->wq.head->wq_granted = true;
		s->granted++;
		wake_first(&s->wq);
	} else if (!over) {
		s->count++;
	}
	spin_unlock_irqrestore(&s->wq.lock, irq);
	if (over)
		lockcheck_misuse(
		        "sema_release(%s) on cpu %u with all %d of its "
		        "units free or handed to a waiter: a release "
		        "without its acquire",
		        s->wq.lock.name, this_cpu()->id, s->max);
}

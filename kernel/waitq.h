/*
 * kernel/waitq.h: wait queues and semaphores (waitq.c), the kernel's way
 * for a thread to sleep until a condition holds. Included by thread.h.
 */
#ifndef KERNEL_WAITQ_H
#define KERNEL_WAITQ_H

#include <stdbool.h>

#include "kernel/spinlock.h"

struct thread;

struct waitq {
	struct spinlock lock; /* rank WAITQ; guards the list and conditions */
	struct thread *head, *tail;
};

#define WAITQ_INIT(wname)                                     \
	{                                                     \
		.lock = SPINLOCK_INIT(wname, LOCK_RANK_WAITQ) \
	}

/* Any context, before the queue is first used. */
void waitq_init(struct waitq *wq, const char *name);

/*
 * Blocks until cond(arg) returns true; returns true then. cond runs with
 * wq->lock held and interrupts off, so a waker that makes it true and
 * then wakes the queue cannot be missed. Thread context, no spinlock
 * held, preemption and interrupts on: the lock checker reports any other,
 * naming the call and the queue (a panic). In its test mode the report is
 * recorded and the call returns false at once, cond not checked: a caller
 * must not go on as if cond held, hence the must-check result. A NULL
 * cond is reported the same way, naming the queue.
 */
__attribute__((warn_unused_result)) bool
waitq_wait_until(struct waitq *wq, bool (*cond)(void *), void *arg);

/* Wake the first waiter (the one queued longest: waiters are woken in
 * the order they queued) / every waiter. Any context but NMI, no
 * spinlock of rank WAITQ or above held (they take wq->lock, then run
 * queues' locks). */
void waitq_wake_one(struct waitq *wq);
void waitq_wake_all(struct waitq *wq);
/* The same with wq->lock already held by the caller (the lock checker
 * reports a call without it, naming the lock). */
void waitq_wake_one_locked(struct waitq *wq);
void waitq_wake_all_locked(struct waitq *wq);

/* Checks wq's list and its waiters' states (sched_check.c) and panics
 * naming what is broken. Any context but NMI, no spinlock held. */
void waitq_check(struct waitq *wq);

/* ---- Semaphores ---------------------------------------------------------- */

struct semaphore {
	struct waitq wq; /* rank WAITQ, named after the semaphore */
	/* Protected by wq.lock: */
	int count; /* units free, 0 <= count <= max */
	/* Units a release handed to a woken waiter that has not run yet
	 * (thread.wq_granted): not free, as a taker between the release and
	 * the waiter's run would take the waiter's turn; count + granted <=
	 * max */
	int granted;
	/* Immutable after init: */
	int max; /* units in all: a release past it has no acquire */
};

/* Any context, before the semaphore is first used: count units free of
 * max (a lock is 1 of 1, a signal 0 of 1). Bad numbers (count < 0,
 * max < 1, count > max) are reported by the lock checker, naming the
 * semaphore (a panic; in its test mode recorded, and count and max then
 * clamped to 0 <= count <= max, 1 <= max). */
void sema_init(struct semaphore *s, const char *name, int count, int max);
/* Takes a unit, blocking until there is one, and returns true. Thread
 * context, as waitq_wait_until: where it may not sleep it is refused as
 * that is (a panic; in the lock checker's test mode, false with no unit
 * taken). */
__attribute__((warn_unused_result)) bool sema_acquire(struct semaphore *s);
/* Takes a unit if there is one, never blocks: any context but NMI, no
 * spinlock of rank WAITQ or above held (it takes wq.lock). */
bool sema_try_acquire(struct semaphore *s);
/* Gives a unit back: any context but NMI, no spinlock of rank WAITQ or
 * above held (it wakes as waitq_wake_one). With a waiter queued the unit
 * is handed to the one queued longest, which it wakes (no try_acquire or
 * new acquire can take it first: the waiter keeps its turn). A release
 * with every unit already free or handed over (a double release, or one without
 * its acquire) would let an extra holder in: it is reported by the lock
 * checker, naming the semaphore and its maximum (a panic; in its test
 * mode recorded, and the count left at the maximum). */
void sema_release(struct semaphore *s);
/* waitq_check on s's queue, and its counts: in range, and no waiter while
 * a unit is free. As waitq_check. */
void sema_check(struct semaphore *s);

#endif

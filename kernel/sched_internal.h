/* Between the scheduler's files (sched.c, thread.c, waitq.c) only. */
#ifndef KERNEL_SCHED_INTERNAL_H
#define KERNEL_SCHED_INTERNAL_H

#include "kernel/percpu.h"
#include "kernel/thread.h"

/* Buckets of a run queue's table of live threads, hashed by id. */
#define RQ_LIVE_BUCKETS 64

struct runqueue {
	struct spinlock lock; /* rank RUNQUEUE; always taken irqs off */
	/* Protected by lock: */
	/* Threads homed here from creation (or adoption) until the join
	 * that frees them, chained through id_next: what thread_wake checks
	 * a handle against before it reads the struct. */
	struct thread *live[RQ_LIVE_BUCKETS];
	struct thread *head, *tail;   /* runnable, not current */
	struct thread *sleepers;      /* by wake_ns, earliest first */
	struct thread *switched_from; /* for sched_finish_switch */
	unsigned nthreads;            /* threads homed here, idle excluded */
};

extern struct runqueue runqueues[MAX_CPUS];
extern struct waitq thread_exit_wq;

/* c's run queue. Any context; takes no lock. */
struct runqueue *rq_of(struct cpu *c);
/* Switches to the next runnable thread; returns when this one runs
 * again, rq->lock held for sched_finish_switch. Thread context, or the
 * outermost interrupt's exit preempting a thread (irq_depth 0). Locking:
 * this CPU's rq->lock held, interrupts off, no other spinlock held. */
void sched_switch_locked(struct runqueue *rq);
/* Ends a switch on the incoming thread: releases rq->lock, then wakes
 * joiners if the outgoing thread died (takes thread_exit_wq's lock).
 * Interrupts off. Locking: rq->lock held, released here. */
void sched_finish_switch(struct runqueue *rq);
/* Marks the current thread blocked (takes this CPU's run-queue lock);
 * sched_block switches away. Thread context, interrupts off, the wait
 * queue's lock (rank WAITQ) held; sched_block after dropping it. */
void sched_prepare_block(void);
void sched_block(void);
/* Asks CPU c to reschedule soon (a flag here, an IPI elsewhere). Any
 * context but NMI; takes no lock. */
void sched_kick(struct cpu *c);
/* The idle loop: this CPU's idle thread, no lock held; never returns. */
__attribute__((noreturn)) void sched_idle_loop(void);

/* The handle of t, a live thread. Any context. */
static inline struct thread_handle thread_handle_of(struct thread *t)
{
	return (struct thread_handle){t, t->id, t->cpu->id};
}

/* thread.c: h's thread if it is live on rq (h.cpu's run queue); else NULL,
 * with *why saying what h is instead. Reads no struct that is not live.
 * Locking: rq->lock held. */
struct thread *thread_live_locked(struct runqueue *rq, struct thread_handle h,
                                  const char **why);

/* thread.c: the list of all threads (struct thread.all_next), from
 * creation or adoption until the join, and its lock: rank THREADS, taken
 * irqsave and alone, by creation, adoption, join and the readers
 * (thread_info.c). */
extern struct spinlock thread_list_lock;
extern struct thread *thread_list_head;

/* thread.c: the current context as a thread (boot or AP stack), and an
 * idle thread with a stack of its own. NULL when memory is short. */
struct thread *thread_adopt_current(const char *name, bool idle);
struct thread *thread_alloc_idle(struct cpu *c);

/* sched_check.c: the rule t's fields break against its CPU's current
 * and idle threads, or NULL. Any context; reads only t. */
const char *sched_check_state_error(const struct thread *t,
                                    const struct thread *c_cur,
                                    const struct thread *c_idle);

#endif

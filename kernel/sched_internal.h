/* Between the scheduler's files (sched.c, thread.c, waitq.c) only. */
#ifndef KERNEL_SCHED_INTERNAL_H
#define KERNEL_SCHED_INTERNAL_H

#include "kernel/percpu.h"
#include "kernel/thread.h"

struct runqueue {
	struct spinlock lock; /* rank RUNQUEUE; always taken irqs off */
	/* Protected by lock: */
	struct thread *head, *tail;   /* runnable, not current */
	struct thread *sleepers;      /* by wake_ns, earliest first */
	struct thread *switched_from; /* for sched_finish_switch */
	unsigned nthreads;            /* threads homed here, idle excluded */
};

extern struct runqueue runqueues[MAX_CPUS];
extern struct waitq thread_exit_wq;

struct runqueue *rq_of(struct cpu *c);
void sched_switch_locked(struct runqueue *rq);
void sched_finish_switch(struct runqueue *rq);
void sched_prepare_block(void);
void sched_block(void);
void sched_kick(struct cpu *c);
__attribute__((noreturn)) void sched_idle_loop(void);

/* thread.c: the current context as a thread (boot or AP stack), and an
 * idle thread with a stack of its own. NULL when memory is short. */
struct thread *thread_adopt_current(const char *name, bool idle);
struct thread *thread_alloc_idle(struct cpu *c);

#endif

/*
 * RCU, the classic non-preemptible kind (rcu.h; docs/DESIGN.md,
 * "Deferred free (RCU)").
 *
 * Quiescent states: each CPU counts the points at which it cannot be
 * inside a read-side section (rcu_note_qs: the context switch, the idle
 * loop, a tick that interrupted a thread with preemption on), with a
 * locked add, a full barrier: a reader's loads after the point cannot
 * be done before the count is seen to move.
 *
 * A grace period (gp_wait) snapshots every online CPU's count and waits,
 * a tick at a time, until each CPU's count has moved or the CPU has left
 * the online set (an offline CPU runs no reader: cpu_testing_set_offline
 * holds its CPU with interrupts off). An idle CPU halts with its tick
 * running, and each tick that finds it in the idle loop is a quiescent
 * state, so idle CPUs never hold a grace period up; nor do CPUs that
 * come online during one (they were quiescent when it began).
 *
 * Callbacks go on one FIFO list. The rcu thread takes the whole list,
 * waits for a grace period, runs the batch in order (yielding every
 * RCU_BATCH callbacks) and goes back for the next list. So a callback
 * queued after another runs after it, and synchronize_rcu and
 * rcu_barrier are both "queue a callback that wakes me, and wait".
 */
#include "kernel/rcu.h"

#include <stdatomic.h>
#include <stdbool.h>

#include "kernel/bootinfo.h"
#include "kernel/heap.h"
#include "kernel/printk.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"

/* Callbacks run between yields of the rcu thread. */
#define RCU_BATCH 64

/* rcu_lock (rank RCU, irqsave): the list of callbacks waiting for their
 * grace period to begin, next_head..*next_tail, and nqueued. Nothing is
 * taken, allocated or printed under it. */
static struct spinlock rcu_lock = SPINLOCK_INIT("rcu", LOCK_RANK_RCU);
static struct rcu_head *next_head;
static struct rcu_head **next_tail = &next_head;
static uint64_t nqueued;

/* The rcu thread sleeps here until pending (rank WAITQ; guards no data:
 * its condition is the atomic flag). */
static struct waitq rcu_wq = WAITQ_INIT("rcu");
/* synchronize_rcu and rcu_barrier sleep here until their callback ran
 * (rank WAITQ; the conditions are their waiters' atomic flags). */
static struct waitq done_wq = WAITQ_INIT("rcu_done");
static _Atomic bool pending; /* next_head non-NULL; set under rcu_lock */
static _Atomic bool kick;    /* a call_rcu left the wake to a tick */
static _Atomic bool started;
/* The rcu thread, set by itself: a callback that waited for callbacks
 * would wait for itself (wait_for_callbacks refuses it). */
static struct thread *_Atomic rcu_task;

/* Per CPU, on its own cache line: quiescent states passed. */
struct rcu_cpu {
	_Atomic uint64_t qs;
} __attribute__((aligned(64)));
static struct rcu_cpu rcu_cpus[MAX_CPUS];

static _Atomic uint64_t ngp, nrun, nlate;

void rcu_note_qs(void)
{
	atomic_fetch_add(&rcu_cpus[this_cpu()->id].qs, 1);
}

void rcu_tick(void)
{
	struct cpu *c = this_cpu();
	/* irq_depth 1: this tick interrupted a thread, not a handler. */
	if (c->irq_depth == 1 && c->preempt_count == 0)
		rcu_note_qs();
	if (atomic_load(&kick) && c->preempt_count == 0 &&
	    atomic_exchange(&kick, false))
		waitq_wake_one(&rcu_wq);
}

/* mm.debug_poison (the heap's debug mode; mm.kasan implies it): enqueue walks
 * the pending list for the head. Set once by rcu_init. */
static bool rcu_debug;
/* The walk's bound: its cost, under rcu_lock with interrupts off, is
 * one load a head; a head queued further back than this is not found. */
#define RCU_DEBUG_WALK 4096

/* Whether head is on the pending list (its first RCU_DEBUG_WALK heads
 * in debug mode; its tail only, O(1), in every mode). rcu_lock held. */
static bool queued_locked(const struct rcu_head *head)
{
	if (next_tail == &head->next)
		return true;
	if (!rcu_debug)
		return false;
	const struct rcu_head *h = next_head;
	for (unsigned n = 0; h && n < RCU_DEBUG_WALK; n++, h = h->next)
		if (h == head)
			return true;
	return false;
}

/* Queues head with func (a function, or kfree_rcu's offset). head->next
 * is written only under the lock after the check: written before, it
 * cut the list at a head queued further back before the walk saw it. */
static void enqueue(struct rcu_head *head, void (*func)(struct rcu_head *))
{
	unsigned long irq = spin_lock_irqsave(&rcu_lock);
	bool again = queued_locked(head);
	if (!again) {
		head->func = func;
		head->next = NULL;
		*next_tail = head;
		next_tail = &head->next;
		nqueued++;
		atomic_store(&pending, true);
	}
	spin_unlock_irqrestore(&rcu_lock, irq);
	if (again)
		panic("call_rcu(%p, %p): the head is queued already (not yet "
		      "taken by the rcu thread)",
		      (void *)head, (void *)(uintptr_t)func);
	/* waitq_wake_one takes the queue's lock (rank WAITQ) and run
	 * queues': only with no lock held, which preemption on says
	 * (whether or not the lock checker counts held locks); else the
	 * next tick wakes it. */
	if (this_cpu()->preempt_count == 0 && atomic_load(&started)) {
		waitq_wake_one(&rcu_wq);
	} else {
		atomic_fetch_add(&nlate, 1);
		atomic_store(&kick, true);
	}
}

void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *))
{
	/* Below RCU_KFREE_OFFSET_MAX, func would be taken for kfree_rcu's
	 * offset: a NULL func kfreed the head itself, in the rcu thread. */
	if ((uintptr_t)func < RCU_KFREE_OFFSET_MAX)
		panic("call_rcu(%p, %p): func is not a function (NULL or "
		      "below %d, where kfree_rcu's offsets lie)",
		      (void *)head, (void *)(uintptr_t)func,
		      RCU_KFREE_OFFSET_MAX);
	enqueue(head, func);
}

void rcu_kfree_at(struct rcu_head *head, size_t offset)
{
	/* The object is checked now, while the caller's stack says who
	 * passed it: kfree found a foreign, interior or freed pointer only
	 * in the rcu thread. The heap's checks panic, naming kfree_rcu. */
	spanheap_check_free_as(&kspanheap, (char *)head - offset, "kfree_rcu");
	enqueue(head, (void (*)(struct rcu_head *))(uintptr_t)offset);
}

/* Waits until every CPU online at the start has passed a quiescent state
 * since, or gone offline. The rcu thread. */
static void gp_wait(void)
{
	uint64_t snap[MAX_CPUS];
	cpumask_t wait = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (!atomic_load(&cpus[i].online))
			continue;
		snap[i] = atomic_load(&rcu_cpus[i].qs);
		wait |= cpumask_of(i);
	}
	while (wait) {
		thread_sleep_ns(0); /* till the next tick */
		for (unsigned i = 0; i < MAX_CPUS; i++)
			if ((wait & cpumask_of(i)) &&
			    (!atomic_load(&cpus[i].online) ||
			     atomic_load(&rcu_cpus[i].qs) != snap[i]))
				wait &= ~cpumask_of(i);
	}
	atomic_fetch_add(&ngp, 1);
}

static void run_one(struct rcu_head *h)
{
	uintptr_t f = (uintptr_t)h->func;
	/* Counted first: a waiter woken by h may read the counters. */
	atomic_fetch_add(&nrun, 1);
	if (f < RCU_KFREE_OFFSET_MAX)
		kfree((char *)h - f);
	else
		h->func(h);
}

static bool is_pending(void *arg)
{
	return atomic_load(&pending);
}

static void rcu_thread(void *arg)
{
	atomic_store(&rcu_task, thread_current());
	for (;;) {
		if (!waitq_wait_until(&rcu_wq, is_pending, NULL))
			continue;
		unsigned long irq = spin_lock_irqsave(&rcu_lock);
		struct rcu_head *batch = next_head;
		next_head = NULL;
		next_tail = &next_head;
		atomic_store(&pending, false);
		spin_unlock_irqrestore(&rcu_lock, irq);
		gp_wait();
		for (unsigned n = 1; batch; n++) {
			struct rcu_head *h = batch;
			batch = h->next; /* before h is freed */
			run_one(h);
			if (n % RCU_BATCH == 0)
				thread_yield();
		}
	}
}

void rcu_init(void)
{
	rcu_debug = cmdline_flag("mm.debug_poison") || cmdline_flag("mm.kasan");
	struct thread_handle h = thread_create("rcu", rcu_thread, NULL, 0);
	if (!thread_handle_ok(h))
		panic("rcu: cannot start the rcu thread");
	atomic_store(&started, true);
	/* Callbacks queued before (none in practice) get their wake. */
	waitq_wake_one(&rcu_wq);
}

struct rcu_waiter {
	struct rcu_head head;
	_Atomic bool done;
};

static void waiter_done(struct rcu_head *h)
{
	struct rcu_waiter *w = (struct rcu_waiter *)h;
	atomic_store(&w->done, true);
	/* w may be gone from here (its waiter returned): the queue is
	 * global. */
	waitq_wake_all(&done_wq);
}

static bool waiter_is_done(void *arg)
{
	return atomic_load(&((struct rcu_waiter *)arg)->done);
}

static void wait_for_callbacks(const char *who)
{
	struct cpu *c = this_cpu();
	if (c->preempt_count > 0 || in_irq())
		panic("%s: called in a read-side section or with preemption "
		      "off (count %d) or in an interrupt handler: it sleeps",
		      who, c->preempt_count);
	if (!atomic_load(&started))
		panic("%s: called before rcu_init: no rcu thread runs grace "
		      "periods yet",
		      who);
	if (thread_current() == atomic_load(&rcu_task))
		panic("%s: called from an rcu callback: the rcu thread would "
		      "wait for itself",
		      who);
	struct rcu_waiter w = {.done = false};
	call_rcu(&w.head, waiter_done);
	while (!waitq_wait_until(&done_wq, waiter_is_done, &w))
		; /* the lock checker's test mode: w must stay till run */
}

void synchronize_rcu(void)
{
	wait_for_callbacks("synchronize_rcu");
}

void rcu_barrier(void)
{
	wait_for_callbacks("rcu_barrier");
}

void rcu_stats(struct rcu_stats *out)
{
	uint64_t run = atomic_load(&nrun);
	uint64_t queued = __atomic_load_n(&nqueued, __ATOMIC_RELAXED);
	out->gp_completed = atomic_load(&ngp);
	out->cbs_queued = queued;
	out->cbs_run = run;
	out->waiting = queued > run ? queued - run : 0;
	out->late_wakes = atomic_load(&nlate);
}

/* mm/port.h's grace periods (MM_PORT_RCU): the span heap's
 * TYPESAFE_BY_RCU caches hand their emptied slabs to call_rcu. The two
 * heads are laid out alike, so mm's is queued as it is. */
_Static_assert(sizeof(struct mm_rcu_head) == sizeof(struct rcu_head) &&
                       offsetof(struct mm_rcu_head, next) ==
                               offsetof(struct rcu_head, next) &&
                       offsetof(struct mm_rcu_head, func) ==
                               offsetof(struct rcu_head, func),
               "mm's rcu head is the kernel's");

void mm_port_call_rcu(struct mm_rcu_head *head,
                      void (*func)(struct mm_rcu_head *head))
{
	call_rcu((struct rcu_head *)head, (void (*)(struct rcu_head *))func);
}

void mm_port_rcu_barrier(void)
{
	rcu_barrier();
}

/*
 * Read-copy-update, the classic non-preemptible kind (Linux's RCU before
 * preemptible RCU; docs/DESIGN.md, "Deferred free (RCU)"): readers walk
 * a structure with no lock inside rcu_read_lock/rcu_read_unlock, which
 * only turn preemption off; a writer unlinks an object and hands it to
 * call_rcu or kfree_rcu, and the object is not freed until a grace
 * period has passed: until every online CPU has passed a quiescent
 * state (a context switch, a pass of the idle loop, or a timer tick that
 * interrupted a thread with preemption on), after which no read-side
 * section that could have seen the object is left.
 *
 * Callbacks run in thread context, in order of queueing, on the "rcu"
 * kernel thread (CPU 0), which runs the grace periods too.
 */
#ifndef KERNEL_RCU_H
#define KERNEL_RCU_H

#include <stddef.h>
#include <stdint.h>

#include "kernel/spinlock.h"

/* Embedded in an object that call_rcu or kfree_rcu frees: two words. */
struct rcu_head {
	struct rcu_head *next;
	void (*func)(struct rcu_head *head);
};

/* Enters / leaves a read-side section: preemption off (nestable; a
 * section must not sleep). Any context but NMI, an interrupt handler's
 * included. */
static inline void rcu_read_lock(void)
{
	preempt_disable();
	__asm__ volatile("" ::: "memory");
}

static inline void rcu_read_unlock(void)
{
	__asm__ volatile("" ::: "memory");
	preempt_enable();
}

/* Publishes v at p for readers (a release store: v's contents are seen
 * before v is) / reads a pointer a writer published (inside a read-side
 * section). Any context. */
#define rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#define rcu_dereference(p)       __atomic_load_n(&(p), __ATOMIC_ACQUIRE)

/* Starts the rcu thread on CPU 0 (which the test helper may therefore
 * not take offline: cpu_testing_set_offline). Boot CPU, thread context,
 * after heap_init; panics if it cannot. */
void rcu_init(void);

/*
 * Queues func(head) to run after a grace period, in thread context on
 * the rcu thread (in batches; func must not sleep and should be short).
 * Never sleeps and never allocates: head is the caller's, embedded in
 * the object. Panics, naming head, on a func below RCU_KFREE_OFFSET_MAX
 * (NULL: kfree_rcu's offsets lie there) and on a head queued twice in a
 * row (the list's tail; one queued further back is not found). Any context but
 * NMI: an interrupt handler's, and with any spinlock held but a leaf (takes
 * rcu_lock, rank RCU). It wakes the rcu thread itself with preemption on (no
 * lock held), else the next timer tick that finds preemption on does.
 */
void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *));

/* kfree_rcu(ptr, field): kfrees ptr, a kmalloc'd object whose struct
 * rcu_head is ptr->field, after a grace period (Linux's two-argument
 * form). The head's offset stands in for the callback, as in Linux: it
 * must lie within the first RCU_KFREE_OFFSET_MAX bytes. ptr NULL does
 * nothing (as kfree(NULL)); ptr is evaluated once. Otherwise it is checked
 * at the call with kfree's checks (a foreign, interior or freed pointer
 * panics naming kfree_rcu, the caller on the stack; so does, in poison
 * mode, a named cache's object). Contexts as for
 * call_rcu. */
#define RCU_KFREE_OFFSET_MAX 4096
#define kfree_rcu(ptr, field)                                              \
	do {                                                               \
		_Static_assert(offsetof(__typeof__(*(ptr)), field) <       \
		                       RCU_KFREE_OFFSET_MAX,               \
		               "kfree_rcu: the rcu_head lies too far in"); \
		__typeof__(ptr) kfree_rcu_p_ = (ptr);                      \
		if (kfree_rcu_p_)                                          \
			rcu_kfree_at(&kfree_rcu_p_->field,                 \
			             offsetof(__typeof__(*(ptr)), field)); \
	} while (0)
void rcu_kfree_at(struct rcu_head *head, size_t offset);

/* Waits for a grace period: every read-side section begun before the
 * call has ended when it returns (and every callback queued before it
 * has run). Thread context, no spinlock held, not in a read-side
 * section and not in an rcu callback (the rcu thread would wait for
 * itself), and after rcu_init: a call otherwise panics, naming it.
 * Sleeps. */
void synchronize_rcu(void);

/* Waits until every callback queued before the call has run (for tests
 * and teardown). Thread context, as synchronize_rcu. Sleeps. */
void rcu_barrier(void);

/* The counters the shell's meminfo prints. Read without the lock. */
struct rcu_stats {
	uint64_t gp_completed; /* grace periods ended */
	uint64_t cbs_queued;   /* call_rcu and kfree_rcu calls */
	uint64_t cbs_run;      /* callbacks invoked */
	uint64_t waiting;      /* queued, not run yet */
	uint64_t late_wakes;   /* wakes left to a tick: preemption was off */
};
/* Any context. */
void rcu_stats(struct rcu_stats *out);

/* Timer tick work (sched_tick calls it first): notes a quiescent state
 * if the tick interrupted a thread with preemption on, and wakes the rcu
 * thread if a call_rcu could not. The timer interrupt only. */
void rcu_tick(void);
/* Notes a quiescent state on this CPU: the scheduler's context switch
 * and the idle loop. Interrupts off or preemption off; any context. */
void rcu_note_qs(void);

#endif

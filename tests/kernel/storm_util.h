/*
 * tests/kernel/storm_util.h: the run the heap's kernel storms share
 * (kmalloc_storm_test.c, kmem_cache_test.c, kmalloc_guard_test.c): a
 * worker on every online CPU and the timer tick's hook, allocating and
 * freeing until every worker is done and the hook has made its least.
 */
#ifndef TESTS_KERNEL_STORM_UTIL_H
#define TESTS_KERNEL_STORM_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/thread.h"

/* A storm: its threads, its hook and the counters the run waits on. */
struct cpu_storm {
	const char *name;             /* the threads' name, and the panic's */
	void (*worker)(void *arg);    /* arg: its CPU's number + 1 */
	void (*tick)(void);           /* sched_tick_hook while the run lasts */
	_Atomic unsigned *running;    /* workers not done: each lowers it */
	_Atomic bool *irq_on;         /* the hook works while it is set */
	_Atomic unsigned *irq_inside; /* hooks past irq_on's test */
	_Atomic uint64_t *irq_allocs; /* the hook's allocations so far */
	uint64_t irq_min;             /* the least the run waits for */
	/* A thread beside the workers, on any CPU (NULL: none), that ends
	 * by itself once they are done: the run joins it too. */
	void (*extra)(void *arg);
};

/* A struct cpu_storm for a file that keeps its state under the names the
 * storms share (running, irq_on, irq_inside, n_irq_allocs, IRQ_MIN):
 * name, worker, tick, then any other fields (.extra = ...). */
#define CPU_STORM(nm, wk, tk, ...)                        \
	(&(struct cpu_storm){.name = (nm),                \
	                     .worker = (wk),              \
	                     .tick = (tk),                \
	                     .running = &running,         \
	                     .irq_on = &irq_on,           \
	                     .irq_inside = &irq_inside,   \
	                     .irq_allocs = &n_irq_allocs, \
	                     .irq_min = IRQ_MIN,          \
	                     __VA_ARGS__})

/*
 * Runs s: the hook on, a worker on every online CPU (and the extra
 * thread), until the workers are done and the hook made irq_min
 * allocations; then the hook off, any handler still in it waited out,
 * every thread joined. Returns the workers' count. Panics if a thread
 * cannot be made. Thread context.
 */
static inline unsigned cpu_storm_run(const struct cpu_storm *s)
{
	struct thread_handle w[MAX_CPUS + 1];
	unsigned nw = 0, k = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		nw += atomic_load(&cpus[i].online);
	atomic_store(s->running, nw);
	sched_tick_hook = s->tick;
	atomic_store(s->irq_on, true);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online))
			w[k++] = thread_create(s->name, s->worker,
			                       (void *)(uintptr_t)(i + 1), i);
	if (s->extra)
		w[k++] = thread_create(s->name, s->extra, NULL, THREAD_ANY_CPU);
	for (unsigned j = 0; j < k; j++)
		if (!thread_handle_ok(w[j]))
			panic("%s: cannot create its threads", s->name);
	while (atomic_load(s->running) > 0 ||
	       atomic_load(s->irq_allocs) < s->irq_min)
		thread_sleep_ns(10000000);
	atomic_store(s->irq_on, false);
	while (atomic_load(s->irq_inside) > 0)
		thread_yield();
	sched_tick_hook = NULL;
	for (unsigned j = 0; j < k; j++)
		thread_join(w[j]);
	return nw;
}

/*
 * After a run: frees through give what the n slots of slot[] still hold
 * (objects handed between CPUs, or kept by the interrupt handlers from
 * one tick to the next) and empties them. Thread context.
 */
static inline void cpu_storm_give_back(void *_Atomic *slot, unsigned n,
                                       void (*give)(void *obj))
{
	for (unsigned k = 0; k < n; k++) {
		void *obj = atomic_exchange(&slot[k], NULL);
		if (obj)
			give(obj);
	}
}

#endif

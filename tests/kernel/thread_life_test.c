/*
 * What a thread's life leaves behind: its run queue's count of threads
 * up by one while it lives and back down once it exits.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"

static unsigned nthreads_on(unsigned cpu)
{
	struct sched_cpu_info info = {0};
	KEXPECT(sched_cpu_info(cpu, &info));
	return info.nthreads;
}

/* Parked threads: each polls until told to go, asleep a tick at a time,
 * so that it holds its place in its run queue's count. */
static _Atomic bool park_go;

static void park(void *arg)
{
	while (!atomic_load(&park_go))
		thread_sleep_ns(SCHED_TICK_NS);
}

static void unpark_all(struct thread_handle *h, unsigned n)
{
	atomic_store(&park_go, true);
	for (unsigned i = 0; i < n; i++)
		thread_join(h[i]);
	atomic_store(&park_go, false);
}

/*
 * A run queue counts the threads homed there: one more for each made, one
 * fewer for each that exits. A count that only grew would make
 * THREAD_ANY_CPU shun a CPU for threads long gone.
 */
KTEST(thread, run_queue_counts_a_thread_until_it_exits)
{
	enum { N = 3 };
	unsigned cpu = this_cpu()->id, before = nthreads_on(cpu);
	struct thread_handle h[N];
	for (unsigned i = 0; i < N; i++) {
		h[i] = thread_create("parked", park, NULL, cpu);
		KASSERT(thread_handle_ok(h[i]));
	}
	KEXPECT_EQ(nthreads_on(cpu), before + N);
	unpark_all(h, N);
	KEXPECT_EQ(nthreads_on(cpu), before);
}

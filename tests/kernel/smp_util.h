/* Helpers shared by the kernel tests that need more than one CPU. */
#ifndef TESTS_KERNEL_SMP_UTIL_H
#define TESTS_KERNEL_SMP_UTIL_H

#include <stdatomic.h>

#include "kernel/percpu.h"
#include "kernel/thread.h"

/* The first online CPU other than this one, or MAX_CPUS if there is none.
 * Call with preemption off or from a thread pinned to its CPU (all are). */
static inline unsigned other_online_cpu(void)
{
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != this_cpu()->id && atomic_load(&cpus[i].online))
			return i;
	return MAX_CPUS;
}

/* Starts fn(arg) as thread name on cpu, then sleeps until it sets *flag;
 * no wait if it could not start. Thread context. */
static inline struct thread_handle start_until_set(const char *name,
                                                   void (*fn)(void *),
                                                   void *arg, unsigned cpu,
                                                   _Atomic bool *flag)
{
	struct thread_handle t = thread_create(name, fn, arg, cpu);
	if (thread_handle_ok(t))
		while (!atomic_load(flag))
			thread_sleep_ns(0);
	return t;
}

#endif

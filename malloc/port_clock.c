/*
 * malloc/port_clock.c: the production port's clocks (mm/port.h's
 * mm_port_now_ns and mm_port_thread_cpu_ns), apart from port_prod.c for
 * its size.
 *
 * Contexts: any thread, inside or outside an API call, a signal handler's
 * call too; never allocates.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "malloc_internal.h"

/*
 * The clocks (mm/port.h's contract: one never decreasing, the other never
 * decreasing per thread). clock_gettime can fail where a sandbox's
 * seccomp filter refuses the system call: CLOCK_THREAD_CPUTIME_ID always
 * makes one (the vDSO serves only the wall clocks), so a filter traced
 * from a program's own calls omits it. Until a review its failure left
 * the timespec unset and the pacing of the background threads ran on
 * stack garbage (malloc-tsan-test malloc_port.clocks_survive_a_refused_
 * clock_gettime). Now a refused thread clock reads the monotonic one
 * (the thread is charged its wall time: it sleeps longer, never less),
 * a refused monotonic clock stands still at the thread's last reading, and
 * errno is left as the caller had it.
 */
static _Thread_local uint64_t last_now; /* this thread's last reading */

static bool clock_ns(clockid_t id, uint64_t *ns)
{
	struct timespec ts;
	int saved = errno;
	bool ok = clock_gettime(id, &ts) == 0;
	errno = saved;
	if (ok)
		*ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	return ok;
}

uint64_t mm_port_now_ns(void)
{
	uint64_t ns;
	if (__builtin_expect(clock_ns(CLOCK_MONOTONIC, &ns), 1)) {
		last_now = ns;
		return ns;
	}
	return last_now;
}

uint64_t mm_port_thread_cpu_ns(void)
{
	uint64_t ns;
	if (__builtin_expect(clock_ns(CLOCK_THREAD_CPUTIME_ID, &ns), 1))
		return ns;
	return mm_port_now_ns();
}

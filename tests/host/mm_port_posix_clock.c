/*
 * tests/host/mm_port_posix_clock.c: the POSIX port's clocks (mm/port.h's
 * mm_port_now_ns and mm_port_thread_cpu_ns); mm_port_posix.c's opening
 * comment has the rest of the port.
 *
 * mm_port_now_ns is CLOCK_MONOTONIC, one clock for every thread, plus an
 * offset a test sets (mm_port_set_clock_offset) to make it step back or
 * forward, as a port's clock read on another CPU may be behind or ahead:
 * the offset moves only what mm/ reads, never the port's own waits
 * (mm_port_posix_event.c sleeps on the raw clock), so a clock stepped
 * back by a test makes no wait of the port's spin or sleep longer.
 *
 * A clock that cannot be read (clock_gettime fails: a sandbox refusing
 * the clock) mm_panics naming it, rather than hand mm/ whatever the
 * stack held.
 */
#define _GNU_SOURCE
#include "mm_port_posix.h"
#include "mm_port_posix_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static _Atomic int64_t clock_offset; /* mm_port_set_clock_offset */

uint64_t mm_posix_clock_ns(clockid_t id)
{
	struct timespec ts;
	if (clock_gettime(id, &ts) != 0)
		mm_panic("mm_posix_clock_ns: clock_gettime(%d): %s", (int)id,
		         strerror(errno));
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mm_port_set_clock_offset(int64_t ns)
{
	atomic_store(&clock_offset, ns);
}

/* Unsigned arithmetic: an offset below the raw clock's value wraps, as
 * the raw clock (the host's uptime) is far above any a test sets. */
uint64_t mm_port_now_ns(void)
{
	return mm_posix_clock_ns(CLOCK_MONOTONIC) +
	       (uint64_t)atomic_load_explicit(&clock_offset,
	                                      memory_order_relaxed);
}

uint64_t mm_port_thread_cpu_ns(void)
{
	return mm_posix_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

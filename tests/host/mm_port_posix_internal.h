/*
 * tests/host/mm_port_posix_internal.h: what the POSIX port's files
 * (mm_port_posix.c, mm_port_posix_mem.c, mm_port_posix_cpu.c,
 * mm_port_posix_event.c, mm_port_posix_chaos.c, mm_port_posix_clock.c)
 * share. Not for tests.
 */
#ifndef TESTS_HOST_MM_PORT_POSIX_INTERNAL_H
#define TESTS_HOST_MM_PORT_POSIX_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "../../mm/port.h"

/* The CPU this thread says it is (mm_port_set_cpu, default 0). */
extern _Thread_local unsigned mm_posix_cpu_id;
/* Pins held, but a bound thread's. */
extern _Thread_local unsigned mm_posix_pin_depth;
#define cpu_bound (mm_posix_bound_cpu != MM_POSIX_UNBOUND)

/* One word per CPU slot: 1 while a thread is pinned to it; and whether a
 * thread is bound to it (mm_port_bind_cpu), holding it for good. */
struct mm_posix_cpu_slot {
	_Alignas(64) atomic_uint busy;
	atomic_bool bound;
};
extern struct mm_posix_cpu_slot mm_posix_cpu_slots[MM_MAX_CPUS];

/* Clock id's reading in ns, offset by no test (mm_port_posix_clock.c):
 * the port's own waits' clock. mm_panics if it cannot be read. */
uint64_t mm_posix_clock_ns(clockid_t id);

/* Hooks documented "no mm lock held" call this first (mm_port_posix.c):
 * mm_panics naming what if the caller holds an mm lock. */
void expect_no_lock(const char *what);

/* The name of the heap-rank mm lock this thread holds, or NULL
 * (mm_event_wake must not be called holding one). */
const char *mm_posix_heap_lock_held(void);

/* Hooks that may sleep call this first: mm_panics naming what if the
 * caller holds an mm lock or is in (simulated) atomic context. */
void mm_posix_expect_can_sleep(const char *what);

/* Chaos mode (mm_port_posix_chaos.c): on when MM_CHAOS names a seed. Every
 * hook calls mm_posix_chaos() at the points where a delay widens a race
 * window; it may delay the caller (yield, spin or sleep), from any context. */
extern atomic_bool mm_posix_chaos_on;
void mm_posix_chaos_point(void);

static inline void mm_posix_chaos(void)
{
	if (__builtin_expect(atomic_load_explicit(&mm_posix_chaos_on,
	                                          memory_order_relaxed),
	                     0))
		mm_posix_chaos_point();
}

#endif

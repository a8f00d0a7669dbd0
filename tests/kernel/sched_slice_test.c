/*
 * A slice is two ticks (SLICE_NS): a busy thread with another queued
 * behind it keeps the CPU through the first tick of its slice and gives
 * it up at a later one. Told by events, not time: the busy thread sees
 * its CPU's tick count move while the queued thread's count of its runs
 * stays put. A scheduler that preempted at every tick would never let
 * that be seen; a host stall can hide it for a slice, so it is asked for
 * once in many ticks, not at each.
 */
#include <stdatomic.h>

#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"

#define SLICE_WATCH_TICKS 60 /* how long the pair runs, in ticks */

static _Atomic uint64_t peer_runs;
static _Atomic bool pair_stop;
static _Atomic unsigned kept_through_a_tick;

static uint64_t cpu_ticks(void)
{
	return *(volatile uint64_t *)&this_cpu()->ticks;
}

/* The queued one: counts its turns on the CPU, one per loop. */
static void peer(void *arg)
{
	while (!atomic_load(&pair_stop)) {
		atomic_fetch_add(&peer_runs, 1);
		cpu_pause();
	}
}

/* The busy one: notes each tick it saw with no turn of the peer since
 * the tick before it. */
static void watcher(void *arg)
{
	uint64_t t0 = cpu_ticks(), last = t0;
	uint64_t runs = atomic_load(&peer_runs);
	while (cpu_ticks() - t0 < SLICE_WATCH_TICKS) {
		uint64_t now = cpu_ticks(), r = atomic_load(&peer_runs);
		if (now == last + 1 && r == runs)
			atomic_fetch_add(&kept_through_a_tick, 1);
		last = now;
		runs = r;
		cpu_pause();
	}
	atomic_store(&pair_stop, true);
}

KTEST(sched, busy_thread_keeps_the_cpu_through_a_tick_of_its_slice)
{
	unsigned cpu = this_cpu()->id;
	atomic_store(&peer_runs, 0);
	atomic_store(&pair_stop, false);
	atomic_store(&kept_through_a_tick, 0);
	struct thread_handle w = thread_create("watcher", watcher, NULL, cpu);
	struct thread_handle p = thread_create("peer", peer, NULL, cpu);
	KASSERT(thread_handle_ok(w) && thread_handle_ok(p));
	thread_join(w);
	thread_join(p);
	ktest_diag("in %u ticks the busy thread kept the cpu through %u of "
	           "them, the queued one counted %lu turns",
	           SLICE_WATCH_TICKS, atomic_load(&kept_through_a_tick),
	           (unsigned long)atomic_load(&peer_runs));
	KEXPECT(atomic_load(&kept_through_a_tick) > 0);
}

/*
 * malloc/visit.c: the hosted library's mm_port_each_other_cpu: another
 * thread's slot taken for a moment, so that mm/ can hand back the cache
 * of a thread that is not allocating (a blocked thread's magazines and
 * cached spans), at malloc_trim (spanheap_release_all), at an
 * allocation the heap refused (spanheap_reclaim) and for the checker's
 * look at other CPUs' magazines. Until this version the port reached no
 * other slot: a thread blocked for good kept its magazines' objects, and
 * the spans they hold, until it ran again or exited.
 *
 * Algorithm (slots.c, "visit"). The visitor holds its own slot for the
 * whole visit (a pin), takes the visit lock, sets MM_SLOT_VISIT in every
 * other slot and fences (membarrier: a fast entry that loads the state
 * after the fence sees the flag and takes the slow way, which waits for
 * busy; one that loaded it before left its in = 1 visible: the argument
 * of slots.c, "Why", with the flag for the sharer's mark). It then takes
 * each other slot in turn on the slow path with a bounded wait (busy,
 * then in: mm_malloc_slot_try_take), calls fn for it and gives busy
 * back; last it clears the flags. A slot it cannot take within the
 * bound (a holder inside a long call, or a thread stopped inside one) is
 * passed by, and the call returns false, as the port's contract allows:
 * that slot's cache goes back at its thread's next refill after a
 * cycle's flip, or at its exit.
 *
 * Why no wait here is for ever: the visitor never waits for the visit
 * lock (a visit under way makes it return false) and, in fn, waits only
 * for mm locks (no holder of those waits for a slot). It holds its own
 * slot and at most one other, whose waits are bounded; a fork waits for
 * both, but the visitor never waits for a fork's flag. A signal
 * handler's call on the visiting thread is nested in its slot; one that
 * needs a visit of its own (its reclaim) finds the lock taken.
 *
 * Cost: a membarrier(2) and 3 locked instructions a slot (the flag set
 * and cleared, busy taken), 63 slots (about as much as fork's take of
 * every slot). mm/ calls it on rare paths (a release, a refused
 * allocation) and, with spanheap_config.flush_quiet_cpus (slots.c sets
 * it), from the sweeper once a cycle when the heap has been quiet for a
 * period. While the flags are set, every other thread's calls take the
 * slow path (a compare-and-swap of its busy word).
 *
 * Contexts: thread context, inside an API call or outside one (malloc_trim
 * and the background threads hold no slot when they call it).
 */
#include <stdatomic.h>
#include <stdbool.h>

#include "malloc_internal.h"

/* Turns of mm_malloc_backoff a visit waits for each of a slot's words:
 * 64 spins and 64 yields, no sleep (a fraction of a millisecond where
 * the holder runs); the slot of a thread not inside a call is taken at
 * the first turn. A holder inside a call is using its cache; one that
 * waits in mm/ (a reclaim's cycle, a lock) would hold the visit up for
 * as long: with sleeps (about 24 ms a word), 16 threads refused memory
 * together waited 6 s a failed malloc in a review's test. */
enum { VISIT_TURNS = 128 };

/* 1 while a thread visits: one visit at a time, so that no two set and
 * clear the flags over each other. Taken with one try: a visitor holds
 * its own slot, so one that waited for the lock held up the visit under
 * way at its slot (the review's 16 threads: each visit waited out every
 * queued visitor's slot in turn); a visit already running does the
 * work. */
static atomic_int visit_lock;

/* Sets, or clears, MM_SLOT_VISIT in every slot but me. */
static void visit_flags(int me, bool set)
{
	for (int s = 0; s < MM_MAX_CPUS; s++) {
		if (s == me)
			continue;
		atomic_uint *st = &mm_malloc_slots[s].state;
		if (set)
			atomic_fetch_or(st, MM_SLOT_VISIT);
		else
			atomic_fetch_and_explicit(st, ~(unsigned)MM_SLOT_VISIT,
			                          memory_order_release);
	}
}

/* Calls fn for every slot but me that it can take; true if it took all. */
static bool visit_each(int me, void (*fn)(unsigned cpu, void *arg), void *arg)
{
	bool all = true;
	for (int s = 0; s < MM_MAX_CPUS; s++) {
		if (s == me)
			continue;
		if (!mm_malloc_slot_try_take(s, VISIT_TURNS)) {
			mm_malloc_hook(MM_MALLOC_HOOK_VISIT_PASSED);
			all = false;
			continue;
		}
		mm_malloc_hook(MM_MALLOC_HOOK_VISIT_HELD);
		fn((unsigned)s, arg);
		atomic_store_explicit(&mm_malloc_slots[s].busy, 0,
		                      memory_order_release);
	}
	return all;
}

/* False if another visit runs (or this thread's own, interrupted by a
 * signal handler's call), else takes the lock. */
static bool visit_lock_try(void)
{
	int free_word = 0;
	return atomic_compare_exchange_strong_explicit(&visit_lock, &free_word,
	                                               1, memory_order_acquire,
	                                               memory_order_relaxed);
}

bool mm_port_each_other_cpu(void (*fn)(unsigned cpu, void *arg), void *arg)
{
	/* A call on the late slot holds it for itself past its thread's
	 * exit, or lent while its thread's own slot is held by the call a
	 * signal handler interrupted, which the visit would wait out. */
	if (mm_malloc_self.slot_id == MM_MALLOC_LATE_SLOT)
		return false;
	struct mm_pin pin = mm_port_pin();
	int me = (int)pin.cpu;
	bool all = false;
	if (me != MM_MALLOC_LATE_SLOT && visit_lock_try()) {
		visit_flags(me, true);
		if (mm_malloc_fences)
			mm_malloc_fence_others();
		mm_malloc_hook(MM_MALLOC_HOOK_VISIT_FLAGGED);
		all = visit_each(me, fn, arg);
		visit_flags(me, false);
		atomic_store_explicit(&visit_lock, 0, memory_order_release);
	}
	mm_port_unpin(pin);
	return all;
}

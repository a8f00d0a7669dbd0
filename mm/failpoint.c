/*
 * mm/failpoint.c: one failure-injection point (failpoint.h): the decision
 * whether an eligible call fails, arming and disarming, and the counters,
 * shared by the span heap (spanheap_fail.c) and the kernel's frame pool.
 *
 * Purpose: "out of memory returns an error, and nothing is lost or leaked
 * on the error path" is a promise made by every caller of an allocator;
 * exhausting memory, the only other way to test it, cannot pick one call
 * nor fail one step in the middle of an operation that then goes on.
 * Modelled on Linux's fault_attr (should_fail), which failslab and
 * fail_page_alloc share for the same reason: one meaning of interval,
 * probability and times whatever is failed.
 *
 * Representation: struct failpoint (failpoint.h): the parameters, the
 * armed flag, the failures left and two counters, all atomics.
 *
 * Algorithm: failpoint_should numbers the call (calls, a fetch-and-add),
 * applies the interval (n % interval), then the draw (a hash of seed and
 * n, so that the same seed over the same sequence of calls fails the same
 * calls: a failure replays), then takes one of the failures left (a
 * compare-and-swap loop, never below 0) and counts the injection.
 * failpoint_arm stores the parameters with armed cleared, then sets armed
 * (release): a caller that sees armed sees them.
 *
 * Invariants: 1. injected <= times since the arming when times >= 0,
 * once the calls that began before the arming have returned (one that
 * raced it may count its failure into the new arming's counts, or take
 * one of the new arming's failures under the old parameters); 2. left is
 * -1 (no cap) or in [0, times].
 *
 * Locking: none; any context but NMI (an NMI could interrupt a
 * compare-and-swap loop on its own CPU, which would merely retry, but
 * nothing in NMI allocates). Arming and disarming are one at a time, by
 * their callers (the shell, a test).
 *
 * Cost: unarmed, an owner pays one acquire load (failpoint_armed, a plain
 * load on x86) and a branch; armed, a few atomics per eligible call.
 */
#include "failpoint.h"

#include "port.h"

/* splitmix64's finaliser: a draw for call n that depends only on seed
 * and n. */
static uint64_t fail_draw(uint64_t seed, uint64_t n)
{
	uint64_t z = seed + n * 0x9e3779b97f4a7c15u;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Takes one of the failures left; false if none is. */
static bool fail_take(struct failpoint *fp)
{
	int64_t left = atomic_load_explicit(&fp->left, memory_order_relaxed);
	do {
		if (left == 0)
			return false;
		if (left < 0)
			return true; /* no cap */
	} while (!atomic_compare_exchange_weak_explicit(
	        &fp->left, &left, left - 1, memory_order_relaxed,
	        memory_order_relaxed));
	return true;
}

bool failpoint_should(struct failpoint *fp)
{
	uint64_t n =
	        atomic_fetch_add_explicit(&fp->calls, 1, memory_order_relaxed) +
	        1;
	uint32_t iv = atomic_load_explicit(&fp->interval, memory_order_relaxed);
	if (iv > 1 && n % iv)
		return false;
	uint32_t p =
	        atomic_load_explicit(&fp->probability, memory_order_relaxed);
	uint64_t seed = atomic_load_explicit(&fp->seed, memory_order_relaxed);
	if (p < SPANHEAP_FAIL_PROB_ALL &&
	    fail_draw(seed, n) % SPANHEAP_FAIL_PROB_ALL >= p)
		return false;
	if (!fail_take(fp))
		return false;
	atomic_fetch_add_explicit(&fp->injected, 1, memory_order_relaxed);
	return true;
}

bool failpoint_arm(struct failpoint *fp, const char *who,
                   const struct spanheap_fail_attr *a, const char *what_refused)
{
	if (a->probability > SPANHEAP_FAIL_PROB_ALL || a->times < -1 ||
	    what_refused) {
		mm_log("%s: failure injection refused: probability %u (at most "
		       "%u per 10000), times %s%lu (-1: no cap), what %#x (%s)",
		       who, a->probability, SPANHEAP_FAIL_PROB_ALL,
		       a->times < 0 ? "-" : "",
		       /* |times|, INT64_MIN's too, without overflow */
		       a->times < 0 ? (unsigned long)-(a->times + 1) + 1
		                    : (unsigned long)a->times,
		       a->what, what_refused ? what_refused : "accepted");
		return false;
	}
	atomic_store_explicit(&fp->armed, false, memory_order_release);
	atomic_store_explicit(&fp->interval, a->interval, memory_order_relaxed);
	atomic_store_explicit(&fp->probability, a->probability,
	                      memory_order_relaxed);
	atomic_store_explicit(&fp->what, a->what, memory_order_relaxed);
	atomic_store_explicit(&fp->seed, a->seed, memory_order_relaxed);
	atomic_store_explicit(&fp->left, a->times, memory_order_relaxed);
	atomic_store_explicit(&fp->calls, 0, memory_order_relaxed);
	atomic_store_explicit(&fp->injected, 0, memory_order_relaxed);
	atomic_store_explicit(&fp->armed, true, memory_order_release);
	return true;
}

void failpoint_disarm(struct failpoint *fp)
{
	atomic_store_explicit(&fp->armed, false, memory_order_release);
}

bool failpoint_get(struct failpoint *fp, struct spanheap_fail_attr *a)
{
	bool armed = failpoint_armed(fp);
	a->interval = atomic_load_explicit(&fp->interval, memory_order_relaxed);
	a->probability =
	        atomic_load_explicit(&fp->probability, memory_order_relaxed);
	a->times = atomic_load_explicit(&fp->left, memory_order_relaxed);
	a->seed = atomic_load_explicit(&fp->seed, memory_order_relaxed);
	a->what = atomic_load_explicit(&fp->what, memory_order_relaxed);
	return armed;
}

struct failpoint_counts failpoint_counts(struct failpoint *fp)
{
	return (struct failpoint_counts){
	        .calls = atomic_load_explicit(&fp->calls, memory_order_relaxed),
	        .injected = atomic_load_explicit(&fp->injected,
	                                         memory_order_relaxed),
	};
}

/*
 * mm/spanheap_fail.c: allocation-failure injection (spanheap_fail.h): the
 * decision whether an eligible call fails, and arming and disarming it.
 *
 * Purpose: "out of memory returns NULL, and nothing is lost or leaked on
 * the error path" is a promise every caller of the heap makes too, and
 * the only other way to test it, exhausting the page heap, cannot pick
 * one caller. Modelled on Linux's fault_attr (failslab,
 * fail_page_alloc): interval, probability, times, and a filter.
 *
 * Representation: struct spanheap_fail (spanheap_fail.h) in struct
 * spanheap: the parameters, the armed flag, and two counters.
 *
 * Algorithm: arming stores the parameters, then armed, then flushes every
 * CPU's cache (spanheap_flush_all), whose cache_flush, seeing armed, sets
 * every magazine's size (its limit) to 0 after draining it. From then on
 * the fast paths, whose code is unchanged, find every magazine empty on
 * an allocation and full on a free: every allocation reaches
 * spanheap_alloc_refill or alloc_any, which (armed) ask
 * spanheap_fail_should before anything else; every free goes to its span
 * (spanheap_mag_full's way for a CPU with no slab), and no refill moves
 * objects into a magazine (mag_fill finds no room). spanheap_fail_should
 * filters by what, numbers the call (calls, atomically), applies the
 * interval and the draw, then takes one of the failures left (a
 * compare-and-swap loop, so that concurrent callers never inject more
 * than times). An injected failure returns NULL from the API function
 * before it touches a magazine, a span or the page heap: nothing is held
 * or allocated, and realloc's object is untouched. Disarming clears
 * armed, then flushes every CPU again, which gives each magazine its
 * floor size back (a free that finds a zero-sized magazine meanwhile
 * does the same for its own).
 *
 * Invariants: armed and every CPU flushed since, every magazine of a CPU
 * with a slab has top == limit == its base (spanheap_check accepts that
 * shape, and only it, below a magazine's floor); no slab is made while
 * armed.
 *
 * Cost: nothing on the fast paths (the callgrind count of a 16-byte pair
 * is the same); unarmed, one acquire load of armed (a plain load on x86)
 * in spanheap_alloc_refill, alloc_any, realloc's growth and a full
 * magazine's spill, all slow paths. Armed, every call is a slow path, as
 * in poison mode.
 *
 * Why at run time and not a spanheap_config field like poison: a test
 * wants "fail the next allocation of this caller" at a chosen moment, in
 * a kernel that booted normally (the kernel's mm.fail arms it at boot,
 * its shell's mmfail later). The magazines' limit is already stored
 * atomically by its CPU and reached on other CPUs by spanheap_flush_all,
 * so zeroing it needs no new path on the fast side.
 *
 * Limits: "the next allocation" is the next eligible call on any CPU: a
 * test that targets one caller runs with nothing else allocating (the
 * kernel's stop the sweeper and scavenger). With a port that cannot
 * reach other CPUs, they keep their magazines until their next refill.
 */
#include "spanheap_internal.h"

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
static bool fail_take(struct spanheap_fail *f)
{
	int64_t left = atomic_load_explicit(&f->left, memory_order_relaxed);
	do {
		if (left == 0)
			return false;
		if (left < 0)
			return true; /* no cap */
	} while (!atomic_compare_exchange_weak_explicit(
	        &f->left, &left, left - 1, memory_order_relaxed,
	        memory_order_relaxed));
	return true;
}

bool spanheap_fail_should(struct spanheap *sh, bool large, unsigned flags)
{
	struct spanheap_fail *f = &sh->fail;
	unsigned what = atomic_load_explicit(&f->what, memory_order_relaxed);
	if (!(what & (large ? SPANHEAP_FAIL_LARGE : SPANHEAP_FAIL_SMALL)))
		return false;
	if ((what & SPANHEAP_FAIL_ATOMIC_ONLY) && !(flags & MM_ATOMIC))
		return false;
	uint64_t n =
	        atomic_fetch_add_explicit(&f->calls, 1, memory_order_relaxed) +
	        1;
	uint32_t iv = atomic_load_explicit(&f->interval, memory_order_relaxed);
	if (iv > 1 && n % iv)
		return false;
	uint32_t p =
	        atomic_load_explicit(&f->probability, memory_order_relaxed);
	uint64_t seed = atomic_load_explicit(&f->seed, memory_order_relaxed);
	if (p < SPANHEAP_FAIL_PROB_ALL &&
	    fail_draw(seed, n) % SPANHEAP_FAIL_PROB_ALL >= p)
		return false;
	if (!fail_take(f))
		return false;
	atomic_fetch_add_explicit(&f->injected, 1, memory_order_relaxed);
	return true;
}

bool spanheap_fail_arm(struct spanheap *sh, const struct spanheap_fail_attr *a)
{
	unsigned what =
	        a->what ? a->what : SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE;
	if (a->probability > SPANHEAP_FAIL_PROB_ALL || a->times < -1 ||
	    (what & ~SPANHEAP_FAIL_WHAT_ALL) ||
	    !(what & (SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE))) {
		mm_log("spanheap: failure injection refused: probability %u "
		       "(at most %u per 10000), times %s%lu (-1: no cap), what "
		       "%#x (small 1, large 2, atomic only 4)",
		       a->probability, SPANHEAP_FAIL_PROB_ALL,
		       a->times < 0 ? "-" : "",
		       (unsigned long)(a->times < 0 ? -(a->times + 1) + 1
		                                    : a->times),
		       what);
		return false;
	}
	struct spanheap_fail *f = &sh->fail;
	atomic_store_explicit(&f->armed, false, memory_order_release);
	atomic_store_explicit(&f->interval, a->interval, memory_order_relaxed);
	atomic_store_explicit(&f->probability, a->probability,
	                      memory_order_relaxed);
	atomic_store_explicit(&f->what, what, memory_order_relaxed);
	atomic_store_explicit(&f->seed, a->seed, memory_order_relaxed);
	atomic_store_explicit(&f->left, a->times, memory_order_relaxed);
	atomic_store_explicit(&f->calls, 0, memory_order_relaxed);
	atomic_store_explicit(&f->injected, 0, memory_order_relaxed);
	atomic_store_explicit(&f->armed, true, memory_order_release);
	/* Every CPU's magazines emptied and held at size 0 (cache_flush). */
	if (spanheap_flush_all(sh))
		return true;
	mm_log("spanheap: failure injection armed, but the port could not "
	       "reach the other CPUs: their magazines serve calls until their "
	       "next refill");
	return false;
}

void spanheap_fail_disarm(struct spanheap *sh)
{
	atomic_store_explicit(&sh->fail.armed, false, memory_order_release);
	spanheap_flush_all(sh); /* the magazines' sizes back */
}

bool spanheap_fail_get(struct spanheap *sh, struct spanheap_fail_attr *a)
{
	struct spanheap_fail *f = &sh->fail;
	bool armed = spanheap_fail_armed(sh);
	a->interval = atomic_load_explicit(&f->interval, memory_order_relaxed);
	a->probability =
	        atomic_load_explicit(&f->probability, memory_order_relaxed);
	a->times = atomic_load_explicit(&f->left, memory_order_relaxed);
	a->seed = atomic_load_explicit(&f->seed, memory_order_relaxed);
	a->what = atomic_load_explicit(&f->what, memory_order_relaxed);
	return armed;
}

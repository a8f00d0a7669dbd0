/*
 * mm/spanheap_flush.c: emptying a CPU's cache: its magazines drained into
 * their spans, and the flush that hands back its cached spans too
 * (spanheap.h, spanheap_cache.h).
 *
 * Purpose: what a sweep cycle, failure injection, release-everything and
 * a CPU going idle need: nothing left in a CPU's cache that the central
 * lists and the sweeper cannot see.
 *
 * Algorithm: a drain gives each magazine's objects back to their spans
 * in prefetched batches (spanheap_cache.c's give-back); a flush drains,
 * resizes the magazines for failure injection, uncaches every cached
 * span and records the sweepgen it flushed at. spanheap_flush_all runs
 * the flush here, then on every other CPU through mm_port_each_other_cpu.
 * spanheap_cpu_idle, for a CPU's idle loop, flushes its cache once a
 * cycle began since its last flush, so that an idle CPU keeps no
 * objects and spans from the sweeper (Go flushes every P's cache at
 * each cycle; a kernel CPU that sits idle can do it on its own).
 *
 * Locking: pinned on the cache's CPU (no lock guards a cache), or on
 * another CPU while that CPU runs nothing (mm_port_each_other_cpu); a
 * class's lock only inside the central-list calls.
 */
#include "spanheap_internal.h"

/*
 * Gives every object of magazine cls of CPU cpu (pinned) back to its span.
 * Returns true if the sweeper should be kicked (after the unpin).
 */
static bool mag_drain(struct spanheap *sh, unsigned cpu, unsigned cls)
{
	if (!sh->caches[cpu].slab)
		return false;
	struct mmag *m =
	        &sh->caches[cpu].mag[spanheap_class_checked(cls, __func__)];
	uintptr_t *base = mag_base(sh, cpu, cls);
	uint32_t n = (uint32_t)(mag_top(m) - base);
	if (n == 0) /* no give-back: it adds 0 to a counter, atomically */
		return false;
	mag_set_top(m, base);
	return spanheap_mag_give_back(sh, cpu, cls, base, n);
}

/* Empties every magazine of CPU cpu (pinned) into the spans. */
static bool mag_drain_all(struct spanheap *sh, unsigned cpu)
{
	bool kick = false;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		kick |= mag_drain(sh, cpu, cls);
	return kick;
}

bool spanheap_mags_drain_here(struct spanheap *sh)
{
	struct mm_pin pin = mm_port_pin();
	bool kick = mag_drain_all(sh, pin.cpu);
	mm_port_unpin(pin);
	return kick;
}

/* CPU cpu's magazines (pinned, drained): held at size 0 while failure
 * injection is armed (spanheap_fail.c), so that every call takes a slow
 * path; else a zero-sized one gets its floor back. */
static void mags_resize(struct spanheap *sh, unsigned cpu, bool armed)
{
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mmag *m = &sh->caches[cpu].mag[cls];
		uintptr_t *base = mag_base(sh, cpu, cls);
		if (armed)
			mag_set_limit(m, base);
		else if (m->limit == base)
			mag_set_limit(m, base + mag_floor(sh, cls));
	}
}

/* Hands back everything CPU cpu (pinned) caches: its magazines, then its
 * spans. Returns true if the sweeper should be kicked (after the unpin).
 * A cache not set up holds nothing, and is left unwritten (all zero). */
bool spanheap_cache_flush(struct spanheap *sh, unsigned cpu)
{
	if (!spanheap_cache_used(sh, cpu))
		return false;
	struct mcache *mc = &sh->caches[cpu];
	bool kick = false;
	if (mc->slab) { /* else no magazine ever held an object */
		kick = mag_drain_all(sh, cpu);
		mags_resize(sh, cpu, spanheap_fail_armed(sh));
	}
	for (uint64_t m = mc->cached; m; m &= m - 1) {
		unsigned cls = (unsigned)__builtin_ctzll(m);
		struct mspan *s =
		        mc->alloc[spanheap_class_checked(cls, __func__)];
		if (s != &spanheap_empty_span) {
			mc->alloc[cls] = &spanheap_empty_span;
			spanheap_uncache_span(sh, s);
		}
	}
	mc->cached = 0;
	mc->flushgen =
	        atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	return kick;
}

void spanheap_flush_cache(struct spanheap *sh)
{
	struct mm_pin pin = mm_port_pin();
	bool kick = spanheap_cache_flush(sh, pin.cpu);
	mm_port_unpin(pin);
	if (kick)
		spanheap_sweeper_kick(sh);
}

struct flush_other {
	struct spanheap *sh;
	bool kick;
};

/* mm_port_each_other_cpu's call: nothing runs on cpu meanwhile, so its
 * cache is the caller's as if pinned there. */
static void flush_other(unsigned cpu, void *arg)
{
	struct flush_other *f = arg;
	f->kick |= spanheap_cache_flush(f->sh, cpu);
}

bool spanheap_flush_all(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_flush_all");
	spanheap_flush_cache(sh);
	struct flush_other f = {.sh = sh};
	bool all = mm_port_each_other_cpu(flush_other, &f);
	atomic_fetch_add_explicit(all ? &sh->flush_alls
	                              : &sh->flush_alls_failed,
	                          1, memory_order_relaxed);
	if (f.kick)
		spanheap_sweeper_kick(sh);
	return all;
}

struct flush_stale {
	struct spanheap *sh;
	uint32_t gen;
	bool kick;
};

/* True if CPU cpu's cache (held) holds an object or a span. */
static bool cache_holds(struct spanheap *sh, unsigned cpu)
{
	struct mcache *mc = &sh->caches[cpu];
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		if (mc->alloc[cls] != &spanheap_empty_span ||
		    (mc->slab &&
		     mag_top(&mc->mag[cls]) != mag_base(sh, cpu, cls)))
			return true;
	return false;
}

/*
 * mm_port_each_other_cpu's call for the sweeper's visit: flushes cpu's
 * cache if it has not flushed since cycle gen began; counted if it held
 * anything. A cache not set up is passed by: it holds nothing, and its
 * flushgen (0) is no cycle's. An empty one is flushed too (nothing goes back,
 * its magazines' sizes are set as its own refill's flush would set them): its
 * flushgen is compared by a signed difference, right for 2^30 cycles, and until
 * a review one left behind turned negative after as many with nothing cached
 * (days of malloc_trim in a loop); a thread that then only freed there kept its
 * magazines' objects from every visit for as long again.
 */
static void flush_stale_other(unsigned cpu, void *arg)
{
	struct flush_stale *f = arg;
	if (!spanheap_cache_used(f->sh, cpu) ||
	    !spanheap_cache_stale_since(f->sh, cpu, f->gen))
		return;
	bool holds = cache_holds(f->sh, cpu);
	f->kick |= spanheap_cache_flush(f->sh, cpu);
	if (holds)
		atomic_fetch_add_explicit(&f->sh->quiet_flushes, 1,
		                          memory_order_relaxed);
}

bool spanheap_flush_stale_others(struct spanheap *sh, uint32_t gen, bool *kick)
{
	struct flush_stale f = {.sh = sh, .gen = gen};
	bool all = mm_port_each_other_cpu(flush_stale_other, &f);
	*kick = f.kick;
	return all;
}

/*
 * With this CPU pinned and its cache stale: flushes it unless the sweeper
 * is stopping. The stop clears idle_flush, then waits for idle_inflight
 * to be 0; this counts itself in, then looks again: one of the two sees
 * the other (both seq_cst), so no flush runs, or counts, past the stop.
 * All of it pinned: counted in and preempted (a tick, a wake-up at the
 * unpin), an idle thread would not run again while the stopper spun in
 * its yield loop on the same CPU, and the stop never returned (review).
 * Returns true if it flushed; *kick as spanheap_cache_flush's.
 */
static bool idle_flush_counted(struct spanheap *sh, unsigned cpu, bool *kick)
{
	mheap_hook(sh->heap, MHEAP_HOOK_IDLE_SEEN);
	atomic_fetch_add(&sh->sweeper.idle_inflight, 1);
	bool flush = atomic_load(&sh->sweeper.idle_flush);
	if (flush) {
		mheap_hook(sh->heap, MHEAP_HOOK_IDLE_FLUSHING);
		*kick = spanheap_cache_flush(sh, cpu);
		atomic_fetch_add_explicit(&sh->idle_flushes, 1,
		                          memory_order_relaxed);
	}
	atomic_fetch_sub(&sh->sweeper.idle_inflight, 1);
	return flush;
}

bool spanheap_cpu_idle(struct spanheap *sh)
{
	if (!atomic_load_explicit(&sh->sweeper.idle_flush,
	                          memory_order_relaxed))
		return false;
	struct mm_pin pin = mm_port_pin();
	bool flushed = false, kick = false;
	/* A CPU that never used the heap has nothing to hand back. */
	if (spanheap_cache_used(sh, pin.cpu) &&
	    spanheap_cache_stale(sh, pin.cpu))
		flushed = idle_flush_counted(sh, pin.cpu, &kick);
	mm_port_unpin(pin);
	if (kick) /* after a stop, a wake of no one */
		spanheap_sweeper_kick(sh);
	return flushed;
}

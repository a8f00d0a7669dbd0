/*
 * mm/mheap_testing.h: test hooks of the page heap, compiled in only when
 * the build defines MM_TEST_HOOKS (this kernel, which carries its tests,
 * and the host test build), and the span heap's (it calls them with its
 * page heap). A port that lifts mm/ leaves it undefined and
 * gets no hook and no cost.
 *
 * A hook widens a race window that is too narrow to hit by chance: the
 * heap calls mheap_test_hook at the named points, with no mm lock held.
 */
#ifndef MM_MHEAP_TESTING_H
#define MM_MHEAP_TESTING_H

struct mheap;

enum mheap_hook_point {
	/* A scavenge batch has cleared its PTEs (this CPU flushed) and not
	 * yet shot the other CPUs down. */
	MHEAP_HOOK_SCAV_UNMAPPED,
	/* The background thread found nothing to scavenge and has paced;
	 * it has not yet read its wake count nor decided to go idle (a
	 * refill asked for and woken before that read is seen only by that
	 * decision; mheap_scav.c, bg_idle). */
	MHEAP_HOOK_SCAV_IDLE,
	/* The background thread is about to return from its function. */
	MHEAP_HOOK_SCAV_EXIT,
	/* The background thread is about to book its work and pace it
	 * (mheap_scav_thread.c, bg_pace), and (PACED) has paced. */
	MHEAP_HOOK_SCAV_PACING,
	MHEAP_HOOK_SCAV_PACED,
	/* A grower has prepared its chunks and not yet committed them. */
	MHEAP_HOOK_GROW_PREPARED,
	/* A grower has committed its chunks (the lock released) and not yet
	 * cleared `growing` or woken `grown` (mheap_grow.c, mheap_grow). */
	MHEAP_HOOK_GROW_COMMITTED,
	/* An allocation's attempt under the lock found no fit; the lock
	 * released, it has not yet looked for a growth or a scavenge batch
	 * to wait for (mheap_alloc.c, alloc_pages). */
	MHEAP_HOOK_ALLOC_MISSED,
	/* An allocation that missed found the event count unchanged and has
	 * no growth of its own (none possible, a failed one, or an atomic
	 * caller's busy one); it has not yet read the count again nor
	 * asked whether the heap changed since its attempt
	 * (mheap_alloc.c, alloc_pages and miss_state). */
	MHEAP_HOOK_ALLOC_NO_GROWTH,
	/* The span heap has made a bigger all-spans array and not yet taken
	 * the lock to put it in place (spanheap_span.c, structs_reserve). */
	MHEAP_HOOK_SPANS_SIZED,
	/* It has copied the array's entries into its bigger one without
	 * the lock and not yet taken the lock to copy those made since
	 * (spanheap_structs.c, lock_spans_caught_up). */
	MHEAP_HOOK_SPANS_COPIED,
	/* A sweep cycle (the sweeper's, or spanheap_sweep_cycle's) has
	 * claimed a span, taken off its class's list, and not yet folded or
	 * placed it; the cycle semaphore is held (spanheap_sweep.c,
	 * sweep_claimed). */
	MHEAP_HOOK_SWEEP_CLAIMED,
	/* A refill's pass over its class's fold queue has folded what it
	 * will and has queued spans left over, which it is about to put in
	 * the class's backlog, joining whatever another CPU's pass left
	 * there meanwhile; no lock held, pinned (spanheap_central.c,
	 * spanheap_fold_queue). */
	MHEAP_HOOK_FOLD_REST,
	/* A thread's refill has made a new span (its sweepgen read under the
	 * heap lock) and not yet pinned again to cache it: a cycle that
	 * flips now leaves it at sg - 2 and on no list, for its taker to
	 * fold; no lock held, not pinned (spanheap_cache.c,
	 * spanheap_cache_refill). */
	MHEAP_HOOK_SPAN_MADE,
	/* The span heap's count of pending frees since the last flip has
	 * read the flip's base and not yet the per-CPU totals; any context
	 * but NMI (a kick after a spill in an interrupt handler reaches it)
	 * (spanheap_sweeper.c, pending_since_flip). */
	MHEAP_HOOK_PENDING_BASE_READ,
	/* A sweep cycle's flip has read the pending frees' total, its new
	 * base, and not yet taken the heap lock to advance sweepgen: a free
	 * counted now is pending since this flip; thread context, no lock
	 * held, the cycle semaphore held (spanheap_sweep.c, flip). */
	MHEAP_HOOK_FLIP_BASE_READ,
	/* A spill's remote free has queued its span for a fold (it was not
	 * queued) and not yet set the object's pending bit; pinned, any
	 * context but NMI (spanheap_cache.c, span_give_back). */
	MHEAP_HOOK_REMOTE_QUEUED,
	/* A span its owner has folded (a cache handing it back, a sweep, a
	 * fold queue's taker, a refill's sweep on demand) is about to be
	 * placed: on no list, no owner; no lock held, any context but NMI,
	 * pinned but for a sweep cycle's (spanheap_central.c,
	 * spanheap_span_place). */
	MHEAP_HOOK_SPAN_PLACING,
	/* spanheap_stats has walked the spans' bitmaps (the snapshot put
	 * back) and not yet read any class's span count or magazines, which
	 * an allocation or a sweep meanwhile can leave out of step with the
	 * walk (spanheap_stats.c, the clamps); thread context, no lock held,
	 * not pinned. */
	MHEAP_HOOK_STATS_WALKED,
	/* spanheap_stats has counted the objects and large pages in use and
	 * not yet read the page heap's counts, which a release meanwhile
	 * can leave below them (spanheap_stats.c); thread context, no lock
	 * held, not pinned. */
	MHEAP_HOOK_STATS_COUNTED,
	/* A debug-mode free (MHEAP_DEBUG_SCAV_ON_FREE) has unmapped its run
	 * and not yet returned it to the free set; thread context, no lock
	 * held (mheap_scav.c, mheap_free_unmapping). */
	MHEAP_HOOK_FREE_UNMAPPED,
	/* An idle CPU's call has seen idle CPUs allowed to flush and not yet
	 * counted itself in flight; then, having counted itself in and seen
	 * them still allowed, it has not yet flushed. A stop of the sweeper
	 * meanwhile must not return before a flush so begun ends; any
	 * context but NMI, pinned (in the kernel, interrupts off: a hook
	 * there must not sleep) (spanheap_flush.c, idle_flush_counted). */
	MHEAP_HOOK_IDLE_SEEN,
	MHEAP_HOOK_IDLE_FLUSHING,
	/* Poison mode has handed out a small object of a span that keeps
	 * records (its size entry says allocated: span_take) and not yet
	 * recorded the allocation; any context but NMI, not pinned
	 * (spanheap_track.c, spanheap_track_alloc). */
	MHEAP_HOOK_TRACK_TAKEN,
	/* A lock-free reader of a guarded slot has seen it in use and read
	 * its class, not yet its other fields; any context
	 * (spanheap_guard_report.c, slot_read). */
	MHEAP_HOOK_GUARD_READING,
	/* A guarded pool's drain has taken slots off the freed list (its
	 * flag set) and not yet unmapped them nor put them in the ring;
	 * then spanheap_guard_drain_all, having seen another thread's drain
	 * running, is about to sleep until it ends. Thread context, no lock
	 * held (spanheap_guard.c). */
	MHEAP_HOOK_GUARD_DRAINING,
	MHEAP_HOOK_GUARD_DRAIN_WAITING,
	/* spanheap_free_sensitive has zeroed the object and not yet freed
	 * it; the caller's context (spanheap_copy.c). */
	MHEAP_HOOK_FREE_WIPED,
	/* A CPU's first use is setting its cache up: every field written,
	 * the fast paths' table (mags[cpu]) not yet, so the cache reads as
	 * not set up (spanheap_cache_used) though it is not all zero.
	 * Pinned on that CPU, its owner (in the kernel, interrupts off: a
	 * hook there must not sleep) (spanheap_init.c,
	 * spanheap_cache_set_up). */
	MHEAP_HOOK_CACHE_SETTING_UP,
	/* A lock-free reader of an own-slab cache's slab (objcache_track.c,
	 * slab_of) has checked its header and geometry and read what it
	 * keeps of them, not yet the objects' state or records; thread
	 * context (the reader's), no lock held. */
	MHEAP_HOOK_OWN_SLAB_READ,
	/* objcache_create has set up a cache with slabs of its own, not yet
	 * linked it to the heap (objcache.c); thread context, no lock held. */
	MHEAP_HOOK_OWN_CACHE_SET_UP,
};

#ifdef MM_TEST_HOOKS
/* Set by tests; NULL otherwise. Called in the context of whoever reaches
 * the point: thread context for all points above but
 * MHEAP_HOOK_GROW_PREPARED, MHEAP_HOOK_GROW_COMMITTED,
 * MHEAP_HOOK_ALLOC_MISSED, MHEAP_HOOK_ALLOC_NO_GROWTH (an MHEAP_ATOMIC
 * allocation reaches them too: it may grow the heap itself),
 * MHEAP_HOOK_FOLD_REST and MHEAP_HOOK_SPAN_PLACING, which a refill in an
 * interrupt handler reaches too, MHEAP_HOOK_PENDING_BASE_READ and
 * MHEAP_HOOK_REMOTE_QUEUED (a free's spill in a handler), and the idle
 * hooks, which a CPU's idle loop reaches. */
extern void (*_Atomic mheap_test_hook)(struct mheap *h,
                                       enum mheap_hook_point where);
/* Work counted, every heap's: span-table entries mheap_span_set wrote
 * (spanheap_large_entries_test.c), magazines spanheap_stats read
 * (spanheap_stats_test.c), and entries of the all-spans array walked by
 * a statistics call or a sweep cycle (spanheap_walk_test.c). */
extern _Atomic uint64_t mheap_test_spanmap_writes;
extern _Atomic uint64_t spanheap_test_mags_read;
extern _Atomic uint64_t spanheap_test_spans_walked;

static inline void mheap_hook(struct mheap *h, enum mheap_hook_point where)
{
	void (*fn)(struct mheap *, enum mheap_hook_point) = mheap_test_hook;
	if (fn)
		fn(h, where);
}
#else
static inline void mheap_hook(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	(void)where;
}
#endif

#endif

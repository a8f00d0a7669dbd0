/*
 * mm/mheap_alloc.c: the page-level heap's allocation, extension in place
 * and free.
 *
 * Purpose: take runs of pages from the heap's palloc and give them back,
 * mapping the pages the scavenger unmapped, from threads and (with
 * MHEAP_ATOMIC) interrupt handlers; grow the heap (mheap_grow.c) or wait
 * when nothing fits. Modelled on the Go runtime's mheap.allocSpan and
 * freeSpan.
 *
 * Representation. A caller's run is allocated in h->pages (palloc) and
 * its span table entries say MHEAP_SPAN_PAGES (mheap_alloc_pages sets
 * them; an extension sets none, the caller does; a free leaves them,
 * stale). Between the attempt under the lock and the mapping after it, a
 * run is allocated but its scavenged pages are not yet mapped; only the
 * allocating call knows it (the mask, or nscav). To tell whether the heap
 * changed after a failed attempt, an attempt notes h->scav_returns and
 * h->grown_chunks (struct attempt), and the caller reads the event count
 * `grown` before it.
 *
 * Algorithm.
 *   alloc    Under the lock, palloc_alloc_locked (the mask variant for
 *            runs of at most 64 pages). After unlocking, map the pages
 *            that were scavenged (mm_port_used, all or nothing, on the
 *            stretch from the first to the last of them); a thread
 *            first scavenges other free pages if that would take the
 *            frame pool below the low watermark. If mapping
 *            fails, a run of at most 64 pages is given back exactly as it
 *            was (palloc_free_mask_locked: no page changed); a longer one
 *            (thread context only) is unmapped and given back scavenged.
 *            MHEAP_ZERO zeroes only the pages that were backed (a run's
 *            mask, or for a longer run the backed runs palloc noted; one
 *            with more of them than it notes is zeroed whole).
 *   miss     When nothing fits: grow (mheap_grow.c). A thread that finds
 *            `growing` set sleeps on `grown` (an event count, read before
 *            its failed attempt, so no wake-up is lost) and retries; an
 *            atomic caller gets NULL instead. A caller that cannot grow
 *            retries if the heap grew (or a scavenge batch gave pages
 *            back) since its attempt, whether or not the wake has come
 *            yet: a growth committed after the attempt makes the arena
 *            look full to it. A thread waits for a batch that holds free
 *            pages out of the free set; an atomic caller gets NULL.
 *   extend   Under the lock, palloc_alloc_range_backed_locked of the
 *            pages right after the caller's run, then mapped as an
 *            allocation's, and with MHEAP_ZERO zeroed where they were
 *            backed (the runs palloc noted, as for a long run); a
 *            "run" that cannot be one (no pages, off a page boundary, or
 *            not inside the arena) is refused with a line saying why.
 *            When a scavenge batch holds some of those pages (free, out
 *            of the free set while it unmaps them), it waits for the
 *            batch's wake on `grown` and tries again. Pages it takes
 *            below the reserve are made up as an allocation's are, not
 *            with MHEAP_NO_GROW.
 *   free     Under the lock, palloc_free_locked, after checking that no
 *            page is in a run a scavenge batch took (a double free that
 *            palloc cannot see: it holds those allocated); after
 *            unlocking, wake the scavenger if the free was large and left
 *            the heap over its goal. Debug mode instead unmaps the pages
 *            while the caller still owns them and returns them free and
 *            scavenged.
 *
 * Invariants (besides mheap.c's 1 to 3, which every path here keeps):
 *   1. A run handed to a caller is allocated in h->pages and every page
 *      of it is mapped; with MHEAP_ZERO, every byte of it reads zero.
 *   2. A run that could not be mapped goes back whole: a run of at most 64
 *      pages with its scavenged bits as they were, a longer one unmapped
 *      and scavenged. Nothing leaks and nothing unmapped is left marked
 *      backed.
 *   3. A free checks the whole range first (not allocated, outside the
 *      grown arena, in a run a scavenge batch took, or holding another
 *      allocation's first page: mm_panic) and changes nothing before the
 *      check passes.
 *   4. An atomic caller never sleeps or scavenges: where a thread would
 *      wait (a growth under way, a batch holding free pages) it gets NULL,
 *      and it leaves refilling the reserve to the scavenger thread.
 *
 * Locking: h->lock around each attempt, undo and free; nothing is mapped,
 * zeroed, logged or woken under it. mheap_alloc_pages with MHEAP_ATOMIC
 * and mheap_free_pages may be called from interrupt handlers, not NMIs
 * (debug mode's unmapping free happens only where mm_port_can_sleep);
 * everything else here is for threads.
 * Limits: MHEAP_ATOMIC_MAX_PAGES for atomic callers; a zeroed run with
 * more stretches of backed pages than PALLOC_BACKED_RUNS is zeroed whole.
 */
#include "mheap_internal.h"

/* Scavenges free backed pages of h (dense chunks too) until need frames
 * came back or none is left; the frames still needed. Takes h's lock
 * (a batch at a time), so never with another heap's held. */
static size_t scavenge_heap_for_frames(struct mheap *h, size_t need)
{
	while (need > 0) {
		size_t n = mheap_scavenge_batch(h, need, PALLOC_SCAV_FORCE,
		                                MHEAP_SCAV_FRAMES);
		if (n == 0)
			break;
		need -= n < need ? n : need;
	}
	return need;
}

/* Before npages scavenged pages are mapped: while that would take the
 * frame pool below the low watermark, scavenge free backed pages to make
 * room, h's own and then its frames peer's: until the span heap kept its
 * metadata in a heap of its own, its metadata and objects shared one
 * heap's free pages, and a review found a metadata allocation short of
 * frames leaving the object heap's free backed pages alone (and the
 * other way round). Thread context (it waits for shootdowns). */
static void scavenge_for_frames(struct mheap *h, size_t npages)
{
	size_t frames = mm_port_free_pages();
	/* Saturating: a watermark near SIZE_MAX means "keep every frame",
	 * and a sum that wrapped to a small number turned scavenging off. */
	size_t want;
	if (__builtin_add_overflow(h->cfg.low_watermark_pages, npages, &want))
		want = SIZE_MAX;
	if (frames >= want)
		return;
	size_t need = scavenge_heap_for_frames(h, want - frames);
	if (need > 0 && h->frames_peer)
		scavenge_heap_for_frames(h->frames_peer, need);
}

/* What an attempt saw of the heap, to tell later whether it changed. */
struct attempt {
	uint64_t returns;    /* h->scav_returns */
	size_t grown_chunks; /* h->grown_chunks */
};

/* One attempt under the lock. *mask gets the scavenged pages of a run of
 * at most 64 pages, *nscav their count; *backed the backed runs of a
 * longer one and the stretch of its scavenged pages; *low whether free
 * pages fell below the reserve; *saw what it saw. */
static uintptr_t try_alloc(struct mheap *h, size_t npages, uint64_t *mask,
                           struct palloc_backed *backed, size_t *nscav,
                           bool *low, struct attempt *saw)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	*saw = (struct attempt){h->scav_returns, h->grown_chunks};
	uintptr_t base;
	if (npages <= 64) {
		base = palloc_alloc_mask_locked(&h->pages, npages, mask);
		*nscav = pallocbits_popcount(*mask);
	} else {
		base = palloc_alloc_backed_locked(&h->pages, npages, nscav,
		                                  backed);
	}
	if (base)
		mheap_head_set_locked(h, base);
	*low = mheap_reserve_free_locked(h) < h->cfg.reserve_pages;
	mm_lock_release(&h->lock, irq);
	return base;
}

/* Maps the scavenged pages of a fresh allocation, making room first when
 * frames are short (threads only): the port is given the stretch from
 * the first to the last (the mask's, or backed->scav), not the run, as it
 * may walk every page it is given (the kernel's twice: golang/go#36603).
 * If memory ran out the run goes back as it was and NULL is returned. */
static void *finish_alloc(struct mheap *h, uintptr_t base, size_t npages,
                          uint64_t mask, const struct palloc_backed *backed,
                          size_t nscav, bool atomic)
{
	if (nscav == 0)
		return (void *)base;
	if (!atomic)
		scavenge_for_frames(h, nscav);
	struct palloc_run r;
	if (npages <= 64) { /* backed->scav is not set for these */
		unsigned lo = pallocbits_ctz(mask);
		r = (struct palloc_run){base + lo * MM_PAGE_SIZE,
		                        64 - pallocbits_clz(mask) - lo};
	} else {
		r = backed->scav;
	}
	if (mm_port_used((void *)r.base, r.npages * MM_PAGE_SIZE))
		return (void *)base;
	if (npages <= 64) {
		unsigned long irq = mm_lock_acquire(&h->lock);
		palloc_free_mask_locked(&h->pages, base, npages, mask);
		mheap_head_clear_locked(h, base);
		/* Backed pages free again, or a chunk the run made dense (a
		 * background search skipped it meanwhile) sparse again:
		 * counted even if every page was scavenged (until a review
		 * it was not, and the thread skipped the heap: mheap_idle's
		 * an_undone_scavenged_run_that_made_its_chunk_dense_counts).
		 */
		h->scav.backed_frees++;
		mm_lock_release(&h->lock, irq);
	} else {
		mheap_unmap_and_return(h, base, npages); /* thread only */
	}
	return NULL;
}

/* Zeroes the pages of a fresh run that were not scavenged (mask: the
 * scavenged ones of a run of at most 64 pages; above, backed lists the
 * others, and a run with more stretches of them than it holds is zeroed
 * whole). Scavenged pages read as zero: writing them would only make
 * them resident. */
static void zero_runs(uintptr_t base, size_t npages,
                      const struct palloc_backed *backed, size_t nscav)
{
	if (nscav == npages)
		return;
	if (backed->n > PALLOC_BACKED_RUNS) {
		mm_memset((void *)base, 0, npages * MM_PAGE_SIZE);
		return;
	}
	for (size_t i = 0; i < backed->n; i++)
		mm_memset((void *)backed->runs[i].base, 0,
		          backed->runs[i].npages * MM_PAGE_SIZE);
}

static void zero_backed(uintptr_t base, size_t npages, uint64_t mask,
                        const struct palloc_backed *backed, size_t nscav)
{
	if (npages > 64) {
		zero_runs(base, npages, backed, nscav);
		return;
	}
	if (nscav == npages)
		return;
	for (size_t i = 0; i < npages; i++)
		if (!(mask >> i & 1))
			mm_memset((void *)(base + i * MM_PAGE_SIZE), 0,
			          MM_PAGE_SIZE);
}

/* After an allocation left free pages below the reserve: a thread grows
 * the heap now, an atomic caller asks the scavenger thread to (its own,
 * or the one that serves it too: scav_by). */
static void reserve_low(struct mheap *h, bool atomic)
{
	if (!atomic) {
		mheap_refill(h);
		return;
	}
	unsigned long irq = mm_lock_acquire(&h->lock);
	bool wake = !h->scav.refill;
	h->scav.refill = true;
	mm_lock_release(&h->lock, irq);
	if (wake) { /* idle or pacing: either sleep ends for a refill */
		mm_event_wake(mheap_scav_wake_of(h));
		mm_event_wake(mheap_scav_pace_of(h));
	}
}

/* After a failed attempt that saw *saw, and no growth of the caller's:
 * MISS_RETRY if the heap changed since (a growth committed, or a batch
 * gave its pages back: the wake that says so may still be to come),
 * MISS_WAIT if a batch holds pages out of the free set now (counted as a
 * scav_wait if the caller will wait for its wake), else MISS_FAIL. */
enum miss_state { MISS_FAIL, MISS_RETRY, MISS_WAIT };

static enum miss_state miss_state(struct mheap *h, const struct attempt *saw,
                                  bool will_wait)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	enum miss_state st = MISS_FAIL;
	if (h->scav_returns != saw->returns ||
	    h->grown_chunks != saw->grown_chunks)
		st = MISS_RETRY;
	else if (h->taken_pages > 0)
		st = MISS_WAIT;
	if (st == MISS_WAIT && will_wait)
		h->counters.scav_waits++;
	mm_lock_release(&h->lock, irq);
	return st;
}

/* The allocation proper: try, grow or wait for a growth, try again.
 * NULL when out of memory or, for an atomic caller, when it would have to
 * wait. */
static void *alloc_pages(struct mheap *h, size_t npages, unsigned flags)
{
	bool atomic = flags & MHEAP_ATOMIC;
	for (;;) {
		uint64_t seen = mm_event_prepare(&h->grown), mask = 0;
		size_t nscav;
		bool low;
		struct attempt saw;
		struct palloc_backed backed;
		uintptr_t base = try_alloc(h, npages, &mask, &backed, &nscav,
		                           &low, &saw);
		if (base) {
			void *p = finish_alloc(h, base, npages, mask, &backed,
			                       nscav, atomic);
			if (p && (flags & MHEAP_ZERO))
				zero_backed(base, npages, mask, &backed, nscav);
			if (low && h->cfg.reserve_pages &&
			    !(flags & MHEAP_NO_GROW))
				reserve_low(h, atomic);
			return p;
		}
		mheap_hook(h, MHEAP_HOOK_ALLOC_MISSED);
		if (mm_event_prepare(&h->grown) != seen)
			continue; /* a growth or a scavenge batch ended: retry
			           */
		enum mheap_grow_result r =
		        (flags & MHEAP_NO_GROW)
		                ? MHEAP_GROW_FAILED
		                : mheap_grow(h, npages, MHEAP_GROW_FOR_RUN);
		if (r == MHEAP_GROW_OK)
			continue;
		if (r == MHEAP_GROW_BUSY && !atomic) {
			unsigned long irq = mm_lock_acquire(&h->lock);
			h->counters.grow_waits++;
			mm_lock_release(&h->lock, irq);
			mm_event_wait(&h->grown, seen, MHEAP_GROW_WAIT_NS);
			continue;
		}
		/* No growth of ours. Someone else's may have committed since
		 * the attempt, its wake still to come (the arena then looks
		 * full to grow()): retry, atomic callers too. Free pages a
		 * scavenge batch has taken out of the free set come back
		 * when it ends (it wakes `grown`): a thread waits for that
		 * rather than fail while the pages it needs may be there (in
		 * a fully grown arena the allocation failed whenever the
		 * scavenger was mid-batch); an atomic caller gets NULL.
		 * Read the count again: a failed growth (ours too) woke it,
		 * and a wait on the count from before would end at once,
		 * every time. */
		mheap_hook(h, MHEAP_HOOK_ALLOC_NO_GROWTH);
		seen = mm_event_prepare(&h->grown);
		enum miss_state st = miss_state(h, &saw, !atomic);
		if (st == MISS_RETRY)
			continue;
		if (st == MISS_FAIL || atomic)
			return NULL;
		mm_event_wait(&h->grown, seen, MHEAP_GROW_WAIT_NS);
	}
}

void *mheap_alloc_pages(struct mheap *h, size_t npages, unsigned flags)
{
	bool atomic = flags & MHEAP_ATOMIC;
	if (!atomic)
		mheap_assert_can_sleep("mheap_alloc_pages");
	const char *bad = flags & ~MHEAP_ALLOC_FLAGS ? "unknown flags"
	                  : npages == 0              ? "zero pages"
	                  : npages > h->arena_pages
	                          ? (h->arena_pages ? "larger than the arena"
	                                            : "the heap has no arena "
	                                              "(its mheap_init failed "
	                                              "or was not called)")
	                  : atomic && npages > MHEAP_ATOMIC_MAX_PAGES
	                          ? "too large for MHEAP_ATOMIC"
	                          : NULL;
	void *p = NULL;
	if (bad)
		mm_log("mheap: alloc of %zu pages refused: %s (flags %#x)",
		       npages, bad, flags);
	else
		p = alloc_pages(h, npages, flags);
	if (p && !(flags & MHEAP_SPAN_ENTRIES))
		mheap_span_set(h, (uintptr_t)p, npages, MHEAP_SPAN_PAGES);
	if (!p && atomic) {
		/* Every refused atomic call, one refused for its size too. */
		unsigned long irq = mm_lock_acquire(&h->lock);
		h->counters.atomic_fails++;
		mm_lock_release(&h->lock, irq);
	}
	return p;
}

/* Why [p, p + npages pages) cannot be a run of h's arena, or NULL if it
 * can. Checked in pages from p, so that no length wraps the address. */
static const char *not_a_run(const struct mheap *h, uintptr_t p, size_t npages)
{
	if (npages == 0)
		return "a run of no pages";
	if (p & (MM_PAGE_SIZE - 1))
		return "the run is not page aligned";
	if (p < h->arena_base ||
	    p - h->arena_base >= h->arena_pages * MM_PAGE_SIZE)
		return "the run is outside the arena";
	if (npages > h->arena_pages - ((p - h->arena_base) >> MM_PAGE_SHIFT))
		return "the run goes past the arena's end";
	return NULL;
}

/* An extension's attempt under the lock: true if it took [end, end +
 * extra pages), with *nscav and *low as try_alloc's. Else *wait says
 * whether a scavenge batch holds one of those pages: they may all be
 * free, out of the free set only until the batch ends (counted as a
 * scav_wait). */
static bool extend_take(struct mheap *h, uintptr_t end, size_t extra,
                        size_t *nscav, struct palloc_backed *backed, bool *low,
                        bool *wait)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	bool ok = palloc_alloc_range_backed_locked(&h->pages, end, extra, nscav,
	                                           backed);
	*low = mheap_reserve_free_locked(h) < h->cfg.reserve_pages;
	*wait = !ok && h->taken && mheap_taken_run_locked(h, end, extra);
	if (*wait)
		h->counters.scav_waits++;
	mm_lock_release(&h->lock, irq);
	return ok;
}

bool mheap_extend_pages(struct mheap *h, void *p, size_t npages, size_t extra,
                        unsigned flags)
{
	mheap_assert_can_sleep("mheap_extend_pages");
	const char *bad = flags & ~(unsigned)(MHEAP_NO_GROW | MHEAP_ZERO)
	                          ? "flags other than MHEAP_NO_GROW and "
	                            "MHEAP_ZERO"
	                          : not_a_run(h, (uintptr_t)p, npages);
	if (bad) {
		mm_log("mheap: mheap_extend_pages(%p, %zu pages, %zu more, "
		       "flags %#x) refused: %s (the arena: %zu pages from "
		       "0x%lx)",
		       p, npages, extra, flags, bad, h->arena_pages,
		       h->arena_base);
		return false;
	}
	uintptr_t end = (uintptr_t)p + npages * MM_PAGE_SIZE;
	size_t at = (end - h->arena_base) >> MM_PAGE_SHIFT;
	if (extra == 0 || extra > h->arena_pages - at)
		return extra == 0;
	size_t nscav;
	struct palloc_backed backed;
	bool low, wait;
	for (;;) {
		/* Read before the attempt: no batch's wake is lost. */
		uint64_t seen = mm_event_prepare(&h->grown);
		if (extend_take(h, end, extra, &nscav, &backed, &low, &wait))
			break;
		if (!wait)
			return false;
		mm_event_wait(&h->grown, seen, MHEAP_GROW_WAIT_NS);
	}
	if (nscav) {
		scavenge_for_frames(h, nscav);
		if (!mm_port_used((void *)backed.scav.base,
		                  backed.scav.npages * MM_PAGE_SIZE)) {
			mheap_unmap_and_return(h, end, extra);
			return false;
		}
	}
	if (flags & MHEAP_ZERO)
		zero_runs(end, extra, &backed, nscav);
	/* As an allocation: pages taken from the reserve of atomic callers
	 * are made up for now, by a growth, which MHEAP_NO_GROW forbids
	 * (until it was passed, a realloc with MM_NO_GROW grew the heap
	 * here). */
	if (low && h->cfg.reserve_pages && !(flags & MHEAP_NO_GROW))
		reserve_low(h, false);
	return true;
}

bool mheap_free_wakes_locked(struct mheap *h, size_t npages)
{
	if (npages < MHEAP_WAKE_PAGES || !h->scav.idle)
		return false;
	struct mheap_stats st;
	mheap_stats_locked(h, &st);
	if (st.free_backed_pages <= st.goal_pages)
		return false;
	h->scav.idle = false;
	return true;
}

void mheap_free_pages(struct mheap *h, void *p, size_t npages)
{
	uintptr_t base = (uintptr_t)p;
	mheap_free_check_entries(h, p, npages);
	mheap_free_check_heads(h, p, npages);
	if ((h->cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE) && mm_port_can_sleep()) {
		mheap_free_unmapping(h, base, npages);
		return;
	}
	bool wake;
	unsigned long irq = mm_lock_acquire(&h->lock);
	if (h->taken)
		mheap_check_not_taken_locked(h, base, npages);
	palloc_free_locked(&h->pages, base, npages);
	mheap_head_clear_locked(h, base);
	h->scav.backed_frees++;
	wake = mheap_free_wakes_locked(h, npages);
	mm_lock_release(&h->lock, irq);
	if (wake)
		mm_event_wake(mheap_scav_wake_of(h));
}

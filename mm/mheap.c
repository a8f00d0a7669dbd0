/*
 * mm/mheap.c: the page-level heap: allocation, growth, free, statistics.
 *
 * Purpose: hand out runs of mapped pages from a reserved virtual arena,
 * from threads and from interrupt handlers, growing it chunk by chunk,
 * and give memory back through the scavenger (mheap_scav.c). Modelled on
 * the Go runtime's mheap.allocSpan/grow/freeSpan, without spans (the span
 * heap builds on this).
 *
 * Representation. h->pages is a palloc in reserved-metadata mode over
 * [arena_base, arena_base + arena_pages pages); its allocated pages are
 * the callers' pages plus the runs the scavenger has taken out of the free
 * set while it unmaps them (taken_pages). The arena grows upward: chunks
 * [0, grown_chunks) are grown. A free page is backed (mapped, its
 * scavenged bit clear) or scavenged (unmapped, and in no CPU's TLB).
 *
 * Algorithm.
 *   alloc    Under the lock, palloc_alloc_locked (the mask variant for
 *            runs of at most 64 pages). After unlocking, map the pages
 *            that were scavenged (mm_port_used, all or nothing); a thread
 *            first scavenges other free pages if that would take the
 *            frame pool below the low watermark. If mapping
 *            fails, a run of at most 64 pages is given back exactly as it
 *            was (palloc_free_mask_locked: no page changed); a longer one
 *            (thread context only) is unmapped and given back scavenged.
 *            MHEAP_ZERO zeroes only the pages that were backed (a run's
 *            mask, or for a longer run the backed runs palloc noted; one
 *            with more of them than it notes is zeroed whole).
 *   grow     When nothing fits and the arena has room for the chunks
 *            it needs: one caller at a time sets `growing`, prepares
 *            palloc's metadata and the page tables outside the lock,
 *            commits under the lock, clears `growing` and wakes `grown`.
 *            A thread that finds `growing` set sleeps on `grown` (an
 *            event count, read before its failed attempt, so no wake-up
 *            is lost) and retries; an atomic caller gets NULL instead.
 *            A caller that cannot grow retries if the heap grew (or a
 *            scavenge batch gave pages back) since its attempt, whether
 *            or not the wake has come yet: a growth committed after the
 *            attempt makes the arena look full to it.
 *   reserve  Free pages in grown chunks are kept at reserve_pages or
 *            more, so that atomic callers rarely need to grow: a thread
 *            whose allocation leaves fewer grows the heap by the chunks
 *            that make up the difference (unless someone is growing
 *            already), and an atomic caller
 *            that leaves fewer wakes the scavenger thread to do it.
 *   free     Under the lock, palloc_free_locked, after checking that no
 *            page is in a run a scavenge batch took (a double free that
 *            palloc cannot see: it holds those allocated); after
 *            unlocking, wake the scavenger if the free was large and left
 *            the heap over its goal. Debug mode instead unmaps the pages
 *            while the caller still owns them and returns them free and
 *            scavenged.
 *
 * Invariants (mheap_check verifies 1 and 3 with palloc_check_locked):
 *   1. in use = grown - free - taken_pages; grown = grown_chunks * 512.
 *   2. A free backed page is mapped; a scavenged page is not, and no CPU
 *      holds a TLB entry for it (it was shot down before it went back).
 *   3. taken_pages is 0 unless a scavenge is mid-batch.
 *
 * Locking: h->lock (MM_RANK_HEAP) is a leaf: under it only palloc. No
 * port hook, mm_log or mm_event_wake runs under it. `growing` serialises
 * palloc_grow_prepare. Waiting happens only in thread context, on `grown`.
 * Limits: the arena never shrinks; growth is linear from the base.
 */
#include "mheap_internal.h"

#ifdef MM_TEST_HOOKS
void (*_Atomic mheap_test_hook)(struct mheap *h, enum mheap_hook_point where);
#endif

void mheap_config_default(struct mheap_config *cfg)
{
	*cfg = (struct mheap_config){
	        .arena_bytes = MHEAP_DEFAULT_ARENA_BYTES,
	        .goal_percent = MHEAP_DEFAULT_GOAL_PERCENT,
	        .low_watermark_pages = 0,
	        .reserve_pages = MHEAP_DEFAULT_RESERVE_PAGES,
	        .cpu_permille = MHEAP_DEFAULT_CPU_PERMILLE,
	        .flags = 0,
	};
}

bool mheap_init(struct mheap *h, const struct mheap_config *cfg)
{
	mheap_assert_can_sleep("mheap_init");
	*h = (struct mheap){.cfg = *cfg};
	if (cfg->arena_bytes == 0 || cfg->arena_bytes % PALLOC_CHUNK_BYTES ||
	    cfg->cpu_permille == 0 || cfg->cpu_permille > 1000 ||
	    cfg->reserve_pages > cfg->arena_bytes / MM_PAGE_SIZE) {
		mm_log("mheap: bad config: arena %zu bytes, cpu %u per mille, "
		       "reserve %zu pages",
		       cfg->arena_bytes, cfg->cpu_permille, cfg->reserve_pages);
		return false;
	}
	void *base = mm_port_reserve(cfg->arena_bytes, PALLOC_CHUNK_BYTES);
	if (!base) {
		mm_log("mheap: cannot reserve a %zu-byte arena",
		       cfg->arena_bytes);
		return false;
	}
	h->arena_base = (uintptr_t)base;
	h->arena_pages = cfg->arena_bytes >> MM_PAGE_SHIFT;
	/* One page more than the entries take: the table starts half a page
	 * in (MHEAP_SPANMAP_SKEW). */
	void *map = mm_port_reserve(
	        h->arena_pages * sizeof(void *) + MM_PAGE_SIZE, MM_PAGE_SIZE);
	if (!map) {
		mm_log("mheap: cannot reserve the span table (%zu bytes)",
		       h->arena_pages * sizeof(void *) + MM_PAGE_SIZE);
		mm_port_unreserve(base, cfg->arena_bytes);
		return false;
	}
	h->spanmap = (void *_Atomic *)map + MHEAP_SPANMAP_SKEW;
	mm_lock_init(&h->lock, "heap", MM_RANK_HEAP);
	struct palloc_config pc = {
	        .arena_base = h->arena_base,
	        .arena_bytes = cfg->arena_bytes,
	        .owner_lock = &h->lock,
	};
	if (!palloc_init(&h->pages, &pc)) {
		/* Latest first; palloc gave back its own (or kept what it
		 * had mapped). */
		mm_port_unreserve(map, h->arena_pages * sizeof(void *) +
		                               MM_PAGE_SIZE);
		mm_port_unreserve(base, cfg->arena_bytes);
		return false;
	}
	mm_event_init(&h->grown, "mheap_grown");
	mm_event_init(&h->scav.wake, "mheap_scav");
	mm_event_init(&h->scav.pace, "mheap_pace");
	return true;
}

/* Before npages scavenged pages are mapped: while that would take the
 * frame pool below the low watermark, scavenge free backed pages (dense
 * chunks too) to make room. Thread context (it waits for shootdowns). */
static void scavenge_for_frames(struct mheap *h, size_t npages)
{
	size_t frames = mm_port_free_pages();
	size_t want = h->cfg.low_watermark_pages + npages;
	if (frames >= want)
		return;
	size_t need = want - frames;
	while (need > 0) {
		size_t n = mheap_scavenge_batch(h, need, PALLOC_SCAV_FORCE,
		                                MHEAP_SCAV_FRAMES);
		if (n == 0)
			break;
		need -= n < need ? n : need;
	}
}

/* Maps the span table's pages for chunks [spanmap_chunks, upto). With
 * the skew, chunk c's entries are the second half of table page c and
 * the first half of page c + 1, so chunks [0, upto) need table pages
 * [0, upto]; page have is mapped already unless have is 0. Only the
 * grower calls it (`growing` serialises). */
static bool spanmap_grow(struct mheap *h, size_t upto)
{
	_Static_assert(MHEAP_CHUNK_PAGES * sizeof(void *) == MM_PAGE_SIZE,
	               "a span-table page covers one chunk");
	size_t have =
	        atomic_load_explicit(&h->spanmap_chunks, memory_order_relaxed);
	if (upto <= have)
		return true;
	size_t from = have ? have + 1 : 0;
	if (!mm_port_map((char *)(h->spanmap - MHEAP_SPANMAP_SKEW) +
	                         from * MM_PAGE_SIZE,
	                 (upto + 1 - from) * MM_PAGE_SIZE))
		return false;
	/* No NULL in the table: the new chunks' entries say "none". */
	size_t end = upto * MHEAP_CHUNK_PAGES < h->arena_pages
	                     ? upto * MHEAP_CHUNK_PAGES
	                     : h->arena_pages;
	size_t first = have * MHEAP_CHUNK_PAGES;
	mheap_span_set(h, h->arena_base + first * MM_PAGE_SIZE, end - first,
	               NULL);
	atomic_store_explicit(&h->spanmap_chunks, upto, memory_order_release);
	atomic_store_explicit(&h->spanmap_pages, end, memory_order_release);
	return true;
}

void *mheap_span_lookup(struct mheap *h, uintptr_t addr)
{
	/* An address below the base wraps to a huge index. */
	size_t i = (addr - h->arena_base) >> MM_PAGE_SHIFT;
	if (i >= atomic_load_explicit(&h->spanmap_pages, memory_order_acquire))
		return NULL;
	void *e = atomic_load_explicit(&h->spanmap[i], memory_order_acquire);
	return e == MHEAP_SPAN_NONE ? NULL : e;
}

const struct mheap_span_mark mheap_span_marks[3];

void mheap_span_set(struct mheap *h, uintptr_t base, size_t npages, void *v)
{
	if (!v)
		v = MHEAP_SPAN_NONE;
	size_t i = (base - h->arena_base) >> MM_PAGE_SHIFT;
	for (size_t k = 0; k < npages; k++)
		atomic_store_explicit(&h->spanmap[i + k], v,
		                      memory_order_release);
}

enum grow_result { GROW_OK, GROW_FAILED, GROW_BUSY };

/* What a growth is for: a run of npages pages, or npages more free
 * pages anywhere (the reserve). */
enum grow_for { GROW_FOR_RUN, GROW_FOR_RESERVE };

/* The chunks a growth for npages takes, from *first (the first not
 * grown). For a run the new chunks extend the free run at the top of the
 * grown ones: only the rest needs chunks (near the arena's end the
 * request failed when the chunks it would need whole were not left); the
 * reserve's pages already count that run. No lock held. */
static size_t grow_chunks(struct mheap *h, size_t npages, enum grow_for why,
                          size_t *first)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	*first = h->grown_chunks;
	size_t tail =
	        why == GROW_FOR_RESERVE
	                ? 0
	                : palloc_free_below_locked(
	                          &h->pages,
	                          h->arena_base + *first * PALLOC_CHUNK_BYTES);
	mm_lock_release(&h->lock, irq);
	size_t need = tail < npages ? npages - tail : 1;
	return (need + MHEAP_CHUNK_PAGES - 1) / MHEAP_CHUNK_PAGES;
}

/* Grows the heap by enough whole chunks for npages (why: a run of them,
 * or that many more free pages), unless another caller is growing it
 * (GROW_BUSY). Wakes the waiters on `grown` either way it
 * ends, once it has claimed the growth; when the arena has no room for
 * it, it claims nothing and wakes no one (a thread waiting there for a
 * scavenge batch would wake the others, and they it, without end).
 * Thread context, or atomic with MHEAP_ATOMIC; no mm lock held. */
static enum grow_result grow(struct mheap *h, size_t npages, enum grow_for why)
{
	size_t first, total = h->arena_pages / MHEAP_CHUNK_PAGES;
	if (grow_chunks(h, npages, why, &first) > total - first)
		return GROW_FAILED;
	if (atomic_exchange(&h->growing, true))
		return GROW_BUSY;
	size_t nchunks = grow_chunks(h, npages, why, &first);
	uintptr_t base = h->arena_base + first * PALLOC_CHUNK_BYTES;
	size_t nbytes = nchunks * PALLOC_CHUNK_BYTES;
	bool ok = nchunks <= total - first &&
	          palloc_grow_prepare(&h->pages, base, nbytes) &&
	          mm_port_prepare((void *)base, nbytes) &&
	          spanmap_grow(h, first + nchunks);
	mheap_hook(h, MHEAP_HOOK_GROW_PREPARED);
	if (ok) {
		unsigned long irq = mm_lock_acquire(&h->lock);
		ok = palloc_grow_commit_locked(&h->pages, base, nbytes);
		if (ok) {
			h->grown_chunks += nchunks;
			h->counters.grows++;
		}
		mm_lock_release(&h->lock, irq);
		mheap_hook(h, MHEAP_HOOK_GROW_COMMITTED);
	}
	atomic_store(&h->growing, false);
	mm_event_wake(&h->grown);
	return ok ? GROW_OK : GROW_FAILED;
}

void mheap_refill(struct mheap *h)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	size_t free = h->pages.stats.free_pages;
	mm_lock_release(&h->lock, irq);
	if (free >= h->cfg.reserve_pages || atomic_load(&h->growing))
		return;
	if (grow(h, h->cfg.reserve_pages - free, GROW_FOR_RESERVE) == GROW_OK) {
		irq = mm_lock_acquire(&h->lock);
		h->counters.refills++;
		mm_lock_release(&h->lock, irq);
	}
}

void mheap_unmap_and_return(struct mheap *h, uintptr_t base, size_t npages)
{
	struct mm_unused_batch b;
	mm_unused_batch_init(&b);
	for (size_t done = 0; done < npages;) {
		size_t n = npages - done < MM_UNUSED_BATCH_PAGES
		                   ? npages - done
		                   : MM_UNUSED_BATCH_PAGES;
		mm_port_unused_begin((void *)(base + done * MM_PAGE_SIZE),
		                     n * MM_PAGE_SIZE, &b);
		mm_port_unused_finish(&b);
		done += n;
	}
	unsigned long irq = mm_lock_acquire(&h->lock);
	palloc_scav_return_locked(&h->pages, base, npages);
	mm_lock_release(&h->lock, irq);
}

/* What an attempt saw of the heap, to tell later whether it changed. */
struct attempt {
	uint64_t returns;    /* h->scav_returns */
	size_t grown_chunks; /* h->grown_chunks */
};

/* One attempt under the lock. *mask gets the scavenged pages of a run of
 * at most 64 pages, *nscav their count; *backed (if not NULL) the backed
 * runs of a longer one; *low whether free pages fell below the reserve;
 * *saw what it saw. */
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
	} else if (backed) {
		base = palloc_alloc_backed_locked(&h->pages, npages, nscav,
		                                  backed);
	} else {
		base = palloc_alloc_locked(&h->pages, npages, nscav);
	}
	*low = h->pages.stats.free_pages < h->cfg.reserve_pages;
	mm_lock_release(&h->lock, irq);
	return base;
}

/* Maps the scavenged pages of a fresh allocation, making room first when
 * frames are short (threads only). If memory ran out the run goes back as
 * it was and NULL is returned. */
static void *finish_alloc(struct mheap *h, uintptr_t base, size_t npages,
                          uint64_t mask, size_t nscav, bool atomic)
{
	if (nscav == 0)
		return (void *)base;
	if (!atomic)
		scavenge_for_frames(h, nscav);
	if (mm_port_used((void *)base, npages * MM_PAGE_SIZE))
		return (void *)base;
	if (npages <= 64) {
		unsigned long irq = mm_lock_acquire(&h->lock);
		palloc_free_mask_locked(&h->pages, base, npages, mask);
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
static void zero_backed(uintptr_t base, size_t npages, uint64_t mask,
                        const struct palloc_backed *backed, size_t nscav)
{
	if (nscav == npages)
		return;
	if (npages > 64 && backed->n > PALLOC_BACKED_RUNS) {
		mm_memset((void *)base, 0, npages * MM_PAGE_SIZE);
		return;
	}
	if (npages > 64) {
		for (size_t i = 0; i < backed->n; i++)
			mm_memset((void *)backed->runs[i].base, 0,
			          backed->runs[i].npages * MM_PAGE_SIZE);
		return;
	}
	for (size_t i = 0; i < npages; i++)
		if (!(mask >> i & 1))
			mm_memset((void *)(base + i * MM_PAGE_SIZE), 0,
			          MM_PAGE_SIZE);
}

/* After an allocation left free pages below the reserve: a thread grows
 * the heap now, an atomic caller asks the scavenger thread to. */
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
	if (wake)
		mm_event_wake(&h->scav.wake);
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
		uintptr_t base = try_alloc(
		        h, npages, &mask, (flags & MHEAP_ZERO) ? &backed : NULL,
		        &nscav, &low, &saw);
		if (base) {
			void *p = finish_alloc(h, base, npages, mask, nscav,
			                       atomic);
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
		enum grow_result r = (flags & MHEAP_NO_GROW)
		                             ? GROW_FAILED
		                             : grow(h, npages, GROW_FOR_RUN);
		if (r == GROW_OK)
			continue;
		if (r == GROW_BUSY && !atomic) {
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
	if (npages == 0 || npages > h->arena_pages ||
	    (atomic && npages > MHEAP_ATOMIC_MAX_PAGES)) {
		mm_log("mheap: alloc of %zu pages refused: %s", npages,
		       npages == 0 ? "zero pages"
		       : npages > h->arena_pages
		               ? "larger than the arena"
		               : "too large for MHEAP_ATOMIC");
		return NULL;
	}
	void *p = alloc_pages(h, npages, flags);
	if (p)
		mheap_span_set(h, (uintptr_t)p, npages, MHEAP_SPAN_PAGES);
	if (!p && atomic) {
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
	if (p < h->arena_base ||
	    p - h->arena_base >= h->arena_pages * MM_PAGE_SIZE)
		return "the run is outside the arena";
	if (npages > h->arena_pages - ((p - h->arena_base) >> MM_PAGE_SHIFT))
		return "the run goes past the arena's end";
	return NULL;
}

bool mheap_extend_pages(struct mheap *h, void *p, size_t npages, size_t extra)
{
	mheap_assert_can_sleep("mheap_extend_pages");
	const char *bad = not_a_run(h, (uintptr_t)p, npages);
	if (bad) {
		mm_log("mheap: mheap_extend_pages(%p, %zu pages, %zu more) "
		       "refused: %s (the arena: %zu pages from 0x%lx)",
		       p, npages, extra, bad, h->arena_pages, h->arena_base);
		return false;
	}
	uintptr_t end = (uintptr_t)p + npages * MM_PAGE_SIZE;
	size_t at = (end - h->arena_base) >> MM_PAGE_SHIFT;
	if (extra == 0 || extra > h->arena_pages - at)
		return extra == 0;
	size_t nscav;
	unsigned long irq = mm_lock_acquire(&h->lock);
	bool ok = palloc_alloc_range_locked(&h->pages, end, extra, &nscav);
	bool low = h->pages.stats.free_pages < h->cfg.reserve_pages;
	mm_lock_release(&h->lock, irq);
	if (!ok)
		return false;
	if (nscav) {
		scavenge_for_frames(h, nscav);
		if (!mm_port_used((void *)end, extra * MM_PAGE_SIZE)) {
			mheap_unmap_and_return(h, end, extra);
			return false;
		}
	}
	/* As an allocation: pages taken from the reserve of atomic callers
	 * are made up for now. */
	if (low && h->cfg.reserve_pages)
		reserve_low(h, false);
	return true;
}

void mheap_free_pages(struct mheap *h, void *p, size_t npages)
{
	uintptr_t base = (uintptr_t)p;
	if ((h->cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE) && mm_port_can_sleep()) {
		/* A bad free panics before anything is unmapped: the pages
		 * may be another owner's (they were unmapped, and in the
		 * kernel their frames reused, before the check). */
		unsigned long irq = mm_lock_acquire(&h->lock);
		mheap_check_not_taken_locked(h, base, npages);
		palloc_free_check_locked(&h->pages, base, npages);
		mm_lock_release(&h->lock, irq);
		mheap_unmap_and_return(h, base, npages);
		irq = mm_lock_acquire(&h->lock);
		h->counters.debug_pages += npages;
		mm_lock_release(&h->lock, irq);
		return;
	}
	bool wake = false;
	unsigned long irq = mm_lock_acquire(&h->lock);
	if (h->taken)
		mheap_check_not_taken_locked(h, base, npages);
	palloc_free_locked(&h->pages, base, npages);
	if (npages >= MHEAP_WAKE_PAGES && h->scav.idle) {
		struct mheap_stats st;
		mheap_stats_locked(h, &st);
		wake = st.free_backed_pages > st.goal_pages;
		if (wake)
			h->scav.idle = false;
	}
	mm_lock_release(&h->lock, irq);
	if (wake)
		mm_event_wake(&h->scav.wake);
}

size_t mheap_goal_pages(size_t in_use, unsigned goal_percent)
{
	/* Integer only (no FPU in the kernel); in_use * percent cannot
	 * overflow for any arena below 2^57 pages. */
	return in_use / 100 * goal_percent + in_use % 100 * goal_percent / 100;
}

void mheap_stats_locked(struct mheap *h, struct mheap_stats *st)
{
	struct palloc_stats ps;
	palloc_stats_locked(&h->pages, &ps);
	*st = (struct mheap_stats){.n = h->counters};
	st->grown_pages = ps.grown_pages;
	st->in_use_pages = ps.grown_pages - ps.free_pages - h->taken_pages;
	st->free_backed_pages = ps.free_pages - ps.scav_pages;
	st->free_scav_pages = ps.scav_pages;
	st->scavenging_pages = h->taken_pages;
	st->goal_pages =
	        mheap_goal_pages(st->in_use_pages, h->cfg.goal_percent);
	st->reserve_pages = h->cfg.reserve_pages;
}

void mheap_stats(struct mheap *h, struct mheap_stats *st)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	mheap_stats_locked(h, st);
	mm_lock_release(&h->lock, irq);
	st->frames_free = mm_port_free_pages();
}

bool mheap_chunk_bits(struct mheap *h, size_t ci, uint64_t *alloc,
                      uint64_t *scav)
{
	bool grown = false;
	unsigned long irq = mm_lock_acquire(&h->lock);
	if (ci < h->pages.arena_chunks &&
	    (h->pages.grown[ci / 64] >> (ci % 64) & 1)) {
		grown = true;
		for (unsigned i = 0; i < PALLOCBITS_WORDS; i++) {
			alloc[i] = h->pages.alloc[ci].w[i];
			scav[i] = h->pages.scav ? h->pages.scav[ci].w[i] : 0;
		}
	}
	mm_lock_release(&h->lock, irq);
	return grown;
}

void mheap_dump(struct mheap *h)
{
	struct mheap_stats st;
	mheap_stats(h, &st);
	mm_log("mheap: pages: %zu grown, %zu in use, %zu free backed, %zu "
	       "free scavenged, %zu being scavenged; goal %zu free backed, "
	       "reserve %zu free",
	       st.grown_pages, st.in_use_pages, st.free_backed_pages,
	       st.free_scav_pages, st.scavenging_pages, st.goal_pages,
	       st.reserve_pages);
	mm_log("mheap: frames free %zu; grows %lu (%lu for the reserve, %lu "
	       "waits); waits on a scavenge batch %lu; atomic refusals %lu",
	       st.frames_free, st.n.grows, st.n.refills, st.n.grow_waits,
	       st.n.scav_waits, st.n.atomic_fails);
	mm_log("mheap: scavenger: %lu runs, %lu pages, %lu us CPU; frames "
	       "short: "
	       "%lu runs, %lu pages; release-all %lu pages; debug %lu pages",
	       st.n.bg_runs, st.n.bg_pages, st.n.bg_cpu_ns / 1000,
	       st.n.sync_runs, st.n.sync_pages, st.n.release_pages,
	       st.n.debug_pages);
}

void mheap_check(struct mheap *h)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	palloc_check_locked(&h->pages);
	struct palloc_stats ps;
	palloc_stats_locked(&h->pages, &ps);
	if (ps.grown_pages != h->grown_chunks * MHEAP_CHUNK_PAGES ||
	    ps.grown_pages - ps.free_pages < h->taken_pages)
		mm_panic("mheap: check: %zu grown pages, %zu free, %zu taken; "
		         "%zu chunks grown",
		         ps.grown_pages, ps.free_pages, h->taken_pages,
		         h->grown_chunks);
	mm_lock_release(&h->lock, irq);
}

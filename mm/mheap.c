/*
 * mm/mheap.c: the page-level heap: allocation, growth, free, statistics.
 *
 * Purpose: hand out runs of mapped pages from a reserved virtual arena,
 * growing it chunk by chunk, and give memory back through the scavenger
 * (mheap_scav.c). Modelled on the Go runtime's mheap.allocSpan/grow/
 * freeSpan, without spans (the span heap builds on this).
 *
 * Representation. h->pages is a palloc in reserved-metadata mode over
 * [arena_base, arena_base + arena_pages pages); its allocated pages are
 * the callers' pages plus the runs the background scavenger has taken out
 * of the free set while it unmaps them (taken_pages). The arena grows
 * upward: chunks [0, grown_chunks) are grown. A free page is backed
 * (mapped, its scavenged bit clear) or scavenged (unmapped).
 *
 * Algorithm.
 *   alloc    Under the lock, palloc_alloc_locked. If it fails, unlock and
 *            grow by enough whole chunks for the request: palloc's
 *            metadata (palloc_grow_prepare) and the page-table pages
 *            (mm_port_prepare) outside the lock; then, under it, if the
 *            frame pool is below the low watermark, scavenge first in
 *            locked mode (mheap_scavenge_locked: choose pages, clear their
 *            PTEs, all without unlocking), commit, unlock, finish the
 *            shootdown and frame return, and retry. After the final unlock
 *            the pages that were scavenged are mapped again (mm_port_used
 *            maps only pages that are not mapped).
 *   free     Under the lock, palloc_free_locked; after unlocking, wake the
 *            scavenger if the free was large and left the heap over its
 *            goal. Debug mode instead unmaps the pages while the caller
 *            still owns them and returns them free and scavenged.
 *
 * Invariants (mheap_check verifies 1 and 3 with palloc_check_locked):
 *   1. in use = grown - free - taken_pages; grown = grown_chunks * 512.
 *   2. A free backed page is mapped; a scavenged page is not.
 *   3. taken_pages is 0 unless the background scavenger is mid-batch.
 *
 * Locking: h->lock (MM_RANK_HEAP) is a leaf: under it only palloc and
 * mm_port_unused_begin. `growing` serialises growth and release_all (an
 * atomic flag; a thread that finds it set retries its allocation, which
 * the grower's commit will satisfy or not). mm_log, mm_event_wake and
 * mm_port_used/unused/map only after unlocking.
 * Limits: the arena never shrinks; growth is linear from the base; no
 * page cache yet; failed growth is retried by the next allocation.
 */
#include "mheap.h"

#define CHUNK_PAGES ((size_t)PALLOC_CHUNK_PAGES)

void mheap_config_default(struct mheap_config *cfg)
{
	*cfg = (struct mheap_config){
	        .arena_bytes = MHEAP_DEFAULT_ARENA_BYTES,
	        .goal_percent = MHEAP_DEFAULT_GOAL_PERCENT,
	        .low_watermark_pages = 0,
	        .cpu_permille = MHEAP_DEFAULT_CPU_PERMILLE,
	        .flags = 0,
	};
}

bool mheap_init(struct mheap *h, const struct mheap_config *cfg)
{
	*h = (struct mheap){.cfg = *cfg};
	if (cfg->arena_bytes == 0 || cfg->arena_bytes % PALLOC_CHUNK_BYTES ||
	    cfg->cpu_permille == 0 || cfg->cpu_permille > 1000) {
		mm_log("mheap: bad config: arena %zu bytes, cpu %u per mille",
		       cfg->arena_bytes, cfg->cpu_permille);
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
	mm_lock_init(&h->lock, "heap", MM_RANK_HEAP);
	struct palloc_config pc = {
	        .arena_base = h->arena_base,
	        .arena_bytes = cfg->arena_bytes,
	        .owner_lock = &h->lock,
	};
	if (!palloc_init(&h->pages, &pc))
		return false;
	mm_unused_batch_init(&h->batch);
	mm_unused_batch_init(&h->bg_batch);
	mm_event_init(&h->wake, "mheap_scav");
	mm_event_init(&h->pace, "mheap_pace");
	mm_event_init(&h->done, "mheap_scav_done");
	mm_event_init(&h->backoff, "mheap_backoff");
	return true;
}

/* Locks held briefly to commit a grown range, after an optional locked-
 * mode scavenge (frames short). The caller owns `growing`. */
static bool commit_growth(struct mheap *h, uintptr_t base, size_t nchunks)
{
	size_t need = 0, frames = mm_port_free_pages();
	if (frames < h->cfg.low_watermark_pages)
		need = h->cfg.low_watermark_pages - frames +
		       nchunks * CHUNK_PAGES;
	for (;;) {
		unsigned long irq = mm_lock_acquire(&h->lock);
		size_t got =
		        need ? mheap_scavenge_locked(h, need, PALLOC_SCAV_FORCE)
		             : 0;
		need -= got;
		bool last = need == 0 || got < MM_UNUSED_BATCH_PAGES;
		bool ok = true;
		if (got)
			h->counters.sync_runs++;
		if (last) {
			ok = palloc_grow_commit_locked(
			        &h->pages, base, nchunks * PALLOC_CHUNK_BYTES);
			if (ok) {
				h->grown_chunks += nchunks;
				h->counters.grows++;
			}
		}
		mm_lock_release(&h->lock, irq);
		/* The shootdown and the frame return, before anyone maps
		 * the pages this growth was for. */
		mm_port_unused_finish(&h->batch);
		if (last)
			return ok;
	}
}

/* Grows the heap by enough chunks for npages. Returns false if the arena
 * is full or memory ran out; true if it grew or another thread is growing
 * (the caller retries). Thread context, no mm lock. */
static bool grow(struct mheap *h, size_t npages)
{
	if (atomic_exchange(&h->growing, true))
		return true; /* someone else grows: retry the allocation */
	unsigned long irq = mm_lock_acquire(&h->lock);
	size_t first = h->grown_chunks;
	mm_lock_release(&h->lock, irq);
	size_t nchunks = (npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	size_t total = h->arena_pages / CHUNK_PAGES;
	bool ok = nchunks <= total - first;
	uintptr_t base = h->arena_base + first * PALLOC_CHUNK_BYTES;
	size_t nbytes = nchunks * PALLOC_CHUNK_BYTES;
	ok = ok && palloc_grow_prepare(&h->pages, base, nbytes) &&
	     mm_port_prepare((void *)base, nbytes) &&
	     commit_growth(h, base, nchunks);
	atomic_store(&h->growing, false);
	return ok;
}

/* Gives back a run the caller owns (allocated) and frees it scavenged:
 * the background mode's second half, and debug mode's free. */
static void unmap_and_return(struct mheap *h, uintptr_t base, size_t npages)
{
	mm_port_unused((void *)base, npages * MM_PAGE_SIZE);
	unsigned long irq = mm_lock_acquire(&h->lock);
	palloc_scav_return_locked(&h->pages, base, npages);
	mm_lock_release(&h->lock, irq);
}

/* Maps the scavenged pages of a fresh allocation; on failure gives the
 * whole run back (scavenged) and returns NULL. */
static void *finish_alloc(struct mheap *h, uintptr_t base, size_t npages,
                          size_t nscav)
{
	if (nscav == 0 || mm_port_used((void *)base, npages * MM_PAGE_SIZE))
		return (void *)base;
	unmap_and_return(h, base, npages);
	return NULL;
}

void *mheap_alloc_pages(struct mheap *h, size_t npages)
{
	if (npages == 0 || npages > h->arena_pages) {
		mm_log("mheap: alloc of %zu pages refused: %s", npages,
		       npages ? "larger than the arena" : "zero pages");
		return NULL;
	}
	for (;;) {
		size_t nscav;
		unsigned long irq = mm_lock_acquire(&h->lock);
		uintptr_t base = palloc_alloc_locked(&h->pages, npages, &nscav);
		mm_lock_release(&h->lock, irq);
		if (base)
			return finish_alloc(h, base, npages, nscav);
		if (!grow(h, npages))
			return NULL;
	}
}

void mheap_free_pages(struct mheap *h, void *p, size_t npages)
{
	uintptr_t base = (uintptr_t)p;
	if (h->cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE) {
		unmap_and_return(h, base, npages);
		unsigned long irq = mm_lock_acquire(&h->lock);
		h->counters.debug_pages += npages;
		mm_lock_release(&h->lock, irq);
		return;
	}
	bool wake = false;
	unsigned long irq = mm_lock_acquire(&h->lock);
	palloc_free_locked(&h->pages, base, npages);
	if (npages >= MHEAP_WAKE_PAGES && h->bg_idle) {
		struct mheap_stats st;
		mheap_stats_locked(h, &st);
		wake = st.free_backed_pages > st.goal_pages;
		if (wake)
			h->bg_idle = false;
	}
	mm_lock_release(&h->lock, irq);
	if (wake)
		mm_event_wake(&h->wake);
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
	*st = h->counters;
	st->grown_pages = ps.grown_pages;
	st->in_use_pages = ps.grown_pages - ps.free_pages - h->taken_pages;
	st->free_backed_pages = ps.free_pages - ps.scav_pages;
	st->free_scav_pages = ps.scav_pages;
	st->scavenging_pages = h->taken_pages;
	st->goal_pages =
	        mheap_goal_pages(st->in_use_pages, h->cfg.goal_percent);
}

void mheap_stats(struct mheap *h, struct mheap_stats *st)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	mheap_stats_locked(h, st);
	mm_lock_release(&h->lock, irq);
	st->frames_free = mm_port_free_pages();
}

void mheap_dump(struct mheap *h)
{
	struct mheap_stats st;
	mheap_stats(h, &st);
	mm_log("mheap: pages: %zu grown, %zu in use, %zu free backed, %zu "
	       "free scavenged, %zu being scavenged; goal %zu free backed",
	       st.grown_pages, st.in_use_pages, st.free_backed_pages,
	       st.free_scav_pages, st.scavenging_pages, st.goal_pages);
	mm_log("mheap: frames free %zu; grows %lu; scavenger: %lu runs, %lu "
	       "pages, %lu us CPU; locked mode: %lu runs, %lu pages; "
	       "release-all %lu pages; debug %lu pages",
	       st.frames_free, st.grows, st.bg_runs, st.bg_pages,
	       st.bg_cpu_ns / 1000, st.sync_runs, st.sync_pages,
	       st.release_pages, st.debug_pages);
}

void mheap_check(struct mheap *h)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	palloc_check_locked(&h->pages);
	struct palloc_stats ps;
	palloc_stats_locked(&h->pages, &ps);
	if (ps.grown_pages != h->grown_chunks * CHUNK_PAGES ||
	    ps.grown_pages - ps.free_pages < h->taken_pages)
		mm_panic("mheap: check: %zu grown pages, %zu free, %zu taken; "
		         "%zu chunks grown",
		         ps.grown_pages, ps.free_pages, h->taken_pages,
		         h->grown_chunks);
	mm_lock_release(&h->lock, irq);
}

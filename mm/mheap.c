/*
 * mm/mheap.c: the page-level heap: set-up, statistics and the checker.
 *
 * Purpose: hand out runs of mapped pages from a reserved virtual arena,
 * from threads and from interrupt handlers, growing it chunk by chunk,
 * and give memory back through the scavenger. Modelled on the Go
 * runtime's mheap (allocSpan, grow, freeSpan), without spans (the span
 * heap builds on this). The heap is these files, by concern:
 *   mheap.c        set-up (the arena's and the span table's
 *                  reservations), statistics, a chunk's bits for heap
 *                  maps, the checker;
 *   mheap_alloc.c  allocation, extension in place, free;
 *   mheap_grow.c   growth, the reserve for atomic callers, the span table;
 *   mheap_heads.c  the bitmap of run starts, the free's check of what a
 *                  run covers;
 *   mheap_scav.c   the scavenger.
 *
 * Representation. h->pages is a palloc in reserved-metadata mode over
 * [arena_base, arena_base + arena_pages pages); its allocated pages are
 * the callers' pages plus the runs the scavenger has taken out of the free
 * set while it unmaps them (taken_pages). The arena grows upward: chunks
 * [0, grown_chunks) are grown. A free page is backed (mapped, its
 * scavenged bit clear) or scavenged (unmapped, and in no CPU's TLB).
 *
 * Algorithm. Allocation and free: mheap_alloc.c; growth and the reserve:
 * mheap_grow.c; scavenging: mheap_scav.c. The statistics are palloc's
 * counts read under the lock, with the pages taken by scavenge batches
 * apart: in use = grown - free - taken.
 *
 * Invariants (mheap_check verifies 1, 3, 4 and 5 with palloc_check_locked;
 * 2 is kept by mheap_alloc.c and mheap_scav.c, and not checked there):
 *   1. in use = grown - free - taken_pages >= 0; grown = grown_chunks *
 *      512.
 *   2. A free backed page is mapped; a scavenged page is not, and no CPU
 *      holds a TLB entry for it (it was shot down before it went back).
 *   3. taken_pages is the sum of the runs of the batches on h->taken
 *      (0 unless a scavenge is mid-batch), each a run of allocated pages
 *      of the grown heap.
 *   4. The span table covers every grown page: spanmap_chunks >=
 *      grown_chunks, grown pages <= spanmap_pages <= arena_pages; none
 *      of its spanmap_pages entries is NULL.
 *   5. No free page's entry is a span (mheap_span_is_span): the span
 *      heap takes a span's entries off its pages before they go back;
 *      no free page is marked a run's start (mheap_heads.c).
 *
 * Locking: h->lock (MM_RANK_HEAP) is a leaf: under it only palloc. No
 * port hook, mm_log or mm_event_wake runs under it. `growing` serialises
 * palloc_grow_prepare. Waiting happens only in thread context, on `grown`.
 * Limits: the arena never shrinks; growth is linear from the base.
 */
#include "mheap_internal.h"

#ifdef MM_TEST_HOOKS
void (*_Atomic mheap_test_hook)(struct mheap *h, enum mheap_hook_point where);
_Atomic uint64_t mheap_test_spanmap_writes;
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

/* mm_logs which field of cfg is out of range and returns false; true if
 * none is. */
static bool config_ok(const struct mheap_config *cfg)
{
	if (cfg->arena_bytes == 0 || cfg->arena_bytes % PALLOC_CHUNK_BYTES)
		mm_log("mheap: bad config: arena_bytes %zu is not a positive "
		       "multiple of the %zu-byte chunk",
		       cfg->arena_bytes, (size_t)PALLOC_CHUNK_BYTES);
	else if (cfg->arena_bytes > PALLOC_MAX_ARENA_BYTES)
		mm_log("mheap: bad config: arena_bytes %zu is over palloc's "
		       "largest arena, %zu bytes (PALLOC_MAX_ARENA_BYTES)",
		       cfg->arena_bytes, (size_t)PALLOC_MAX_ARENA_BYTES);
	else if (cfg->cpu_permille == 0 || cfg->cpu_permille > 1000)
		mm_log("mheap: bad config: cpu_permille %u is not in [1, 1000]",
		       cfg->cpu_permille);
	else if (cfg->goal_percent > MHEAP_MAX_GOAL_PERCENT)
		mm_log("mheap: bad config: goal_percent %u is over %u",
		       cfg->goal_percent, MHEAP_MAX_GOAL_PERCENT);
	else if (cfg->reserve_pages > cfg->arena_bytes / MM_PAGE_SIZE)
		mm_log("mheap: bad config: reserve_pages %zu is more than the "
		       "arena's %zu pages",
		       cfg->reserve_pages, cfg->arena_bytes / MM_PAGE_SIZE);
	else if (cfg->flags & ~(unsigned)MHEAP_DEBUG_SCAV_ON_FREE)
		mm_log("mheap: bad config: flags %#x hold bits that are not "
		       "enum mheap_flags",
		       cfg->flags);
	else
		return true;
	return false;
}

/* A failed init's end: h holds its configuration alone, as at the start,
 * so that a use of it finds no arena (mheap_alloc_pages says so), not
 * the reservations given back (until a review a page's allocation went
 * on into them: the span table's mm_port_map failed in the port). */
static bool init_failed(struct mheap *h)
{
	struct mheap_config cfg = h->cfg;
	*h = (struct mheap){.cfg = cfg};
	return false;
}

size_t mheap_spanmap_bytes(size_t arena_pages)
{
	return arena_pages * sizeof(void *) + MM_PAGE_SIZE +
	       mheap_heads_bytes(arena_pages);
}

size_t mheap_reserved_bytes(size_t arena_bytes)
{
	size_t meta = palloc_reserved_bytes(arena_bytes, 0);
	if (meta == 0)
		return 0;
	return arena_bytes + mheap_spanmap_bytes(arena_bytes >> MM_PAGE_SHIFT) +
	       meta;
}

bool mheap_init(struct mheap *h, const struct mheap_config *cfg)
{
	mheap_assert_can_sleep("mheap_init");
	*h = (struct mheap){.cfg = *cfg};
	if (!config_ok(cfg))
		return false;
	void *base = mm_port_reserve(cfg->arena_bytes, PALLOC_CHUNK_BYTES);
	if (!base) {
		mm_log("mheap: cannot reserve a %zu-byte arena",
		       cfg->arena_bytes);
		return false;
	}
	h->arena_base = (uintptr_t)base;
	h->arena_pages = cfg->arena_bytes >> MM_PAGE_SHIFT;
	void *map = mm_port_reserve(mheap_spanmap_bytes(h->arena_pages),
	                            MM_PAGE_SIZE);
	if (!map) {
		mm_log("mheap: cannot reserve the span table (%zu bytes)",
		       mheap_spanmap_bytes(h->arena_pages));
		mm_port_unreserve(base, cfg->arena_bytes);
		return init_failed(h);
	}
	h->spanmap = (void *_Atomic *)map + MHEAP_SPANMAP_SKEW;
	mm_lock_init(&h->lock, "heap", MM_RANK_HEAP);
	struct palloc_config pc = {
	        .arena_base = h->arena_base,
	        .arena_bytes = cfg->arena_bytes,
	        .owner_lock = &h->lock,
	};
	if (!palloc_init(&h->pages, &pc)) {
		/* Latest first; palloc gave back its own. */
		mm_port_unreserve(map, mheap_spanmap_bytes(h->arena_pages));
		mm_port_unreserve(base, cfg->arena_bytes);
		return init_failed(h);
	}
	mm_event_init(&h->grown, "mheap_grown");
	mm_event_init(&h->scav.wake, "mheap_scav");
	mm_event_init(&h->scav.pace, "mheap_pace");
	return true;
}

size_t mheap_goal_pages(size_t in_use, unsigned goal_percent)
{
	/* Integer only (no FPU in the kernel); with goal_percent <= 1000
	 * (mheap_init), in_use / 100 * percent cannot overflow for any
	 * arena below 2^57 pages. */
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

bool mheap_would_grow(struct mheap *h, size_t npages)
{
	return palloc_free_pages_hint(&h->pages) <
	       npages + h->cfg.reserve_pages;
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
	mheap_dump_named(h, "mheap");
}

void mheap_dump_named(struct mheap *h, const char *name)
{
	struct mheap_stats st;
	mheap_stats(h, &st);
	unsigned long irq = mm_lock_acquire(&h->lock);
	uint64_t barren = h->scav.barren_searches;
	mm_lock_release(&h->lock, irq);
	mm_log("%s: pages: %zu grown, %zu in use, %zu free backed, %zu "
	       "free scavenged, %zu being scavenged; goal %zu free backed, "
	       "reserve %zu free",
	       name, st.grown_pages, st.in_use_pages, st.free_backed_pages,
	       st.free_scav_pages, st.scavenging_pages, st.goal_pages,
	       st.reserve_pages);
	mm_log("%s: frames free %zu; grows %lu (%lu for the reserve, %lu "
	       "waits); waits on a scavenge batch %lu; atomic refusals %lu",
	       name, st.frames_free, st.n.grows, st.n.refills, st.n.grow_waits,
	       st.n.scav_waits, st.n.atomic_fails);
	mm_log("%s: scavenger: %lu runs, %lu pages, %lu us CPU, %lu "
	       "searches in vain; frames short: "
	       "%lu runs, %lu pages; release-all %lu pages; debug %lu pages",
	       name, st.n.bg_runs, st.n.bg_pages, st.n.bg_cpu_ns / 1000, barren,
	       st.n.sync_runs, st.n.sync_pages, st.n.release_pages,
	       st.n.debug_pages);
}

/* Why run r of a batch on h->taken is not a run of allocated pages of
 * the grown heap (palloc holds taken pages allocated), with *bad the first
 * page at fault; NULL if it is one. Locking: h->lock must be held. */
static const char *taken_run_problem(const struct mheap *h,
                                     const struct palloc_run *r, size_t *bad)
{
	size_t grown = h->grown_chunks * MHEAP_CHUNK_PAGES;
	size_t pi = (r->base - h->arena_base) >> MM_PAGE_SHIFT;
	*bad = pi;
	if (r->base < h->arena_base || r->npages == 0 || pi >= grown ||
	    r->npages > grown - pi)
		return "is not a run of the grown heap";
	for (size_t k = pi; k < pi + r->npages; k++) {
		*bad = k;
		const struct pallocbits *a =
		        &h->pages.alloc[k / MHEAP_CHUNK_PAGES];
		size_t i = k % MHEAP_CHUNK_PAGES;
		if (!(a->w[i / 64] >> (i % 64) & 1))
			return "holds a free page";
	}
	return NULL;
}

/* The pages of the runs the batches on h->taken hold; mm_panics if one
 * is not allocated. Locking: h->lock must be held. */
static size_t taken_listed_locked(const struct mheap *h)
{
	size_t n = 0, bad;
	for (const struct mheap_taken *t = h->taken; t; t = t->next) {
		for (size_t i = 0; i < t->nruns; i++) {
			const struct palloc_run *r = &t->runs[i];
			const char *why = taken_run_problem(h, r, &bad);
			if (why)
				mm_panic(
				        "mheap: check: the batch's run [0x%lx, "
				        "+%zu pages) %s (page 0x%lx)",
				        r->base, r->npages, why,
				        h->arena_base + bad * MM_PAGE_SIZE);
			n += r->npages;
		}
	}
	return n;
}

/* mm_panics if the span table holds a NULL among its first npages
 * entries (a free would read a span's fields through it). */
static void check_spanmap_locked(const struct mheap *h, size_t npages)
{
	for (size_t i = 0; i < npages; i++)
		if (!atomic_load_explicit(&h->spanmap[i], memory_order_relaxed))
			mm_panic("mheap: check: the span table's entry for "
			         "page 0x%lx is NULL, not MHEAP_SPAN_NONE",
			         h->arena_base + i * MM_PAGE_SIZE);
}

/* mm_panics if a free page of the grown heap has a span's entry: the span
 * heap clears a span's entries (or marks them freed-large) before its
 * pages go back, so a free through such an entry would act on a span
 * whose pages are free, maybe another's already. */
static void check_free_entries_locked(const struct mheap *h)
{
	for (size_t c = 0; c < h->grown_chunks; c++) {
		const struct pallocbits *b = &h->pages.alloc[c];
		for (unsigned i = 0; i < PALLOC_CHUNK_PAGES; i++) {
			if (b->w[i / 64] >> (i % 64) & 1)
				continue; /* allocated */
			size_t pi = c * PALLOC_CHUNK_PAGES + i;
			void *e = atomic_load_explicit(&h->spanmap[pi],
			                               memory_order_relaxed);
			if (mheap_span_is_span(e))
				mm_panic("mheap: check: free page 0x%lx has "
				         "span %p's entry (a span's entries "
				         "go before its pages)",
				         h->arena_base + pi * MM_PAGE_SIZE, e);
			if (mheap_head_is_set(h, pi))
				mm_panic("mheap: check: free page 0x%lx is "
				         "marked the start of a run (a free "
				         "clears its first page's mark)",
				         h->arena_base + pi * MM_PAGE_SIZE);
		}
	}
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
	size_t listed = taken_listed_locked(h);
	if (listed != h->taken_pages)
		mm_panic("mheap: check: %zu pages taken, but the scavenge "
		         "batches under way hold %zu",
		         h->taken_pages, listed);
	size_t map_chunks = atomic_load(&h->spanmap_chunks);
	size_t map_pages = atomic_load(&h->spanmap_pages);
	if (map_chunks < h->grown_chunks || map_pages < ps.grown_pages ||
	    map_pages > h->arena_pages)
		mm_panic("mheap: check: the span table covers %zu pages (%zu "
		         "chunks mapped); %zu pages grown, %zu in the arena",
		         map_pages, map_chunks, ps.grown_pages, h->arena_pages);
	check_spanmap_locked(h, map_pages);
	check_free_entries_locked(h);
	mm_lock_release(&h->lock, irq);
}

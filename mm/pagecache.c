/*
 * mm/pagecache.c: the per-CPU page cache's lock-free paths and its refill
 * and flush against a palloc.
 *
 * Purpose: serve small page requests (under 16 pages) without the owner's
 * lock. Modelled on the Go runtime's pageCache and pageAlloc.allocToCache
 * (mpagecache.go).
 *
 * Representation: struct pagecache (pagecache.h): a 64-page aligned window,
 * the bits of the pages the cache owns and may hand out, and which of those
 * are scavenged. In the palloc every page of the window is allocated while
 * the cache holds it; its scavenged bit moves into the cache with it.
 *
 * Algorithm:
 *   alloc    the lowest run of npages set bits of cache (pallocbits_run64);
 *            clear them; the scavenged ones among them are reported.
 *   free     set the bits again if the range lies in the window and none of
 *            them is set. A set one is a double free, whether or not the
 *            whole range lies in the window: one that crosses its edge is
 *            the heap's to free, and the heap holds every window page
 *            allocated, so it could not tell.
 *   refill   flush; find the heap's first free page (the hint's chunk if it
 *            has any, else a palloc find for one page); take every free
 *            page of its 64-page block: set them allocated in the palloc,
 *            move their scavenged bits into the cache, re-summarise; raise
 *            the search hint past the block (nothing below it is free now).
 *   flush    clear the cache's pages in the palloc, give their scavenged
 *            bits back, re-summarise, lower the hint to the first of them.
 *
 * Invariants: scav is a subset of cache; every window page is allocated in
 * the palloc while the window is held; a cache's pages are free nowhere
 * else.
 * Locking: alloc and free touch only the cache (the caller is pinned to its
 * CPU, interrupts off, so an interrupt handler cannot see it half done);
 * refill and flush also need the owner's lock (asserted), and change the
 * free-page count only through palloc_free_pages_add, whose store the
 * lock-free palloc_free_pages_hint may read at any time.
 * Limits: one window per cache; runs never cross the window's edge.
 */
#include "pagecache.h"

#include "palloc_internal.h"

uintptr_t pagecache_alloc(struct pagecache *c, size_t npages, size_t *nscav)
{
	if (npages == 0 || npages > PAGECACHE_MAX_NPAGES || c->cache == 0)
		return 0;
	unsigned i = npages == 1 ? pallocbits_ctz(c->cache)
	                         : pallocbits_run64(c->cache, (unsigned)npages);
	if (i >= PAGECACHE_PAGES)
		return 0;
	uint64_t mask = pallocbits_mask(i, (unsigned)npages);
	if (nscav)
		*nscav = pallocbits_popcount(c->scav & mask);
	c->cache &= ~mask;
	c->scav &= ~mask;
	return c->base + ((uintptr_t)i << MM_PAGE_SHIFT);
}

bool pagecache_free(struct pagecache *c, uintptr_t base, size_t npages)
{
	if (!c->has_window || npages == 0 || (base & (MM_PAGE_SIZE - 1)))
		return false;
	uintptr_t wlimit =
	        c->base + ((uintptr_t)PAGECACHE_PAGES << MM_PAGE_SHIFT);
	uintptr_t limit = palloc_range_limit(base, npages);
	if (limit <= c->base || base >= wlimit)
		return false;
	/* The range's pages inside the window: one of them the cache holds
	 * free is free already, whether or not the whole range is the
	 * cache's (the heap, which holds every window page allocated,
	 * would take a range that crosses the edge). */
	uintptr_t lo = base > c->base ? base : c->base;
	uintptr_t hi = limit < wlimit ? limit : wlimit;
	uint64_t mask =
	        pallocbits_mask((unsigned)((lo - c->base) >> MM_PAGE_SHIFT),
	                        (unsigned)((hi - lo) >> MM_PAGE_SHIFT));
	if (c->cache & mask)
		mm_panic("pagecache: free [0x%lx, 0x%lx): page 0x%lx is "
		         "already free in this CPU's cache (window 0x%lx, "
		         "free bits %016lx)",
		         base, limit,
		         c->base + ((uintptr_t)pallocbits_ctz(c->cache & mask)
		                    << MM_PAGE_SHIFT),
		         c->base, c->cache);
	if (lo != base || hi != limit)
		return false; /* crosses the window's edge: the heap's */
	c->cache |= mask;
	return true;
}

/* The heap's first free page, or PALLOC_NONE. */
static size_t first_free_page(const struct palloc *p)
{
	if (p->search_pi >= p->arena_pages)
		return PALLOC_NONE;
	size_t c = p->search_pi / PALLOC_CHUNK_PAGES, hint;
	if (palloc_chunk_grown(p, c) && palloc_leaf(p)[c] != 0) {
		unsigned k = pallocbits_find(&p->alloc[c], 1,
		                             p->search_pi % PALLOC_CHUNK_PAGES,
		                             NULL);
		if (k != PALLOCBITS_NONE)
			return c * PALLOC_CHUNK_PAGES + k;
	}
	return palloc_find_locked(p, 1, &hint);
}

bool pagecache_refill_locked(struct pagecache *c, struct palloc *p)
{
	palloc_assert_locked(p, "pagecache_refill_locked");
	pagecache_flush_locked(c, p);
	size_t pi = first_free_page(p);
	if (pi == PALLOC_NONE) {
		p->search_pi = p->arena_pages;
		return false;
	}
	size_t block = pi & ~(size_t)(PAGECACHE_PAGES - 1);
	struct pallocbits *a = &p->alloc[block / PALLOC_CHUNK_PAGES];
	unsigned w = (block % PALLOC_CHUNK_PAGES) / 64;
	uint64_t free = ~a->w[w], scav = 0;
	a->w[w] = ~0ull;
	if (p->scav) {
		uint64_t *s = &p->scav[block / PALLOC_CHUNK_PAGES].w[w];
		scav = *s & free;
		*s &= ~free;
	}
	palloc_free_pages_add(p, -(size_t)pallocbits_popcount(free));
	p->stats.scav_pages -= pallocbits_popcount(scav);
	palloc_update_locked(p, block, PAGECACHE_PAGES, PALLOC_UPDATE_ALLOC);
	p->search_pi = block + PAGECACHE_PAGES;
	*c = (struct pagecache){
	        .base = palloc_page_addr(p, block),
	        .cache = free,
	        .scav = scav,
	        .has_window = true,
	};
	return true;
}

void pagecache_flush_locked(struct pagecache *c, struct palloc *p)
{
	palloc_assert_locked(p, "pagecache_flush_locked");
	if (!c->has_window)
		return;
	if (c->cache) {
		uintptr_t bad;
		unsigned lo = pallocbits_ctz(c->cache);
		const char *why = palloc_range_problem(
		        p, c->base + ((uintptr_t)lo << MM_PAGE_SHIFT),
		        PAGECACHE_PAGES - lo, &bad);
		if (why || (c->scav & ~c->cache))
			palloc_bad_free(p, "pagecache flush", c->base,
			                PAGECACHE_PAGES, bad,
			                why ? why
			                    : "has scavenged bits for "
			                      "pages it does not hold");
		size_t block = (c->base - p->arena_base) >> MM_PAGE_SHIFT;
		struct pallocbits *a = &p->alloc[block / PALLOC_CHUNK_PAGES];
		unsigned w = (block % PALLOC_CHUNK_PAGES) / 64;
		if (c->cache & ~a->w[w])
			palloc_bad_free(p, "pagecache flush", c->base,
			                PAGECACHE_PAGES,
			                c->base + ((uintptr_t)pallocbits_ctz(
			                                   c->cache & ~a->w[w])
			                           << MM_PAGE_SHIFT),
			                "is free in the heap and in the cache");
		a->w[w] &= ~c->cache;
		if (p->scav)
			p->scav[block / PALLOC_CHUNK_PAGES].w[w] |= c->scav;
		palloc_free_pages_add(p, pallocbits_popcount(c->cache));
		p->stats.scav_pages += pallocbits_popcount(c->scav);
		palloc_update_locked(p, block, PAGECACHE_PAGES, 0);
		size_t first = block + pallocbits_ctz(c->cache);
		if (first < p->search_pi)
			p->search_pi = first;
	}
	*c = (struct pagecache){0};
}

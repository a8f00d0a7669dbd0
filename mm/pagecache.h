/*
 * mm/pagecache.h: a per-CPU cache of pages in front of a palloc.
 *
 * A page cache is a window of 64 pages, aligned to 64 pages inside one
 * chunk, plus two words: which of the window's pages the cache may hand
 * out, and which of those are scavenged. Small requests (1 to 15 pages) are
 * served from it with a few bit operations and no lock, because the cache
 * belongs to one CPU and its user is pinned there. Modelled on the Go
 * runtime's pageCache (mpagecache.go), plus a lock-free free path for pages
 * that fall back into the window.
 *
 * Typical use by an owner (heap lock H, palloc P, this CPU's cache C),
 * pinned to its CPU by the owner (with mm_port_pin or a primitive of its
 * own: the cache does not pin itself):
 *
 *	pin();
 *	base = pagecache_alloc(C, n, &nscav);            // no lock
 *	if (!base && n <= PAGECACHE_MAX_NPAGES) {
 *		h = mm_lock_acquire(H);
 *		if (pagecache_refill_locked(C, P))       // new window
 *			base = pagecache_alloc(C, n, &nscav);
 *		if (!base)
 *			base = palloc_alloc_locked(P, n, &nscav);
 *		mm_lock_release(H, h);
 *	}
 *	unpin();
 *
 * and on free: pagecache_free(C, base, n) while pinned, else
 * palloc_free_locked under H. Pages in a cache count as allocated in the
 * palloc: palloc_check cannot see them, and the owner must flush every
 * cache before it can expect the heap to look empty.
 */
#ifndef MM_PAGECACHE_H
#define MM_PAGECACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "palloc.h"

#define PAGECACHE_PAGES      64
#define PAGECACHE_MAX_NPAGES 15 /* requests of 16 pages and up bypass it */

_Static_assert(PALLOC_CHUNK_PAGES % PAGECACHE_PAGES == 0,
               "a cache window lies inside one chunk");
_Static_assert(PAGECACHE_MAX_NPAGES == PAGECACHE_PAGES / 4 - 1,
               "the cache serves only small requests, as Go's does");

/* Zero-initialised: empty, no window. */
struct pagecache {
	/* Owned by one CPU, used only while pinned to it (no lock): */
	uintptr_t base; /* the window [base, base + 64 pages) */
	uint64_t cache; /* bit i: page i of the window is free here */
	uint64_t scav;  /* bit i: ... and scavenged (subset of cache) */
	bool has_window;
};

/*
 * Takes npages (1 to PAGECACHE_MAX_NPAGES) contiguous pages from the cache,
 * lowest first, and returns their address with *nscav (if not NULL) the
 * number that were scavenged. Returns 0 if the cache cannot serve the
 * request. Lock-free: the caller is pinned to the cache's CPU (a plain
 * read-modify-write of the cache: the pin must keep this CPU's interrupt
 * handlers out too, as the kernel's does). Any context but NMI.
 */
uintptr_t pagecache_alloc(struct pagecache *c, size_t npages, size_t *nscav);

/*
 * Puts [base, base + npages pages) back in the cache if it lies in the
 * cache's window, and returns true; returns false (nothing done) if it does
 * not, and the caller frees it to the palloc. A page of the range that is
 * already free in the cache is a double free, whether the range lies in
 * the window or crosses its edge: mm_panic. Lock-free, pinned, like alloc.
 */
bool pagecache_free(struct pagecache *c, uintptr_t base, size_t npages);

/*
 * Flushes c, then gives it the free pages of the 64-page block that holds
 * the heap's first free page (they become allocated in the palloc).
 * Returns false, leaving c empty, if the palloc has no free page.
 * Locking: the owner's lock must be held; the caller is pinned.
 */
bool pagecache_refill_locked(struct pagecache *c, struct palloc *p);

/*
 * Returns the cache's free pages to the palloc (with their scavenged bits)
 * and drops the window. Locking: the owner's lock must be held; the caller
 * is pinned to c's CPU or c's CPU is stopped.
 */
void pagecache_flush_locked(struct pagecache *c, struct palloc *p);

static inline bool pagecache_empty(const struct pagecache *c)
{
	return c->cache == 0;
}

#endif

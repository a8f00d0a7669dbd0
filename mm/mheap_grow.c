/*
 * mm/mheap_grow.c: the page-level heap's growth, its reserve for atomic
 * callers, and the span table.
 *
 * Purpose: add chunks of the arena to the heap when an allocation finds
 * nothing (mheap_alloc.c) or free pages fall below the reserve, and keep
 * the span table (one entry per arena page, mheap.h) mapped over the
 * grown chunks. Modelled on the Go runtime's mheap.grow and its spans
 * array.
 *
 * Representation. Chunks [0, grown_chunks) of the arena are grown;
 * `growing` is set while one caller grows; the span table's pages for
 * chunks [0, spanmap_chunks) are mapped, spanmap_pages entries.
 *
 * Algorithm.
 *   grow     When nothing fits and the arena has room for the chunks
 *            it needs: one caller at a time sets `growing`, prepares
 *            palloc's metadata, the page tables and the span table's
 *            pages outside the lock, commits under the lock, clears
 *            `growing` and wakes `grown`. A growth for a run counts the
 *            free run at the heap's top, which the new chunks extend.
 *   reserve  Free pages in grown chunks are kept at reserve_pages or
 *            more (pages a scavenge batch holds count: they come back
 *            within the batch), so that atomic callers rarely need to
 *            grow: a thread whose allocation leaves fewer grows the heap
 *            by the chunks that make up the difference, or near the
 *            arena's end by those left (unless someone is growing
 *            already), and an atomic caller that leaves fewer wakes the
 *            scavenger thread to do it.
 *   table    A lookup is one load, checked against spanmap_pages; new
 *            entries say MHEAP_SPAN_NONE (the table holds no NULL).
 *
 * Invariants:
 *   1. A chunk's span-table entries are mapped, and set, before the
 *      chunk is committed: spanmap_pages covers every grown page.
 *   2. Only the caller that set `growing` prepares, maps or commits.
 *
 * Locking: h->lock only to read the grown chunks and to commit; the
 * preparation (which may map and allocate) runs without it, serialised by
 * `growing`. Table entries are atomics, read lock-free.
 * Limits: the arena never shrinks; growth is linear from the base.
 */
#include "mheap_internal.h"
#include "mspan.h"

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
	/* The heads first: it keeps its own count of mapped pages, so a
	 * failure below leaves nothing unaccounted. */
	if (!mheap_heads_grow(h, upto))
		return false;
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

/* p's page is a span's (its entry a span struct): p is the span heap's
 * object, never a run of mheap_alloc_pages. */
__attribute__((noreturn)) static void
span_freed_as_pages(const void *p, size_t npages, const struct mspan *s)
{
	unsigned cls = __atomic_load_n(&s->sizeclass, __ATOMIC_RELAXED);
	mm_panic("mheap: free of %p (%zu pages): an object of the span heap "
	         "(span [%#lx, +%u pages), size class %u%s), not a run of "
	         "mheap_alloc_pages: free it with spanheap_free",
	         p, npages, (unsigned long)s->base, s->npages, cls,
	         cls ? "" : ": a large object");
}

void mheap_free_check_entries(struct mheap *h, const void *p, size_t npages)
{
	uintptr_t a = (uintptr_t)p;
	if (a - h->arena_base >= h->arena_pages * MM_PAGE_SIZE)
		mm_panic("mheap: free of %p (%zu pages): outside the arena "
		         "[%#lx, +%zu MiB), no run of mheap_alloc_pages",
		         p, npages, (unsigned long)h->arena_base,
		         h->arena_pages * MM_PAGE_SIZE >> 20);
	void *e = mheap_span_lookup(h, a);
	if (!mheap_span_is_span(e) && npages > 1)
		e = mheap_span_lookup(h, a + (npages - 1) * MM_PAGE_SIZE);
	if (mheap_span_is_span(e))
		span_freed_as_pages(p, npages, e);
}

void mheap_span_set(struct mheap *h, uintptr_t base, size_t npages, void *v)
{
	if (!v)
		v = MHEAP_SPAN_NONE;
	size_t i = (base - h->arena_base) >> MM_PAGE_SHIFT;
#ifdef MM_TEST_HOOKS
	atomic_fetch_add_explicit(&mheap_test_spanmap_writes, npages,
	                          memory_order_relaxed);
#endif
	for (size_t k = 0; k < npages; k++)
		atomic_store_explicit(&h->spanmap[i + k], v,
		                      memory_order_release);
}

/* The chunks a growth for npages takes, from *first (the first not
 * grown), or 0 if the arena has too few left. For a run the new chunks
 * extend the free run at the top of the grown ones: only the rest needs
 * chunks, and it needs them whole; the reserve's pages already count that
 * run, and near the arena's end it takes what is left (a smaller reserve
 * beats none, and an atomic caller would grow them one by one). No lock
 * held. */
static size_t grow_chunks(struct mheap *h, size_t npages,
                          enum mheap_grow_for why, size_t *first)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	*first = h->grown_chunks;
	size_t tail =
	        why == MHEAP_GROW_FOR_RESERVE
	                ? 0
	                : palloc_free_below_locked(
	                          &h->pages,
	                          h->arena_base + *first * PALLOC_CHUNK_BYTES);
	mm_lock_release(&h->lock, irq);
	size_t need = tail < npages ? npages - tail : 1;
	size_t n = (need + MHEAP_CHUNK_PAGES - 1) / MHEAP_CHUNK_PAGES;
	size_t left = h->arena_pages / MHEAP_CHUNK_PAGES - *first;
	if (n > left)
		n = why == MHEAP_GROW_FOR_RESERVE ? left : 0;
	return n;
}

enum mheap_grow_result mheap_grow(struct mheap *h, size_t npages,
                                  enum mheap_grow_for why)
{
	size_t first;
	if (grow_chunks(h, npages, why, &first) == 0)
		return MHEAP_GROW_FAILED;
	if (atomic_exchange(&h->growing, true))
		return MHEAP_GROW_BUSY;
	size_t nchunks = grow_chunks(h, npages, why, &first);
	uintptr_t base = h->arena_base + first * PALLOC_CHUNK_BYTES;
	size_t nbytes = nchunks * PALLOC_CHUNK_BYTES;
	bool ok = nchunks > 0 && palloc_grow_prepare(&h->pages, base, nbytes) &&
	          mm_port_prepare((void *)base, nbytes) &&
	          spanmap_grow(h, first + nchunks);
	mheap_hook(h, MHEAP_HOOK_GROW_PREPARED);
	if (ok) {
		unsigned long irq = mm_lock_acquire(&h->lock);
		ok = palloc_grow_commit_locked(&h->pages, base, nbytes);
		if (ok) {
			/* Read with no lock by spanheap_where_log. */
			__atomic_store_n(&h->grown_chunks,
			                 h->grown_chunks + nchunks,
			                 __ATOMIC_RELEASE);
			h->counters.grows++;
		}
		mm_lock_release(&h->lock, irq);
		mheap_hook(h, MHEAP_HOOK_GROW_COMMITTED);
	}
	/* Cleared before the wake: a woken waiter that must grow too would
	 * find it set, get BUSY and sleep out its whole wait (a review's
	 * mutant; no test stages the few instructions between the two). */
	atomic_store(&h->growing, false);
	mm_event_wake(&h->grown);
	return ok ? MHEAP_GROW_OK : MHEAP_GROW_FAILED;
}

bool mheap_refill(struct mheap *h)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	size_t free = mheap_reserve_free_locked(h);
	mm_lock_release(&h->lock, irq);
	if (free >= h->cfg.reserve_pages || atomic_load(&h->growing))
		return true;
	/* BUSY: someone else's growth began since the check; it fills the
	 * reserve, or its failure is its caller's to report. */
	enum mheap_grow_result r = mheap_grow(h, h->cfg.reserve_pages - free,
	                                      MHEAP_GROW_FOR_RESERVE);
	if (r == MHEAP_GROW_OK) {
		irq = mm_lock_acquire(&h->lock);
		h->counters.refills++;
		mm_lock_release(&h->lock, irq);
	}
	return r != MHEAP_GROW_FAILED;
}

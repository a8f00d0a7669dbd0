/*
 * mm/mheap_heads.c: the page heap's run starts, and the free's check of
 * what a run covers.
 *
 * Purpose: let mheap_free_pages refuse a run whose count reaches into
 * another allocation (a live span of the span heap, another caller's run
 * of mheap_alloc_pages) at a cost proportional to the bitmap work its
 * free does anyway, not a span-table load per page. The span table alone
 * cannot tell two page-heap runs side by side apart (their entries are
 * the same mark), and palloc holds both allocated.
 *
 * Representation. One bit per arena page (the heads bitmap), in the span
 * table's reservation right after its entries (mheap_heads): set on the
 * first page of every run mheap_alloc_pages handed out, a span's too
 * (MHEAP_SPAN_ENTRIES), and clear on every other page. A heads page
 * holds the bits of 64 chunks; h->heads_pages of them are mapped, from
 * the start, as the heap grows (mapped before the chunk's span-table
 * pages, so a failed growth leaves a count that is still true).
 *
 * Algorithm.
 *   alloc    The attempt that takes a run sets its first bit under the
 *            lock; an allocation undone (no memory to map it) clears it.
 *   free     Before anything changes, the bits of the run's pages after
 *            its first are read a word at a time: a set one is the start
 *            of an allocation the run does not own, named with its
 *            span-table entry, unless palloc's check (under the lock)
 *            finds a page of the run not allocated first (a run freed
 *            twice, its pages out again); then, under the lock once the
 *            free has passed palloc's check, the run's own first bit is
 *            cleared.
 *            A run may be freed in pieces, in any order: only the piece
 *            holding its first page clears the bit, and no piece holds
 *            another run's first page.
 *
 * Invariants:
 *   1. A set bit is on an allocated page (mheap_check checks it): a run
 *      freed whole, or its first page freed, clears the bit under the
 *      lock before the page can be handed out again.
 *   2. Every allocation of mheap_alloc_pages has its first bit set while
 *      its first page is allocated; runs the scavenger takes and pages an
 *      extension adds have none.
 *
 * Locking: bits change only under h->lock (a load and a store: set as
 * the allocation takes the run, cleared as a free or an undone
 * allocation gives its first page back), and are read without it by a
 * free's check (atomics: best effort against a racing misuse, as the
 * span table is). h->heads_pages is the grower's (serialised by
 * `growing`).
 * Limits: a too-large count that ends inside the first run after its own
 * without reaching past that run's first page is caught only if that page
 * is the last (mheap_free_check_entries); a count too small is a leak no
 * check can see.
 *
 * mheap_run_holds reads the same bits (and the span table) for the span
 * heap's usercopy check: a copy from a run must not reach another
 * allocation's first page. A freed run's pages keep its mark, so a copy
 * into them passes.
 */
#include "mheap_internal.h"
#include "mspan.h"

#define HEADS_PAGE_CHUNKS (MM_PAGE_SIZE * 8 / MHEAP_CHUNK_PAGES)

size_t mheap_heads_bytes(size_t arena_pages)
{
	size_t chunks = arena_pages / MHEAP_CHUNK_PAGES;
	return (chunks + HEADS_PAGE_CHUNKS - 1) / HEADS_PAGE_CHUNKS *
	       MM_PAGE_SIZE;
}

bool mheap_heads_grow(struct mheap *h, size_t upto)
{
	size_t want = (upto + HEADS_PAGE_CHUNKS - 1) / HEADS_PAGE_CHUNKS;
	size_t have = h->heads_pages;
	if (want <= have)
		return true;
	if (!mm_port_map((char *)mheap_heads(h) + have * MM_PAGE_SIZE,
	                 (want - have) * MM_PAGE_SIZE))
		return false;
	h->heads_pages = (uint32_t)want;
	return true;
}

/* Sets base's bit to v: a load and a store, as only the lock's holder
 * writes the bitmap. */
static void head_store_locked(struct mheap *h, uintptr_t base, bool v)
{
	if (!mm_lock_held(&h->lock))
		mm_panic("mheap: the heads bitmap changed without the heap's "
		         "lock");
	size_t i = (base - h->arena_base) >> MM_PAGE_SHIFT;
	_Atomic uint64_t *w = &mheap_heads(h)[i / 64];
	uint64_t bit = (uint64_t)1 << i % 64;
	uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
	atomic_store_explicit(w, v ? old | bit : old & ~bit,
	                      memory_order_relaxed);
}

void mheap_head_set_locked(struct mheap *h, uintptr_t base)
{
	head_store_locked(h, base, true);
}

void mheap_head_clear_locked(struct mheap *h, uintptr_t base)
{
	head_store_locked(h, base, false);
}

bool mheap_head_is_set(const struct mheap *h, size_t pi)
{
	return atomic_load_explicit(&mheap_heads(h)[pi / 64],
	                            memory_order_relaxed) >>
	               pi % 64 &
	       1;
}

/* The first page index in [from, limit) whose bit is set, or limit.
 * Whole words are or'd eight at a time: one loaded and tested at a time,
 * a 1 GiB free's scan took 5.6 us on top of its 15.6 us (-O2, host). */
static size_t first_head(struct mheap *h, size_t from, size_t limit)
{
	_Atomic uint64_t *w = mheap_heads(h);
	size_t wi = from / 64, wend = (limit + 63) / 64;
	uint64_t bits = atomic_load_explicit(&w[wi], memory_order_relaxed) &
	                ~(uint64_t)0 << from % 64;
	while (!bits) {
		if (++wi >= wend)
			return limit;
		if (wend - wi >= 8) {
			uint64_t any = 0;
			for (unsigned k = 0; k < 8; k++)
				any |= atomic_load_explicit(
				        &w[wi + k], memory_order_relaxed);
			if (!any) {
				wi += 7;
				continue;
			}
		}
		bits = atomic_load_explicit(&w[wi], memory_order_relaxed);
	}
	size_t at = wi * 64 + (size_t)__builtin_ctzll(bits);
	return at < limit ? at : limit;
}

/* Names what starts on page pi, inside a free of p's npages pages. */
__attribute__((noreturn)) static void
covers_another(struct mheap *h, const void *p, size_t npages, size_t pi)
{
	uintptr_t at = h->arena_base + pi * MM_PAGE_SIZE;
	size_t k = (at - (uintptr_t)p) >> MM_PAGE_SHIFT;
	/* A run freed twice whose pages went out again would read as a
	 * count too large: palloc names a page of it not allocated first. */
	unsigned long irq = mm_lock_acquire(&h->lock);
	palloc_free_check_locked(&h->pages, (uintptr_t)p, npages);
	mm_lock_release(&h->lock, irq);
	void *e = mheap_span_lookup(h, at);
	if (mheap_span_is_span(e)) {
		const struct mspan *s = e;
		mm_panic("mheap: free of %p (%zu pages): page %zu of it (%#lx) "
		         "starts a span of the span heap (span [%#lx, +%u "
		         "pages), size class %u), not this run's: the count is "
		         "too large",
		         p, npages, k, (unsigned long)at,
		         (unsigned long)s->base, s->npages,
		         __atomic_load_n(&s->sizeclass, __ATOMIC_RELAXED));
	}
	mm_panic("mheap: free of %p (%zu pages): page %zu of it (%#lx) "
	         "starts another run of mheap_alloc_pages%s: the count is "
	         "too large",
	         p, npages, k, (unsigned long)at,
	         e == MHEAP_SPAN_PAGES ? ""
	                               : " (its span-table entry is no mark)");
}

void mheap_free_check_heads(struct mheap *h, const void *p, size_t npages)
{
	size_t first = ((uintptr_t)p - h->arena_base) >> MM_PAGE_SHIFT;
	size_t end = h->arena_pages - first < npages ? h->arena_pages
	                                             : first + npages;
	/* Only grown pages have bits mapped; palloc refuses the rest. */
	size_t grown = __atomic_load_n(&h->grown_chunks, __ATOMIC_ACQUIRE) *
	               MHEAP_CHUNK_PAGES;
	if (end > grown)
		end = grown;
	if (first + 1 >= end)
		return;
	size_t at = first_head(h, first + 1, end);
	if (at < end)
		covers_another(h, p, npages, at);
}

bool mheap_run_holds(struct mheap *h, const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p, off = a - h->arena_base;
	size_t grown = __atomic_load_n(&h->grown_chunks, __ATOMIC_ACQUIRE) *
	               MHEAP_CHUNK_PAGES;
	if (n == 0 || off >= grown * MM_PAGE_SIZE ||
	    n - 1 >= grown * MM_PAGE_SIZE - off)
		return false;
	size_t first = off >> MM_PAGE_SHIFT;
	size_t last = (off + (n - 1)) >> MM_PAGE_SHIFT;
	for (size_t pi = first; pi <= last; pi++)
		if (mheap_span_lookup(h, h->arena_base + pi * MM_PAGE_SIZE) !=
		    MHEAP_SPAN_PAGES)
			return false;
	return first == last || first_head(h, first + 1, last + 1) > last;
}

/*
 * mm/spanheap_large.c: large objects, a span of their own each
 * (spanheap_span.h).
 *
 * Purpose: requests above the largest size class: whole pages from the
 * page heap, aligned as asked, as a span of one object, freed (a second
 * free is told) and resized in place.
 *
 * Algorithm: an aligned request takes its alignment's worth of extra
 * pages and gives the head and tail around the aligned run back. A
 * resize grows into the free pages after the span (mheap_extend_pages)
 * or gives its tail back.
 *
 * Invariants: a large span's table entries name it from before its pages
 * are handed out until after they are given back, so a lookup of its own
 * pages always finds it.
 *
 * Locking: the heap's lock (MM_RANK_HEAP, a leaf) for a span's size and
 * the heap's large-page count; the caller owns the span.
 *
 * Limits: SPANHEAP_LARGE_MAX_PAGES pages (its span's 32-bit count); a
 * large object's pages come in one run from the page heap's arena.
 */
#include "spanheap_internal.h"

_Static_assert(SPANHEAP_LARGE_MAX_PAGES <= UINT32_MAX &&
                       sizeof(((struct mspan *)0)->npages) == 4,
               "a large span's page count fits its npages");

bool spanheap_large_possible(const struct spanheap *sh, size_t npages,
                             size_t align, unsigned flags)
{
	size_t arena = sh->heap->arena_pages;
	size_t extra = align > MM_PAGE_SIZE ? align / MM_PAGE_SIZE - 1 : 0;
	if (npages == 0)
		npages = 1;
	return npages <= SPANHEAP_LARGE_MAX_PAGES && npages <= arena &&
	       extra <= arena - npages &&
	       (!(flags & MM_ATOMIC) ||
	        npages + extra <= MHEAP_ATOMIC_MAX_PAGES);
}

/* npages pages aligned to align bytes (a page multiple), as a large
 * span; npages 0 (size 0 with a large alignment) gets one page. More
 * than SPANHEAP_LARGE_MAX_PAGES is refused with a line: its span could
 * not record them (it kept the count's low 32 bits). */
void *spanheap_large_alloc(struct spanheap *sh, size_t npages, size_t align,
                           unsigned flags)
{
	struct mheap *h = sh->heap;
	if (npages == 0)
		npages = 1;
	if (npages > SPANHEAP_LARGE_MAX_PAGES) {
		mm_log("spanheap: alloc of %zu pages refused: a large object "
		       "has at most %zu (its span's page count is 32 bits)",
		       npages, SPANHEAP_LARGE_MAX_PAGES);
		return NULL;
	}
	if (!spanheap_large_possible(sh, npages, align, flags))
		return NULL;
	size_t extra = align > MM_PAGE_SIZE ? align / MM_PAGE_SIZE - 1 : 0;
	unsigned hf =
	        mheap_flags_of(flags) | ((flags & MM_ZERO) ? MHEAP_ZERO : 0);
	uintptr_t raw =
	        (uintptr_t)spanheap_span_pages(sh, npages + extra, hf, flags);
	if (!raw)
		return NULL;
	uintptr_t base = raw;
	if (extra) {
		uintptr_t rem = raw % align;
		base = rem ? raw + (align - rem) : raw;
		size_t head = (base - raw) / MM_PAGE_SIZE;
		size_t tail = extra - head;
		if (head)
			spanheap_pages_put(h, (void *)raw, head);
		if (tail)
			spanheap_pages_put(
			        h, (void *)(base + npages * MM_PAGE_SIZE),
			        tail);
	}
	struct mspan *s = spanheap_span_new(sh, 0, base, npages, flags);
	if (!s)
		return NULL;
	/* Its second word may hold the free marker of an object that
	 * started here in a small span these pages held (markers stay in
	 * memory): a realloc that copied it away and later back into a small
	 * object made here made that object look freed (docs/DESIGN.md).
	 * Cleared; an MM_ZERO one is zero already. */
	if (!(flags & MM_ZERO))
		obj_words(base)[1] = 0;
	if (sh->cfg.poison) /* its pages whole: the size asked is not here */
		mm_port_shadow((void *)base, npages * MM_PAGE_SIZE,
		               MM_SHADOW_OK);
	return (void *)base;
}

void spanheap_large_free(struct spanheap *sh, struct mspan *s, void *p)
{
	uint8_t want = MSPAN_LARGE;
	if (!atomic_compare_exchange_strong_explicit(
	            &s->state, &want, MSPAN_DEAD, memory_order_acq_rel,
	            memory_order_relaxed))
		spanheap_bad_object("a large span freed twice", p, s);
	/* span_free stores DEAD again; harmless. */
	spanheap_span_free(sh, s);
}

/*
 * Resizes the large span s (p's: the caller owns it) to npages pages in
 * place: the pages after it if they are free (mheap_extend_pages), or its
 * tail given back. True if it did; false for more than
 * SPANHEAP_LARGE_MAX_PAGES. With MM_NO_GROW in flags, the page
 * heap is not grown (for its reserve) either; with MM_ZERO the pages it
 * grows into read as zero, written only where they held data. A growth: thread
 * context (the page heap may map pages and sleep); a shrink: any context but
 * NMI, as a large free. Its table entries are set before it grows into pages
 * and after it leaves them, so that a lookup of its own pages always finds it;
 * npages and elemsize change under the heap lock (the owner reads them; the
 * checker runs when nothing allocates).
 */
bool spanheap_large_resize(struct spanheap *sh, struct mspan *s, size_t npages,
                           unsigned flags)
{
	struct mheap *h = sh->heap;
	size_t have = s->npages;
	if (npages > SPANHEAP_LARGE_MAX_PAGES)
		return false; /* the realloc's move refuses it, saying so */
	uintptr_t at = s->base + npages * MM_PAGE_SIZE;
	if (npages > have) {
		unsigned mf = (mheap_flags_of(flags) & MHEAP_NO_GROW) |
		              ((flags & MM_ZERO) ? MHEAP_ZERO : 0);
		if (!mheap_extend_pages(h, (void *)s->base, have, npages - have,
		                        mf))
			return false;
		mheap_span_set(h, s->base + have * MM_PAGE_SIZE, npages - have,
		               s);
		if (sh->cfg.poison)
			mm_port_shadow((void *)(s->base + have * MM_PAGE_SIZE),
			               (npages - have) * MM_PAGE_SIZE,
			               MM_SHADOW_OK);
	} else if (npages < have) {
		spanheap_freed_large_note(sh, s->base, have, at, have - npages);
		mheap_span_set(h, at, have - npages, MHEAP_SPAN_FREED_LARGE);
	}
	unsigned long irq = mm_lock_acquire(&h->lock);
	s->npages = (uint32_t)npages;
	s->elemsize = (uint32_t)min_sz(npages * MM_PAGE_SIZE, UINT32_MAX);
	sh->large_in_use_pages = sh->large_in_use_pages + npages - have;
	mm_lock_release(&h->lock, irq);
	if (npages < have && sh->cfg.poison)
		mm_port_shadow((void *)at, (have - npages) * MM_PAGE_SIZE,
		               MM_SHADOW_PAGE_FREE);
	if (npages < have)
		mheap_free_pages(h, (void *)at, have - npages);
	return true;
}

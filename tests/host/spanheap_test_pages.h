/*
 * tests/host/spanheap_test_pages.h: the span heap tests' page counts (the
 * page heap's pages in use, those the span heap keeps for itself, those
 * its spans hold), for a test's check that nothing leaked. Included by
 * spanheap_test_util.h.
 */
#ifndef TESTS_HOST_SPANHEAP_TEST_PAGES_H
#define TESTS_HOST_SPANHEAP_TEST_PAGES_H

#include <stdatomic.h>
#include <stddef.h>

#include "../../mm/spanheap.h"

/* Span structs per page of the span-struct allocator (spanheap_span.c). */
#define SH_STRUCTS_PER_PAGE (MM_PAGE_SIZE / sizeof(struct mspan))

static inline size_t sh_in_use_pages(struct mheap *h)
{
	struct mheap_stats st;
	mheap_stats(h, &st);
	return st.in_use_pages;
}

/*
 * The pages the span heap keeps for itself once every object is freed and
 * every span given back, all in its metadata heap: the span-struct pages,
 * the magazine slabs and poison mode's stack depot (never freed) and the
 * pages of the all-spans array. Call when nothing else uses sh.
 */
static inline size_t sh_kept_pages(struct spanheap *sh)
{
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	size_t n = sh->nstructs / SH_STRUCTS_PER_PAGE + sh->spans->npages +
	           atomic_load(&sh->mag_slabs) * sh->mag_slab_pages +
	           atomic_load(&sh->depot.pages);
	mm_lock_release(&sh->heap->lock, irq);
	return n;
}

/* The page heap's pages in use for spans: all of them, as the span
 * heap's own pages (span structs, arrays, slabs, side tables, the depot)
 * are its metadata heap's (mm/spanheap_meta.c). Until then this was the
 * pages in use less sh_kept_pages; sh is kept for the callers' sake. */
static inline size_t sh_span_pages(struct mheap *h, struct spanheap *sh)
{
	(void)sh;
	return sh_in_use_pages(h);
}

/* Fails the current test at the caller's line unless h holds no page
 * (every span given back) and sh's metadata heap holds just the pages the
 * span heap keeps (sh_kept_pages; poison mode's side tables go with their
 * spans). Until the metadata heap both were h's: in use == kept. */
#define SH_EXPECT_ONLY_KEPT(h, sh)                                           \
	do {                                                                 \
		KEXPECT_EQ(sh_in_use_pages(h), 0);                           \
		KEXPECT_EQ(sh_in_use_pages(&(sh)->meta), sh_kept_pages(sh)); \
	} while (0)

#endif

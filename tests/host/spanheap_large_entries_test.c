/*
 * What a large object's allocation and free write of the page heap's span
 * table (mheap_span_set), counted (mheap_test_spanmap_writes): each page's
 * entry once when the span is made and once when it is freed, and for an
 * aligned one only the head and tail given back besides. Until a review
 * mheap_alloc_pages marked every page of a span's run page-heap memory
 * first (MHEAP_SPAN_PAGES), which the span heap overwrote at once: three
 * writes a page for a large allocation and free, 88 us for 256 MiB under
 * LD_PRELOAD against mimalloc's 26 and tcmalloc's 0.1, and an aligned
 * one wrote its whole alignment twice (tools/bench-cliffs).
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end; the first round of each grows the heap (whose new chunks'
 * entries are written too), the second is counted.
 */
#include <stdatomic.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_internal.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

static uint64_t writes(void)
{
	return atomic_load(&mheap_test_spanmap_writes);
}

KTEST(spanheap_large_entries, alloc_and_free_write_each_entry_twice)
{
	enum { NP = 1024 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	uint64_t counted = 0;
	for (int round = 0; round < 2; round++) {
		uint64_t w0 = writes();
		void *p = spanheap_alloc(&sh, NP * PG, 0);
		KASSERT(p);
		KEXPECT(mheap_span_lookup(&heap,
		                          (uintptr_t)p + (NP - 1) * PG) ==
		        mheap_span_lookup(&heap, (uintptr_t)p));
		spanheap_free(&sh, p);
		counted = writes() - w0;
	}
	ktest_diag("%lu entries written for a %u-page object's allocation "
	           "and free",
	           (unsigned long)counted, (unsigned)NP);
	KEXPECT_EQ(counted, (uint64_t)2 * NP);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_large_entries, an_aligned_one_writes_its_alignment_once)
{
	enum { ALIGN_PAGES = 1024 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	uint64_t counted = 0;
	for (int round = 0; round < 2; round++) {
		uint64_t w0 = writes();
		void *p = spanheap_alloc_aligned(&sh, 100, ALIGN_PAGES * PG, 0);
		KASSERT(p);
		KEXPECT((uintptr_t)p % (ALIGN_PAGES * PG) == 0);
		spanheap_free(&sh, p);
		counted = writes() - w0;
	}
	/* The span's page twice; the head and tail, 1023 pages, once. */
	ktest_diag("%lu entries written for a 1-page object aligned to %u "
	           "pages",
	           (unsigned long)counted, (unsigned)ALIGN_PAGES);
	KEXPECT_EQ(counted, (uint64_t)ALIGN_PAGES - 1 + 2);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * tests/host/mheap_free_check_test.c: mheap_free_pages's refusal of a run
 * whose last page, not its first, is a span's (mm/mheap_grow.c,
 * mheap_free_check_entries): a page-heap run freed with one page too many
 * reaches the span heap's object beside it, and the free must panic
 * naming that span before the page allocator frees it (both pages are
 * allocated there, so nothing else would notice). The misuse matrix's
 * pointers all have a span's first page, so only this shape reaches the
 * last page's check.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

KTEST(mheap_free_check, a_run_freed_into_the_span_after_it)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *run = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(run != NULL);
	/* A large object: a span of its own, first fit puts it next. */
	char *big = spanheap_alloc(&sh, 3 * MM_PAGE_SIZE, 0);
	KASSERT(big != NULL);
	struct mspan *s =
	        mheap_span_lookup(&heap, (uintptr_t)run + MM_PAGE_SIZE);
	if (!mheap_span_is_span(s) || s->base != (uintptr_t)run + MM_PAGE_SIZE)
		KASSERT_EQ((uintptr_t)big, (uintptr_t)run + MM_PAGE_SIZE);
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, run, 2));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(fired);
	if (fired)
		KEXPECT(strstr(mm_port_last_panic(),
		               "an object of the span heap") != NULL);
	SH_CHECK(&sh, "after the refused free");
	mheap_free_pages(&heap, run, 1);
	spanheap_free(&sh, big);
	sh_heap_release(&heap, &sh);
}

/* A run freed with a count that reaches past a live span into a run of
 * mheap_alloc_pages beyond it: the first and last pages are a page-heap
 * run's, the span sits in the middle. The free must panic naming the
 * pointer, the count and the span, and free nothing. */
KTEST(mheap_free_check, a_run_freed_over_a_span_in_its_middle)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *run = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(run != NULL);
	char *big = spanheap_alloc(&sh, 3 * MM_PAGE_SIZE, 0);
	char *after = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(big != NULL && after != NULL);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)big);
	KASSERT(mheap_span_is_span(s));
	KASSERT_EQ(s->base, (uintptr_t)run + 2 * MM_PAGE_SIZE);
	/* The large span may be longer than asked (its pages round up). */
	KASSERT_EQ((uintptr_t)after, s->base + s->npages * MM_PAGE_SIZE);
	memset(big, 0x5a, 3 * MM_PAGE_SIZE);
	size_t n = 2 + s->npages + 2;
	char want[32];
	snprintf(want, sizeof(want), "(%zu pages)", n);
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, run, n));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(fired);
	if (fired) {
		const char *m = mm_port_last_panic();
		KEXPECT(strstr(m, want) != NULL);
		KEXPECT(strstr(m, "page 2 of it") != NULL);
		KEXPECT(strstr(m, "a span of the span heap") != NULL);
		ktest_diag("%s", m);
	}
	SH_CHECK(&sh, "after the refused free");
	size_t bad = 0;
	for (size_t i = 0; i < 3 * MM_PAGE_SIZE; i++)
		bad += big[i] != 0x5a;
	KEXPECT_EQ(bad, 0);
	mheap_free_pages(&heap, run, 2);
	mheap_free_pages(&heap, after, 2);
	spanheap_free(&sh, big);
	sh_heap_release(&heap, &sh);
}

/* Two runs of mheap_alloc_pages side by side, the first freed with both
 * counts: the second run's pages are allocated and carry the page heap's
 * own entries, so only the run's start tells them apart. */
KTEST(mheap_free_check, a_run_freed_over_the_next_run)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *a = mheap_alloc_pages(&heap, 3, 0);
	char *b = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a != NULL && b != NULL);
	KASSERT_EQ((uintptr_t)b, (uintptr_t)a + 3 * MM_PAGE_SIZE);
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, a, 7));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(fired);
	if (fired) {
		const char *m = mm_port_last_panic();
		KEXPECT(strstr(m, "(7 pages)") != NULL);
		KEXPECT(strstr(m, "page 3 of it") != NULL);
		KEXPECT(strstr(m, "another run of mheap_alloc_pages") != NULL);
		ktest_diag("%s", m);
	}
	mheap_check(&heap);
	/* Freed in pieces, each its owner's: legal, and the head page of a
	 * run may go first. */
	mheap_free_pages(&heap, b, 1);
	mheap_free_pages(&heap, b + MM_PAGE_SIZE, 3);
	mheap_free_pages(&heap, a + MM_PAGE_SIZE, 2);
	mheap_free_pages(&heap, a, 1);
	mheap_check(&heap);
	sh_heap_release(&heap, &sh);
}

/* The scan of the run's bits (mheap_heads.c, first_head) at its edges:
 * runs of n pages that end on, before and after a bitmap word and an
 * eight-word block, each followed by a one-page run. A count one too
 * large must name page n; the right count, and the run freed in two
 * pieces around word edges, must pass. */
/* One row: a run of n pages after a pad of npad pages. */
__attribute__((noinline)) static void edge_row(size_t n, size_t npad)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	/* A run first: the run under test starts mid-word. */
	char *pad = mheap_alloc_pages(&heap, npad, 0);
	char *a = mheap_alloc_pages(&heap, n, 0);
	char *b = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(pad && a && b);
	KASSERT_EQ((uintptr_t)b, (uintptr_t)a + n * MM_PAGE_SIZE);
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, a, n + 1));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	char want[64];
	snprintf(want, sizeof(want), "(%zu pages): page %zu of it", n + 1, n);
	if (!fired || !strstr(mm_port_last_panic(), want))
		ktest_fail_at(__FILE__, __LINE__,
		              "a run of %zu pages freed with %zu: %s", n, n + 1,
		              fired ? mm_port_last_panic() : "no panic");
	mheap_check(&heap);
	size_t half = n / 2 ? n / 2 : 1;
	if (half < n)
		mheap_free_pages(&heap, a + half * MM_PAGE_SIZE, n - half);
	mheap_free_pages(&heap, a, half);
	mheap_free_pages(&heap, b, 1);
	mheap_free_pages(&heap, pad, npad);
	mheap_check(&heap);
	sh_heap_release(&heap, &sh);
}

KTEST(mheap_free_check, the_next_run_is_seen_at_every_word_edge)
{
	static const size_t ns[] = {1,   2,   63,  64,  65,  127, 128,
	                            511, 512, 513, 575, 576, 577, 1100};
	for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++)
		edge_row(ns[t], 1 + t % 3);
}

/* A run freed twice after its first page went out and came back and a
 * page after it went out again: the second free's count is right, the
 * run is not the caller's any more. Its first page is not allocated, and
 * the panic must say that (palloc's check), not "the count is too large"
 * for the new run inside it. */
KTEST(mheap_free_check, a_run_freed_twice_is_not_named_a_count_too_large)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a != NULL);
	mheap_free_pages(&heap, a, 4);
	char *x = mheap_alloc_pages(&heap, 1, 0);
	char *b = mheap_alloc_pages(&heap, 2, 0);
	KASSERT_EQ((uintptr_t)x, (uintptr_t)a);
	KASSERT_EQ((uintptr_t)b, (uintptr_t)a + MM_PAGE_SIZE);
	mheap_free_pages(&heap, x, 1);
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, a, 4));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(fired);
	if (fired) {
		const char *m = mm_port_last_panic();
		KEXPECT(strstr(m, "is not allocated") != NULL);
		KEXPECT(strstr(m, "the count is too large") == NULL);
		ktest_diag("%s", m);
	}
	mheap_check(&heap);
	mheap_free_pages(&heap, b, 2);
	mheap_check(&heap);
	sh_heap_release(&heap, &sh);
}

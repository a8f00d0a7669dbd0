/*
 * mheap_free_pages's check of what a run covers (mm/mheap_heads.c), on
 * the kernel's heap: a run freed in pieces, around the first pages of the
 * runs beside it, passes; a run freed with a count that reaches the next
 * run or a kmalloc span panics (KTEST_FAIL_DEMO only: tools/test-harness
 * checks the messages of page_heap_free_over_the_next_run and
 * page_heap_free_over_a_span).
 */
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "mm/mheap.h"
#include "mm/mspan.h"

enum { TRIES = 256 };

/* Runs held while the search for two side by side goes on; cleared as
 * they are freed (the leak scan reads .bss). */
static void *held[TRIES], *held_objs[TRIES];

static void free_held(void)
{
	for (int i = 0; i < TRIES; i++) {
		if (held[i])
			mheap_free_pages(&kheap, held[i], 1);
		kfree(held_objs[i]);
		held[i] = held_objs[i] = NULL;
	}
}

/* A run of n pages with a run of one page right after it (*next), from
 * kheap; false if TRIES attempts found none (lower holes are filled
 * first, one page of them a try). */
static bool two_runs(size_t n, char **run, char **next)
{
	for (int i = 0; i < TRIES; i++) {
		*run = mheap_alloc_pages(&kheap, n, 0);
		*next = mheap_alloc_pages(&kheap, 1, 0);
		if (!*run || !*next)
			break;
		if (*next == *run + n * MM_PAGE_SIZE)
			return true;
		mheap_free_pages(&kheap, *run, n);
		held[i] = *next;
	}
	return false;
}

/* Fills [p, +n) with v, and counts its bytes that are not v. Unchecked
 * by KASAN (kernel/kasan.h): raw runs of the page heap beneath the span
 * heap, whose shadow is whatever the span heap last said of those pages
 * (given back, most likely); the shadow follows the span heap's objects,
 * and no kernel code but tests takes kheap's pages raw. */
static KASAN_UNCHECKED void fill(char *p, int v, size_t n)
{
	(memset)(p, v, n);
}

static KASAN_UNCHECKED size_t count_not(const char *p, int v, size_t n)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += (unsigned char)p[i] != (unsigned char)v;
	return bad;
}

/* A run freed in pieces, in any order, is its owner's to free so: no
 * piece holds another run's first page. */
KTEST(mheap_free_check, a_run_freed_in_pieces_beside_another)
{
	char *run, *next;
	bool found = two_runs(8, &run, &next);
	free_held();
	KASSERT(found);
	fill(run, 0x3c, 8 * MM_PAGE_SIZE);
	fill(next, 0xc3, MM_PAGE_SIZE);
	mheap_free_pages(&kheap, run + 5 * MM_PAGE_SIZE, 3);
	mheap_free_pages(&kheap, run, 1);
	mheap_free_pages(&kheap, run + MM_PAGE_SIZE, 4);
	KEXPECT_EQ(count_not(next, 0xc3, MM_PAGE_SIZE), 0);
	mheap_free_pages(&kheap, next, 1);
	mheap_check(&kheap);
}

#ifdef KTEST_FAIL_DEMO
/* ---- Misuse on purpose (each panics) ---------------------------------- */

/* A run of 2 pages freed as 3: its third page is the next run's first ->
 * "starts another run of mheap_alloc_pages", naming the pointer, the
 * count and the page. Until mheap_heads.c the next run went silently. */
KTEST(demo, page_heap_free_over_the_next_run)
{
	char *run, *next;
	bool found = two_runs(2, &run, &next);
	free_held();
	KASSERT(found);
	ktest_diag("kfree of %p", run);
	mheap_free_pages(&kheap, run, 3);
	ktest_fail_at(__FILE__, __LINE__, "the free took the next run");
}

/* A run, a kmalloc object's span and a run, side by side, freed as one:
 * the first and last pages are page-heap runs' (the check of those alone
 * passed), the span's first page is in the middle -> "starts a span of
 * the span heap", naming the span and its class. */
KTEST(demo, page_heap_free_over_a_span)
{
	for (int i = 0; i < TRIES; i++) {
		char *run = mheap_alloc_pages(&kheap, 1, 0);
		char *obj = kmalloc(3 * MM_PAGE_SIZE, 0);
		char *last = mheap_alloc_pages(&kheap, 1, 0);
		KASSERT(run && obj && last);
		struct mspan *s = mheap_span_lookup(&kheap, (uintptr_t)obj);
		if (mheap_span_is_span(s) &&
		    s->base == (uintptr_t)run + MM_PAGE_SIZE &&
		    (uintptr_t)last == s->base + s->npages * MM_PAGE_SIZE) {
			free_held();
			ktest_diag("kfree of %p", run);
			mheap_free_pages(&kheap, run, 2 + s->npages);
			ktest_fail_at(__FILE__, __LINE__,
			              "the free took a live span");
			return;
		}
		/* The object stays allocated: its span must not come back
		 * where the next try looks. */
		held[i] = last;
		held_objs[i] = obj;
		mheap_free_pages(&kheap, run, 1);
	}
	free_held();
	ktest_fail_at(__FILE__, __LINE__, "no run, span and run side by side");
}
#endif

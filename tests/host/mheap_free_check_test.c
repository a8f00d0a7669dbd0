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

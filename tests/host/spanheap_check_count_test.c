/*
 * spanheap_check (mm/spanheap_check.c) against the span heap's own
 * bookkeeping: an empty span held on a central list though nothing will
 * take it off (not queued), a span in use on the span-struct free list, a
 * dead struct missing from it, an object allocated past the span's
 * marked count, and the large spans' counts against the
 * all-spans array. Each test breaks one, expects the panic naming it,
 * puts it back and expects the check to pass again (as
 * spanheap_check_test.c does for the rest).
 */
#include <stdarg.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

static struct mspan *span_at(const void *p)
{
	return mheap_span_lookup(&heap, (uintptr_t)p);
}

/* Expects spanheap_check to panic with a message that holds the fragment
 * printf would make of fmt. */
#define EXPECT_CHECK_FAILS(...) expect_check_fails(__LINE__, __VA_ARGS__)

__attribute__((format(printf, 2, 3))) static void
expect_check_fails(int line, const char *fmt, ...)
{
	bool fired = sh_check_panics(&sh);
	sh_unpin_after_panic();
	va_list ap;
	va_start(ap, fmt);
	mh_expect_panic_saying(__FILE__, line, fired, fmt, ap);
	va_end(ap);
}

/* A listed span whose objects are all free, not queued: no one will take
 * it off to free it (spanheap_span_place frees an empty span unless it is
 * queued), so its pages are held for good. */
KTEST(spanheap_check_counts, catches_an_empty_span_held_on_a_list)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh); /* on the swept partial list */
	KASSERT_EQ(s->alloc_count, 1);
	SH_CHECK(&sh, "clean");
	uint64_t bits = atomic_load(&s->alloc_bits[0]);
	atomic_store(&s->alloc_bits[0], 0);
	s->alloc_count = 0;
	((uintptr_t *)p)[1] = sh.mag_cookie ^ (uintptr_t)p; /* freed */
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's swept partial list is "
	                   "empty and not queued",
	                   (unsigned long)s->base);
	atomic_store(&s->alloc_bits[0], bits);
	s->alloc_count = 1;
	((uintptr_t *)p)[1] = 0;
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* An object at or past the span's marked count allocated (invariant 7:
 * none past it was ever handed out, so its free would be refused as
 * not a marked object's, a double free): until a review the checker
 * passed it, and the live object's free then panicked. */
KTEST(spanheap_check_counts, catches_an_object_allocated_past_marked)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh);
	SH_CHECK(&sh, "clean");
	uint32_t marked = atomic_load(&s->marked);
	KASSERT(marked >= 1 && marked < s->nelems);
	atomic_store(&s->marked, 0);
	EXPECT_CHECK_FAILS("span [%#lx] class 4: object 0 allocated at or past "
	                   "the span's marked count 0",
	                   (unsigned long)s->base);
	atomic_store(&s->marked, marked);
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* A span in use (CPU 0's cached one) also on the span-struct free list:
 * the next span made would take its struct. */
KTEST(spanheap_check_counts, catches_a_live_struct_on_the_free_list)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	KASSERT(s->next == NULL); /* cached: on no list */
	SH_CHECK(&sh, "clean");
	s->next = sh.free_structs;
	sh.free_structs = s;
	sh.nstructs_free++;
	EXPECT_CHECK_FAILS("span struct %p on the free list is in use: state "
	                   "1, span [%#lx]",
	                   (void *)s, (unsigned long)s->base);
	sh.free_structs = s->next;
	s->next = NULL;
	sh.nstructs_free--;
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* A dead struct gone from the free list, its count taken down with it:
 * the list and its count agree, the array's dead structs do not. */
KTEST(spanheap_check_counts, catches_a_dead_struct_off_the_free_list)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	SH_CHECK(&sh, "clean");
	size_t nfree = sh.nstructs_free;
	struct mspan *first = sh.free_structs;
	sh.free_structs = first->next;
	sh.nstructs_free--;
	EXPECT_CHECK_FAILS("%zu dead span structs, %zu on the free list", nfree,
	                   nfree - 1);
	sh.free_structs = first;
	sh.nstructs_free++;
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* The large spans' count (allocations less frees) and pages against the
 * large spans in the all-spans array. */
KTEST(spanheap_check_counts, catches_wrong_large_span_counts)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *big = spanheap_alloc(&sh, 100000, 0);
	KASSERT(big);
	size_t pages = span_at(big)->npages;
	SH_CHECK(&sh, "clean");
	sh.large_in_use_pages++;
	EXPECT_CHECK_FAILS("1 large spans of %zu pages, counts 1 of %zu pages",
	                   pages, pages + 1);
	sh.large_in_use_pages--;
	sh.n.large_allocs++;
	EXPECT_CHECK_FAILS("1 large spans of %zu pages, counts 2 of %zu pages",
	                   pages, pages);
	sh.n.large_allocs--;
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, big);
	SH_CHECK(&sh, "freed");
	sh_heap_release(&heap, &sh);
}

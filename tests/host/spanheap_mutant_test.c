/*
 * The span heap's behaviour that a second and a third mutation review of
 * mm/spanheap*.c (one edit at a time: a comparison flipped, a bound moved
 * by one, a store or a check dropped) found that no test would notice.
 * Each test here fails with one such mutant; the commit that added it
 * names the edit. spanheap_edge_test.c holds the first review's, and
 * spanheap_check_list_test.c and spanheap_check_mag_test.c the third's
 * for the checker.
 *
 * Each test makes its own heap (over a 1 GiB arena, or 8 chunks where it
 * needs to use up the arena) and gives it back at the end.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/*
 * A free of the first page past the grown part of the arena (inside the
 * arena, past the span table's last entry) is refused by name, as one in
 * no span. The free's fast path bounds its table index by the entries;
 * one entry further (i <= spanmap_pages) it read a table slot that was
 * never written (NULL) and crashed on it.
 */
KTEST(spanheap_mutant, free_just_past_the_grown_arena)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 16, 0);
	KASSERT(p);
	size_t pages = atomic_load(&sh.spanmap_pages);
	KASSERT(pages * MM_PAGE_SIZE < heap.cfg.arena_bytes);
	void *past = (void *)(heap.arena_base + pages * MM_PAGE_SIZE);
	SH_EXPECT_PANIC(spanheap_free(&sh, past), "in no span");
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

/* The state of the span holding p. */
static unsigned span_state(const void *p)
{
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	return mheap_span_is_span(s) ? atomic_load(&s->state) : 0xff;
}

/*
 * An allocation aligned to a whole page that fits a size class comes from
 * the class whose size is a multiple of the page (objects of a small
 * span), not from a large span of its own: "aligned to align <= a page"
 * takes the classes, with align == MM_PAGE_SIZE included. With the bound
 * made strict (align < MM_PAGE_SIZE), each took a span of its own.
 */
KTEST(spanheap_mutant, page_aligned_small_sizes_take_a_class)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static const size_t sizes[] = {100, 4096, 8192};
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p =
		        spanheap_alloc_aligned(&sh, sizes[i], MM_PAGE_SIZE, 0);
		KASSERT(p);
		KEXPECT_EQ((uintptr_t)p % MM_PAGE_SIZE, 0);
		KEXPECT_EQ(span_state(p), MSPAN_SMALL);
		KEXPECT_EQ(spanheap_usable_size(&sh, p) % MM_PAGE_SIZE, 0);
		spanheap_free(&sh, p);
	}
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * An object of the largest class (SC_MAX_SIZE) realloc'ed to half its size
 * or more stays where it is, as any small object does; the rule that a
 * large one keeps its place only at the same page count does not apply
 * to it. With "old < SC_MAX_SIZE" it moved.
 */
KTEST(spanheap_mutant, realloc_of_the_largest_class_stays)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, SC_MAX_SIZE, 0);
	KASSERT(p);
	KASSERT(span_state(p) == MSPAN_SMALL);
	memset(p, 3, SC_MAX_SIZE);
	char *q = spanheap_realloc(&sh, p, SC_MAX_SIZE / 2 + 100, 0);
	KASSERT(q);
	KEXPECT(q == p);
	KEXPECT_EQ(spanheap_usable_size(&sh, q), SC_MAX_SIZE);
	KEXPECT_EQ(q[SC_MAX_SIZE / 2], 3);
	spanheap_free(&sh, q);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

/*
 * A large object shrunk to half its size or more stays where it is and
 * gives its tail pages back (its usable size is the new page count, the
 * tail's table entries no longer name it); shrunk within its last page it
 * keeps every page. With the page-count test reversed the first kept all
 * its pages and the second went through a resize.
 */
KTEST(spanheap_mutant, large_shrink_by_less_than_half_gives_the_tail_back)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, 256 << 10, 0);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(span_state(p) == MSPAN_LARGE);
	KEXPECT(spanheap_realloc(&sh, p, (256 << 10) - 100, 0) == p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 256 << 10);
	KEXPECT(spanheap_realloc(&sh, p, 200 << 10, 0) == p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 200 << 10);
	KEXPECT(mheap_span_lookup(&heap, (uintptr_t)p + (200 << 10)) !=
	        (void *)s);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

/* The most bytes one large allocation can get from sh now (a page
 * multiple), found by halving: an allocation of n succeeds if one of more
 * does. Each probe is freed at once. */
static size_t largest_allocation(void)
{
	size_t lo = 0, hi = heap.cfg.arena_bytes / MM_PAGE_SIZE;
	while (lo < hi) {
		size_t mid = (lo + hi + 1) / 2;
		void *p = spanheap_alloc(&sh, mid * MM_PAGE_SIZE, 0);
		if (p) {
			spanheap_free(&sh, p);
			lo = mid;
		} else {
			hi = mid - 1;
		}
	}
	return lo * MM_PAGE_SIZE;
}

/*
 * A large object that must move to grow asks for an eighth more than the
 * new size; when only the new size itself fits, it gets that. Here the
 * object cannot grow in place (another one follows it) and the growth is
 * to exactly the largest run free. With the second try's flags spoilt
 * (flags | ~MM_ZERO, refused), the realloc failed.
 */
KTEST(spanheap_mutant, large_growth_without_room_for_an_eighth_more)
{
	KASSERT(sh_heap_tight(&heap, &sh, 8));
	mm_port_set_cpu(0);
	char *p = spanheap_alloc(&sh, 64 << 10, 0);
	char *after = spanheap_alloc(&sh, 64 << 10, 0);
	KASSERT(p && after);
	memset(p, 9, 64 << 10);
	mm_port_set_quiet(true);
	size_t most = largest_allocation();
	mm_port_set_quiet(false);
	KASSERT(most > (1 << 20));
	/* after stands in the way of a growth in place. */
	KASSERT(after > p && after < p + most);
	char *q = spanheap_realloc(&sh, p, most, 0);
	KEXPECT(q != NULL);
	if (q) {
		KEXPECT_EQ(spanheap_usable_size(&sh, q), most);
		KEXPECT_EQ(q[(64 << 10) - 1], 9);
		spanheap_free(&sh, q);
	} else {
		spanheap_free(&sh, p);
	}
	spanheap_free(&sh, after);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/* sh's counters, read under the heap lock. */
static struct spanheap_counters counters(void)
{
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.n;
}

/*
 * A reclaim (the page heap refused a thread allocation) with nothing
 * pending, no cycle running and no fold queue holding a span runs no
 * cycle and says it freed nothing, so a heap truly out of memory fails
 * fast. With queues_hold_spans' test reversed
 * (a queue is empty), every reclaim ran a cycle and said true.
 */
KTEST(spanheap_mutant, reclaim_with_nothing_to_sweep_runs_no_cycle)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	void *big = spanheap_alloc(&sh, 256 << 10, 0);
	KASSERT(p && big);
	KEXPECT(!spanheap_reclaim(&sh));
	KEXPECT_EQ(counters().cycles, 0);
	KEXPECT_EQ(counters().reclaims, 0);
	spanheap_free(&sh, p);
	spanheap_free(&sh, big);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * The checker refuses a span whose class is one past the last
 * (SC_NCLASSES), naming it, without reading the class table past its
 * end. With the bound made "cls > SC_NCLASSES" it read
 * sizeclass_info[SC_NCLASSES] (ASan: a global buffer overflow).
 */
KTEST(spanheap_mutant, checker_refuses_a_class_past_the_last)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s));
	SH_CHECK(&sh, "clean");
	uint8_t cls = s->sizeclass;
	__atomic_store_n(&s->sizeclass, SC_NCLASSES, __ATOMIC_RELAXED);
	KEXPECT(sh_check_panics(&sh));
	char want[48];
	snprintf(want, sizeof(want), "of class %u does not match",
	         (unsigned)SC_NCLASSES);
	KEXPECT(strstr(mm_port_last_panic(), want));
	__atomic_store_n(&s->sizeclass, cls, __ATOMIC_RELAXED);
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/*
 * A large object shrunk to SC_MAX_SIZE bytes, a size whose class's object
 * is exactly its 8 pages, stays a large span and shrinks in place (the
 * class would take as many bytes, and a copy; realloc's stays_large).
 * With "<" for "<=" there it moved into the class. Until a review it did
 * move, and this test said so: a buffer resized across 32 KiB copied
 * 32 KiB at every call (spanheap.realloc_across_the_large_boundary_*).
 */
KTEST(spanheap_mutant, large_shrunk_to_the_largest_class_stays_in_place)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, 2 * SC_MAX_SIZE, 0);
	KASSERT(p);
	KASSERT(span_state(p) == MSPAN_LARGE);
	memset(p, 5, 2 * SC_MAX_SIZE);
	char *q = spanheap_realloc(&sh, p, SC_MAX_SIZE, 0);
	KASSERT(q);
	KEXPECT(q == p);
	KEXPECT_EQ(span_state(q), MSPAN_LARGE);
	KEXPECT_EQ(spanheap_usable_size(&sh, q), SC_MAX_SIZE);
	KEXPECT_EQ(q[SC_MAX_SIZE - 1], 5);
	spanheap_free(&sh, q);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

/*
 * A span table entry left naming a large span for the first page past
 * its end (what a free racing with the span's shrink, or with its free
 * and its struct's reuse, may read; made here by hand) is refused as a
 * pointer into a freed span. With the bound made "off > npages pages",
 * the page just past the end was taken for an interior pointer of the
 * span.
 */
KTEST(spanheap_mutant, stale_entry_just_past_a_span_is_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *big = spanheap_alloc(&sh, 256 << 10, 0);
	KASSERT(big);
	KASSERT(spanheap_realloc(&sh, big, 100 << 10, 0) == big);
	struct mspan *l = mheap_span_lookup(&heap, (uintptr_t)big);
	char *tail = big + (size_t)l->npages * MM_PAGE_SIZE;
	KASSERT(mheap_span_lookup(&heap, (uintptr_t)tail) ==
	        MHEAP_SPAN_FREED_LARGE);
	mheap_span_set(&heap, (uintptr_t)tail, 1, l);
	EXPECT_MISUSE(spanheap_usable_size(&sh, tail),
	              "usable size of a pointer into a freed span", tail);
	EXPECT_MISUSE(spanheap_free(&sh, tail),
	              "free of an object whose span was freed", tail);
	mheap_span_set(&heap, (uintptr_t)tail, 1, MHEAP_SPAN_FREED_LARGE);
	spanheap_free(&sh, big);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

/*
 * An aligned allocation whose alignment alone is more than the arena can
 * hold is refused at once, with no reclaim (which flushes every CPU and
 * runs a sweep cycle) for a request no memory could meet. With
 * spanheap_large_alloc's "extra > arena_pages - npages" dropped, the page
 * heap refused it only after a reclaim had flushed every CPU.
 */
KTEST(spanheap_mutant, alignment_past_the_arena_is_refused_at_once)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	size_t align = (size_t)2 * heap.arena_pages * MM_PAGE_SIZE;
	uint64_t flushes = counters().flush_alls;
	KEXPECT(spanheap_alloc_aligned(&sh, MM_PAGE_SIZE, align, 0) == NULL);
	KEXPECT_EQ(counters().flush_alls, flushes);
	KEXPECT_EQ(counters().reclaims, 0);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

static void *held[1 << 14];

/*
 * An atomic allocation the page heap refuses fails at once, with no
 * reclaim: a reclaim flushes every CPU and runs a sweep cycle, which may
 * sleep, and an atomic caller may be an interrupt handler. The arena
 * here is used up by 1 KiB objects, all then freed, so a thread's
 * allocation does find memory, by folding the queued spans they emptied
 * before the heap grows (spanheap_sweep_before_growth, which runs before
 * a reclaim would). With span_pages' MM_ATOMIC test dropped, the atomic call
 * ran the reclaim, which panicked in its can-sleep assertion.
 */
KTEST(spanheap_mutant, atomic_alloc_out_of_pages_does_not_reclaim)
{
	KASSERT(sh_heap_tight(&heap, &sh, 4));
	mm_port_set_cpu(0);
	size_t n = 0, max = sizeof(held) / sizeof(held[0]);
	mm_port_set_quiet(true);
	while (n < max && (held[n] = spanheap_alloc(&sh, 1024, 0)))
		n++;
	mm_port_set_quiet(false);
	KASSERT(n > 0 && n < max);
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, held[i]);
	struct spanheap_counters before = counters();
	void *p = NULL;
	mm_port_set_atomic(true);
	bool fired = MM_PORT_PANICS(p = spanheap_alloc(&sh, 256, MM_ATOMIC));
	mm_port_set_atomic(false);
	sh_unpin_after_panic();
	KEXPECT(!fired);
	KEXPECT(p == NULL);
	KEXPECT_EQ(counters().reclaims, before.reclaims);
	KEXPECT_EQ(counters().flush_alls, before.flush_alls);
	p = spanheap_alloc(&sh, 256, 0);
	KEXPECT(p != NULL);
	KEXPECT(counters().queue_folded > before.queue_folded);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

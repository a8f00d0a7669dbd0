/*
 * spanheap_check (mm/spanheap_check.c) against faults in the central
 * lists, the fold queues, the span-struct free list and the span table
 * that the checker looks for but that spanheap_check_test.c and
 * spanheap_check_count_test.c never made: a third mutation review found
 * each of these checks could be deleted with every test still passing.
 * Each test makes the fault with every other invariant kept (a span whose
 * own fields agree, bitmaps that match its count), so that the check
 * under test is the first to see it, expects the panic naming it, puts
 * the state back and expects a clean check.
 */
#include <stdarg.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_check_test_util.h"

/* The swept lists' index this cycle. */
static unsigned swept_k(void)
{
	return (atomic_load(&sh.sweepgen) / 2) % 2;
}

/*
 * A span of class 5 on class 4's partial list, its own fields all class
 * 5's: the list's check names the class (without it, the fault showed up
 * only as a span count one off, with no span named).
 */
KTEST(spanheap_check_lists, catches_a_span_of_another_class_listed)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0), *q = spanheap_alloc(&sh, 80, 0);
	KASSERT(p && q);
	spanheap_flush_cache(&sh); /* each on its class's swept partial list */
	struct mspan_list_head *l4 = &sh.central[4].partial[swept_k()];
	struct mspan_list_head *l5 = &sh.central[5].partial[swept_k()];
	KASSERT(l4->n == 1 && l5->n == 1);
	struct mspan *s5 = l5->first;
	SH_CHECK(&sh, "clean");
	*l5 = (struct mspan_list_head){0};
	s5->next = l4->first;
	l4->first->prev = s5;
	*l4 = (struct mspan_list_head){.first = s5, .n = 2};
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's swept partial list: "
	                   "class 5",
	                   (unsigned long)s5->base);
	*l4 = (struct mspan_list_head){.first = s5->next, .n = 1};
	l4->first->prev = NULL;
	s5->next = NULL;
	*l5 = (struct mspan_list_head){.first = s5, .n = 1};
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* A span struct freed (dead) while still on a list: the list's check
 * finds it there; without it, only the span counts disagreed. */
KTEST(spanheap_check_lists, catches_a_dead_span_listed)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh);
	uint32_t sg = atomic_load(&sh.sweepgen);
	SH_CHECK(&sh, "clean");
	atomic_store(&s->state, MSPAN_DEAD);
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's swept partial list: "
	                   "class 4, sweepgen %u (sg %u), 1 of 512 allocated",
	                   (unsigned long)s->base, sg, sg);
	atomic_store(&s->state, MSPAN_SMALL);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* A full span on a partial list (a refill would take it and find no
 * object), and one with a free object on a full list (its free objects
 * are lost to refills until a sweep), bitmaps and count agreeing. The
 * bounds are exact: all 512 of 512 on a partial list, 511 on a full one. */
KTEST(spanheap_check_lists, catches_a_count_unlike_its_list)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh); /* object 0 allocated, the rest free */
	KASSERT_EQ(s->alloc_count, 1);
	uint32_t sg = atomic_load(&sh.sweepgen);
	uint64_t bits[8];
	for (unsigned w = 0; w < 8; w++)
		bits[w] = atomic_load(&s->alloc_bits[w]);
	SH_CHECK(&sh, "clean");
	uint32_t marked = atomic_load(&s->marked);
	atomic_store(&s->marked, 512); /* as if all were handed out */
	for (unsigned w = 0; w < 8; w++)
		atomic_store(&s->alloc_bits[w], ~(uint64_t)0);
	s->alloc_count = 512;
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's swept partial list: "
	                   "class 4, sweepgen %u (sg %u), 512 of 512 allocated",
	                   (unsigned long)s->base, sg, sg);
	/* 511 of 512 on the full list: object 511, never handed out, free. */
	atomic_store(&s->alloc_bits[7], ~(uint64_t)0 >> 1);
	s->alloc_count = 511;
	struct mspan_list_head *part = &sh.central[4].partial[swept_k()];
	struct mspan_list_head *full = &sh.central[4].full[swept_k()];
	*part = (struct mspan_list_head){0};
	*full = (struct mspan_list_head){.first = s, .n = 1};
	atomic_store(&s->list, MSPAN_LIST_FULL);
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's swept full list: class 4, "
	                   "sweepgen %u (sg %u), 511 of 512 allocated",
	                   (unsigned long)s->base, sg, sg);
	*full = (struct mspan_list_head){0};
	*part = (struct mspan_list_head){.first = s, .n = 1};
	atomic_store(&s->list, MSPAN_LIST_PARTIAL);
	for (unsigned w = 0; w < 8; w++)
		atomic_store(&s->alloc_bits[w], bits[w]);
	s->alloc_count = 1;
	atomic_store(&s->marked, marked);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* Queues class cls's span of p for real: a free of q from CPU 1, then
 * CPU 1's cache flushed; p keeps the span in use. Returns the span. */
static struct mspan *queue_span_of(void *p, void *q, unsigned cls)
{
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(1);
	spanheap_free(&sh, q);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	struct mspan *s = span_at(p);
	return atomic_load(&sh.central[cls].fold_queue) == s ? s : NULL;
}

/* On a fold queue: a dead span (a struct freed while queued, which the
 * fold would then take off a list it is not on), and a span of another
 * class. Without the queue's own checks each showed up only as a count
 * of queued spans one off. */
KTEST(spanheap_check_lists, catches_a_dead_or_foreign_span_queued)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0), *q = spanheap_alloc(&sh, 64, 0);
	void *p5 = spanheap_alloc(&sh, 80, 0), *q5 = spanheap_alloc(&sh, 80, 0);
	KASSERT(p && q && p5 && q5);
	struct mspan *s = queue_span_of(p, q, 4);
	struct mspan *s5 = queue_span_of(p5, q5, 5);
	KASSERT(s && s5);
	SH_CHECK(&sh, "queued");
	atomic_store(&s->state, MSPAN_DEAD);
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's fold queue: state 0, "
	                   "class 4, queued 1",
	                   (unsigned long)s->base);
	atomic_store(&s->state, MSPAN_SMALL);
	SH_CHECK(&sh, "restored");
	/* Class 5's queued span moved onto class 4's queue, ahead of s. */
	atomic_store(&sh.central[5].fold_queue, NULL);
	atomic_store(&s5->qnext, s);
	atomic_store(&sh.central[4].fold_queue, s5);
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's fold queue: state 1, "
	                   "class 5, queued 1",
	                   (unsigned long)s5->base);
	atomic_store(&sh.central[4].fold_queue, s);
	atomic_store(&s5->qnext, NULL);
	atomic_store(&sh.central[5].fold_queue, s5);
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	spanheap_free(&sh, p5);
	sh_heap_release(&heap, &sh);
}

/* A struct on the free list that still says it is listed, or queued:
 * the next span made from it would start on a list, or never be given
 * back (spanheap_span_place keeps a queued span). */
KTEST(spanheap_check_lists, catches_a_free_struct_listed_or_queued)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *f = sh.free_structs;
	KASSERT(f && atomic_load(&f->state) == MSPAN_DEAD);
	SH_CHECK(&sh, "clean");
	atomic_store(&f->list, MSPAN_LIST_PARTIAL);
	EXPECT_CHECK_FAILS("span struct %p on the free list is in use: state "
	                   "0, span [%#lx], marked 0, list 1, queued 0",
	                   (void *)f, (unsigned long)f->base);
	atomic_store(&f->list, MSPAN_LIST_NONE);
	atomic_store(&f->queued, 1);
	EXPECT_CHECK_FAILS("span struct %p on the free list is in use: state "
	                   "0, span [%#lx], marked 0, list 0, queued 1",
	                   (void *)f, (unsigned long)f->base);
	atomic_store(&f->queued, 0);
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* The span table's entry for a span's first page (the one a free of its
 * first object reads), small and large; spanheap_check_test.c breaks the
 * last. */
KTEST(spanheap_check_lists, catches_a_wrong_first_page_entry)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	void *big = spanheap_alloc(&sh, 200000, 0);
	KASSERT(p && big);
	struct mspan *s = span_at(p), *l = span_at(big);
	spanheap_flush_cache(&sh); /* no magazine object on the page */
	SH_CHECK(&sh, "clean");
	mheap_span_set(&heap, s->base, 1, MHEAP_SPAN_PAGES);
	EXPECT_CHECK_FAILS("span table entry of page 0 of span [%#lx] is "
	                   "wrong",
	                   (unsigned long)s->base);
	mheap_span_set(&heap, s->base, 1, s);
	mheap_span_set(&heap, l->base, 1, NULL);
	EXPECT_CHECK_FAILS("span table entry of page 0 of span [%#lx] is "
	                   "wrong",
	                   (unsigned long)l->base);
	mheap_span_set(&heap, l->base, 1, l);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

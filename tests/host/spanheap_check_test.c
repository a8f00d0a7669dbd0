/*
 * spanheap_check (mm/spanheap_check.c) catches what it claims to: each
 * test breaks one of the invariants it verifies in a fresh heap (a span's
 * class fields, poison flags, bitmaps or count, a span-table entry, a magazine,
 * a central list's entries, count or links, a cached span, an owner, a queued
 * flag against the fold queue, the span and span-struct counts, and the page
 * heap's counts it ends with; the span-struct allocator's in-use bits),
 * expects the panic naming that fault, then puts
 * the state back and expects the check to pass again, so the fault was the only
 * one. The bitmap double-free checks of the free's paths (suite
 * spanheap_check_bits) are in spanheap_check_bits_test.c, the magazines'
 * checks in spanheap_check_mag_test.c.
 *
 * A caught panic abandons the call where it was (the port undoes pins; the
 * checker gives its cycle and class locks back, but the page heap's check
 * panics under the heap lock, released here), so each case runs on a heap
 * of its own and gives it back after.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_check_test_util.h"

static uint32_t sweepgen(void)
{
	return atomic_load(&sh.sweepgen);
}

/* ---- spanheap_check ----------------------------------------------------- */

KTEST(spanheap_check, catches_a_wrong_alloc_count)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0), *q = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && q);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh); /* folded: the count is exact */
	KASSERT_EQ(s->alloc_count, 2);
	SH_CHECK(&sh, "clean");
	s->alloc_count = 3;
	EXPECT_CHECK_FAILS("span [%#lx] class 4 counts 3 allocated, its "
	                   "bitmaps 2",
	                   (unsigned long)s->base);
	s->alloc_count = 2;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_span_unlike_its_class)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	SH_CHECK(&sh, "clean");
	s->elemsize = 80;
	EXPECT_CHECK_FAILS("span %p [%#lx] of class 4 does not match its class",
	                   (void *)s, (unsigned long)s->base);
	s->elemsize = 64;
	s->mag_offset += sizeof(struct mmag);
	EXPECT_CHECK_FAILS("of class 4 does not match its class");
	s->mag_offset -= sizeof(struct mmag);
	/* Each of the fields the class gives, one at a time, one less (a
	 * page more would fail the table's check first): the count and
	 * pages, and the free's and the fold's arithmetic. */
#define EXPECT_FIELD_CAUGHT(field)                                         \
	do {                                                               \
		s->field--;                                                \
		EXPECT_CHECK_FAILS("of class 4 does not match its class"); \
		s->field++;                                                \
	} while (0)
	EXPECT_FIELD_CAUGHT(nelems);
	EXPECT_FIELD_CAUGHT(npages);
	EXPECT_FIELD_CAUGHT(divmul);
	EXPECT_FIELD_CAUGHT(dinv);
	EXPECT_FIELD_CAUGHT(dshift);
#undef EXPECT_FIELD_CAUGHT
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* A span's poison flags and side table against the heap's mode: none in
 * a normal heap; both, with the records' flag, in a poison one (the host
 * port walks stacks). */
KTEST(spanheap_check, catches_poison_flags_unlike_the_heap)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	SH_CHECK(&sh, "clean");
	s->poison = 1;
	EXPECT_CHECK_FAILS("span %p [%#lx] of class 4: poison flags 0x1 and "
	                   "side table (nil), where the heap's mode makes 0 "
	                   "and none",
	                   (void *)s, (unsigned long)s->base);
	s->poison = 0;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);

	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	KASSERT(sh.track);
	p = spanheap_alloc(&sh, 63, 0);
	KASSERT(p);
	s = span_at(p);
	SH_CHECK(&sh, "clean, poison");
	s->poison = 1; /* the records' flag lost */
	EXPECT_CHECK_FAILS("poison flags 0x1 and side table 0x");
	s->poison = 3;
	void *rz = s->redzone;
	s->redzone = NULL;
	EXPECT_CHECK_FAILS("poison flags 0x3 and side table (nil), where the "
	                   "heap's mode makes 0x3 and a table");
	s->redzone = rz;
	SH_CHECK(&sh, "restored, poison");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* 80-byte objects: 409 to a span, so word 6 is partly past the end. */
KTEST(spanheap_check, catches_bitmaps_that_disagree)
{
	KASSERT(fresh_heap());
	KASSERT_EQ(sizeclass_info[5].size, 80);
	KASSERT_EQ(sizeclass_info[5].nelems, 409);
	void *p = spanheap_alloc(&sh, 80, 0), *q = spanheap_alloc(&sh, 80, 0);
	KASSERT(p && q);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh); /* alloc_bits 0x3, freeindex 0 */
	SH_CHECK(&sh, "clean");
	atomic_store(&s->pending[0], 1u << 5); /* freed, never allocated */
	EXPECT_CHECK_FAILS("span [%#lx] class 5 word 0: alloc 0x3 pending "
	                   "0x20 local 0 freeindex 0",
	                   (unsigned long)s->base);
	atomic_store(&s->pending[0], 0);
	atomic_store(&s->local_free[0], 1u << 5);
	EXPECT_CHECK_FAILS("word 0: alloc 0x3 pending 0 local 0x20");
	atomic_store(&s->local_free[0], 1);
	atomic_store(&s->pending[0], 1); /* freed both ways */
	EXPECT_CHECK_FAILS("word 0: alloc 0x3 pending 0x1 local 0x1");
	atomic_store(&s->local_free[0], 0);
	atomic_store(&s->pending[0], 0);
	atomic_store(&s->alloc_bits[6], 1ull << 25); /* object 409 */
	EXPECT_CHECK_FAILS("word 6: alloc 0x2000000 pending 0 local 0");
	atomic_store(&s->alloc_bits[6], 0);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_wrong_span_table_entry)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	void *big = spanheap_alloc(&sh, 200000, 0);
	KASSERT(p && big);
	struct mspan *s = span_at(p), *l = span_at(big);
	KASSERT_EQ(s->npages, 8);
	SH_CHECK(&sh, "clean");
	uintptr_t last = s->base + 7 * MM_PAGE_SIZE;
	mheap_span_set(&heap, last, 1, MHEAP_SPAN_PAGES);
	EXPECT_CHECK_FAILS("span table entry of page 7 of span [%#lx] is "
	                   "wrong",
	                   (unsigned long)s->base);
	mheap_span_set(&heap, last, 1, s);
	/* A large span's pages too. */
	last = l->base + (l->npages - 1) * MM_PAGE_SIZE;
	mheap_span_set(&heap, last, 1, NULL);
	EXPECT_CHECK_FAILS("span table entry of page %u of span [%#lx] is "
	                   "wrong",
	                   l->npages - 1, (unsigned long)l->base);
	mheap_span_set(&heap, last, 1, l);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_span_on_the_wrong_list)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh); /* on the swept partial list */
	uint32_t sg = sweepgen();
	KASSERT_EQ(atomic_load(&s->sweepgen), sg);
	SH_CHECK(&sh, "clean");
	atomic_store(&s->list, MSPAN_LIST_FULL);
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's swept partial list: "
	                   "class 4, sweepgen %u (sg %u), 1 of 512 allocated",
	                   (unsigned long)s->base, sg, sg);
	atomic_store(&s->list, MSPAN_LIST_PARTIAL);
	atomic_store(&s->sweepgen, sg - 2); /* says unswept */
	EXPECT_CHECK_FAILS("on class 4's swept partial list: class 4, "
	                   "sweepgen %u (sg %u)",
	                   sg - 2, sg);
	atomic_store(&s->sweepgen, sg);
	atomic_store(&s->freeindex, 1); /* a listed span's is 0 */
	EXPECT_CHECK_FAILS("on class 4's swept partial list");
	atomic_store(&s->freeindex, 0);
	atomic_store(&s->owner, 1); /* and its owner too */
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's swept partial list: "
	                   "class 4, sweepgen %u (sg %u), 1 of 512 allocated, "
	                   "owner 1",
	                   (unsigned long)s->base, sg, sg);
	atomic_store(&s->owner, 0);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_wrong_list_count_or_link)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0); /* a span for CPU 0 */
	mm_port_set_cpu(1);
	void *q = spanheap_alloc(&sh, 64, 0); /* and one for CPU 1 */
	KASSERT(p && q && span_at(p) != span_at(q));
	sh_flush_cpus(&sh, 2); /* both on the swept partial list */
	unsigned k = (sweepgen() / 2) % 2;
	struct mspan_list_head *l = &sh.central[4].partial[k];
	KASSERT_EQ(l->n, 2);
	SH_CHECK(&sh, "clean");
	l->n = 3;
	EXPECT_CHECK_FAILS("class 4 list %u holds 2 spans, counts 3", k);
	l->n = 2;
	struct mspan *second = l->first->next;
	l->first->next = NULL;
	EXPECT_CHECK_FAILS("class 4 list %u holds 1 spans, counts 2", k);
	l->first->next = second;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_bad_cached_span)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	KASSERT(sh.caches[0].alloc[4] == s);
	SH_CHECK(&sh, "clean");
	atomic_store(&s->list, MSPAN_LIST_PARTIAL);
	EXPECT_CHECK_FAILS("CPU 0 caches span [%#lx] of class 4 for class 4, "
	                   "sweepgen %u",
	                   (unsigned long)s->base, atomic_load(&s->sweepgen));
	atomic_store(&s->list, MSPAN_LIST_NONE);
	struct mspan *empty = sh.caches[0].alloc[5];
	sh.caches[0].alloc[5] = s;
	EXPECT_CHECK_FAILS("CPU 0 caches span [%#lx] of class 4 for class 5",
	                   (unsigned long)s->base);
	sh.caches[0].alloc[5] = empty;
	/* Its owner is CPU 0's number + 1: a wrong one would let a spill
	 * set local bits no fold takes in. */
	atomic_store(&s->owner, 2);
	EXPECT_CHECK_FAILS("CPU 0 caches span [%#lx] of class 4 for class 4, "
	                   "sweepgen %u, owner 2",
	                   (unsigned long)s->base, atomic_load(&s->sweepgen));
	atomic_store(&s->owner, 1);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* The queued flag against the fold queue: a span flagged but on no queue
 * would never go back to the page heap; one queued without its flag
 * could be pushed twice. */
KTEST(spanheap_check, catches_a_queued_flag_unlike_the_queue)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0), *q = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && q);
	struct mspan *s = span_at(p);
	spanheap_flush_cache(&sh); /* listed, owned by no CPU */
	SH_CHECK(&sh, "clean");
	atomic_store(&s->queued, 1);
	EXPECT_CHECK_FAILS("class 4 has 1 spans marked queued, 0 on its fold "
	                   "queue and backlog");
	atomic_store(&s->queued, 0);
	/* A remote free queues it for real (CPU 1's spill). */
	mm_port_set_cpu(1);
	spanheap_free(&sh, q);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	KASSERT(atomic_load(&s->queued) == 1);
	KASSERT(atomic_load(&sh.central[4].fold_queue) == s);
	SH_CHECK(&sh, "queued");
	atomic_store(&s->queued, 0);
	EXPECT_CHECK_FAILS("span [%#lx] on class 4's fold queue: state 1, "
	                   "class 4, queued 0",
	                   (unsigned long)s->base);
	atomic_store(&s->queued, 1);
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_wrong_span_count)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	SH_CHECK(&sh, "clean");
	atomic_fetch_add(&sh.central[4].nspans, 1);
	EXPECT_CHECK_FAILS("class 4 has 1 spans, 1 on lists or cached, "
	                   "counts 2");
	atomic_fetch_sub(&sh.central[4].nspans, 1);
	/* A span on no list and in no cache: lost. */
	spanheap_flush_cache(&sh);
	struct mspan_list_head *l =
	        &sh.central[4].partial[(sweepgen() / 2) % 2];
	KASSERT_EQ(l->n, 1);
	struct mspan *s = l->first;
	*l = (struct mspan_list_head){0};
	EXPECT_CHECK_FAILS("class 4 has 1 spans, 0 on lists or cached, "
	                   "counts 1");
	*l = (struct mspan_list_head){.first = s, .n = 1};
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_wrong_span_struct_count)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	SH_CHECK(&sh, "clean");
	size_t nfree = sh.nstructs_free, made = sh.nstructs;
	KASSERT(nfree > 0);
	sh.nstructs_free++;
	EXPECT_CHECK_FAILS("%zu free span structs, counts %zu; %zu made, "
	                   "array holds %zu",
	                   nfree, nfree + 1, made, made);
	sh.nstructs_free--;
	sh.nstructs++;
	EXPECT_CHECK_FAILS("%zu free span structs, counts %zu; %zu made, "
	                   "array holds %zu",
	                   nfree, nfree, made + 1, made);
	sh.nstructs--;
	/* A struct lost from the free list. */
	struct mspan *first = sh.free_structs;
	sh.free_structs = first->next;
	EXPECT_CHECK_FAILS("%zu free span structs, counts %zu", nfree - 1,
	                   nfree);
	sh.free_structs = first;
	/* The in-use bitmap (spanheap_structs.c): a bit lost, then moved
	 * from a struct in use to a free one (the counts agree). A fresh
	 * heap's structs have their bits in the first word of the first
	 * block. */
	uint32_t idx;
	struct mspan *s = spanheap_span_of(&sh, p, &idx, "check");
	KASSERT(s->idx < 64 && first->idx < 64);
	uint64_t bit = (uint64_t)1 << s->idx, fbit = (uint64_t)1 << first->idx;
	atomic_fetch_and(s->inuse_word, ~bit);
	EXPECT_CHECK_FAILS("%zu span structs marked in use, %zu off the free "
	                   "list",
	                   made - nfree - 1, made - nfree);
	atomic_fetch_or(first->inuse_word, fbit);
	EXPECT_CHECK_FAILS("span struct %p on the free list is in use",
	                   (void *)first);
	atomic_fetch_or(s->inuse_word, bit);
	atomic_fetch_and(first->inuse_word, ~fbit);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* The span heap's check ends with the page heap's (mheap_check_test.c
 * breaks each of its counts). */
KTEST(spanheap_check, ends_with_the_page_heap_check)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	SH_CHECK(&sh, "clean");
	heap.grown_chunks++;
	EXPECT_CHECK_FAILS("mheap: check: ");
	KEXPECT(!mm_lock_held(&heap.lock));
	heap.grown_chunks--;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

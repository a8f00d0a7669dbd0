/*
 * spanheap_check's magazine and cache checks (mm/spanheap_check_cache.c)
 * against faults spanheap_check_test.c never made: a third mutation
 * review found each of these checks could be deleted with every test
 * still passing. Each test makes one fault in a fresh heap, expects the
 * panic naming it, puts the state back and expects a clean check.
 */
#include <stdarg.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_check_test_util.h"

/* CPU 0's magazine of class 4 (64-byte objects), and its first slot. */
static struct mmag *mag4(void)
{
	return &sh.caches[0].mag[4];
}

static uintptr_t *mag4_base(void)
{
	return sh.caches[0].slab + sh.mag_off[4];
}

/* A cached span must read odd: even says listed (sg) or unswept (sg - 2),
 * and a span that reads sg - 2 is one the sweeper may claim from its
 * owner. The count is set to the bitmaps' so that only the cache's check
 * can see the fault. */
KTEST(spanheap_check_mags, catches_a_cached_span_with_an_even_sweepgen)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	KASSERT(sh.caches[0].alloc[4] == s);
	SH_CHECK(&sh, "clean");
	uint32_t v = atomic_load(&s->sweepgen), count = s->alloc_count;
	uint32_t sg = atomic_load(&sh.sweepgen);
	KASSERT_EQ(atomic_load(&s->alloc_bits[0]), 0); /* freeindex's alone */
	atomic_store(&s->sweepgen, sg);
	s->alloc_count = atomic_load(&s->freeindex);
	EXPECT_CHECK_FAILS("CPU 0 caches span [%#lx] of class 4 for class 4, "
	                   "sweepgen %u, owner 1",
	                   (unsigned long)s->base, sg);
	atomic_store(&s->sweepgen, v);
	s->alloc_count = count;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap);
}

/* In a magazine: a pointer 16 bytes into a freed object, with a marker
 * forged for it (a pop would hand out memory that overlaps two objects);
 * and the freed object itself once its free is also in the span's bits,
 * local or pending (it would be handed out twice). */
KTEST(spanheap_check_mags, catches_an_interior_or_twice_freed_object)
{
	KASSERT(fresh_heap());
	uintptr_t *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	KASSERT_EQ((uintptr_t)p, s->base); /* object 0 */
	spanheap_free(&sh, p);
	uintptr_t *slot = mag4()->top - 1;
	KASSERT(*slot == (uintptr_t)p);
	SH_CHECK(&sh, "clean");
	uintptr_t in = (uintptr_t)p + 16, was = p[3];
	p[3] = sh.mag_cookie ^ in; /* word 1 of in */
	*slot = in;
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4: object %u of %u, "
	                   "%#lx, is not a freed object of the class",
	                   (unsigned)(slot - mag4_base()),
	                   (unsigned)(slot - mag4_base() + 1),
	                   (unsigned long)in);
	*slot = (uintptr_t)p;
	p[3] = was;
	SH_CHECK(&sh, "restored");
	atomic_store(&s->local_free[0], 1);
	EXPECT_CHECK_FAILS("of class 4: object %u of %u, %#lx, is not a "
	                   "freed object",
	                   (unsigned)(slot - mag4_base()),
	                   (unsigned)(slot - mag4_base() + 1),
	                   (unsigned long)p);
	atomic_store(&s->local_free[0], 0);
	atomic_store(&s->pending[0], 1);
	EXPECT_CHECK_FAILS("of class 4: object %u of %u, %#lx, is not a "
	                   "freed object",
	                   (unsigned)(slot - mag4_base()),
	                   (unsigned)(slot - mag4_base() + 1),
	                   (unsigned long)p);
	atomic_store(&s->pending[0], 0);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap);
}

/* An object whose free a fold has taken into its span (free in the
 * bitmaps) put back into a magazine: the span's refill and the magazine
 * would each hand it out. */
KTEST(spanheap_check_mags, catches_an_object_free_in_its_span)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0), *q = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && q);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh); /* p folded free; q keeps the span */
	struct mmag *m = mag4();
	KASSERT(m->top == mag4_base());
	SH_CHECK(&sh, "clean");
	*m->top = (uintptr_t)p;
	m->top++;
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4: object 0 of 1, %#lx, "
	                   "is not a freed object of the class",
	                   (unsigned long)p);
	m->top--;
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, q);
	sh_heap_release(&heap);
}

/*
 * CPU 0's magazine table (sh->mags[0], which the fast paths index) not its
 * own cache's, and a magazine's top below its first slot. The slot above
 * the top holds an allocated object, so that a check that missed the top
 * would stop there, failing, rather than read on through the slab.
 */
KTEST(spanheap_check_mags, catches_a_wrong_table_or_top)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0), *q = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && q);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "clean");
	struct mmag *was = sh.mags[0];
	sh.mags[0] = sh.caches[1].mag;
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 1 is broken");
	sh.mags[0] = was;
	SH_CHECK(&sh, "restored");
	struct mmag *m = mag4();
	uintptr_t *top = m->top, above = *top;
	*top = (uintptr_t)q;
	m->top = mag4_base() - 1;
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4 is broken: top %p",
	                   (void *)m->top);
	m->top = top;
	*top = above;
	SH_CHECK(&sh, "restored");
	spanheap_free(&sh, q);
	sh_heap_release(&heap);
}

/*
 * The word below the shared empty magazine (what a pop from it reads)
 * written: every pin that names no CPU, and every CPU with no slab yet,
 * would pop address 1. And a CPU with no slab whose magazine is empty
 * and full (top == limit) but over a word that is not 0.
 */
KTEST(spanheap_check_mags, catches_an_empty_magazine_that_pops)
{
	KASSERT(fresh_heap());
	SH_CHECK(&sh, "clean");
	uintptr_t *below = sh.mags[MM_PIN_NONE][4].top - 1;
	*below = 1;
	EXPECT_CHECK_FAILS("the magazine of class 1 for no CPU (MM_PIN_NONE) "
	                   "was written: top %p, limit %p, the word below 0x1",
	                   (void *)(below + 1), (void *)(below + 1));
	*below = 0;
	SH_CHECK(&sh, "restored");
	static uintptr_t fake[2] = {1, 0};
	struct mmag *m1 = &sh.caches[1].mag[4], saved = *m1;
	m1->top = m1->limit = &fake[1];
	EXPECT_CHECK_FAILS("CPU 1 has no magazine slab, but its magazine of "
	                   "class 4 is not the empty one");
	*m1 = saved;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap);
}

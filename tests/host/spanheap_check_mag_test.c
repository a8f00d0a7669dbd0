/*
 * spanheap_check's magazine and cache checks (mm/spanheap_check_cache.c):
 * first (suite spanheap_check) a broken magazine, a written cache of a
 * CPU that never used the heap, a written magazine of a CPU that has none, an
 * object in one that is no handed-out object of its class (on this CPU or
 * another) or lies past its span's marked count; then (suite
 * spanheap_check_mags) faults spanheap_check_test.c never made: a third
 * mutation review found each of these checks could be deleted with every test
 * still passing. Each test makes one fault in a fresh heap, expects the panic
 * naming it, puts the state back and expects a clean check.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_check_test_util.h"

KTEST(spanheap_check, catches_a_broken_magazine)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	spanheap_free(&sh, p); /* CPU 0's slab, p in its magazine */
	struct mmag *m = &sh.caches[0].mag[4];
	uintptr_t *base = sh.caches[0].slab + sh.mag_off[4];
	KASSERT(m->top == base + 1);
	SH_CHECK(&sh, "clean");
	/* Its size (limit) may be anything from its floor to its class's
	 * most, and no less than what it holds (top). */
	uintptr_t *limit = m->limit;
	KASSERT(limit == base + sh.mag_max[4]);
	m->limit = base + sh.mag_max[4] / 2;
	SH_CHECK(&sh, "a halved magazine");
	m->limit = base + sh.mag_max[4] + 1;
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4 is broken: top %p, "
	                   "limit %p",
	                   (void *)m->top, (void *)m->limit);
	uint32_t floor = mag_floor(&sh, 4);
	KASSERT(floor > 1 && floor < sh.mag_max[4]);
	m->limit = base + floor;
	SH_CHECK(&sh, "a magazine at its floor");
	m->limit--;
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4 is broken");
	m->limit = base + floor;
	m->top = m->limit + 1;
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4 is broken");
	m->top = base + 1;
	m->limit = limit;
	SH_CHECK(&sh, "restored");
	base[-1] = 1; /* an empty pop would hand out address 1 */
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4 is broken");
	base[-1] = 0;
	/* CPU 1 has not used the heap: its cache must be all zero. */
	mm_port_set_cpu(1);
	SH_CHECK(&sh, "clean on CPU 1");
	struct mmag *m1 = &sh.caches[1].mag[4];
	m1->limit = base;
	EXPECT_CHECK_FAILS("CPU 1's cache is not set up (its magazines are "
	                   "the shared empty ones), but it was written: byte "
	                   "%zu holds %#lx",
	                   offsetof(struct mcache, mag[4].limit),
	                   (unsigned long)base);
	m1->limit = NULL;
	SH_CHECK(&sh, "restored on CPU 1");
	/* Set up, it has made no slab: its magazines must be the shared
	 * empty one, empty and full at once. */
	set_up_cpu(1);
	SH_CHECK(&sh, "set up on CPU 1");
	m1->limit--;
	EXPECT_CHECK_FAILS("CPU 1 has no magazine slab, but its magazine of "
	                   "class 4 is not the empty one");
	m1->limit++;
	SH_CHECK(&sh, "restored on CPU 1");
	mm_port_set_cpu(0);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* The magazines a fast pin that names no CPU sees (MM_PIN_NONE): shared
 * by every heap, empty and full at once, never written. */
KTEST(spanheap_check, catches_a_written_magazine_for_no_cpu)
{
	KASSERT(fresh_heap());
	struct mmag *none = &sh.mags[MM_PIN_NONE][4];
	SH_CHECK(&sh, "clean");
	none->limit--;
	EXPECT_CHECK_FAILS("the magazine of class 4 for no CPU (MM_PIN_NONE) "
	                   "was written");
	none->limit++;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_check, catches_a_bad_object_in_a_magazine)
{
	KASSERT(fresh_heap());
	uintptr_t *p = spanheap_alloc(&sh, 64, 0);
	uintptr_t *r = spanheap_alloc(&sh, 80, 0);
	KASSERT(p && r);
	spanheap_free(&sh, p);
	uintptr_t *slot = sh.caches[0].slab + sh.mag_off[4];
	KASSERT(*slot == (uintptr_t)p);
	SH_CHECK(&sh, "clean");
	uintptr_t marker = p[1];
	p[1] = 0; /* written after its free */
	EXPECT_CHECK_FAILS("CPU 0's magazine of class 4: object 0 of 1, %#lx, "
	                   "is not a freed object of the class",
	                   (unsigned long)p);
	p[1] = marker;
	/* An object of another class, with a marker forged for it. */
	*slot = (uintptr_t)r;
	r[1] = sh.mag_cookie ^ (uintptr_t)r;
	EXPECT_CHECK_FAILS("object 0 of 1, %#lx, is not a freed object",
	                   (unsigned long)r);
	r[1] = 0;
	/* An object of the right span never handed out (past marked). */
	uintptr_t *never = (uintptr_t *)(span_at(p)->base + 100 * 64);
	*slot = (uintptr_t)never;
	never[1] = sh.mag_cookie ^ (uintptr_t)never;
	EXPECT_CHECK_FAILS("object 0 of 1, %#lx, is not a freed object",
	                   (unsigned long)never);
	never[1] = 0;
	*slot = (uintptr_t)p;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* A slot an overrun wrote (the slab is page-heap memory, beside object
 * pages): an address outside the arena, or not an object's start, is
 * named, not read. Until a review the check read the slot's second word
 * first: the first crashed the checker, the second read a misaligned
 * word. */
KTEST(spanheap_check, catches_a_foreign_address_in_a_magazine)
{
	KASSERT(fresh_heap());
	uintptr_t *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	spanheap_free(&sh, p);
	uintptr_t *slot = sh.caches[0].slab + sh.mag_off[4];
	KASSERT(*slot == (uintptr_t)p);
	SH_CHECK(&sh, "clean");
	const uintptr_t bad[] = {0x4141414141414141ull, 0x1000,
	                         (uintptr_t)p + 4};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		*slot = bad[i];
		EXPECT_CHECK_FAILS("object 0 of 1, %#lx, is not a freed object",
		                   (unsigned long)bad[i]);
	}
	*slot = (uintptr_t)p;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* Another CPU's magazine is checked too, through the port's hook that
 * holds that CPU (mm_port_each_other_cpu): a write after free into an
 * object CPU 1 freed is found by a check on CPU 0. Where the port cannot
 * reach other CPUs, only this CPU's are checked. */
KTEST(spanheap_check, catches_a_bad_object_in_another_cpus_magazine)
{
	KASSERT(fresh_heap());
	mm_port_set_cpu(1);
	uintptr_t *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	spanheap_free(&sh, p); /* into CPU 1's magazine */
	mm_port_set_cpu(0);
	KASSERT(*(sh.caches[1].slab + sh.mag_off[4]) == (uintptr_t)p);
	SH_CHECK(&sh, "clean");
	uintptr_t marker = p[1];
	p[1] = 0; /* written after its free */
	EXPECT_CHECK_FAILS("CPU 1's magazine of class 4: object 0 of 1, %#lx, "
	                   "is not a freed object of the class",
	                   (unsigned long)p);
	/* The check let go of CPU 1: it can be checked again, and fails the
	 * same way. */
	EXPECT_CHECK_FAILS("CPU 1's magazine of class 4: object 0 of 1");
	mm_port_refuse_each_other_cpu(true);
	SH_CHECK(&sh, "CPU 1 out of reach");
	mm_port_refuse_each_other_cpu(false);
	p[1] = marker;
	SH_CHECK(&sh, "restored");
	sh.caches[1].mag[4].limit++;
	EXPECT_CHECK_FAILS("CPU 1's magazine of class 4 is broken");
	sh.caches[1].mag[4].limit--;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

/* A span's marked count below an object in a magazine: the object was
 * handed out, so marked is wrong, and a second free of it would be taken
 * for a free of an object never handed out. The magazine's check is the
 * one place that compares the two. */
KTEST(spanheap_check, catches_a_magazine_object_past_marked)
{
	KASSERT(fresh_heap());
	uintptr_t *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = span_at(p);
	KASSERT(s->base == (uintptr_t)p);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "clean");
	uint32_t marked = atomic_load(&s->marked);
	atomic_store(&s->marked, 0);
	EXPECT_CHECK_FAILS("object 0 of 1, %#lx, is not a freed object",
	                   (unsigned long)p);
	atomic_store(&s->marked, marked);
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

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
	sh_heap_release(&heap, &sh);
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
	sh_heap_release(&heap, &sh);
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
	sh_heap_release(&heap, &sh);
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
	EXPECT_CHECK_FAILS("CPU 0's magazine table (mags[0]) is %p: neither "
	                   "its cache's magazines %p nor the shared empty "
	                   "ones %p",
	                   (void *)sh.caches[1].mag, (void *)sh.caches[0].mag,
	                   (void *)sh.mags[MM_PIN_NONE]);
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
	sh_heap_release(&heap, &sh);
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
	set_up_cpu(1);
	mm_port_set_cpu(0);
	struct mmag *m1 = &sh.caches[1].mag[4], saved = *m1;
	m1->top = m1->limit = &fake[1];
	EXPECT_CHECK_FAILS("CPU 1 has no magazine slab, but its magazine of "
	                   "class 4 is not the empty one");
	*m1 = saved;
	SH_CHECK(&sh, "restored");
	sh_heap_release(&heap, &sh);
}

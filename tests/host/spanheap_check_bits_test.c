/*
 * The span heap's bitmap double-free checks, which the free marker
 * normally pre-empts: a write after free erases the marker, so the second
 * free goes in and only the span's bits can tell (the local bit when the
 * owner spills, the pending bit when another CPU does, both in the fold).
 * The free's paths are mm/spanheap_free.c and the fold's
 * mm/spanheap_span.c; the checker's own tests are in
 * spanheap_check_test.c.
 *
 * A caught panic abandons the call where it was (the port undoes pins),
 * so each case runs on a heap of its own and gives it back after.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_check_test_util.h"

/* ---- The bitmap double-free checks -------------------------------------- */

/*
 * Runs stmt expecting a "double free" panic that names ptr, then leaves
 * the pin the panic abandoned.
 */
#define EXPECT_DOUBLE_FREE(stmt, what, ptr)                                   \
	do {                                                                  \
		char name_[32];                                               \
		snprintf(name_, sizeof(name_), "%p", (void *)(ptr));          \
		bool fired_ = MM_PORT_PANICS(stmt);                           \
		sh_unpin_after_panic();                                       \
		if (!fired_)                                                  \
			ktest_fail_at(__FILE__, __LINE__, "no panic for %s",  \
			              name_);                                 \
		else if (!strstr(mm_port_last_panic(), (what)) ||             \
		         !strstr(mm_port_last_panic(), name_))                \
			ktest_fail_at(__FILE__, __LINE__,                     \
			              "panic \"%s\" does not say \"%s\" and " \
			              "%s",                                   \
			              mm_port_last_panic(), (what), name_);   \
	} while (0)

/* A fresh heap, and in it p, object 0 of the span *s, and a second
 * object that keeps the span in use and cached on CPU 0. NULL if the heap
 * or the objects could not be had, or p is not object 0. */
static uintptr_t *object_zero(struct mspan **s)
{
	if (!fresh_heap())
		return NULL;
	uintptr_t *p = spanheap_alloc(&sh, 64, 0);
	void *keep = spanheap_alloc(&sh, 64, 0);
	if (!p || !keep)
		return NULL;
	*s = span_at(p);
	return (*s)->base == (uintptr_t)p ? p : NULL;
}

/* Both frees on the owner (CPU 0): the first reaches the local bit by a
 * drain that keeps the span cached (the sweep cycle's), and the second's
 * spill meets it. */
KTEST(spanheap_check_bits, double_free_meets_the_local_bit)
{
	struct mspan *s;
	uintptr_t *p = object_zero(&s);
	KASSERT(p != NULL);
	spanheap_free(&sh, p);
	spanheap_sweep_cycle(&sh); /* the magazine's p to its local bit */
	KASSERT(sh.caches[0].alloc[4] == s);
	/* p's bit; the others are what keep's refill put into the magazine
	 * (mag_fill), given back with p */
	KASSERT(atomic_load(&s->local_free[0]) & 1);
	p[1] = 0; /* a write after free erases the marker */
	spanheap_free(&sh, p);
	EXPECT_DOUBLE_FREE(spanheap_flush_cache(&sh), "spanheap: double free",
	                   p);
	sh_heap_release(&heap, &sh);
}

/* Both frees on CPU 1 (not the owner): the first reaches the pending bit,
 * and the second's spill meets it. */
KTEST(spanheap_check_bits, double_free_meets_the_pending_bit)
{
	struct mspan *s;
	uintptr_t *p = object_zero(&s);
	KASSERT(p != NULL);
	mm_port_set_cpu(1);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh); /* CPU 1's magazine: p's pending bit */
	KASSERT_EQ(atomic_load(&s->pending[0]), 1);
	p[1] = 0;
	spanheap_free(&sh, p);
	EXPECT_DOUBLE_FREE(spanheap_flush_cache(&sh), "spanheap: double free",
	                   p);
	mm_port_set_cpu(0);
	sh_heap_release(&heap, &sh);
}

/* Both frees on CPU 1 before any spill: the marker erased between them,
 * both copies sit in the magazine and go back in one spill, where the
 * second meets the first's pending bit. Today that is
 * double_free_meets_the_pending_bit's check (each object its own atomic
 * OR); the test is for a spill that batches the objects of one bitmap
 * word, where both copies would fall in one batch. */
KTEST(spanheap_check_bits, double_free_twice_in_one_spill)
{
	struct mspan *s;
	uintptr_t *p = object_zero(&s);
	KASSERT(p != NULL);
	mm_port_set_cpu(1);
	spanheap_free(&sh, p);
	p[1] = 0;
	spanheap_free(&sh, p);
	EXPECT_DOUBLE_FREE(spanheap_flush_cache(&sh), "spanheap: double free",
	                   p);
	KEXPECT_EQ(atomic_load(&s->pending[0]), 1); /* the first copy's */
	mm_port_set_cpu(0);
	sh_heap_release(&heap, &sh);
}

/* Objects freed on another CPU in the order they were allocated go back
 * to their span with one flush: every pending bit set, none lost, and the
 * heap checks out. 100 objects: more than one of the spill's batches of
 * lookups (SPILL_BATCH), and a bitmap word and a part. */
KTEST(spanheap_check_bits, a_run_sets_every_bit_of_its_word)
{
	KASSERT(fresh_heap());
	enum { N = 100 };
	uintptr_t *o[N];
	for (unsigned i = 0; i < N; i++)
		KASSERT((o[i] = spanheap_alloc(&sh, 64, 0)) != NULL);
	struct mspan *s = span_at(o[0]);
	KASSERT(s->base == (uintptr_t)o[0]);
	mm_port_set_cpu(1);
	for (unsigned i = 0; i < N; i++)
		spanheap_free(&sh, o[i]);
	spanheap_flush_cache(&sh);
	KEXPECT_EQ(atomic_load(&s->pending[0]), ~(uint64_t)0);
	KEXPECT_EQ(atomic_load(&s->pending[1]), ((uint64_t)1 << (N - 64)) - 1);
	mm_port_set_cpu(0);
	spanheap_check(&sh);
	sh_heap_release(&heap, &sh);
}

/* The owner's local bit first, then another CPU's pending bit, which the
 * pending path cannot compare with the local one: the fold that meets
 * both (the owner's flush) must catch it. */
KTEST(spanheap_check_bits, fold_meets_both_bits)
{
	struct mspan *s;
	uintptr_t *p = object_zero(&s);
	KASSERT(p != NULL);
	spanheap_free(&sh, p);
	spanheap_sweep_cycle(&sh); /* p's local bit; still cached */
	/* p's bit; the others are what keep's refill put into the magazine
	 * (mag_fill), given back with p */
	KASSERT(atomic_load(&s->local_free[0]) & 1);
	p[1] = 0;
	mm_port_set_cpu(1);
	spanheap_free(&sh, p);
	bool fired = MM_PORT_PANICS(spanheap_flush_cache(&sh));
	sh_unpin_after_panic();
	mm_port_set_cpu(0);
	KASSERT(!fired); /* the pending path sees no local bit */
	KASSERT_EQ(atomic_load(&s->pending[0]), 1);
	EXPECT_DOUBLE_FREE(spanheap_flush_cache(&sh),
	                   "double free (freed on its own CPU and from "
	                   "another)",
	                   p);
	sh_heap_release(&heap, &sh);
}

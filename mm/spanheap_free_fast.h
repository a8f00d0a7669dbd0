/*
 * mm/spanheap_free_fast.h: the free's inline checks and push, shared by
 * spanheap_free.c (spanheap_free, spanheap_free_class, spanheap_free_held)
 * and spanheap_bulk.c (spanheap_free_bulk), so that a batch's pointers get
 * exactly the single free's checks. Not for the heap's users; contexts as
 * spanheap_free's.
 */
#ifndef MM_SPANHEAP_FREE_FAST_H
#define MM_SPANHEAP_FREE_FAST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spanheap_internal.h"

/* For byte offset off of span s: the object index if off starts an
 * object, and at least SC_MAX_NELEMS if not (for a small span; 0 for a
 * large one, whose dinv is 0, and for the table's zeroed marks). The
 * inverse of the size's odd part, then a rotation right by its trailing
 * zero bits (Granlund and Montgomery's divisibility test):
 * tools/gen-sizeclasses.c checks it for every offset of every span. So
 * one comparison with s->marked tells "the start of a marked object". */
static inline uint32_t obj_start_index(const struct mspan *s, uint32_t off)
{
	uint32_t x = off * s->dinv;
	unsigned r = s->dshift;
	return x >> r | x << ((32 - r) & 31);
}

/* Panics if object a of s (checked: handed out) carries its free marker:
 * a double free, or a free of an object no one allocated since. */
static inline __attribute__((always_inline)) void
free_check_marker(struct mspan *s, uintptr_t a, uintptr_t cookie)
{
	if (__builtin_expect(obj_words(a)[1] == (cookie ^ a), 0))
		spanheap_free_refused(s, obj_index(s, a - s->base), a);
}

/* Puts object a of s (checked) into CPU cpu's magazine of its class,
 * which the caller holds: false, having stored nothing, if it is full
 * (or cpu has no slab yet, whose magazines are full and empty at once). */
static inline __attribute__((always_inline)) bool
mag_try_push(struct spanheap *sh, unsigned long cpu, struct mspan *s,
             uintptr_t a, uintptr_t cookie)
{
	struct mmag *m = (struct mmag *)((char *)sh->mags[cpu] + s->mag_offset);
	uintptr_t *t = mag_top(m);
	if (__builtin_expect(t >= m->limit, 0))
		return false;
	mag_push(m, t, a, cookie);
	return true;
}

/* What fast_span_of reads of the heap: the span table, its mapped pages
 * (acquire) and the arena's base. A batch (spanheap_bulk.c) reads them
 * once per run: the table never moves (spanheap_init), and an object
 * handed out before the run lies in a page mapped before it. */
struct span_table {
	void *_Atomic *map;
	size_t pages;
	uintptr_t base;
};

static inline __attribute__((always_inline)) struct span_table
span_table_of(struct spanheap *sh)
{
	return (struct span_table){
	        sh->spanmap,
	        atomic_load_explicit(&sh->spanmap_pages, memory_order_acquire),
	        sh->arena_base};
}

/* The fast path's span of p: a small span in use, p the start of one of
 * its objects handed out (below marked); NULL for anything else (NULL, a
 * large object, a pointer outside the heap or inside an object), which
 * free_slow tells apart. No test of the entry or the state: a large span's
 * dinv and marked are 0, a span's marked is 0 before it dies, and an
 * entry that is no span is a zeroed block (mheap.h), so each fails the
 * checks. Any context. */
static inline __attribute__((always_inline)) struct mspan *
span_in_table(struct span_table tb, uintptr_t a)
{
	/* An address below the base wraps to a huge index. */
	size_t i = (a - tb.base) >> MM_PAGE_SHIFT;
	if (__builtin_expect(i < tb.pages, 1)) {
		struct mspan *s =
		        atomic_load_explicit(&tb.map[i], memory_order_acquire);
		uint32_t off = (uint32_t)(a - s->base);
		/* Beyond marked: no marker to test, never handed out. */
		if (__builtin_expect(
		            obj_start_index(s, off) <
		                    atomic_load_explicit(&s->marked,
		                                         memory_order_acquire),
		            1))
			return s;
	}
	return NULL;
}

static inline __attribute__((always_inline)) struct mspan *
fast_span_of(struct spanheap *sh, void *p)
{
	return span_in_table(span_table_of(sh), (uintptr_t)p);
}

#endif

/*
 * mm/mheap_spanmap.h: the page heap's span table, one entry per page of
 * the arena naming what the page holds (a span of the span heap, a run
 * from mheap_alloc_pages, or nothing). Lock-free to read from any
 * context; the span heap's free finds a pointer's span through it in
 * O(1). Implemented in mheap_grow.c, which grows it with the arena.
 * Included by mheap.h; not included on its own.
 */
#ifndef MM_MHEAP_SPANMAP_H
#define MM_MHEAP_SPANMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "palloc.h"

struct mheap;

/*
 * The span table. mheap_alloc_pages marks the pages it hands out
 * MHEAP_SPAN_PAGES (a run that belongs to a page-heap user); the span heap
 * then sets its own entries on the pages of its spans. Entries are never
 * cleared on free: a stale entry names what the page was.
 *
 * The table holds no NULL: a page with no entry holds MHEAP_SPAN_NONE,
 * and all three marks are the addresses of zeroed 64-byte blocks, not
 * small integers. So a reader of a raw entry may load a span's first
 * line from any entry without testing it first (a span whose fields are
 * all 0); the span heap's free does, and its checks then fail on the
 * zeros. mheap_span_lookup gives NULL for MHEAP_SPAN_NONE.
 */
extern const struct mheap_span_mark {
	_Alignas(64) unsigned char zero[64];
} mheap_span_marks[3];
/* No span on the page. */
#define MHEAP_SPAN_NONE ((void *)&mheap_span_marks[0])
/* A run of pages from mheap_alloc_pages. */
#define MHEAP_SPAN_PAGES ((void *)&mheap_span_marks[1])
/* A freed large span. */
#define MHEAP_SPAN_FREED_LARGE ((void *)&mheap_span_marks[2])

/* Whether entry e (from mheap_span_lookup) is a span: not NULL and none
 * of the marks. */
static inline bool mheap_span_is_span(const void *e)
{
	return e && e != MHEAP_SPAN_NONE && e != MHEAP_SPAN_PAGES &&
	       e != MHEAP_SPAN_FREED_LARGE;
}

/* The entry for the page holding addr, or NULL if addr is outside the
 * grown arena or its page was never handed out. Lock-free, O(1); any
 * context. */
void *mheap_span_lookup(struct mheap *h, uintptr_t addr);

/*
 * The span table (spanmap) starts this many entries (half a page) into
 * its reservation, which is one page longer than the entries. Entry i sits at
 * page offset 8 * i (mod 4 KiB) otherwise, so the first pages of every chunk,
 * where the heap allocates first, would have their entries at the very page
 * offsets of their first objects: a free that loads the entry while the
 * object's first words are still being stored (a malloc/free loop on one
 * object) waits on a false 4 KiB alias. Skewed, those entries sit half a page
 * away. Measured on the 16- to 8192-byte pairs with magazine reuse,
 * together with struct spanheap's layout (docs/DESIGN.md, "4 KiB
 * aliases"): 12-16 ns without, 6.3-7.5 ns with.
 */
#define MHEAP_SPANMAP_SKEW ((size_t)PALLOC_CHUNK_PAGES / 2)

/* Sets the entries of [base, base + npages pages) to v (NULL: no entry,
 * MHEAP_SPAN_NONE). The caller owns the pages (allocated). Any context. */
void mheap_span_set(struct mheap *h, uintptr_t base, size_t npages, void *v);

#endif

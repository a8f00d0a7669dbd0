/*
 * What an address is to the span heap (mm/spanheap_where.c): the object
 * it points into, where in it, and the object's state (allocated, free,
 * never handed out, past the span's last object), a large object, a
 * freed one's pages, a page-heap run, a free page, or no address of the
 * heap at all; and the report line that says so, with the red zone in
 * poison mode. Every class's objects are described at their first byte,
 * their middle and their last, allocated and then freed.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* spanheap_where_log(p)'s lines, into buf. */
static void where_log(const void *p, char *buf, size_t size)
{
	sh_where_log(&sh, p, buf, size);
}

/* The first class whose spans have a tail past their last object. */
static unsigned class_with_tail(void)
{
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		const struct sizeclass_info *ci = &sizeclass_info[c];
		if ((size_t)ci->nelems * ci->size < ci->npages * MM_PAGE_SIZE)
			return c;
	}
	return 0;
}

KTEST(spanheap_where, a_small_objects_place_and_state)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	unsigned cls = sizeclass_of(40);
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	char *p = spanheap_alloc(&sh, 40, 0);
	KASSERT(p);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 8, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_SMALL);
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_ALLOCATED);
	KEXPECT_EQ(w.sizeclass, cls);
	KEXPECT_EQ(w.elemsize, ci->size);
	KEXPECT_EQ(w.span_pages, ci->npages);
	KEXPECT_EQ(w.start, (uintptr_t)p);
	KEXPECT_EQ(w.offset, 8);
	KEXPECT_EQ(w.index, ((uintptr_t)p - w.span_base) / ci->size);
	KEXPECT_EQ(w.asked, UINT32_MAX); /* not poison mode */
	KEXPECT_EQ(w.cpu, 0);            /* CPU 0 caches the span */

	/* The span's last object: never handed out (a refill hands out far
	 * fewer than a span's objects). */
	uintptr_t last = w.span_base + (uintptr_t)(ci->nelems - 1) * ci->size;
	KASSERT(spanheap_where(&sh, (void *)(last + 1), &w));
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_UNUSED);
	KEXPECT_EQ(w.index, ci->nelems - 1u);
	KEXPECT_EQ(w.start, last);
	char log[1024];
	where_log((void *)(last + 1), log, sizeof(log));
	KEXPECT(strstr(log, ": 1 bytes into object ") != NULL);
	KEXPECT(strstr(log, " (never handed out) of span ") != NULL);

	spanheap_free(&sh, p);
	KASSERT(spanheap_where(&sh, p + 39, &w));
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_FREE);
	KEXPECT_EQ(w.start, (uintptr_t)p);
	KEXPECT_EQ(w.offset, 39);
	/* Handed out again (the magazine's newest first): allocated. */
	KEXPECT_EQ(spanheap_alloc(&sh, 40, 0), p);
	KASSERT(spanheap_where(&sh, p, &w));
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_ALLOCATED);
	spanheap_free(&sh, p);

	/* No CPU caches the span once flushed (q keeps it in use). */
	char *q = spanheap_alloc(&sh, 40, 0);
	KASSERT(q);
	spanheap_flush_cache(&sh);
	KASSERT(spanheap_where(&sh, q, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_SMALL);
	KEXPECT_EQ(w.cpu, -1);
	/* Its last object gone, the span goes back: free pages. */
	spanheap_free(&sh, q);
	spanheap_release_all(&sh);
	KASSERT(spanheap_where(&sh, q, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREE_PAGES);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_where, the_tail_of_a_span_is_no_object)
{
	unsigned cls = class_with_tail();
	KASSERT(cls != 0);
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, ci->size, 0);
	KASSERT(p);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p, &w));
	uintptr_t tail = w.span_base + (uintptr_t)ci->nelems * ci->size;
	KASSERT(spanheap_where(&sh, (void *)(tail + 3), &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_SMALL);
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_TAIL);
	KEXPECT_EQ(w.index, ci->nelems);
	KEXPECT_EQ(w.start, tail);
	KEXPECT_EQ(w.offset, 3);
	char log[1024], want[256];
	where_log((void *)(tail + 3), log, sizeof(log));
	snprintf(want, sizeof(want),
	         "spanheap: %#lx: 3 bytes past the last of the %u objects of "
	         "span [%#lx, +%u pages), size class %u (%u-byte objects), in "
	         "its tail, the span cached by CPU 0",
	         (unsigned long)(tail + 3), (unsigned)ci->nelems,
	         (unsigned long)w.span_base, (unsigned)ci->npages, cls,
	         (unsigned)ci->size);
	KEXPECT(strstr(log, want) != NULL);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* Every class: an object at its first byte, its middle and its last,
 * allocated, then free; a large object, then its freed pages. */
KTEST(spanheap_where, every_class_at_every_part_of_an_object)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static char *p[SC_NCLASSES];
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		KASSERT(p[c] = spanheap_alloc(&sh, sizeclass_info[c].size, 0));
	for (int freed = 0; freed < 2; freed++) {
		for (unsigned c = 1; c < SC_NCLASSES; c++) {
			size_t size = sizeclass_info[c].size;
			size_t offs[3] = {0, size / 2, size - 1};
			for (int k = 0; k < 3; k++) {
				struct spanheap_where w;
				KASSERT(spanheap_where(&sh, p[c] + offs[k],
				                       &w));
				KEXPECT_EQ(w.kind, SPANHEAP_WHERE_SMALL);
				KEXPECT_EQ(w.sizeclass, c);
				KEXPECT_EQ(w.start, (uintptr_t)p[c]);
				KEXPECT_EQ(w.offset, offs[k]);
				KEXPECT_EQ(w.state,
				           freed ? SPANHEAP_OBJ_FREE
				                 : SPANHEAP_OBJ_ALLOCATED);
			}
		}
		for (unsigned c = 1; c < SC_NCLASSES && !freed; c++)
			spanheap_free(&sh, p[c]);
	}
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_where, large_objects_and_their_freed_pages)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, 100000, 0); /* 25 pages */
	KASSERT(p);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 70000, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_LARGE);
	KEXPECT_EQ(w.start, (uintptr_t)p);
	KEXPECT_EQ(w.span_base, (uintptr_t)p);
	KEXPECT_EQ(w.span_pages, 25u);
	KEXPECT_EQ(w.elemsize, 25 * MM_PAGE_SIZE);
	KEXPECT_EQ(w.offset, 70000);
	KEXPECT_EQ(w.sizeclass, 0u);
	char log[1024], want[256];
	where_log(p + 70000, log, sizeof(log));
	snprintf(want, sizeof(want),
	         "spanheap: %#lx: 70000 bytes into a large object (allocated) "
	         "[%#lx, +25 pages)",
	         (unsigned long)(p + 70000), (unsigned long)p);
	KEXPECT(strstr(log, want) != NULL);

	spanheap_free(&sh, p);
	KASSERT(spanheap_where(&sh, p + 70000, &w));
	/* What the line says of it: spanheap_freed_test.c. */
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREED_LARGE);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_where, page_runs_free_pages_and_foreign_addresses)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *run = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(run);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, run + MM_PAGE_SIZE + 5, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_PAGES);
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_NONE);
	mheap_free_pages(&heap, run, 2);

	/* A small span's pages, once the span went back: free pages. */
	char *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	spanheap_free(&sh, p);
	spanheap_release_all(&sh);
	KASSERT(spanheap_where(&sh, p, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREE_PAGES);
	char log[1024];
	where_log(p, log, sizeof(log));
	KEXPECT(strstr(log, "on a free page of the heap arena") != NULL);
	/* The arena's last page, never grown: no object was ever there, so
	 * no use after free (it said so until a review). */
	uintptr_t end = sh.arena_base + sh.arena_bytes - 1;
	KASSERT(spanheap_where(&sh, (void *)end, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREE_PAGES);
	where_log((void *)end, log, sizeof(log));
	KEXPECT(strstr(log, "past what it has grown into") != NULL);

	int local;
	KEXPECT(!spanheap_where(&sh, &local, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_OUTSIDE);
	KEXPECT(!spanheap_where(&sh, (void *)(sh.arena_base - 1), &w));
	KEXPECT(!spanheap_where(&sh, (void *)(sh.arena_base + sh.arena_bytes),
	                        &w));
	where_log(&local, log, sizeof(log));
	KEXPECT(strstr(log, "outside the heap arena") != NULL);
	sh_heap_release(&heap, &sh);

	/* A heap never set up (a zeroed struct): outside, nothing read. */
	static struct spanheap none;
	KEXPECT(!spanheap_where(&none, (void *)0x1000, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_OUTSIDE);
}

KTEST(spanheap_where, poison_mode_names_the_red_zone_and_the_callers)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	char *p = spanheap_alloc(&sh, 20, 0);
	KASSERT(p);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 23, &w));
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_ALLOCATED);
	KEXPECT_EQ(w.asked, 20u);
	KEXPECT_EQ(w.offset, 23);
	char log[4096], want[256];
	where_log(p + 23, log, sizeof(log));
	snprintf(want, sizeof(want),
	         "spanheap: %#lx: 23 bytes into object %u (allocated) of span "
	         "[%#lx, +%u pages), size class %u (%zu-byte objects), 20 "
	         "bytes asked: 3 bytes past their end, in the red zone, the "
	         "span cached by CPU 0",
	         (unsigned long)(p + 23), w.index, (unsigned long)w.span_base,
	         w.span_pages, w.sizeclass, w.elemsize);
	KEXPECT(strstr(log, want) != NULL);
	/* Then who allocated it (its records: the port walks stacks). */
	snprintf(want, sizeof(want), "spanheap: object %#lx: last allocated",
	         (unsigned long)p);
	KEXPECT(strstr(log, want) != NULL);

	/* Inside the bytes asked: no red zone; freed: nothing asked. */
	KASSERT(spanheap_where(&sh, p + 19, &w));
	where_log(p + 19, log, sizeof(log));
	KEXPECT(strstr(log, "20 bytes asked, the span") != NULL);
	spanheap_free(&sh, p);
	KASSERT(spanheap_where(&sh, p + 23, &w));
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_FREE);
	KEXPECT_EQ(w.asked, UINT32_MAX);
	/* Its marker written after the free (a stale store to bytes 8-15):
	 * free still, by the side table, as the free tells it. Until a
	 * review it read "allocated", for the use after free this mode is
	 * there to find. */
	uintptr_t *words = (uintptr_t *)p, marker = words[1];
	words[1] = 0;
	KASSERT(spanheap_where(&sh, p + 23, &w));
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_FREE);
	KEXPECT_EQ(w.asked, UINT32_MAX);
	words[1] = marker;
	sh_heap_release(&heap, &sh);
}

/* A freed object's second word, its free marker (cookie ^ its address),
 * is never a canonical address (spanheap_init's choice of the cookie's
 * top bits): code that follows it faults at once. Ten heaps, ten cookies;
 * each marker also names its object back. */
KTEST(spanheap_where, a_free_marker_is_no_address)
{
	for (int round = 0; round < 10; round++) {
		KASSERT(sh_heap_fresh(&heap, &sh));
		uintptr_t *p = spanheap_alloc(&sh, 64, 0);
		KASSERT(p);
		spanheap_free(&sh, p);
		uintptr_t m = p[1];
		int64_t top = (int64_t)m >> 47;
		KEXPECT(top != 0 && top != -1);
		KEXPECT_EQ(m ^ sh.mag_cookie, (uintptr_t)p);
		sh_heap_release(&heap, &sh);
	}
}

/*
 * The hardened copy check (mm/spanheap_usercopy.c): a copy inside one
 * allocated object passes, at every class's exact bounds and a large
 * object's; one a byte past the end, one that starts past it, one into
 * poison mode's red zone, one at a freed object, an object never handed
 * out, a span's tail, free pages, metadata, a guard page or from outside
 * the heap into it is refused with a line naming the object, its span,
 * its class and the overrun; memory that is not the heap's is not ours.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_usercopy.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static char log_buf[2048];

/* spanheap_check_copy's verdict, its lines into log_buf. */
static enum spanheap_copy_verdict check(const void *p, size_t n,
                                        enum spanheap_copy_dir dir)
{
	mm_port_set_quiet(true);
	log_buf[0] = '\0';
	mm_port_log_capture(log_buf, sizeof(log_buf));
	enum spanheap_copy_verdict v = spanheap_check_copy(&sh, p, n, dir);
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
	return v;
}

static bool logged(const char *s)
{
	return strstr(log_buf, s) != NULL;
}

/* Both ways: [p, p + n) inside its object, and nothing logged. */
static bool inside(const void *p, size_t n)
{
	return check(p, n, SPANHEAP_COPY_TO_USER) == SPANHEAP_COPY_INSIDE &&
	       log_buf[0] == '\0' &&
	       check(p, n, SPANHEAP_COPY_FROM_USER) == SPANHEAP_COPY_INSIDE &&
	       log_buf[0] == '\0';
}

/* Both ways refused, the from-user line (the last) kept in log_buf. */
static bool refused(const void *p, size_t n)
{
	if (check(p, n, SPANHEAP_COPY_TO_USER) != SPANHEAP_COPY_BAD ||
	    !logged("exposure (copy to user)"))
		return false;
	return check(p, n, SPANHEAP_COPY_FROM_USER) == SPANHEAP_COPY_BAD &&
	       logged("overwrite (copy from user)");
}

KTEST(spanheap_usercopy, every_class_at_its_exact_bounds)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static char *p[SC_NCLASSES];
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		KASSERT(p[c] = spanheap_alloc(&sh, sizeclass_info[c].size, 0));
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		size_t size = sizeclass_info[c].size;
		KEXPECT(inside(p[c], size));
		KEXPECT(inside(p[c], 1));
		KEXPECT(inside(p[c] + size - 1, 1));
		KEXPECT(inside(p[c] + size / 2, size - size / 2));
		KEXPECT(refused(p[c], size + 1));
		char want[160];
		snprintf(want, sizeof(want),
		         "size class %u (%zu-byte objects), it runs 1 bytes "
		         "past the object's %zu bytes",
		         c, size, size);
		KEXPECT(logged(want));
		KEXPECT(refused(p[c] + size - 1, 2));
		KEXPECT(logged("it runs 1 bytes past"));
		KEXPECT(refused(p[c] + 1, size));
		KEXPECT(logged("1 bytes into object"));
	}
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		spanheap_free(&sh, p[c]);
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		p[c] = NULL;
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_usercopy, a_large_object_is_bounded_by_its_pages)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t bytes = 10 * MM_PAGE_SIZE + 100; /* over 32 KiB: 11 pages */
	char *p = spanheap_alloc(&sh, bytes, 0);
	KASSERT(p);
	size_t pages = 11 * MM_PAGE_SIZE;
	KEXPECT_EQ(spanheap_usable_size(&sh, p), pages);
	KEXPECT(inside(p, pages));
	KEXPECT(inside(p + pages - 1, 1));
	KEXPECT(inside(p + 3 * MM_PAGE_SIZE + 5, 2 * MM_PAGE_SIZE));
	KEXPECT(refused(p, pages + 1));
	char want[160];
	snprintf(want, sizeof(want),
	         "0 bytes into a large object [%#lx, +11 pages), it runs 1 "
	         "bytes past the object's %zu bytes",
	         (unsigned long)p, pages);
	KEXPECT(logged(want));
	KEXPECT(refused(p + pages - 8, 4096));
	KEXPECT(logged("it runs 4088 bytes past"));
	spanheap_free(&sh, p);
	/* Its pages given back: a use after free. */
	KEXPECT(refused(p, 16));
	KEXPECT(logged("freed large object"));
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_usercopy, poison_mode_stops_at_the_bytes_asked)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	static char *p[SC_NCLASSES];
	for (unsigned c = 1; c < SC_NCLASSES - 1; c++)
		KASSERT(p[c] = spanheap_alloc(&sh, sh_poison_size(c) - 7, 0));
	for (unsigned c = 1; c < SC_NCLASSES - 1; c++) {
		size_t asked = sh_poison_size(c) - 7;
		KEXPECT(inside(p[c], asked));
		KEXPECT(inside(p[c] + asked - 1, 1));
		/* The slack is red zone now: one byte into it is refused. */
		KEXPECT(refused(p[c], asked + 1));
		KEXPECT(logged("-byte objects, the bytes asked), it runs 1 "
		               "bytes past the object's"));
		KEXPECT(refused(p[c] + asked, 1));
		/* Starting 2 bytes into the red zone, 3 bytes: 5 past. */
		KEXPECT(refused(p[c] + asked + 2, 3));
		KEXPECT(logged("it runs 5 bytes past the object's"));
		char want[48];
		snprintf(want, sizeof(want), "past the object's %zu bytes",
		         asked);
		KEXPECT(logged(want));
	}
	for (unsigned c = 1; c < SC_NCLASSES - 1; c++) {
		spanheap_free(&sh, p[c]);
		/* Freed: poison mode tells it by its side table. */
		KEXPECT(refused(p[c], 1));
		KEXPECT(logged("which is free"));
		p[c] = NULL;
	}
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_usercopy, free_unused_and_tail_objects_are_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, 48, 0);
	char *q = spanheap_alloc(&sh, 48, 0);
	KASSERT(p && q);
	spanheap_free(&sh, p);
	KEXPECT(refused(p, 1));
	KEXPECT(logged("48-byte objects), which is free"));
	KEXPECT(refused(p + 47, 1));
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, q, &w));
	const struct sizeclass_info *ci = &sizeclass_info[w.sizeclass];
	uintptr_t last = w.span_base + (uintptr_t)(ci->nelems - 1) * ci->size;
	KEXPECT(refused((void *)last, 8));
	KEXPECT(logged("which is never handed out"));
	/* A class whose spans have a tail: a copy there is no object's. */
	char *t = NULL;
	for (unsigned c = 1; c < SC_NCLASSES && !t; c++) {
		const struct sizeclass_info *i = &sizeclass_info[c];
		if ((size_t)i->nelems * i->size < i->npages * MM_PAGE_SIZE)
			t = spanheap_alloc(&sh, i->size, 0);
	}
	KASSERT(t);
	KASSERT(spanheap_where(&sh, t, &w));
	ci = &sizeclass_info[w.sizeclass];
	KEXPECT(refused(
	        (void *)(w.span_base + (uintptr_t)ci->nelems * ci->size), 1));
	KEXPECT(logged("in its tail"));
	char want[64];
	snprintf(want, sizeof(want), "past the last of the %u objects",
	         (unsigned)ci->nelems);
	KEXPECT(logged(want));
	spanheap_free(&sh, q);
	spanheap_free(&sh, t);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_usercopy, what_is_not_the_heaps_is_not_ours)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char stack[64];
	static char data[64];
	memset(stack, 1, sizeof(stack));
	KEXPECT_EQ(check(stack, sizeof(stack), SPANHEAP_COPY_TO_USER),
	           SPANHEAP_COPY_NOT_OURS);
	KEXPECT_EQ(check(data, sizeof(data), SPANHEAP_COPY_FROM_USER),
	           SPANHEAP_COPY_NOT_OURS);
	KEXPECT_EQ(log_buf[0], '\0');
	char *p = spanheap_alloc(&sh, 100, 0);
	KASSERT(p);
	KEXPECT_EQ(check(p + 500, 0, SPANHEAP_COPY_TO_USER),
	           SPANHEAP_COPY_NOT_OURS); /* no byte moves */
	/* From below the arena into it; one that wraps. */
	KEXPECT(refused((void *)(sh.arena_base - 16), 32));
	KEXPECT(logged("starts outside the heap and runs into it"));
	KEXPECT(refused((void *)(UINTPTR_MAX - 15), 32));
	KEXPECT(logged("wraps past the end of the address space"));
	/* Up to the last byte there is, no further: no wrap. */
	KEXPECT_EQ(check((void *)(UINTPTR_MAX - 15), 16, SPANHEAP_COPY_TO_USER),
	           SPANHEAP_COPY_NOT_OURS);
	/* The heap's metadata (the span struct) and free pages. */
	void *span = mheap_span_lookup(sh.heap, (uintptr_t)p);
	KEXPECT(refused(span, 8));
	KEXPECT(logged("the heap's own metadata"));
	uintptr_t top = sh.arena_base + sh.arena_bytes - MM_PAGE_SIZE;
	KEXPECT(refused((void *)top, 8));
	KEXPECT(logged("free pages of the heap arena"));
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_usercopy, a_guarded_object_is_bounded_by_its_bytes)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.guard_slots = 4;
	sc.guard_interval = 1;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	char *p = spanheap_guard_alloc(&sh, 40, 16, 0, sizeclass_of(40));
	KASSERT(p);
	KEXPECT(inside(p, 40));
	KEXPECT(refused(p, 41));
	KEXPECT(logged("guarded object"));
	KEXPECT(logged("it runs 1 bytes past the object's 40 bytes"));
	uintptr_t guard_page = ((uintptr_t)p | (MM_PAGE_SIZE - 1)) + 1;
	KEXPECT(refused((void *)guard_page, 1));
	KEXPECT(logged("a guard page of the guarded pool"));
	KEXPECT(refused(p - 1, 2));
	KEXPECT(logged("outside its object"));
	KEXPECT(spanheap_guard_free(&sh, p, SPANHEAP_GUARD_UNOWNED));
	spanheap_guard_drain(&sh);
	KEXPECT(refused(p, 1));
	KEXPECT(logged("which is free"));
	spanheap_guard_drain(&sh);
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	sh_heap_release(&heap, &sh);
}

/* A page-heap run is not an object, but a copy that starts on one must
 * stay on it: one that runs over a live span into the run after it, or
 * from one run into the next (its first page a run start), is refused;
 * inside a run, to its last byte, it is the caller's to judge. */
KTEST(spanheap_usercopy, a_copy_from_a_run_stays_in_its_run)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *run = mheap_alloc_pages(sh.heap, 2, 0);
	char *big = spanheap_alloc(&sh, 3 * MM_PAGE_SIZE, 0);
	char *after = mheap_alloc_pages(sh.heap, 2, 0);
	KASSERT(run && big && after);
	KASSERT_EQ((uintptr_t)big, (uintptr_t)run + 2 * MM_PAGE_SIZE);
	size_t run_bytes = 2 * MM_PAGE_SIZE;
	KEXPECT_EQ(check(run, run_bytes, SPANHEAP_COPY_TO_USER),
	           SPANHEAP_COPY_NOT_OURS);
	KEXPECT_EQ(check(run + 1, run_bytes - 1, SPANHEAP_COPY_FROM_USER),
	           SPANHEAP_COPY_NOT_OURS);
	KEXPECT(refused(run + 1, run_bytes));
	KEXPECT(logged("starts on a page-heap run and runs off it"));
	/* First and last byte on runs, a live span between them. */
	KEXPECT(refused(run, (size_t)(after + MM_PAGE_SIZE - run)));
	/* Two runs side by side: the second's first page ends the first. */
	char *c = mheap_alloc_pages(sh.heap, 1, 0);
	char *d = mheap_alloc_pages(sh.heap, 2, 0);
	KASSERT(c && d);
	KASSERT_EQ((uintptr_t)d, (uintptr_t)c + MM_PAGE_SIZE);
	KEXPECT_EQ(check(c, MM_PAGE_SIZE, SPANHEAP_COPY_TO_USER),
	           SPANHEAP_COPY_NOT_OURS);
	KEXPECT(refused(c + MM_PAGE_SIZE - 1, 2));
	KEXPECT_EQ(check(d + 8, 2 * MM_PAGE_SIZE - 8, SPANHEAP_COPY_TO_USER),
	           SPANHEAP_COPY_NOT_OURS);
	/* Off the last run into pages never allocated (no run starts). */
	KEXPECT(refused(d + 2 * MM_PAGE_SIZE - 1, 2));
	/* The page heap's own answer: a span's page is no run's. */
	KEXPECT(mheap_run_holds(sh.heap, c, MM_PAGE_SIZE));
	KEXPECT(!mheap_run_holds(sh.heap, big, 1));
	KEXPECT(!mheap_run_holds(sh.heap, run, 0));
	mheap_free_pages(sh.heap, run, 2);
	mheap_free_pages(sh.heap, after, 2);
	mheap_free_pages(sh.heap, c, 1);
	mheap_free_pages(sh.heap, d, 2);
	spanheap_free(&sh, big);
	sh_heap_release(&heap, &sh);
}

/* [base, base + bytes)'s edges from outside: a copy that ends at base or
 * starts at its end is not ours, one a byte into it is refused. Only
 * where the bytes beside it are no reservation's; the count of edges
 * seen. */
static unsigned edges(uintptr_t base, size_t bytes)
{
	struct spanheap_where w;
	unsigned seen = 0;
	if (!spanheap_where(&sh, (void *)(base - 16), &w) &&
	    w.kind == SPANHEAP_WHERE_OUTSIDE) {
		KEXPECT_EQ(
		        check((void *)(base - 16), 16, SPANHEAP_COPY_TO_USER),
		        SPANHEAP_COPY_NOT_OURS);
		KEXPECT(refused((void *)(base - 16), 17));
		KEXPECT(logged("starts outside the heap and runs into it"));
		seen++;
	}
	if (!spanheap_where(&sh, (void *)(base + bytes), &w) &&
	    w.kind == SPANHEAP_WHERE_OUTSIDE) {
		KEXPECT_EQ(check((void *)(base + bytes), 16,
		                 SPANHEAP_COPY_FROM_USER),
		           SPANHEAP_COPY_NOT_OURS);
		seen++;
	}
	return seen;
}

/* A copy from outside the heap into any of its three reservations (the
 * arena, the guarded pool, the metadata) is refused, exactly at each
 * edge. */
KTEST(spanheap_usercopy, each_reservation_is_guarded_at_its_edges)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.guard_slots = 4;
	sc.guard_interval = 1;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	KASSERT(sh.guard.bytes != 0 && sh.meta.arena_pages != 0);
	unsigned seen = edges(sh.arena_base, sh.arena_bytes);
	KEXPECT(seen >= 1);
	seen = edges(sh.guard.base, sh.guard.bytes);
	KEXPECT(seen >= 1);
	seen = edges(sh.meta.arena_base,
	             (size_t)sh.meta.arena_pages * MM_PAGE_SIZE);
	KEXPECT(seen >= 1);
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	sh_heap_release(&heap, &sh);
}

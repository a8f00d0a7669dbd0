/*
 * Poison mode's red zones (mm/spanheap_redzone.c): the bytes of a small
 * object's class past those asked for hold SPANHEAP_REDZONE_BYTE while it
 * is allocated, and a write there panics at its free (or at a realloc
 * that keeps it), naming the object, its span, its class, the bytes asked
 * and the first byte changed. Every size class is tried, at the first
 * byte past the end and at the last byte of the slack. And nothing a
 * program may do trips it: writing all of the usable size (the bytes
 * asked), calloc, aligned allocations, realloc that grows or shrinks in
 * place or moves, with MM_ZERO's promise kept. A span whose side table
 * cannot be had is refused as memory that ran out, nothing kept, unless
 * a reclaim (a thread caller's) frees the pages for it. On a port that
 * gives no callers the table is the sizes alone, and the red zones work
 * as well. Each panicking case runs on a heap of its own, as a
 * caught panic abandons the call where it was.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "mheap_hold_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* A fresh heap in poison mode on CPU 0. */
static bool poison_heap(void)
{
	return sh_heap_fresh_poison(&heap, &sh, true);
}

/* The smallest request class cls serves: the most slack it has. */
static size_t least_of(unsigned cls)
{
	return cls > 1 ? sizeclass_info[cls - 1].size + 1 : 1;
}

/* An object of class cls for asked bytes, all of them written, then byte
 * off of it changed (0x41) and the object freed: the free must panic
 * naming it and that byte. */
static void overrun_then_free(unsigned cls, size_t asked, size_t off)
{
	KASSERT(poison_heap());
	size_t size = sizeclass_info[cls].size;
	char *p = spanheap_alloc(&sh, asked, 0);
	KASSERT(p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), asked);
	memset(p, 0x11, asked);
	KEXPECT(all_bytes(p + asked, size - asked, SPANHEAP_REDZONE_BYTE));
	p[off] = 0x41;
	char want[256];
	snprintf(want, sizeof(want),
	         "write past the end of an object, found at its free: "
	         "pointer %p, span [%#lx, +%u pages), size class %u (%zu-byte "
	         "objects), %zu bytes asked: byte %zu is 0x41, not the red "
	         "zone 0xbb",
	         (void *)p,
	         (unsigned long)((struct mspan *)mheap_span_lookup(
	                                 &heap, (uintptr_t)p))
	                 ->base,
	         (unsigned)sizeclass_info[cls].npages, cls, size, asked, off);
	EXPECT_MISUSE(spanheap_free(&sh, p), want, p);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_redzone, every_class_overrun_found_at_the_free)
{
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		size_t size = sizeclass_info[cls].size, asked = least_of(cls);
		/* One byte past the end, and the slack's last byte. */
		overrun_then_free(cls, asked, asked);
		overrun_then_free(cls, asked, size - 1);
		/* A one-byte red zone. */
		overrun_then_free(cls, size - 1, size - 1);
	}
}

/* A realloc that keeps the object checks the red zone first. */
KTEST(spanheap_redzone, overrun_found_at_a_realloc_in_place)
{
	KASSERT(poison_heap());
	char *p = spanheap_alloc(&sh, 40, 0); /* 48-byte class */
	KASSERT(p);
	p[40] = 0;
	EXPECT_MISUSE(spanheap_realloc(&sh, p, 44, 0),
	              "write past the end of an object, found at its "
	              "realloc",
	              p);
	KEXPECT(strstr(mm_port_last_panic(), "40 bytes asked: byte 40 is 0, "
	                                     "not the red zone 0xbb"));
	sh_heap_release(&heap, &sh);
}

/* The class of object p. */
static unsigned class_of(const void *p)
{
	return ((struct mspan *)mheap_span_lookup(&heap, (uintptr_t)p))
	        ->sizeclass;
}

/* An exact fit (a request of a class's own size) takes a larger class in
 * poison mode, so it has a red zone too: all it asked is usable, a byte
 * past it is found at the free, and a power of two up to a page keeps its
 * natural alignment. 32 KiB, the largest class, stays an exact fit. */
/* Class cls's own size asked, all of it written and a byte past it: the
 * free must panic naming that byte. */
static void exact_fit_overrun(unsigned cls)
{
	KASSERT(poison_heap());
	size_t size = sizeclass_info[cls].size;
	char *p = spanheap_alloc(&sh, size, 0);
	KASSERT(p);
	KEXPECT(class_of(p) > cls);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), size);
	if (size <= MM_PAGE_SIZE && !(size & (size - 1)))
		KEXPECT_EQ((uintptr_t)p % size, 0);
	memset(p, 0x22, size); /* all of it is the caller's */
	p[size] = 0x41;
	char want[128];
	snprintf(want, sizeof(want),
	         "%zu bytes asked: byte %zu is 0x41, not the red zone", size,
	         size);
	EXPECT_MISUSE(spanheap_free(&sh, p), want, p);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_redzone, an_exact_fit_gets_one)
{
	for (unsigned cls = 1; cls < SC_NCLASSES - 1; cls++)
		exact_fit_overrun(cls);
	KASSERT(poison_heap());
	char *p = spanheap_alloc(&sh, SC_MAX_SIZE, 0);
	KASSERT(p);
	KEXPECT_EQ(class_of(p), SC_NCLASSES - 1);
	memset(p, 0x22, SC_MAX_SIZE);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the largest exact fit");
	sh_heap_release(&heap, &sh);
}

/* A realloc to its class's own size moves the object to a class with a
 * red zone; one that leaves a byte of it stays in place. */
KTEST(spanheap_redzone, realloc_keeps_a_red_zone)
{
	KASSERT(poison_heap());
	char *p = spanheap_alloc(&sh, 20, 0); /* 32-byte objects */
	KASSERT(p);
	KEXPECT_EQ(class_of(p), sizeclass_of(32));
	memset(p, 0x33, 20);
	char *q = spanheap_realloc(&sh, p, 31, 0);
	KEXPECT(q == p);
	q = spanheap_realloc(&sh, q, 32, 0);
	KASSERT(q);
	KEXPECT(q != p);
	KEXPECT(class_of(q) > sizeclass_of(32));
	KEXPECT(all_bytes(q, 20, 0x33));
	q[32] = 0x41;
	EXPECT_MISUSE(spanheap_free(&sh, q), "32 bytes asked: byte 32 is 0x41",
	              q);
	sh_heap_release(&heap, &sh);
}

/* Writes all of p's usable size with v; true if it was at least n. */
static bool fill_usable(void *p, size_t n, int v)
{
	size_t u = spanheap_usable_size(&sh, p);
	memset(p, v, u);
	return u >= n;
}

/* Everything a program may do, for a size in every class: no panic. */
static void legal_uses(unsigned cls)
{
	size_t size = sizeclass_info[cls].size, asked = least_of(cls);
	char *p = spanheap_alloc(&sh, asked, 0);
	KASSERT(p && fill_usable(p, asked, 0x31));
	/* Grows in place into its red zone, zeroed with MM_ZERO. */
	char *q = spanheap_realloc(&sh, p, size - 1, MM_ZERO);
	KASSERT(q);
	KEXPECT_EQ(spanheap_usable_size(&sh, q), size - 1);
	KEXPECT(all_bytes(q, asked, 0x31));
	if (q == p)
		KEXPECT(all_bytes(q + asked, size - 1 - asked, 0));
	KASSERT(fill_usable(q, size - 1, 0x32));
	/* Shrinks in place: what it gave up is the red zone now. */
	char *r = spanheap_realloc(&sh, q, asked, 0);
	KASSERT(r && fill_usable(r, asked, 0x33));
	/* Grows out of its class: moved, contents kept. */
	char *m = spanheap_realloc(&sh, r, size + 1, MM_ZERO);
	KASSERT(m);
	KEXPECT(all_bytes(m, asked, 0x33));
	KEXPECT(all_bytes(m + asked, size + 1 - asked, 0));
	KASSERT(fill_usable(m, size + 1, 0x34));
	spanheap_free(&sh, m);
	char *z = spanheap_calloc(&sh, 1, asked, 0);
	KASSERT(z);
	KEXPECT_EQ(spanheap_usable_size(&sh, z), asked);
	KEXPECT(all_bytes(z, asked, 0));
	KASSERT(fill_usable(z, asked, 0x35));
	spanheap_free(&sh, z);
	if (size % 64 == 0 && asked > 32) {
		char *a = spanheap_alloc_aligned(&sh, asked - 32, 64, 0);
		KASSERT(a && (uintptr_t)a % 64 == 0);
		KASSERT(fill_usable(a, asked - 32, 0x36));
		spanheap_free(&sh, a);
	}
}

KTEST(spanheap_redzone, no_false_alarm_from_legal_uses)
{
	KASSERT(poison_heap());
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		legal_uses(cls);
	SH_CHECK(&sh, "after the legal uses");
	spanheap_release_all(&sh); /* every span back: the poison checked */
	sh_heap_release(&heap, &sh);
}

/* Normal mode: the usable size is the class's, and no red zone. */
KTEST(spanheap_redzone, normal_mode_has_none)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	char *p = spanheap_alloc(&sh, 20, 0);
	KASSERT(p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 32);
	memset(p, 0x44, 32);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* A tight poison heap, made on a port that gives callers or (callers
 * false) one that gives none: then the heap keeps no records, and a
 * span's side table is its sizes alone. */
static bool tight_poison_heap(bool callers)
{
	mm_port_set_no_callers(!callers);
	bool ok = sh_heap_tight_poison(&heap, &sh, PALLOC_CHUNK_BYTES);
	mm_port_set_no_callers(false);
	return ok && sh.track == callers;
}

/* The pages of class cls's side table: its sizes, and the records of
 * callers if sh keeps them (spanheap_redzone.c's; this test's own
 * reckoning of them had gone stale: 4 bytes an object, where the sizes
 * and owners take 8). */
static size_t table_pages_of(unsigned cls)
{
	return spanheap_redzone_table_pages(&sh, cls);
}

static struct mh_hold hold;

/*
 * A poison span's side table comes from the metadata heap: with no room
 * there for it (that heap held but for a hole a page short of the
 * table), the allocation gets NULL, as when memory runs out, and the
 * span's pages go back to the object heap; with a hole of the table's
 * pages, it succeeds. (Until the metadata heap, the table came from the
 * object heap, after the span's pages.)
 */
static void no_table_no_span(bool callers)
{
	KASSERT(tight_poison_heap(callers));
	/* The span structs' page, made now: a class of its own. */
	void *warm = spanheap_alloc(&sh, 4096, 0);
	KASSERT(warm);
	/* The table: the sizes, and the records of callers if the port
	 * gives them (spanheap_track.c). */
	size_t table = table_pages_of(1);
	KASSERT(table >= 1);
	KASSERT(mh_hold_all_but(&sh.meta, &hold, table - 1));
	size_t used = sh_in_use_pages(&heap);
	mm_port_set_quiet(true);
	KEXPECT(spanheap_alloc(&sh, 8, 0) == NULL);
	mm_port_set_quiet(false);
	KEXPECT_EQ(sh_in_use_pages(&heap), used); /* the span's went back */
	mh_hold_release(&sh.meta, &hold);
	KASSERT(mh_hold_all_but(&sh.meta, &hold, table));
	char *p = spanheap_alloc(&sh, 8, 0);
	KASSERT(p);
	KEXPECT_EQ(sh_in_use_pages(&heap), used + sizeclass_info[1].npages);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 8);
	spanheap_free(&sh, p);
	spanheap_free(&sh, warm);
	mh_hold_release(&sh.meta, &hold);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_redzone, no_table_no_span)
{
	no_table_no_span(true);
}

/* A port without a stack walk (the hosted malloc's, malloc/port_prod.c):
 * the table is the sizes alone, one page for class 1's 512 objects, and
 * the span needs that page and no more. */
KTEST(spanheap_redzone, no_table_no_span_without_records)
{
	no_table_no_span(false);
	KEXPECT_EQ(table_pages_of(1), 1);
}

/* Without records the red zone works as with them: an overrun is found
 * at the free, the report naming the object and the byte. */
KTEST(spanheap_redzone, overrun_found_without_records)
{
	KASSERT(tight_poison_heap(false));
	char *p = spanheap_alloc(&sh, 20, 0);
	KASSERT(p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 20);
	KEXPECT(all_bytes(p + 20, sizeclass_info[sizeclass_of(21)].size - 20,
	                  SPANHEAP_REDZONE_BYTE));
	p[21] = 0x41;
	EXPECT_MISUSE(spanheap_free(&sh, p),
	              "20 bytes asked: byte 21 is 0x41, not the red zone", p);
	sh_heap_release(&heap, &sh);
}

/*
 * The side table cannot be had, but a reclaim frees what it needs: the
 * span's thread caller reclaims (the swept span, empty, back to the page
 * heap, and its table to the metadata heap) and asks again. A 40-byte
 * object freed keeps its span until a sweep; the metadata heap is taken
 * whole, so the table of a class-1 span comes only from the 40-byte
 * span's, a page each. An atomic caller, which may not reclaim, gets
 * NULL. (Until the metadata heap, the tables and the spans shared the
 * object heap, whose arena the test took but for two pages.)
 */
KTEST(spanheap_redzone, a_table_after_a_reclaim)
{
	KASSERT(tight_poison_heap(false));
	void *warm = spanheap_alloc(&sh, 4096, 0); /* the struct page */
	void *y = spanheap_alloc(&sh, 40, 0);
	KASSERT(warm && y);
	struct mspan *ys = mheap_span_lookup(&heap, (uintptr_t)y);
	KASSERT(ys->sizeclass != 1 && ys->redzone);
	void *yt = ys->redzone;
	KASSERT(table_pages_of(ys->sizeclass) == 1 && table_pages_of(1) == 1);
	spanheap_free(&sh, y); /* its span stays until a sweep */
	KASSERT(mh_hold_all_but(&sh.meta, &hold, 0));
	static struct spanheap_stats st; /* large: not on the stack */
	spanheap_stats(&sh, &st);
	uint64_t flushes = st.n.flush_alls;
	/* An atomic caller may not reclaim: no table, no span. */
	mm_port_set_quiet(true);
	KEXPECT(spanheap_alloc(&sh, 8, MM_ATOMIC) == NULL);
	mm_port_set_quiet(false);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.n.flush_alls, flushes);
	char *p = spanheap_alloc(&sh, 8, 0);
	KEXPECT(p != NULL);
	spanheap_stats(&sh, &st);
	KEXPECT(st.n.flush_alls > flushes); /* a reclaim ran */
	if (p) {
		struct mspan *ps = mheap_span_lookup(&heap, (uintptr_t)p);
		KEXPECT(mheap_span_is_span(ps) && ps->redzone == yt);
		KEXPECT_EQ(spanheap_usable_size(&sh, p), 8);
		spanheap_free(&sh, p);
	}
	spanheap_free(&sh, warm);
	mh_hold_release(&sh.meta, &hold);
	SH_CHECK(&sh, "after the reclaim's table");
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

/*
 * A span's side table goes back with the span as any page the span heap
 * took for itself does (spanheap_pages_put), to the metadata heap: a
 * stray pointer into it is told as one into the heap's own metadata, and
 * the span's pages as free pages. Until a review the table's pages kept
 * the page heap's mark, and a free of such a pointer (a double free of an
 * object whose pages held a table since) blamed page-heap memory used
 * through the object API; until the metadata heap, the table's pages were
 * free pages of the object heap, told as such.
 */
KTEST(spanheap_redzone, a_freed_table_is_free_pages)
{
	KASSERT(poison_heap());
	char *y = spanheap_alloc(&sh, 40, 0);
	KASSERT(y);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)y);
	KASSERT(mheap_span_is_span(s) && s->redzone);
	char *t = s->redzone;
	spanheap_free(&sh, y);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	KASSERT(mheap_span_lookup(&heap, (uintptr_t)y) == NULL); /* freed */
	struct spanheap_where w;
	spanheap_where(&sh, y, &w);
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREE_PAGES);
	spanheap_where(&sh, t, &w);
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_META);
	EXPECT_MISUSE(spanheap_free(&sh, t), "in the heap's own metadata", t);
	sh_heap_release(&heap, &sh);
}

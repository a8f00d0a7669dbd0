/*
 * The span heap's sizes at the edges of its fields' widths: a large
 * object's page count, kept in 32 bits in its span (struct mspan), and
 * its size, which elemsize saturates at UINT32_MAX above 4 GiB.
 *
 * A large object of 2^32 pages or more needs an arena above 16 TiB. The
 * POSIX port only reserves address space, so such a heap is cheap to
 * make; growing it by 16 TiB is not (its span table alone would take 32
 * GiB), so these tests make every map fail (mm_port_fail_maps) while
 * they ask: a request the heap should refuse outright must not reach
 * the page heap, and one that did fails fast instead of eating memory.
 * A host that refuses the reservation skips them.
 *
 * Each test makes its own heap and gives it back at the end.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE
/* 2^32 pages, one more than SPANHEAP_LARGE_MAX_PAGES, and its bytes. */
#define OVER_LIMIT_PAGES ((size_t)1 << 32)
#define OVER_LIMIT_BYTES (OVER_LIMIT_PAGES * PG)

static struct mheap heap;
static struct spanheap sh;

/* Makes the heap over an arena that could hold a large object of more
 * than SPANHEAP_LARGE_MAX_PAGES pages (two chunks more, for the heap's
 * first growth). False if the host refuses the reservation. */
static bool huge_heap_new(void)
{
	if (!sh_heap_new(&heap, &sh, OVER_LIMIT_BYTES + 2 * PALLOC_CHUNK_BYTES))
		return false;
	mm_port_set_cpu(0);
	return true;
}

/* Fails the test at line unless, since logs lines were counted, one line
 * was logged and it names the large objects' limit, and the heap mapped
 * nothing meanwhile (it never went to the page heap). */
static void expect_refused_at(int line, unsigned long logs, size_t mapped,
                              size_t grown)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	if (mm_port_log_count() != logs + 1 ||
	    !strstr(mm_port_last_log(), "a large object has at most"))
		ktest_fail_at(__FILE__, line,
		              "%lu lines logged, the last \"%s\", not one "
		              "naming the limit",
		              mm_port_log_count() - logs, mm_port_last_log());
	if (mm_port_mapped_bytes() != mapped || st.grown_pages != grown)
		ktest_fail_at(__FILE__, line,
		              "the page heap was asked: %zu bytes mapped and "
		              "%zu pages grown, %zu and %zu before",
		              mm_port_mapped_bytes(), st.grown_pages, mapped,
		              grown);
}

#define EXPECT_REFUSED(logs, mapped, grown) \
	expect_refused_at(__LINE__, logs, mapped, grown)

/*
 * An allocation, a zeroed one and a calloc of 2^32 pages on an arena
 * that has them are refused with a line naming the limit, before the
 * page heap is asked. Before SPANHEAP_LARGE_MAX_PAGES they went to the
 * page heap, which would have grown by 16 TiB and handed out a span
 * whose 32-bit npages said 0 (2^32 + 1 pages: 1).
 */
KTEST(spanheap_width, large_alloc_over_32_bit_pages_is_refused)
{
	if (!huge_heap_new())
		KTEST_SKIP("the host refuses a 16 TiB reservation");
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t mapped = mm_port_mapped_bytes(), grown = st.grown_pages;
	mm_port_fail_maps(1000);
	unsigned long logs = mm_port_log_count();
	KEXPECT(spanheap_alloc(&sh, OVER_LIMIT_BYTES, 0) == NULL);
	EXPECT_REFUSED(logs, mapped, grown);
	logs = mm_port_log_count();
	KEXPECT(spanheap_alloc(&sh, OVER_LIMIT_BYTES + PG, MM_ZERO) == NULL);
	EXPECT_REFUSED(logs, mapped, grown);
	logs = mm_port_log_count();
	KEXPECT(spanheap_calloc(&sh, OVER_LIMIT_PAGES, PG, 0) == NULL);
	EXPECT_REFUSED(logs, mapped, grown);
	mm_port_fail_maps(0);
	/* The heap still serves what it can. */
	void *p = spanheap_alloc(&sh, 2 * SC_MAX_SIZE, 0);
	KEXPECT(p != NULL);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the refused allocations");
	sh_heap_release(&heap, &sh);
}

/*
 * A realloc of a large object to 2^32 pages gets NULL and the line, and
 * the object stays as it was: same size, same bytes. Before, it tried to
 * grow the object in place into 2^32 pages and then to move it.
 */
KTEST(spanheap_width, large_realloc_over_32_bit_pages_is_refused)
{
	if (!huge_heap_new())
		KTEST_SKIP("the host refuses a 16 TiB reservation");
	size_t n = 2 * SC_MAX_SIZE;
	unsigned char *p = spanheap_alloc(&sh, n, 0);
	KASSERT(p);
	memset(p, 0x5a, n);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t mapped = mm_port_mapped_bytes(), grown = st.grown_pages;
	mm_port_fail_maps(1000);
	unsigned long logs = mm_port_log_count();
	KEXPECT(spanheap_realloc(&sh, p, OVER_LIMIT_BYTES, 0) == NULL);
	EXPECT_REFUSED(logs, mapped, grown);
	mm_port_fail_maps(0);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), n);
	KEXPECT(all_bytes(p, n, 0x5a));
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the refused realloc");
	sh_heap_release(&heap, &sh);
}

/*
 * A misuse report of a large object above 4 GiB names its real size:
 * elemsize saturates at UINT32_MAX there, and the reports printed it, so
 * an interior free of a 5 GiB object said "4294967295-byte objects".
 */
KTEST(spanheap_width, misuse_of_a_5_gib_object_names_its_size)
{
	KASSERT(sh_heap_new(&heap, &sh, (size_t)8 << 30));
	mm_port_set_cpu(0);
	size_t n = (size_t)5 << 30;
	char *p = spanheap_alloc(&sh, n, 0);
	KASSERT(p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), n);
	bool fired = MM_PORT_PANICS(spanheap_free(&sh, p + PG));
	KEXPECT(fired);
	if (!strstr(mm_port_last_panic(), "(5368709120-byte objects)"))
		ktest_fail_at(__FILE__, __LINE__, "the report said \"%s\"",
		              mm_port_last_panic());
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the interior free");
	sh_heap_release(&heap, &sh);
}

/* Fails the test at line unless the statistics count one large span of
 * npages pages and nothing else in use. */
static void expect_large_stats_at(int line, size_t npages)
{
	static struct spanheap_stats st; /* large */
	spanheap_stats(&sh, &st);
	size_t bytes = npages * PG;
	if (st.large_pages != npages || st.cls[0].spans != 1 ||
	    st.cls[0].objects_in_use != 1 || st.cls[0].bytes_in_use != bytes ||
	    st.cls[0].bytes_spans != bytes || st.bytes_in_use != bytes)
		ktest_fail_at(__FILE__, line,
		              "stats: %zu large pages, %zu large spans, %zu "
		              "bytes in use (%zu in all), %zu in spans; want "
		              "%zu pages, 1 span, %zu bytes",
		              st.large_pages, st.cls[0].spans,
		              st.cls[0].bytes_in_use, st.bytes_in_use,
		              st.cls[0].bytes_spans, npages, bytes);
}

#define EXPECT_LARGE_STATS(npages) expect_large_stats_at(__LINE__, npages)

/*
 * Every reader of a large object's size gets its pages, not elemsize,
 * which says UINT32_MAX for every large span above 4 GiB: the usable
 * size (malloc_usable_size's answer in the hosted malloc), the
 * statistics (and slabinfo's large line, printed from them), a realloc
 * that shrinks it or grows it in place, and a misuse report. Pinned here
 * because a reader that took elemsize would be right below 4 GiB and
 * wrong only above it.
 */
KTEST(spanheap_width, readers_of_a_large_size_above_4_gib_use_its_pages)
{
	KASSERT(sh_heap_new(&heap, &sh, (size_t)8 << 30));
	mm_port_set_cpu(0);
	size_t n = ((size_t)5 << 30) + PG, npages = n / PG;
	char *p = spanheap_alloc(&sh, n, 0);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s));
	KEXPECT_EQ(s->npages, npages);
	KEXPECT_EQ(s->elemsize, UINT32_MAX); /* saturated, as documented */
	KEXPECT_EQ(spanheap_usable_size(&sh, p), n);
	EXPECT_LARGE_STATS(npages);
	/* Shrunk by two pages in place: the tail goes back. The first of
	 * them holds bytes, and so does the page before them, for the
	 * growth below. */
	memset(p + n - 3 * PG, 0x33, PG);
	memset(p + n - 2 * PG, 0x5a, PG);
	KEXPECT(spanheap_realloc(&sh, p, n - 2 * PG, 0) == p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), n - 2 * PG);
	KEXPECT_EQ(s->npages, npages - 2);
	EXPECT_LARGE_STATS(npages - 2);
	/* Grown by a page in place, into the tail it gave back (free,
	 * whatever the heap put after the object since): with MM_ZERO, every
	 * byte from the old usable size reads zero, and none below it changes,
	 * so that size must be the pages, not elemsize. */
	KEXPECT(spanheap_realloc(&sh, p, n - PG, MM_ZERO) == p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), n - PG);
	KEXPECT(all_bytes(p + n - 3 * PG, PG, 0x33));
	KEXPECT(all_bytes(p + n - 2 * PG, PG, 0));
	EXPECT_LARGE_STATS(npages - 1);
	bool fired = MM_PORT_PANICS(spanheap_realloc(&sh, p + PG, PG, 0));
	KEXPECT(fired);
	char want[64];
	snprintf(want, sizeof(want), "(%zu-byte objects)", n - PG);
	if (!strstr(mm_port_last_panic(), want))
		ktest_fail_at(__FILE__, __LINE__, "the report said \"%s\"",
		              mm_port_last_panic());
	spanheap_free(&sh, p);
	static struct spanheap_stats st; /* large */
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.large_pages, 0);
	KEXPECT_EQ(st.bytes_in_use, 0);
	SH_CHECK(&sh, "after the large object's life");
	sh_heap_release(&heap, &sh);
}

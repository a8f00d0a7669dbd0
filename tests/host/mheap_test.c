/*
 * The page-level heap (mm/mheap.c, mheap_alloc.c, mheap_grow.c) through the
 * POSIX port: allocation and growth, release-all dropping resident memory
 * (/proc/self/statm), a chunk's bits, a failed set-up giving its reservations
 * back, out of memory leaving nothing changed, and an atomic caller below
 * the reserve asking it to grow the heap. What it refuses (bad
 * configurations, extensions, sizes) is mheap_refuse_test.c's, scavenging
 * mheap_scav_test.c's and mheap_scav_wait_test.c's, zeroed allocations
 * mheap_zero_test.c's.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* one at a time; static: the thread may lag */

KTEST(mheap, alloc_grow_free)
{
	KASSERT(mh_new(&heap, 64, 0, 0));
	char *a = mheap_alloc_pages(&heap, 3, 0);
	char *b = mheap_alloc_pages(&heap, 700, 0); /* grows a chunk more */
	KASSERT(a && b);
	KEXPECT_EQ((uintptr_t)a, heap.arena_base);
	KEXPECT(mh_all_bytes(a, 3 * PG, 0) && mh_all_bytes(b, 700 * PG, 0));
	memset(a, 1, 3 * PG);
	memset(b, 2, 700 * PG);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 703);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT_EQ(st.grown_pages, st.in_use_pages + st.free_scav_pages);
	/* Two growths of a chunk each: b's extends the first chunk's free
	 * tail (509 pages) by one chunk. */
	KEXPECT_EQ(st.n.grows, 2);
	KEXPECT_EQ(st.grown_pages, 2 * 512);
	MH_CHECK(&heap, "after allocating");
	mheap_free_pages(&heap, b, 700);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 3);
	KEXPECT_EQ(st.free_backed_pages, 700);
	/* Reuse of backed pages keeps their contents (no mm_port_used). */
	char *c = mheap_alloc_pages(&heap, 10, 0);
	KEXPECT_EQ(c, b);
	KEXPECT(c && mh_all_bytes(c, 10 * PG, 2));
	MH_CHECK(&heap, "after reuse");
	unsigned long logs = mm_port_log_count();
	mheap_dump(&heap);
	KEXPECT_EQ(mm_port_log_count(), logs + 3);
	KEXPECT(strstr(mm_port_last_log(), "scavenger:") != NULL);
	mh_release(&heap);
}

KTEST(mheap, release_all_drops_rss_and_zeroes)
{
	enum { N = 4096 }; /* 16 MiB */
	KASSERT(mh_new(&heap, 64, 0, 0));
	char *p = mheap_alloc_pages(&heap, N, 0);
	KASSERT(p);
	memset(p, 0xab, (size_t)N * PG);
	size_t before = mh_resident_pages();
	mheap_free_pages(&heap, p, N);
	size_t released = mheap_release_all(&heap);
	size_t after = mh_resident_pages();
	KEXPECT_EQ(released, N);
	ktest_diag("resident %zu -> %zu pages", before, after);
	KEXPECT(before >= after + N - 256);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT_EQ(st.n.release_pages, N);
	MH_CHECK(&heap, "after release-all");
	KEXPECT_EQ(mheap_release_all(&heap), 0);
	char *q = mheap_alloc_pages(&heap, N, 0);
	KEXPECT_EQ(q, p);
	KEXPECT(q && mh_all_bytes(q, (size_t)N * PG, 0));
	mh_release(&heap);
}

/* mheap_chunk_bits, the heap map's view: a chunk's bitmaps as they are,
 * and nothing for a chunk not grown. */
KTEST(mheap, chunk_bits)
{
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	KASSERT(mh_new(&heap, 64, 0, 0));
	KEXPECT(!mheap_chunk_bits(&heap, 0, alloc, scav));
	char *a = mheap_alloc_pages(&heap, 3, 0);
	char *b = mheap_alloc_pages(&heap, 700, 0);
	KASSERT(a && b);
	KASSERT(mheap_chunk_bits(&heap, 0, alloc, scav));
	KEXPECT_EQ(alloc[0], ~0ull);
	KEXPECT_EQ(alloc[PALLOCBITS_WORDS - 1], ~0ull);
	mheap_free_pages(&heap, b, 700);
	mheap_release_all(&heap);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t grown = st.grown_pages / PALLOC_CHUNK_PAGES;
	KEXPECT(grown >= 2);
	KASSERT(mheap_chunk_bits(&heap, 0, alloc, scav));
	KEXPECT_EQ(alloc[0], 0x7);
	KEXPECT_EQ(scav[0], ~0x7ull);
	for (size_t ci = 1; ci < grown; ci++) {
		KASSERT(mheap_chunk_bits(&heap, ci, alloc, scav));
		for (unsigned w = 0; w < PALLOCBITS_WORDS; w++) {
			KEXPECT_EQ(alloc[w], 0);
			KEXPECT_EQ(scav[w], ~0ull);
		}
	}
	KEXPECT(!mheap_chunk_bits(&heap, grown, alloc, scav));
	KEXPECT(!mheap_chunk_bits(&heap, 1000, alloc, scav)); /* past it */
	mh_release(&heap);
}

/* A set-up that fails gives back the address space it reserved (the
 * arena, the span table, palloc's metadata), so that a retry, such as the
 * hosted malloc's with a smaller arena under ulimit -v, has it: each of
 * the three reservations fails in turn. */
KTEST(mheap, failed_init_gives_back_its_reservations)
{
	size_t r0 = mm_port_reserved_bytes();
	mm_port_set_quiet(true);
	for (unsigned nth = 1; nth <= 3; nth++) {
		mm_port_fail_reserve(nth);
		KEXPECT(!mh_new(&heap, 4, 0, 0));
		KEXPECT_EQ(mm_port_reserved_bytes(), r0);
		/* Used anyway: refused, saying why (until a review, "larger
		 * than the arena" for a page). */
		KEXPECT(mheap_alloc_pages(&heap, 1, 0) == NULL);
		KEXPECT(strstr(mm_port_last_log(),
		               "has no arena (its "
		               "mheap_init failed") != NULL);
		bool started = mheap_scavenger_start(&heap);
		KEXPECT(!started);
		if (started)
			mheap_scavenger_stop(&heap);
		KEXPECT(strstr(mm_port_last_log(),
		               "no scavenger for a heap not set up") != NULL);
	}
	mm_port_fail_reserve(0);
	mm_port_set_quiet(false);
	/* The retry from the configuration the failed init left in h: the
	 * init reads it before it rewrites h (spanheap_init did not). */
	KEXPECT_EQ(heap.cfg.arena_bytes, 4 * PALLOC_CHUNK_BYTES);
	KASSERT(mheap_init(&heap, &heap.cfg));
	KEXPECT_EQ(heap.arena_pages, 4 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(heap.cfg.reserve_pages, MHEAP_DEFAULT_RESERVE_PAGES);
	KEXPECT(mm_port_reserved_bytes() > r0);
	mh_release(&heap);
	KEXPECT_EQ(mm_port_reserved_bytes(), r0);
}

/* Near the arena's end a growth extends the free run at the top of the
 * grown chunks: the last pages of the arena, that run and the chunks not
 * yet grown, are one allocation, which failed while the growth asked for
 * the chunks the request takes on its own (3 here, with 2 left). */
KTEST(mheap, growth_extends_the_free_tail)
{
	KASSERT(mh_new(&heap, 4, 0, 0));
	void *x = mheap_alloc_pages(&heap, 1, 0);
	void *y = mheap_alloc_pages(&heap, 600, 0);
	KASSERT(x && y);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t left = 4 * PALLOC_CHUNK_PAGES - 601;
	KEXPECT((left + PALLOC_CHUNK_PAGES - 1) / PALLOC_CHUNK_PAGES >
	        (4 * PALLOC_CHUNK_PAGES - st.grown_pages) / PALLOC_CHUNK_PAGES);
	char *z = mheap_alloc_pages(&heap, left, 0);
	KEXPECT(z != NULL);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 4 * PALLOC_CHUNK_PAGES);
	if (z)
		mheap_free_pages(&heap, z, left);
	mheap_free_pages(&heap, y, 600);
	mheap_free_pages(&heap, x, 1);
	MH_CHECK(&heap, "after the growth");
	mh_release(&heap);
}

KTEST(mheap, out_of_memory_changes_nothing)
{
	KASSERT(mh_new(&heap, 4, 0, 0));
	mm_port_set_quiet(true);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	mm_port_fail_maps(1); /* palloc's metadata cannot be mapped */
	KEXPECT(mheap_alloc_pages(&heap, 1, 0) == NULL);
	mm_port_fail_maps(0);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT(mheap_alloc_pages(&heap, 0, 0) == NULL);
	KEXPECT(mheap_alloc_pages(&heap, 4 * 512 + 1, 0) == NULL);
	char *all = mheap_alloc_pages(&heap, 4 * 512, 0);
	KASSERT(all);
	mheap_stats(&heap, &s0);
	KEXPECT(mheap_alloc_pages(&heap, 1, 0) == NULL); /* arena full */
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT(mheap_alloc_pages(&heap, 1, MHEAP_ATOMIC) == NULL);
	mheap_stats(&heap, &s1);
	KEXPECT_EQ(s1.n.atomic_fails, s0.n.atomic_fails + 1); /* counted */
	/* Mapping scavenged pages fails: they go back, still scavenged. */
	mheap_free_pages(&heap, all, 4 * 512);
	KEXPECT_EQ(mheap_release_all(&heap), 4 * 512);
	mheap_stats(&heap, &s0);
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 10, 0) == NULL);
	mm_port_fail_maps(0);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	/* The same for 64 pages, the most an atomic caller may ask, two of
	 * them backed: the run is undone exactly (by its mask of scavenged
	 * pages), the two pages still backed, the rest still scavenged. */
	void *two = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(two);
	mheap_free_pages(&heap, two, 2);
	mheap_stats(&heap, &s0);
	KEXPECT_EQ(s0.free_backed_pages, 2);
	mm_port_fail_maps(1);
	mm_port_set_atomic(true);
	KEXPECT(mheap_alloc_pages(&heap, 64, MHEAP_ATOMIC) == NULL);
	mm_port_set_atomic(false);
	mm_port_fail_maps(0);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	MH_CHECK(&heap, "after running out");
	mm_port_set_quiet(false);
	mh_release(&heap);
}

/* Memory runs out mapping scavenged pages that an extension or a run of
 * more than 64 pages (unmapped and given back whole) would take: the call
 * fails, and the pages are free and scavenged as before. */
KTEST(mheap, out_of_memory_mapping_scavenged_pages)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	char *a = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a);
	mheap_release_all(&heap); /* fresh pages may be scavenged already */
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	KEXPECT_EQ(s0.free_scav_pages, PALLOC_CHUNK_PAGES - 1);
	mm_port_set_quiet(true);
	mm_port_fail_maps(1);
	KEXPECT(!mheap_extend_pages(&heap, a, 1, 10, 0));
	mm_port_fail_maps(0);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT_EQ(s1.free_scav_pages, PALLOC_CHUNK_PAGES - 1);
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 100, 0) == NULL);
	mm_port_fail_maps(0);
	mm_port_set_quiet(false);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT_EQ(s1.free_scav_pages, PALLOC_CHUNK_PAGES - 1);
	MH_CHECK(&heap, "after running out");
	/* With memory, both work. */
	KEXPECT(mheap_extend_pages(&heap, a, 1, 10, 0));
	char *b = mheap_alloc_pages(&heap, 100, 0);
	KEXPECT(b != NULL);
	if (b)
		mheap_free_pages(&heap, b, 100);
	mheap_free_pages(&heap, a, 11);
	MH_CHECK(&heap, "after the retries");
	mh_release(&heap);
}

/* A growth whose span-table page cannot be mapped fails whole: the chunk
 * stays ungrown and nothing changes; the next growth maps the page and
 * takes the chunk. */
KTEST(mheap, out_of_memory_mapping_the_span_table)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0;
	KASSERT(mheap_init(&heap, &cfg));
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(a);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	KASSERT_EQ(s0.grown_pages, PALLOC_CHUNK_PAGES);
	size_t mapped = mm_port_mapped_bytes();
	mm_port_set_quiet(true);
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 1, 0) == NULL);
	mm_port_fail_maps(0);
	mm_port_set_quiet(false);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT_EQ(mm_port_mapped_bytes(), mapped);
	MH_CHECK(&heap, "after the failed growth");
	char *b = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(b);
	KEXPECT(b == a + PALLOC_CHUNK_PAGES * PG);
	KEXPECT(mheap_span_lookup(&heap, (uintptr_t)b) == MHEAP_SPAN_PAGES);
	KEXPECT(mheap_span_lookup(&heap, (uintptr_t)b + PG) == NULL);
	mheap_stats(&heap, &s1);
	KEXPECT_EQ(s1.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	mheap_free_pages(&heap, b, 1);
	mheap_free_pages(&heap, a, PALLOC_CHUNK_PAGES);
	MH_CHECK(&heap, "after the growth");
	mh_release(&heap);
}

/* An atomic allocation that takes the free pages below the reserve does
 * not grow the heap itself (it may not sleep): it asks the scavenger
 * thread, once, which grows the heap back to the reserve when it runs. */
KTEST(mheap, atomic_allocation_below_the_reserve_asks_for_a_refill)
{
	enum { RESERVE = 64, EACH = MHEAP_ATOMIC_MAX_PAGES };
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = RESERVE;
	KASSERT(mheap_init(&heap, &cfg));
	char *p[PALLOC_CHUNK_PAGES / EACH];
	size_t n = 0;
	struct mheap_stats st;
	p[n++] = mheap_alloc_pages(&heap, EACH, 0); /* grows the first chunk */
	KASSERT(p[0]);
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	while (st.free_backed_pages + st.free_scav_pages >= RESERVE + EACH) {
		KASSERT(n < PALLOC_CHUNK_PAGES / EACH);
		KASSERT(!heap.scav.refill);
		p[n++] = mheap_alloc_pages(&heap, EACH, MHEAP_ATOMIC);
		KASSERT(p[n - 1]);
		mheap_stats(&heap, &st);
	}
	uint64_t woken = mm_event_prepare(&heap.scav.wake);
	p[n++] = mheap_alloc_pages(&heap, EACH, MHEAP_ATOMIC); /* below */
	KASSERT(p[n - 1]);
	/* The request wakes the thread: an idle one sleeps up to
	 * MHEAP_IDLE_NS, and started after it, as below, it needs none. */
	KEXPECT(mm_event_prepare(&heap.scav.wake) != woken);
	mheap_stats(&heap, &st);
	KEXPECT(st.free_backed_pages + st.free_scav_pages < RESERVE);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	KASSERT(heap.scav.refill); /* else the wait below never ends */
	KASSERT(mheap_scavenger_start(&heap));
	for (;;) { /* until the thread has grown the heap (no time bound) */
		mheap_stats(&heap, &st);
		if (st.n.refills)
			break;
		mm_port_yield();
	}
	mheap_scavenger_stop(&heap);
	KEXPECT(!heap.scav.refill);
	KEXPECT_EQ(st.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	KEXPECT(st.free_backed_pages + st.free_scav_pages >= RESERVE);
	while (n--)
		mheap_free_pages(&heap, p[n], EACH);
	MH_CHECK(&heap, "after the refill");
	mh_release(&heap);
}

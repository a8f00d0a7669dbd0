/*
 * The page-level heap (mm/mheap.c, mheap_alloc.c, mheap_grow.c) through the
 * POSIX port: allocation and growth, release-all dropping resident memory
 * (/proc/self/statm), a chunk's bits, a failed set-up giving its reservations
 * back, and out of memory leaving nothing changed; bad configurations, the
 * edges of an extension and an impossible run refused, and an atomic caller
 * below the reserve asking it to grow the heap. Scavenging is
 * mheap_scav_test.c's, zeroed allocations mheap_zero_test.c's.
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
	}
	mm_port_fail_reserve(0);
	mm_port_set_quiet(false);
	KASSERT(mh_new(&heap, 4, 0, 0));
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

static bool same_stats(const struct mheap_stats *a, const struct mheap_stats *b)
{
	return a->grown_pages == b->grown_pages &&
	       a->in_use_pages == b->in_use_pages &&
	       a->free_backed_pages == b->free_backed_pages &&
	       a->free_scav_pages == b->free_scav_pages &&
	       a->n.grows == b->n.grows;
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

/* Each field out of range: init says which field and why, returns false
 * and reserves nothing. A goal over 1000% (past the kernel's
 * mm.scav_goal range; mheap_goal_pages assumes it cannot overflow) and
 * flags that are not enum mheap_flags were taken, and the line for the
 * others gave every value without saying which was wrong. */
KTEST(mheap, init_refuses_a_bad_config)
{
	static const struct {
		const char *what, *says;
		size_t arena_bytes, reserve_pages;
		unsigned cpu_permille, goal_percent, flags;
	} bad[] = {
	        {"arena 0", "arena_bytes 0 is not", 0, 0, 10, 10, 0},
	        {"arena not whole chunks", "arena_bytes 2101248 is not",
	         PALLOC_CHUNK_BYTES + PG, 0, 10, 10, 0},
	        {"cpu 0", "cpu_permille 0 is not", PALLOC_CHUNK_BYTES, 0, 0, 10,
	         0},
	        {"cpu 1001", "cpu_permille 1001 is not", PALLOC_CHUNK_BYTES, 0,
	         1001, 10, 0},
	        {"reserve past the arena", "reserve_pages 513 is",
	         PALLOC_CHUNK_BYTES, PALLOC_CHUNK_BYTES / PG + 1, 10, 10, 0},
	        {"goal 1001", "goal_percent 1001 is", PALLOC_CHUNK_BYTES, 0, 10,
	         1001, 0},
	        {"unknown flag", "flags 0x2 ", PALLOC_CHUNK_BYTES, 0, 10, 10,
	         1u << 1},
	};
	size_t r0 = mm_port_reserved_bytes();
	mm_port_set_quiet(true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mheap_config cfg;
		mheap_config_default(&cfg);
		cfg.arena_bytes = bad[i].arena_bytes;
		cfg.reserve_pages = bad[i].reserve_pages;
		cfg.cpu_permille = bad[i].cpu_permille;
		cfg.goal_percent = bad[i].goal_percent;
		cfg.flags = bad[i].flags;
		if (mheap_init(&heap, &cfg)) {
			ktest_fail_at(__FILE__, __LINE__, "%s: accepted",
			              bad[i].what);
			mh_release(&heap);
		} else if (!strstr(mm_port_last_log(), "bad config") ||
		           !strstr(mm_port_last_log(), bad[i].says))
			ktest_fail_at(__FILE__, __LINE__, "%s: logged \"%s\"",
			              bad[i].what, mm_port_last_log());
		KEXPECT_EQ(mm_port_reserved_bytes(), r0);
	}
	mm_port_set_quiet(false);
	/* The edges themselves are fine. */
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = PALLOC_CHUNK_BYTES / PG;
	cfg.cpu_permille = 1000;
	cfg.goal_percent = 1000;
	cfg.flags = MHEAP_DEBUG_SCAV_ON_FREE;
	KASSERT(mheap_init(&heap, &cfg));
	mh_release(&heap);
}

/* An extension by nothing succeeds and changes nothing; one past the
 * arena's end, or of a run below the arena, fails and changes nothing. */
KTEST(mheap, extend_pages_edges)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	char *tail = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES - 4, 0);
	char *last = mheap_alloc_pages(&heap, 2, 0); /* 2 free after it */
	KASSERT(tail && last);
	KASSERT(last == tail + (PALLOC_CHUNK_PAGES - 4) * PG);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	KEXPECT(mheap_extend_pages(&heap, last, 2, 0, 0));
	KEXPECT(!mheap_extend_pages(&heap, last, 2, 3, 0)); /* past the end */
	mm_port_set_quiet(true);                            /* it says why */
	KEXPECT(!mheap_extend_pages(&heap, (char *)heap.arena_base - PG, 1, 1,
	                            0));
	mm_port_set_quiet(false);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT(mheap_extend_pages(&heap, last, 2, 2, 0)); /* to the end */
	/* A run that ends at the arena's end is one: no more pages there,
	 * and no line saying it is not a run. */
	unsigned long logs = mm_port_log_count();
	KEXPECT(!mheap_extend_pages(&heap, last, 4, 1, 0));
	KEXPECT(mheap_extend_pages(&heap, last, 4, 0, 0));
	KEXPECT_EQ(mm_port_log_count(), logs);
	mheap_free_pages(&heap, last, 4);
	mheap_free_pages(&heap, tail, PALLOC_CHUNK_PAGES - 4);
	MH_CHECK(&heap, "after the extensions");
	mh_release(&heap);
}

/*
 * An extension of a "run" that cannot be one (longer than the arena, its
 * end past the arena's or past the address space, or no pages at all) is
 * refused, logged, and changes nothing. The run's end was p + npages
 * pages, unchecked: a length whose bytes wrap around 2^64 (2^52 + 1 pages
 * makes 4 KiB) put it one page after p, so the call took the page there
 * and said the run had grown.
 */
KTEST(mheap, extend_pages_refuses_an_impossible_run)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	char *a = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	const size_t wraps = SIZE_MAX / PG + 2; /* wraps * PG == PG */
	const size_t bad[] = {
	        wraps,
	        (UINTPTR_MAX - (uintptr_t)a) / PG + 2, /* the end wraps */
	        heap.arena_pages + 1,
	        0,
	};
	mm_port_set_quiet(true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned long logs = mm_port_log_count();
		KEXPECT(!mheap_extend_pages(&heap, a, bad[i], 1, 0));
		KEXPECT_EQ(mm_port_log_count(), logs + 1);
		KEXPECT(strstr(mm_port_last_log(), "mheap_extend_pages") &&
		        strstr(mm_port_last_log(), "refused"));
		ktest_diag("%zu pages: %s", bad[i], mm_port_last_log());
	}
	mm_port_set_quiet(false);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	mheap_free_pages(&heap, a, 1);
	MH_CHECK(&heap, "after the refusals");
	mh_release(&heap);
}

/*
 * A "run" that does not start on a page boundary cannot be one either: it
 * is refused with a line saying so. It was refused silently: its end was
 * off a page, palloc's alloc_range recorded why and nobody logged it.
 */
KTEST(mheap, extend_pages_refuses_a_run_off_a_page)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	char *a = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(a);
	mheap_free_pages(&heap, a + PG, 1);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	mm_port_set_quiet(true);
	unsigned long logs = mm_port_log_count();
	KEXPECT(!mheap_extend_pages(&heap, a + 8, 1, 1, 0));
	KEXPECT_EQ(mm_port_log_count(), logs + 1);
	KEXPECT(strstr(mm_port_last_log(), "refused") &&
	        strstr(mm_port_last_log(), "page aligned"));
	ktest_diag("%s", mm_port_last_log());
	mm_port_set_quiet(false);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	mheap_free_pages(&heap, a, 1);
	MH_CHECK(&heap, "after the refusal");
	mh_release(&heap);
}

/* A request that cannot be served (or has a bit that is not a flag) gets
 * NULL and a line naming why, changing nothing; thread-only set-up (init, the
 * scavenger's start) from an atomic context panics, naming the function. */
KTEST(mheap, alloc_refuses_a_bad_size_saying_why)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	static const struct {
		size_t npages;
		unsigned flags;
		const char *says;
	} bad[] = {
	        {0, 0, "zero pages"},
	        {0, MHEAP_ATOMIC, "zero pages"},
	        {PALLOC_CHUNK_PAGES + 1, 0, "larger than the arena"},
	        {MHEAP_ATOMIC_MAX_PAGES + 1, MHEAP_ATOMIC,
	         "too large for MHEAP_ATOMIC"},
	        {1, 1u << 7, "unknown flags"},
	        {1, MHEAP_ATOMIC | 1u << 3, "unknown flags"},
	};
	mm_port_set_quiet(true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		KEXPECT(mheap_alloc_pages(&heap, bad[i].npages, bad[i].flags) ==
		        NULL);
		if (!strstr(mm_port_last_log(), bad[i].says))
			ktest_fail_at(__FILE__, __LINE__, "%zu pages: \"%s\"",
			              bad[i].npages, mm_port_last_log());
	}
	mm_port_set_quiet(false);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 0);
	KEXPECT_EQ(st.n.atomic_fails, 3); /* the three atomic calls */
	mh_release(&heap);
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	mm_port_set_atomic(true);
	bool fired = MM_PORT_PANICS(mheap_init(&heap, &cfg));
	mm_port_set_atomic(false);
	KEXPECT(fired);
	KEXPECT(strstr(mm_port_last_panic(), "mheap_init: thread-only call"));
	KASSERT(mheap_init(&heap, &cfg));
	mm_port_set_atomic(true);
	fired = MM_PORT_PANICS(mheap_scavenger_start(&heap));
	mm_port_set_atomic(false);
	KEXPECT(fired);
	KEXPECT(strstr(mm_port_last_panic(),
	               "mheap_scavenger_start: thread-only call"));
	KEXPECT(heap.scav.thread == NULL);
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
	p[n++] = mheap_alloc_pages(&heap, EACH, MHEAP_ATOMIC); /* below */
	KASSERT(p[n - 1]);
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

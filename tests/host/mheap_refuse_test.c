/*
 * What the page-level heap (mm/mheap.c, mheap_alloc.c, mheap_grow.c)
 * refuses, through the POSIX port: a bad configuration (naming the field),
 * the edges of an extension, an impossible or misaligned run, and a size or
 * flag no allocation can serve; each refusal says why and changes nothing.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* one at a time; static: the thread may lag */

/* Each field out of range: init says which field and why, returns false
 * and reserves nothing. A goal over 1000% (past the kernel's
 * mm.scav_goal range; mheap_goal_pages assumes it cannot overflow) and
 * flags that are not enum mheap_flags were taken, and the line for the
 * others gave every value without saying which was wrong. An arena past
 * palloc's largest was tried, and refused as address space the port had
 * not (or, reserved, by palloc), its line not naming the field. */
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
	        {"arena past palloc's", "arena_bytes 281474976710656 is over",
	         (size_t)PALLOC_MAX_ARENA_BYTES * 2, 0, 10, 10, 0},
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
}

/* The edges of init_refuses_a_bad_config's ranges are fine. */
KTEST(mheap, init_takes_the_edges_of_a_config)
{
	size_t r0 = mm_port_reserved_bytes();
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = PALLOC_CHUNK_BYTES / PG;
	cfg.cpu_permille = 1000;
	cfg.goal_percent = 1000;
	cfg.flags = MHEAP_DEBUG_SCAV_ON_FREE;
	KASSERT(mheap_init(&heap, &cfg));
	mh_release(&heap);
	/* An arena of palloc's largest is no bad config, though the port
	 * may have no room for it (a mutation audit found the bound
	 * unpinned: >= for > passed). */
	mheap_config_default(&cfg);
	cfg.arena_bytes = PALLOC_MAX_ARENA_BYTES;
	mm_port_set_quiet(true);
	bool up = mheap_init(&heap, &cfg);
	mm_port_set_quiet(false);
	if (up)
		mh_release(&heap);
	else
		KEXPECT(strstr(mm_port_last_log(), "bad config") == NULL);
	KEXPECT_EQ(mm_port_reserved_bytes(), r0);
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
	        {1, MHEAP_ATOMIC | 1u << 4, "unknown flags"},
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

/*
 * MHEAP_NO_GROW: an allocation that does not fit the grown heap fails
 * rather than grows it, and one that fits but leaves free pages below the
 * reserve does not grow it either (the flag forbids any growth, not only
 * the one for its own run). Nothing tested the first: with the flag
 * ignored, the heap grew and the allocation succeeded.
 */
KTEST(mheap, no_grow_alloc_fails_rather_than_grows)
{
	KASSERT(mh_new(&heap, 4, 0, 0));
	struct mheap_stats st;
	KEXPECT(mheap_alloc_pages(&heap, 1, MHEAP_NO_GROW) == NULL);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 0);
	char *a = mheap_alloc_pages(&heap, 1, 0); /* grows one chunk */
	KASSERT(a);
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT(mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, MHEAP_NO_GROW) ==
	        NULL);
	/* Fits, and leaves 511 - 400 pages: below the reserve. */
	KASSERT(st.reserve_pages > PALLOC_CHUNK_PAGES - 1 - 400);
	char *b = mheap_alloc_pages(&heap, 400, MHEAP_NO_GROW);
	KEXPECT(b == a + PG);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.in_use_pages, 401);
	MH_CHECK(&heap, "after the refusals");
	if (b)
		mheap_free_pages(&heap, b, 400);
	mheap_free_pages(&heap, a, 1);
	mh_release(&heap);
}

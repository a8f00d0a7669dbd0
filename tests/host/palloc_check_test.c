/*
 * palloc_check catches real corruption (summaries, bitmaps, scavenged
 * bits, counts, the hint), a find raises the hint to the first free page
 * and an allocation at the hint moves it past itself, a hint at the
 * arena's end reads no metadata past the arena, a bad free panics
 * with a message naming the range and a dump of the chunk, before
 * changing anything, and the lock contract is asserted. Panics are caught
 * by the POSIX port.
 */
#include "palloc_test_util.h"

static const struct palloc_test_chunk two[] = {
        {.chunk = 0, .alloc = {{0, 100}}, .scav = {{200, 50}}},
        {.chunk = 1},
};

/* Builds p over 16 chunks with two[] (levels: root + leaf). */
static bool build(struct palloc *p)
{
	return tp_new(p, TP_BASE, 16, 0) && palloc_test_build(p, two, 2);
}

/* Expects palloc_check to panic with a message containing want. */
static void expect_check_fails(struct palloc *p, const char *want)
{
	if (!MM_PORT_PANICS(palloc_check(p)))
		ktest_fail_at(__FILE__, __LINE__, "check missed: %s", want);
	else if (!strstr(mm_port_last_panic(), want))
		ktest_fail_at(__FILE__, __LINE__, "check said \"%s\", not %s",
		              mm_port_last_panic(), want);
}

KTEST(palloc_check, catches_corrupt_summaries)
{
	struct palloc p;
	KASSERT(build(&p));
	KASSERT_EQ(p.levels, 2);
	TP_CHECK(&p, "clean");
	palloc_sum_t *leaf = palloc_test_summary(&p, 1, 0);
	palloc_sum_t *root = palloc_test_summary(&p, 0, 0);
	KASSERT(leaf && root);
	KEXPECT_EQ(*leaf, palloc_sum_pack(0, 412, 412));
	palloc_sum_t saved = *leaf;
	*leaf = palloc_sum_pack(0, 413, 412);
	expect_check_fails(&p, "check: level 1 entry 0 (pages from "
	                       "0x4000000000) is (start 0, max 413, end 412), "
	                       "but its bitmaps say (0, 412, 412)");
	*leaf = saved;
	TP_CHECK(&p, "leaf restored");
	saved = *root;
	*root = palloc_sum_pack(0, 900, 0);
	expect_check_fails(&p, "level 0 entry 0");
	expect_check_fails(&p, "children say");
	*root = saved;
	/* A summary where nothing is grown must stay 0. */
	*palloc_test_summary(&p, 1, 5) = palloc_sum_free(9);
	expect_check_fails(&p, "level 1 entry 5");
	*palloc_test_summary(&p, 1, 5) = 0;
	TP_CHECK(&p, "restored");
	tp_release(&p);
}

KTEST(palloc_check, catches_corrupt_bitmaps_and_counts)
{
	struct palloc p;
	KASSERT(build(&p));
	struct pallocbits *a = palloc_test_alloc_bits(&p, 1);
	a->w[3] |= 1; /* allocated behind the summaries' back */
	expect_check_fails(&p, "level 1 entry 1");
	a->w[3] &= ~1ull;
	p.scav[0].w[0] |= 1; /* page 0 is allocated */
	expect_check_fails(&p, "page 0x4000000000 is allocated and scavenged");
	p.scav[0].w[0] &= ~1ull;
	p.stats.free_pages++;
	expect_check_fails(&p, "stats say");
	p.stats.free_pages--;
	TP_CHECK(&p, "restored");
	tp_release(&p);
}

KTEST(palloc_check, catches_a_bad_search_hint)
{
	struct palloc p;
	KASSERT(build(&p));
	KEXPECT_EQ(palloc_test_search_pi(&p), 100); /* the first free page */
	palloc_test_set_search_pi(&p, 101);
	expect_check_fails(&p, "search hint 0x4000065000 is above the free "
	                       "page 0x4000064000");
	palloc_test_set_search_pi(&p, 16 * 512 + 1);
	expect_check_fails(&p, "past the arena");
	palloc_test_set_search_pi(&p, 0); /* low is always allowed */
	TP_CHECK(&p, "a low hint");
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), TP_BASE + 100 * 4096);
	/* The find on the way learned the first free page. */
	KEXPECT_EQ(palloc_test_search_pi(&p), 101);
	tp_release(&p);
}

/* A find that descends past the hint's chunk learns the first free page
 * on its way down: the leaf's window, then the chunk's first clear bit. */
KTEST(palloc_check, a_slow_find_raises_the_hint_to_the_first_free_page)
{
	struct palloc p;
	const struct palloc_test_chunk holes[] = {
	        {.chunk = 0, .alloc = {{0, 512}}},
	        {.chunk = 1, .alloc = {{0, 10}, {11, 9}}},
	};
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_test_build(&p, holes, 2));
	palloc_test_set_search_pi(&p, 0); /* chunk 0 is full: no fast path */
	KEXPECT_EQ(palloc_alloc(&p, 100, NULL), tp_addr(&p, P(1, 20)));
	KEXPECT_EQ(palloc_test_search_pi(&p), P(1, 10));
	TP_CHECK(&p, "after the slow find");
	tp_release(&p);
}

/* An alloc_range that starts at the hint moves it past the range; one
 * elsewhere leaves it. */
KTEST(palloc_check, alloc_range_at_the_hint_moves_it_past_the_range)
{
	struct palloc p;
	KASSERT(build(&p));
	KASSERT_EQ(palloc_test_search_pi(&p), 100);
	KEXPECT(palloc_alloc_range_locked(&p, tp_addr(&p, 300), 5, NULL));
	KEXPECT_EQ(palloc_test_search_pi(&p), 100);
	KEXPECT(palloc_alloc_range_locked(&p, tp_addr(&p, 100), 5, NULL));
	KEXPECT_EQ(palloc_test_search_pi(&p), 105);
	TP_CHECK(&p, "after the ranges");
	tp_release(&p);
}

KTEST(palloc_check, find_panics_on_a_lying_tree)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	struct palloc_test_chunk full = {.chunk = 3, .alloc = {{0, 512}}};
	KASSERT(palloc_test_build(&p, &full, 1));
	/* Both levels claim an inner run of 5 in chunk 3, which is full. */
	*palloc_test_summary(&p, 1, 3) = palloc_sum_pack(0, 5, 0);
	*palloc_test_summary(&p, 0, 0) = palloc_sum_pack(0, 5, 0);
	palloc_test_set_search_pi(&p, 0);
	KEXPECT(MM_PORT_PANICS(palloc_alloc(&p, 1, NULL)));
	KEXPECT(strstr(mm_port_last_panic(), "chunk 3's summary promised 1 "
	                                     "free pages"));
	tp_release(&p);
}

/* Expects free(base, n) to panic naming the range and the page, with the
 * allocator unchanged. */
static void expect_bad_free(struct palloc *p, uintptr_t base, size_t n,
                            const char *page_why)
{
	char want[160];
	struct tp_snap s = tp_snapshot(p);
	snprintf(want, sizeof(want),
	         "palloc: free [0x%lx, 0x%lx) (%zu pages): %s", base,
	         base + n * 4096, n, page_why);
	if (!MM_PORT_PANICS(palloc_free(p, base, n)))
		ktest_fail_at(__FILE__, __LINE__, "bad free accepted: %s",
		              want);
	else if (strncmp(mm_port_last_panic(), want, strlen(want)) != 0)
		ktest_fail_at(__FILE__, __LINE__, "said \"%s\", want \"%s\"",
		              mm_port_last_panic(), want);
	if (!tp_unchanged(p, s))
		ktest_fail_at(__FILE__, __LINE__, "bad free changed state: %s",
		              want);
}

KTEST(palloc_check, bad_frees_panic_and_change_nothing)
{
	struct palloc p;
	KASSERT(build(&p));
	expect_bad_free(&p, TP_BASE + 50 * 4096, 60,
	                "page 0x4000064000 is not allocated");
	expect_bad_free(&p, TP_BASE + 512 * 4096, 1,
	                "page 0x4000200000 is not allocated");
	expect_bad_free(&p, TP_BASE + 3 * 512 * 4096, 1,
	                "page 0x4000600000 is in a chunk that was never grown");
	expect_bad_free(&p, TP_BASE + 100 * 4096, 600,
	                "page 0x4000064000 is not allocated");
	expect_bad_free(&p, TP_BASE + 100 * 4096, 1000,
	                "page 0x4000400000 is in a chunk that was never grown");
	expect_bad_free(&p, TP_BASE - 4096, 2,
	                "page 0x3ffffff000 is outside the arena");
	expect_bad_free(&p, TP_BASE + 16 * 512 * 4096 - 4096, 2,
	                "page 0x4002000000 is past the arena's end");
	expect_bad_free(&p, TP_BASE + 12, 1,
	                "page 0x400000000c is not page "
	                "aligned");
	expect_bad_free(&p, TP_BASE, 0,
	                "page 0x4000000000 starts an empty "
	                "range");
	/* Double free. */
	palloc_free(&p, TP_BASE + 10 * 4096, 5);
	expect_bad_free(&p, TP_BASE + 10 * 4096, 5,
	                "page 0x400000a000 is not allocated");
	TP_CHECK(&p, "after bad frees");
	tp_release(&p);
}

/*
 * A grown chunk's metadata must all be mapped (palloc_grow.c's invariant):
 * a grown bit set for a chunk whose bitmaps were never prepared is
 * reported by name. Chunk 100 of 256 has its leaf summary on chunk 0's
 * page, which is mapped, but its bitmaps on a page of their own, which is
 * not: the check read them and faulted.
 */
KTEST(palloc_check, catches_a_grown_chunk_without_metadata)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 256, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	TP_CHECK(&p, "clean");
	p.grown[100 / 64] |= 1ull << (100 % 64);
	expect_check_fails(&p, "check: chunk 100 is grown but its metadata "
	                       "is not mapped");
	p.grown[100 / 64] &= ~(1ull << (100 % 64));
	TP_CHECK(&p, "restored");
	tp_release(&p);
}

KTEST(palloc_check, bad_free_dumps_the_chunk)
{
	struct palloc p;
	KASSERT(build(&p));
	KEXPECT(MM_PORT_PANICS(palloc_free(&p, TP_BASE + 90 * 4096, 20)));
	const char *msg = mm_port_last_panic();
	KEXPECT(strstr(msg, "its chunk [0x4000000000, +2 MiB), page 100 of "
	                    "512"));
	KEXPECT(strstr(msg, "alloc ffffffffffffffff 0000000fffffffff "
	                    "0000000000000000"));
	KEXPECT(strstr(msg, "scav  0000000000000000 0000000000000000 "
	                    "0000000000000000 03ffffffffffff00 "
	                    "0000000000000000"));
	KEXPECT(strstr(msg, "summary (start 0, max 412, end 412); search "
	                    "hint 0x4000064000"));
	tp_release(&p);
}

static const char *const unlocked_names[] = {
        "palloc_alloc_mask_locked",  "palloc_alloc_backed_locked",
        "palloc_alloc_range_locked", "palloc_free_mask_locked",
        "palloc_free_check_locked",  "palloc_free_below_locked",
        "palloc_scav_take_locked",   "palloc_scav_return_locked",
        "palloc_grow_commit_locked",
};

/* Calls the _locked function unlocked_names[i] names (without the lock);
 * true if it panicked. A function of its own for MM_PORT_PANICS's setjmp.
 */
__attribute__((noinline)) static bool unlocked_call_panics(struct palloc *p,
                                                           size_t i)
{
	uint64_t mask;
	struct palloc_backed b;
	struct palloc_run run;
	uintptr_t end = TP_BASE + PALLOC_CHUNK_BYTES;
	switch (i) {
	case 0:
		return MM_PORT_PANICS(palloc_alloc_mask_locked(p, 1, &mask));
	case 1:
		return MM_PORT_PANICS(
		        palloc_alloc_backed_locked(p, 1, NULL, &b));
	case 2:
		return MM_PORT_PANICS(
		        palloc_alloc_range_locked(p, TP_BASE, 1, NULL));
	case 3:
		return MM_PORT_PANICS(
		        palloc_free_mask_locked(p, TP_BASE, 1, 0));
	case 4:
		return MM_PORT_PANICS(palloc_free_check_locked(p, TP_BASE, 1));
	case 5:
		return MM_PORT_PANICS(palloc_free_below_locked(p, end));
	case 6:
		return MM_PORT_PANICS(palloc_scav_take_locked(p, 1, 0, &run));
	case 7:
		return MM_PORT_PANICS(palloc_scav_return_locked(p, TP_BASE, 1));
	default:
		return MM_PORT_PANICS(palloc_grow_commit_locked(
		        p, TP_BASE, PALLOC_CHUNK_BYTES));
	}
}

KTEST(palloc_check, lock_contract)
{
	mm_lock_t lock;
	mm_lock_init(&lock, "test heap", MM_RANK_HEAP);
	struct palloc p;
	struct palloc_config cfg = {.arena_base = TP_BASE,
	                            .arena_bytes = 4 * PALLOC_CHUNK_BYTES,
	                            .owner_lock = &lock};
	KASSERT(palloc_init(&p, &cfg));
	KEXPECT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES)); /* locks */
	KEXPECT(MM_PORT_PANICS(palloc_alloc_locked(&p, 1, NULL)));
	KEXPECT(strstr(mm_port_last_panic(), "palloc_alloc_locked called "
	                                     "without the owner's lock"));
	KEXPECT(MM_PORT_PANICS(palloc_free_locked(&p, TP_BASE, 1)));
	KEXPECT(MM_PORT_PANICS(palloc_check_locked(&p)));
	/* Every other _locked call asserts it too, naming itself. */
	for (size_t i = 0; i < NELEM(unlocked_names); i++)
		if (!unlocked_call_panics(&p, i) ||
		    !strstr(mm_port_last_panic(), unlocked_names[i]))
			ktest_fail_at(__FILE__, __LINE__,
			              "%s without the lock: %s",
			              unlocked_names[i], mm_port_last_panic());
	unsigned long irq = mm_lock_acquire(&lock);
	KEXPECT_EQ(palloc_alloc_locked(&p, 1, NULL), TP_BASE);
	KEXPECT(MM_PORT_PANICS(palloc_grow_prepare(&p, TP_BASE, 4096)));
	KEXPECT(strstr(mm_port_last_panic(), "with the owner's lock held"));
	mm_lock_release(&lock, irq);
	/* Concurrent prepares are a caller bug; palloc notices. */
	p.preparing = 1;
	KEXPECT(MM_PORT_PANICS(palloc_grow_prepare(
	        &p, TP_BASE + 3 * PALLOC_CHUNK_BYTES, PALLOC_CHUNK_BYTES)));
	KEXPECT(strstr(mm_port_last_panic(), "concurrent grow_prepare"));
	p.preparing = 0;
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), TP_BASE + 4096);
	palloc_check(&p);
	tp_release(&p);
}

/* The refusal record holds the last call's refusal only: each alloc,
 * alloc_range and grow_commit clears it first, so an owner that takes it
 * after a call that went through finds nothing, not an older refusal. */
KTEST(palloc_check, a_refusal_is_cleared_by_the_next_call)
{
	struct palloc p;
	struct palloc_refusal r;
	KASSERT(tp_new(&p, TP_BASE, 4, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KEXPECT_EQ(palloc_alloc_locked(&p, 0, NULL), 0);
	KEXPECT_EQ(palloc_alloc_locked(&p, 1, NULL), TP_BASE);
	KEXPECT(!palloc_take_refusal_locked(&p, &r));
	KEXPECT(!palloc_alloc_range_locked(&p, TP_BASE, 1, NULL));
	KEXPECT(palloc_alloc_range_locked(&p, TP_BASE + 4096, 1, NULL));
	KEXPECT(!palloc_take_refusal_locked(&p, &r));
	KEXPECT(!palloc_grow_commit_locked(&p, TP_BASE + 1, 1));
	KEXPECT(palloc_grow_commit_locked(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KEXPECT(!palloc_take_refusal_locked(&p, &r));
	TP_CHECK(&p, "after the refusals");
	tp_release(&p);
}

/* Invariant 5 covers every count, not only free_pages (a mutant that
 * dropped the grown and scavenged counts from the check survived). */
KTEST(palloc_check, catches_wrong_grown_and_scavenged_counts)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 4, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KEXPECT_EQ(palloc_alloc(&p, 10, NULL), TP_BASE);
	TP_CHECK(&p, "clean");
	p.stats.scav_pages++;
	expect_check_fails(&p, "counted 512 grown, 502 free, 502 scavenged "
	                       "pages; stats say 512, 502, 503");
	p.stats.scav_pages--;
	p.stats.grown_pages += PALLOC_CHUNK_PAGES;
	expect_check_fails(&p, "counted 512 grown, 502 free, 502 scavenged "
	                       "pages; stats say 1024, 502, 502");
	p.stats.grown_pages -= PALLOC_CHUNK_PAGES;
	TP_CHECK(&p, "restored");
	tp_release(&p);
}

/* palloc_scav.c's invariant 3, which palloc_check verifies too. */
KTEST(palloc_check, catches_a_scavenge_cursor_past_the_arena)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 4, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	p.scav_top = 4; /* "the chunk below 4": the top chunk, allowed */
	TP_CHECK(&p, "cursor at the arena's end");
	p.scav_top = 5;
	expect_check_fails(&p, "scavenge cursor chunk 5 is past the arena's "
	                       "4 chunks");
	p.scav_top = 0;
	TP_CHECK(&p, "restored");
	tp_release(&p);
}

/* Invariant 6: the free page 0 is named before the summary that then
 * disagrees with the bitmap (the check would otherwise blame the
 * summary, not say that 0 could now come back as an address). */
KTEST(palloc_check, catches_page_0_free_in_an_arena_at_0)
{
	struct palloc p;
	KASSERT(tp_new(&p, 0, 4, 0));
	KASSERT(palloc_grow(&p, 0, PALLOC_CHUNK_BYTES));
	TP_CHECK(&p, "clean");
	p.alloc[0].w[0] &= ~1ull;
	expect_check_fails(&p, "page 0 of an arena at address 0 is free");
	p.alloc[0].w[0] |= 1;
	TP_CHECK(&p, "restored");
	tp_release(&p);
}

/*
 * A grown bit set for a chunk whose leaf summary lies on a page that was
 * never mapped (1024 chunks: the leaf level spans two pages, and only
 * chunk 0's was mapped by its growth). The check skips unmapped summary
 * pages whole, so it must look for grown chunks under them.
 */
KTEST(palloc_check, catches_a_grown_chunk_whose_summary_is_unmapped)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 1024, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	TP_CHECK(&p, "clean");
	p.grown[600 / 64] |= 1ull << (600 % 64);
	expect_check_fails(&p, "chunk 600 is grown but its summary is not "
	                       "mapped");
	p.grown[600 / 64] &= ~(1ull << (600 % 64));
	TP_CHECK(&p, "restored");
	tp_release(&p);
}

/*
 * With the hint at the arena's end, alloc returns 0 at once and reads no
 * metadata past the arena (a mutant that let the hint's fast path run
 * there survived: the chunk past a 64-chunk arena has its grown bit in
 * the word after the grown bitmap and its leaf summary after the leaf
 * level). Planted, they claim a free chunk 64 whose bitmap is chunk 0's
 * scavenged bits, all clear. The parts are packed (palloc_grow.c): the
 * word after the leaf level is chunk 0's allocation bitmap, so both words
 * are put back as they were, not zeroed.
 */
KTEST(palloc_check, a_hint_at_the_end_reads_nothing_past_the_arena)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 64, 0));
	KASSERT_EQ(p.levels, 2);
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KEXPECT_EQ(palloc_alloc(&p, 512, NULL), TP_BASE);
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), 0);
	KASSERT_EQ(palloc_test_search_pi(&p), P(64, 0));
	uint64_t grown1 = p.grown[1];
	palloc_sum_t leaf64 = p.summary[1][64];
	p.grown[1] |= 1;
	p.summary[1][64] = palloc_sum_free(9); /* 512 pages free */
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), 0);
	KEXPECT_EQ(palloc_test_search_pi(&p), P(64, 0));
	p.grown[1] = grown1;
	p.summary[1][64] = leaf64;
	TP_CHECK(&p, "plants removed");
	tp_release(&p);
}

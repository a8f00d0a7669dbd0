/*
 * The metadata heap's blocks for the heap's users' metadata
 * (mm/spanheap_meta_blocks.c): small blocks share a page, zeroed and
 * aligned, and a run's pages go back when its last block does; a large
 * block is a run of its own; a free of the wrong size panics; the
 * checker finds a run whose count is broken; the failure injection picks
 * a block as it picks a small allocation; and the leak scan reads a
 * pool's reserve array, the only pointer to the elements it holds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* True if [p, p + n) is in the metadata heap's arena, and zeroed. */
static bool meta_and_zero(const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p, lo = sh.meta.arena_base;
	return a >= lo && a + n <= lo + sh.meta.arena_pages * MM_PAGE_SIZE &&
	       all_bytes(p, n, 0);
}

KTEST(spanheap_meta_blocks, small_blocks_share_a_page_that_goes_back)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t base = sh_in_use_pages(&sh.meta);
	enum { PER_PAGE = (MM_PAGE_SIZE - SPANHEAP_META_RUN_HDR) / 64 };
	static void *b[PER_PAGE + 1];
	for (size_t i = 0; i < PER_PAGE; i++) {
		KASSERT(b[i] = spanheap_meta_alloc(&sh, 40));
		KEXPECT(meta_and_zero(b[i], 40));
		KEXPECT_EQ((uintptr_t)b[i] % 64, 0);
		memset(b[i], 0xa5, 64);
	}
	KEXPECT_EQ(sh_in_use_pages(&sh.meta), base + 1);
	KEXPECT_EQ(sh.meta_blocks.pages, 1);
	KASSERT(b[PER_PAGE] =
	                spanheap_meta_alloc(&sh, 64)); /* the page is full */
	KEXPECT_EQ(sh.meta_blocks.pages, 2);
	SH_CHECK(&sh, "with two runs");
	/* A block freed and taken again is zeroed again. */
	spanheap_meta_free(&sh, b[3], 40);
	KASSERT(b[3] = spanheap_meta_alloc(&sh, 33));
	KEXPECT(meta_and_zero(b[3], 64));
	/* Blocks of another class, and a large one, in runs of their own. */
	void *k = spanheap_meta_alloc(&sh, 1024);
	void *l = spanheap_meta_alloc(&sh, 5000);
	KASSERT(k && l);
	KEXPECT(meta_and_zero(k, 1024) && meta_and_zero(l, 5000));
	KEXPECT_EQ(sh.meta_blocks.pages, 5);
	SH_CHECK(&sh, "with four runs");
	for (size_t i = 0; i <= PER_PAGE; i++)
		spanheap_meta_free(&sh, b[i], i == PER_PAGE ? 64 : 40);
	spanheap_meta_free(&sh, k, 1024);
	spanheap_meta_free(&sh, l, 5000);
	spanheap_meta_free(&sh, NULL, 40);
	KEXPECT_EQ(sh.meta_blocks.pages, 0);
	KEXPECT_EQ(sh_in_use_pages(&sh.meta), base);
	SH_CHECK(&sh, "with every block back");
	sh_heap_release(&heap, &sh);
}

/* A free that names another size than the block's (another class, a
 * large block's other length) or a pointer out of the metadata heap
 * panics before it touches a run. */
KTEST(spanheap_meta_blocks, a_free_of_another_size_panics)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *b = spanheap_meta_alloc(&sh, 100),
	     *l = spanheap_meta_alloc(&sh, 3000);
	void *o = spanheap_alloc(&sh, 100, 0);
	KASSERT(b && l && o);
	EXPECT_MISUSE(spanheap_meta_free(&sh, b, 300), "freed as 300 bytes", b);
	EXPECT_MISUSE(spanheap_meta_free(&sh, l, 3001), "freed as 3001", l);
	EXPECT_MISUSE(spanheap_meta_free(&sh, o, 100), "not a block", o);
	spanheap_meta_free(&sh, b, 128); /* its class's size is its size */
	spanheap_meta_free(&sh, l, 3000);
	spanheap_free(&sh, o);
	SH_CHECK(&sh, "after the refused frees");
	sh_heap_release(&heap, &sh);
}

/*
 * What an owner of the blocks can get wrong panics, naming the block,
 * before it touches a run: a second free (its run still up, or gone
 * back), a pointer inside a block (a small one, a large one's second
 * page), a page of the metadata heap that holds no run. Until a review a
 * second free put the block on its run's chain twice (a loop) and gave
 * the run's pages back with a block still in use, and a large block's
 * second free emptied the list of full runs; an inner pointer went on
 * the chain as a block.
 */
KTEST(spanheap_meta_blocks, a_second_free_or_an_inner_pointer_panics)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *a = spanheap_meta_alloc(&sh, 100),
	     *b = spanheap_meta_alloc(&sh, 100);
	char *l = spanheap_meta_alloc(&sh, 5000); /* two pages */
	char *k = spanheap_meta_alloc(&sh, 64);   /* alone on its page */
	KASSERT(a && b && l && k);
	spanheap_meta_free(&sh, a, 100);
	EXPECT_MISUSE(spanheap_meta_free(&sh, a, 100), "freed already", a);
	EXPECT_MISUSE(spanheap_meta_free(&sh, b + 64, 100),
	              "not the start of a block", b + 64);
	EXPECT_MISUSE(spanheap_meta_free(&sh, l + MM_PAGE_SIZE, 5000),
	              "not the start of a block", l + MM_PAGE_SIZE);
	char *spans = (char *)sh.spans + 64; /* the heap's own page */
	EXPECT_MISUSE(spanheap_meta_free(&sh, spans, 64), "not a block", spans);
	SH_CHECK(&sh, "after the refused frees");
	spanheap_meta_free(&sh, l, 5000);
	EXPECT_MISUSE(spanheap_meta_free(&sh, l, 5000), "not a block", l);
	spanheap_meta_free(&sh, k, 64); /* its page goes back */
	EXPECT_MISUSE(spanheap_meta_free(&sh, k, 64), "not a block", k);
	SH_CHECK(&sh, "after the second frees");
	/* A free block's link written after its free (a freed reserve
	 * array written through a stale pointer): the next free's walk of
	 * the chain stops there, and the checker names the run. */
	char *c = spanheap_meta_alloc(&sh, 100);
	KASSERT(c);
	spanheap_meta_free(&sh, a = spanheap_meta_alloc(&sh, 100), 100);
	*(uintptr_t *)a = 0x1000; /* no page there */
	spanheap_meta_free(&sh, c, 100);
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(), "a free block not of the run"));
	/* Its link again: a fresh run's chain is in block order. */
	*(uintptr_t *)a = (uintptr_t)(a + 128);
	SH_CHECK(&sh, "mended");
	spanheap_meta_free(&sh, b, 100);
	KEXPECT_EQ(sh.meta_blocks.pages, 0);
	SH_CHECK(&sh, "with every block back");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_meta_blocks, the_checker_finds_a_broken_run)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *b = spanheap_meta_alloc(&sh, 200);
	KASSERT(b);
	struct spanheap_meta_run *r =
	        (struct spanheap_meta_run *)((uintptr_t)b &
	                                     ~(uintptr_t)(MM_PAGE_SIZE - 1));
	KASSERT(r->block == 256 && r->used == 1);
	r->used = 2; /* a block counted that is on the free chain */
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(),
	               "its used count is not its blocks less its free ones"));
	r->used = 1;
	sh.meta_blocks.pages++;
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(), "runs hold 1 pages, counted 2"));
	sh.meta_blocks.pages--;
	/* A page whose entry names no run: its blocks' frees would panic. */
	mheap_span_set(&sh.meta, (uintptr_t)r, 1, MHEAP_SPAN_PAGES);
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(), "entry does not name it"));
	mheap_span_set(&sh.meta, (uintptr_t)r, 1, r);
	/* A list that loops: the check ends, and says so (it walked the
	 * loop for ever, under the heap's lock, until a review). */
	r->next = r;
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(), "prev link is not the run"));
	r->next = NULL;
	SH_CHECK(&sh, "mended");
	spanheap_meta_free(&sh, b, 200);
	sh_heap_release(&heap, &sh);
}

/* The span heap's failure injection counts a block as a small
 * allocation: a pool's or a cache's out-of-memory path is reached by the
 * switches that reached it when these were objects (mm.fail, mmfail). */
KTEST(spanheap_meta_blocks, failure_injection_picks_a_block)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct spanheap_fail_attr a = {.interval = 2,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1,
	                               .what = SPANHEAP_FAIL_SMALL};
	KASSERT(spanheap_fail_arm(&sh, &a));
	void *b = spanheap_meta_alloc(&sh, 64);
	KEXPECT(b != NULL);
	KEXPECT(spanheap_meta_alloc(&sh, 64) == NULL); /* the 2nd call */
	void *c = spanheap_meta_alloc(&sh, 64);
	KEXPECT(c != NULL);
	spanheap_fail_disarm(&sh);
	a.what = SPANHEAP_FAIL_LARGE; /* not a block's */
	KASSERT(spanheap_fail_arm(&sh, &a));
	void *d = spanheap_meta_alloc(&sh, 64),
	     *e = spanheap_meta_alloc(&sh, 64);
	KEXPECT(d && e);
	spanheap_fail_disarm(&sh);
	void *all[] = {b, c, d, e};
	for (int i = 0; i < 4; i++)
		spanheap_meta_free(&sh, all[i], 64);
	KEXPECT_EQ(sh.meta_blocks.pages, 0);
	sh_heap_release(&heap, &sh);
}

/* A leak scan of sh with pool alone as its root: the leaks' count, *r
 * the result and *first the first leak's address (0: none); -1 without
 * memory for the work. */
static long scan_from_pool(struct mempool *pool, struct spanheap_leak_result *r,
                           uintptr_t *first)
{
	size_t bytes = spanheap_leak_work_bytes(&sh, 8);
	void *work = calloc(1, bytes);
	*first = 0;
	if (!work)
		return -1;
	struct spanheap_leak_range root = {(uintptr_t)pool,
	                                   (uintptr_t)(pool + 1)};
	long n = spanheap_leak_scan(&sh, work, bytes, &root, 1, 0, 8, r);
	*first = n >= 1 ? spanheap_leak_list(work)[0].addr : 0;
	free(work);
	return n;
}

/* Fails the current test unless scan_from_pool(pool) finds one leak, the
 * object at lost_at, among nobjects live ones, the others reachable (the
 * reserve's elements, through the pool's array). */
static void expect_the_one_leak(struct mempool *pool, uintptr_t lost_at,
                                size_t nobjects)
{
	struct spanheap_leak_result r;
	uintptr_t first;
	KEXPECT_EQ(scan_from_pool(pool, &r, &first), 1);
	KEXPECT_EQ(first, lost_at);
	KEXPECT_EQ(r.objects, nobjects);
	KEXPECT_EQ(r.reachable, nobjects - 1);
}

/*
 * A pool's elements in its reserve are pointed to by its reserve array
 * alone, a block of the metadata heap that no root covers: the leak scan
 * reads the blocks, so they are reachable, and an object nothing points
 * to still leaks. Without the blocks read (when the array moved out of
 * the objects), every element of the reserve was reported as a leak.
 */
KTEST(spanheap_meta_blocks, the_leak_scan_reads_a_pools_reserve)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	KASSERT(sh.track);
	static struct mempool pool; /* a root, as a kernel's bss */
	KASSERT(mempool_init_heap(&pool, &sh, "scanned", 4, 64));
	void *lost = spanheap_alloc(&sh, 64, 0);
	KASSERT(lost);
	uintptr_t lost_at = (uintptr_t)lost;
	lost = NULL;
	expect_the_one_leak(&pool, lost_at, 5);
	spanheap_free(&sh, (void *)lost_at);
	KEXPECT(mempool_destroy(&pool));
	sh_heap_release(&heap, &sh);
}

/*
 * An element taken from the reserve leaves no copy of its address in
 * the slot it left: the scan reads the whole array, and a stale slot
 * kept whatever the pool last handed out from there reachable, its
 * leak never reported (found by rv48's review: the pop lowered the
 * count and left the slot).
 */
KTEST(spanheap_meta_blocks, an_element_taken_from_the_reserve_can_leak)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	static struct mempool pool; /* a root, as a kernel's bss */
	KASSERT(mempool_init_heap(&pool, &sh, "emptied", 4, 64));
	struct spanheap_fail_attr all = {.interval = 1,
	                                 .probability = SPANHEAP_FAIL_PROB_ALL,
	                                 .times = -1};
	KASSERT(spanheap_fail_arm(&sh, &all));
	void *e = mempool_alloc(&pool, MM_ATOMIC); /* the reserve's */
	spanheap_fail_disarm(&sh);
	KASSERT(e);
	uintptr_t lost_at = (uintptr_t)e;
	e = NULL;
	expect_the_one_leak(&pool, lost_at, 4);
	mempool_free(&pool, (void *)lost_at);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	sh_heap_release(&heap, &sh);
}

/*
 * spanheap_meta_blocks_pages, the metadata arena's count of its users'
 * blocks (spanheap_meta.c, users_pages), is the pages n blocks take:
 * checked against the runs made for them, in a class's pages (at one
 * block, a page's worth and one more) and past SPANHEAP_META_BLOCK_MAX
 * (a run each, with its header). Nothing compared the two: a count that
 * rounded down, that took a block of the largest class for a run of its
 * own, or that left out a large run's header passed every test.
 */
KTEST(spanheap_meta_blocks, the_sizing_counts_the_pages_blocks_take)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static const size_t sizes[] = {
	        40, sizeof(struct objcache), SPANHEAP_META_BLOCK_MAX,
	        SPANHEAP_META_BLOCK_MAX + 1, 8 * MM_PAGE_SIZE};
	static const size_t counts[] = {1, 2, 3, 4, 31, 32, 63, 64};
	static void *b[64];
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]);
		     c++) {
			size_t n = counts[c], nbytes = sizes[s];
			if (nbytes > SPANHEAP_META_BLOCK_MAX && n > 4)
				continue; /* a run each: 4 show it */
			for (size_t i = 0; i < n; i++)
				KASSERT(b[i] = spanheap_meta_alloc(&sh,
				                                   nbytes));
			if (sh.meta_blocks.pages !=
			    spanheap_meta_blocks_pages(n, nbytes))
				ktest_fail_at(
				        __FILE__, __LINE__,
				        "%zu blocks of %zu bytes: %zu "
				        "pages, counted %zu",
				        n, nbytes, (size_t)sh.meta_blocks.pages,
				        spanheap_meta_blocks_pages(n, nbytes));
			for (size_t i = 0; i < n; i++)
				spanheap_meta_free(&sh, b[i], nbytes);
			KASSERT_EQ(sh.meta_blocks.pages, 0);
		}
	SH_CHECK(&sh, "after the blocks");
	sh_heap_release(&heap, &sh);
}

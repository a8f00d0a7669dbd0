/*
 * tests/port/min_port_limits_test.c: the heaps over the minimal port
 * (min_port.c) at their limits: running out of the arena (NULL, nothing
 * leaked), giving everything back (no free page keeps its memory, reused
 * pages come back zeroed), a reserved-element pool outlasting a full
 * arena, the page heap alone (refilled to its reserve) and in debug mode,
 * and misuse reaching the port's mm_panic. The heap and the checks are
 * min_port_test.c's (min_port_test.h); each test leaves the heap with
 * nothing in use.
 */
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include "kernel/ktest.h"
#include "mm/mm.h"
#include "tests/port/min_port.h"
#include "tests/port/min_port_test.h"

/* Fills the arena with 256 KiB objects until the heap says no, then frees
 * them; returns how many it got. */
static size_t fill_arena(struct spanheap *sh)
{
	static void *held[ARENA_BYTES / (256 << 10) + 1];
	size_t n = 0;
	while (n < sizeof(held) / sizeof(held[0])) {
		held[n] = spanheap_alloc(sh, 256 << 10, 0);
		if (!held[n])
			break;
		test_fill(held[n], 256 << 10);
		n++;
	}
	KEXPECT(n < sizeof(held) / sizeof(held[0])); /* it did run out */
	KEXPECT(spanheap_alloc(sh, 1 << 20, MM_ATOMIC) == NULL);
	for (size_t i = 0; i < n; i++) {
		size_t bad = test_first_bad(held[i], held[i], 256 << 10);
		if (bad != 256 << 10)
			ktest_fail_at(__FILE__, __LINE__,
			              "object %zu: byte %zu changed", i, bad);
		spanheap_free(sh, held[i]);
	}
	spanheap_release_all(sh);
	return n;
}

/* Out of memory is NULL, and nothing leaked: a second run gets as many
 * objects and ends with as many pages in use. */
KTEST(min_port, out_of_memory_leaks_nothing)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	size_t first = fill_arena(sh);
	size_t floor_pages = test_in_use_pages();
	KEXPECT(first >= ARENA_BYTES / (256 << 10) / 2);
	KEXPECT_EQ(fill_arena(sh), first);
	KEXPECT_EQ(test_in_use_pages(), floor_pages);
	test_expect_nothing_held(sh);
	test_check_heaps(sh);
}

/* Release everything: no free page keeps its memory, and pages given back
 * come back zeroed, never with the port's poison. */
KTEST(min_port, release_everything)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	void *p = spanheap_alloc(sh, 100000, 0);
	KASSERT(p != NULL);
	test_fill(p, 100000);
	spanheap_free(sh, p);
	uint64_t released = min_port_n.released_pages;
	spanheap_release_all(sh);
	struct mheap_stats st;
	mheap_stats(&test_heap, &st);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT(min_port_n.released_pages > released);
	KEXPECT(min_port_page_scavenged(p));
	unsigned char *q = spanheap_alloc(sh, 100000, 0);
	KASSERT(q != NULL);
	for (size_t j = 0; j < 100000; j++)
		if (q[j] != 0) {
			ktest_fail_at(__FILE__, __LINE__,
			              "reused page: byte %zu is %#x", j, q[j]);
			break;
		}
	spanheap_free(sh, q);
	KEXPECT_EQ(min_port_n.log_under_lock, 0);
	test_check_heaps(sh);
}

/* A reserved-element pool on the one-thread port: with the arena full, its
 * reserve still hands out its elements, MM_ATOMIC calls then get NULL,
 * and a free puts one back for the next call. (A sleeping call with the
 * reserve empty would wait for ever here: no other thread can free.)
 * Large objects fill the arena, so that no span struct is left among its
 * pages after (the next tests want long runs); everything goes back. */
KTEST(min_port, a_pool_reserve_outlasts_the_arena)
{
	enum { ELEM = 128 << 10 };
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	static struct mempool pool;
	KASSERT(mempool_init_heap(&pool, sh, "min", 4, ELEM));
	static void *held[2 * ARENA_BYTES / ELEM];
	size_t n = 0;
	for (size_t size = 2 * ELEM; size >= ELEM; size /= 2)
		while (n < sizeof(held) / sizeof(held[0]) &&
		       (held[n] = spanheap_alloc(sh, size, 0)))
			n++;
	KEXPECT(n < sizeof(held) / sizeof(held[0])); /* it ran out */
	void *e[4];
	for (int i = 0; i < 4; i++) {
		KASSERT(e[i] = mempool_alloc(&pool, MM_ATOMIC | MM_ZERO));
		size_t z = 0;
		while (z < ELEM && ((unsigned char *)e[i])[z] == 0)
			z++;
		KEXPECT_EQ(z, ELEM);
		test_fill(e[i], ELEM);
	}
	KEXPECT(mempool_alloc(&pool, MM_ATOMIC) == NULL);
	mempool_free(&pool, e[3]);
	KEXPECT((e[3] = mempool_alloc(&pool, 0)) != NULL);
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT(in.from_reserve == 5 && in.atomic_fails == 1 && in.out == 4);
	for (int i = 0; i < 3; i++) /* e[3] came back through the reserve */
		KEXPECT_EQ(test_first_bad(e[i], e[i], ELEM), ELEM);
	for (int i = 0; i < 4; i++)
		mempool_free(&pool, e[i]);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	for (size_t i = 0; i < n; i++)
		spanheap_free(sh, held[i]);
	spanheap_release_all(sh);
	test_expect_nothing_held(sh);
	test_check_heaps(sh);
}

/* MHEAP_DEBUG_SCAV_ON_FREE: a free from a thread unmaps its pages at once;
 * one that cannot sleep (pinned here) frees them the ordinary way, as
 * mheap.h says, and the port panics if it is made to unmap while pinned. */
KTEST(min_port, debug_scav_on_free_in_both_contexts)
{
	KASSERT(test_heap_get() != NULL); /* the first reservations are its */
	static struct mheap dh;
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0;
	cfg.flags = MHEAP_DEBUG_SCAV_ON_FREE;
	KASSERT(mheap_init(&dh, &cfg));
	unsigned char *p = mheap_alloc_pages(&dh, 4, 0);
	KASSERT(p != NULL);
	test_fill(p, 4 * MM_PAGE_SIZE);
	mheap_free_pages(&dh, p, 4);
	KEXPECT(min_port_page_scavenged(p));
	KEXPECT(min_port_page_scavenged(p + 3 * MM_PAGE_SIZE));
	unsigned char *q = mheap_alloc_pages(&dh, 4, MHEAP_ZERO);
	KASSERT(q != NULL);
	KEXPECT_EQ(q[0], 0);
	test_fill(q, 4 * MM_PAGE_SIZE);
	struct mm_pin pin = mm_port_pin();
	mheap_free_pages(&dh, q, 4);
	mm_port_unpin(pin);
	KEXPECT(!min_port_page_scavenged(q));
	KEXPECT_EQ(test_first_bad(q, q, 4 * MM_PAGE_SIZE), 4 * MM_PAGE_SIZE);
	mheap_check(&dh);
}

/* PORTING.md section 3: mheap_init grows nothing, and a page heap used
 * on its own is grown to its reserve by mheap_refill, after which its
 * first MHEAP_ATOMIC | MHEAP_NO_GROW allocation finds pages;
 * spanheap_init grows the page heap it is given the same way. */
KTEST(min_port, a_page_heap_alone_refills_to_its_reserve)
{
	struct mheap_stats st;
	KASSERT(test_heap_get() != NULL);
	mheap_stats(&test_heap, &st);
	KEXPECT(st.grown_pages >= 16); /* test_heap_get's reserve_pages */
	static struct mheap alone;
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 16;
	KASSERT(mheap_init(&alone, &cfg));
	mheap_stats(&alone, &st);
	KEXPECT_EQ(st.grown_pages, 0);
	KEXPECT(mheap_alloc_pages(&alone, 1, MHEAP_ATOMIC | MHEAP_NO_GROW) ==
	        NULL);
	KEXPECT(mheap_refill(&alone));
	mheap_stats(&alone, &st);
	KEXPECT(st.grown_pages >= 16);
	void *p = mheap_alloc_pages(&alone, 1, MHEAP_ATOMIC | MHEAP_NO_GROW);
	KEXPECT(p != NULL);
	if (p)
		mheap_free_pages(&alone, p, 1);
	mheap_check(&alone);
}

/* Runs free(p) expecting mm_panic; true if it came, with want in its
 * message. */
static bool free_panics(struct spanheap *sh, void *p, const char *want)
{
	jmp_buf jb;
	min_port_last_panic[0] = '\0';
	min_port_catch = &jb;
	if (setjmp(jb) == 0) {
		spanheap_free(sh, p);
		min_port_catch = NULL;
		return false;
	}
	return strstr(min_port_last_panic, want) != NULL;
}

/* Misuse reaches the port's mm_panic, in the build PORTING.md describes
 * (no test hooks), and is refused before the heap changes: the checkers
 * pass afterwards and everything still goes back. */
KTEST(min_port, misuse_reaches_mm_panic)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	void *small = spanheap_alloc(sh, 48, 0);
	char *mid = spanheap_alloc(sh, 200, 0);
	void *large = spanheap_alloc(sh, 100000, 0);
	static char not_heap[64];
	KASSERT(small && mid && large);
	spanheap_free(sh, small);
	KEXPECT(free_panics(sh, small, "double free"));
	KEXPECT(free_panics(sh, mid + 16, "interior pointer"));
	spanheap_free(sh, large);
	KEXPECT(free_panics(sh, large, "freed twice"));
	KEXPECT(free_panics(sh, not_heap, "foreign pointer"));
	spanheap_free(sh, mid);
	test_check_heaps(sh);
	spanheap_release_all(sh);
	test_expect_nothing_held(sh);
}

/* A cache the port keeps (a port's subsystem's objects): 256 KiB objects
 * its mm_port_reclaim gives back (min_port_reclaim_fn). */
static void *port_cache[ARENA_BYTES / (256 << 10) + 1];
static size_t port_cached;

static bool give_back_port_cache(void)
{
	struct spanheap *sh = test_heap_get();
	size_t n = port_cached;
	while (port_cached > 0) {
		void *p = port_cache[--port_cached];
		port_cache[port_cached] = NULL;
		if (test_first_bad(p, p, 256 << 10) != 256 << 10)
			ktest_fail_at(__FILE__, __LINE__,
			              "a cached object changed");
		spanheap_free(sh, p);
	}
	return n > 0;
}

/*
 * The port's cache holds the arena. A thread allocation the page heap
 * refuses asks the port (mm_port_reclaim, nothing held: the port's
 * hook_enter checks) before it fails: with nothing to give, NULL; with
 * the cache to give back, the same 1 MiB allocation succeeds. An atomic
 * one never asks.
 */
KTEST(min_port, a_refused_allocation_asks_the_port_first)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	min_port_reclaim_fn = NULL;
	void *p;
	while (port_cached < sizeof(port_cache) / sizeof(port_cache[0]) - 1 &&
	       (p = spanheap_alloc(sh, 256 << 10, 0)) != NULL) {
		test_fill(p, 256 << 10);
		port_cache[port_cached++] = p;
	}
	uint64_t r0 = min_port_n.reclaims;
	KEXPECT(spanheap_alloc(sh, 1 << 20, 0) == NULL);
	KEXPECT(min_port_n.reclaims > r0);
	r0 = min_port_n.reclaims;
	KEXPECT(spanheap_alloc(sh, 1 << 20, MM_ATOMIC) == NULL);
	KEXPECT_EQ(min_port_n.reclaims, r0);
	size_t cached = port_cached;
	min_port_reclaim_fn = give_back_port_cache;
	void *big = spanheap_alloc(sh, 1 << 20, 0);
	min_port_reclaim_fn = NULL;
	ktest_diag("the port's cache held %zu objects of 256 KiB; 1 MiB with "
	           "its reclaim: %s",
	           cached, big ? "ok" : "NULL");
	KEXPECT(cached > 0);
	KEXPECT(big != NULL);
	KEXPECT_EQ(port_cached, 0);
	KEXPECT(min_port_n.reclaims > r0);
	if (big) {
		test_fill(big, 1 << 20);
		spanheap_free(sh, big);
	}
	give_back_port_cache();
	spanheap_release_all(sh);
	test_expect_nothing_held(sh);
	test_check_heaps(sh);
}

/*
 * Poison mode's stack depot (mm/spanheap_depot.c): a stack saved twice has
 * one handle, distinct stacks have distinct handles, each handle gives its
 * stack back; thousands of stacks share the hash table's chains; a depot
 * with no memory for a chunk, or full, keeps no stack (said once) and
 * keeps the next one when there is room; four threads saving the same
 * stacks at once agree on every handle (under ThreadSanitizer too); a
 * chunk that lost the race to be made goes back as free pages; and a
 * poison span's side table takes 32 bytes of records an object.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

#define PER_CHUNK                                    \
	(SPANHEAP_DEPOT_CHUNK_PAGES * MM_PAGE_SIZE / \
	 sizeof(struct spanheap_depot_stack))
#define DEPOT_MAX (PER_CHUNK * SPANHEAP_DEPOT_CHUNKS)

/* Synthetic stack k of n return addresses. */
static void stack_of(uint32_t k, uint32_t n, uintptr_t *pc)
{
	for (uint32_t i = 0; i < n; i++)
		pc[i] = 0xffffffff80000000ull + (uintptr_t)k * 0x40 + i * 8;
}

static uint32_t save(uint32_t k, uint32_t n)
{
	uintptr_t pc[SPANHEAP_TRACK_PCS + 2];
	stack_of(k, n, pc);
	return spanheap_depot_save(&sh.depot, &sh.meta, pc, n, false);
}

/* True if handle h gives back stack k of n (at most 8 kept). */
static bool gives(uint32_t h, uint32_t k, uint32_t n)
{
	uintptr_t want[SPANHEAP_TRACK_PCS + 2], got[SPANHEAP_TRACK_PCS];
	stack_of(k, n, want);
	uint32_t m = n < SPANHEAP_TRACK_PCS ? n : SPANHEAP_TRACK_PCS;
	return spanheap_depot_get(&sh.depot, h, got) == m &&
	       !memcmp(got, want, m * sizeof(uintptr_t));
}

KTEST(spanheap_depot, keeps_each_stack_once_and_gives_it_back)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	KASSERT(sh.track);
	uint32_t a = save(1, 5), b = save(2, 5), c = save(1, 4);
	KEXPECT(a && b && c && a != b && a != c && b != c);
	KEXPECT_EQ(save(1, 5), a);
	KEXPECT(gives(a, 1, 5) && gives(b, 2, 5) && gives(c, 1, 4));
	/* Past 8 return addresses, the first 8 are the stack. */
	uint32_t d = save(3, 10);
	KEXPECT(gives(d, 3, 10));
	KEXPECT_EQ(save(3, 9), d);
	/* No stack, and handles that are none. */
	KEXPECT_EQ(save(4, 0), 0);
	uintptr_t pc[SPANHEAP_TRACK_PCS];
	KEXPECT_EQ(spanheap_depot_get(&sh.depot, 0, pc), 0);
	KEXPECT_EQ(spanheap_depot_get(&sh.depot, SPANHEAP_DEPOT_LOST, pc), 0);
	KEXPECT_EQ(spanheap_depot_get(&sh.depot, 1000, pc), 0); /* unclaimed */

	/* 20000 stacks: 5 to a bucket; each its own, each given back. */
	static uint32_t h[20000];
	for (uint32_t k = 0; k < 20000; k++)
		KASSERT((h[k] = save(100 + k, 8)) != 0);
	uint32_t bad = 0;
	for (uint32_t k = 0; k < 20000; k++)
		bad += save(100 + k, 8) != h[k] || !gives(h[k], 100 + k, 8);
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(atomic_load(&sh.depot.lost), 0);
	/* The buckets' pages and a chunk per PER_CHUNK stacks. */
	size_t chunks = (20004 + PER_CHUNK - 1) / PER_CHUNK;
	KEXPECT_EQ(atomic_load(&sh.depot.pages),
	           SPANHEAP_DEPOT_BUCKETS * 4 / MM_PAGE_SIZE +
	                   chunks * SPANHEAP_DEPOT_CHUNK_PAGES);
	sh_heap_release(&heap, &sh);
}

/* The metadata heap's arena (the depot's pages come from it,
 * mm/spanheap_meta.c) taken but for a few pages (no room for a chunk) in
 * runs of halving sizes; returns how many, for arena_unfill. */
static void *fill[64];
static size_t sizes[64];
static int arena_fill(void)
{
	int n = 0;
	for (size_t pages = (size_t)1 << 16; pages; pages /= 2)
		while (n < 64 && (fill[n] = mheap_alloc_pages(&sh.meta, pages,
		                                              0)) != NULL)
			sizes[n++] = pages;
	return n;
}

static void arena_unfill(int n)
{
	while (n-- > 0)
		mheap_free_pages(&sh.meta, fill[n], sizes[n]);
}

/* A fresh heap in poison mode, quiet, its arena full (the fill's count in
 * *n): a first save is lost for want of a chunk, and says so. */
static bool short_of_a_chunk(int *n)
{
	if (!sh_heap_fresh_poison(&heap, &sh, true))
		return false;
	mm_port_set_quiet(true);
	*n = arena_fill();
	KEXPECT_EQ(save(1, 6), SPANHEAP_DEPOT_LOST);
	KEXPECT(strstr(mm_port_last_log(),
	               "spanheap: stack depot: no memory for a chunk"));
	return true;
}

KTEST(spanheap_depot, no_memory_for_a_chunk_keeps_no_stack_until_room)
{
	int n;
	KASSERT(short_of_a_chunk(&n));
	KEXPECT_EQ(save(2, 6), SPANHEAP_DEPOT_LOST);
	KEXPECT_EQ(atomic_load(&sh.depot.lost), 2);
	arena_unfill(n);
	uint32_t h = save(1, 6);
	KEXPECT(h != 0 && h != SPANHEAP_DEPOT_LOST && gives(h, 1, 6));
	KEXPECT_EQ(save(1, 6), h);
	mm_port_set_quiet(false);
	sh_heap_release(&heap, &sh);
}

/* A save that finds no memory for its chunk claims no handle: a long
 * shortage (a hot path's first records, saved again and again) used up
 * every handle until this version, and once memory was back the depot
 * was "full" for the heap's life, its stacks counting the lost handles
 * (review). */
KTEST(spanheap_depot, a_shortage_uses_up_no_handles)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	mm_port_set_quiet(true);
	int n = arena_fill();
	uint32_t lost = 0;
	for (uint32_t i = 0; i < DEPOT_MAX; i++)
		lost += save(1, 6) == SPANHEAP_DEPOT_LOST;
	KEXPECT_EQ(lost, DEPOT_MAX);
	arena_unfill(n);
	static struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.depot_stacks, 0);
	KEXPECT_EQ(st.depot_lost, DEPOT_MAX);
	uint32_t h = save(1, 6);
	KEXPECT(h != 0 && h != SPANHEAP_DEPOT_LOST && gives(h, 1, 6));
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.depot_stacks, 1);
	mm_port_set_quiet(false);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_depot, full_keeps_no_new_stack_and_keeps_the_old)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	mm_port_set_quiet(true);
	uint32_t first = save(1, 6);
	uint32_t lost = 0;
	for (uint32_t k = 2; k < DEPOT_MAX + 21; k++)
		lost += save(k, 3) == SPANHEAP_DEPOT_LOST;
	KEXPECT_EQ(lost, 20);
	KEXPECT(strstr(mm_port_last_log(), "spanheap: stack depot: full"));
	/* What it kept, it keeps, and finds. */
	KEXPECT(gives(first, 1, 6));
	KEXPECT_EQ(save(1, 6), first);
	KEXPECT(gives(save(DEPOT_MAX, 3), DEPOT_MAX, 3));
	static struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.depot_stacks, DEPOT_MAX);
	KEXPECT_EQ(st.depot_lost, 20);
	KEXPECT_EQ(st.depot_pages,
	           SPANHEAP_DEPOT_BUCKETS * 4 / MM_PAGE_SIZE +
	                   SPANHEAP_DEPOT_CHUNKS * SPANHEAP_DEPOT_CHUNK_PAGES);
	mm_port_set_quiet(false);
	sh_heap_release(&heap, &sh);
}

/* A depot that once had no memory for a chunk and later fills says so:
 * until this version the two shared one "said once", so the shortage's
 * line, which promises stacks again when there is room, was the last
 * word on a depot that keeps no new stack for the heap's life (review). */
KTEST(spanheap_depot, full_after_a_shortage_is_said_too)
{
	int n;
	KASSERT(short_of_a_chunk(&n));
	arena_unfill(n);
	uint32_t lost = 0;
	for (uint32_t k = 2; k < DEPOT_MAX + 12; k++)
		lost += save(k, 3) == SPANHEAP_DEPOT_LOST;
	KEXPECT_EQ(lost, 10);
	KEXPECT(strstr(mm_port_last_log(), "spanheap: stack depot: full"));
	KEXPECT_EQ(atomic_load(&sh.depot.lost), 11);
	mm_port_set_quiet(false);
	sh_heap_release(&heap, &sh);
}

/* Four threads save the same 3000 stacks, each from its own start. */
enum { SAVERS = 4, SHARED = 3000 };
static uint32_t seen[SAVERS][SHARED];

static void saver(void *arg)
{
	int id = *(int *)arg;
	mm_port_set_cpu((unsigned)id);
	for (uint32_t i = 0; i < SHARED; i++) {
		uint32_t k = (i + (uint32_t)id * 750) % SHARED;
		seen[id][k] = save(k, 7);
	}
}

KTEST(spanheap_depot, threads_saving_one_stack_agree_on_its_handle)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	static int ids[SAVERS];
	struct mm_thread *t[SAVERS];
	for (int i = 0; i < SAVERS; i++)
		ids[i] = i;
	KASSERT(start_all(t, SAVERS, saver, ids, sizeof(ids[0])));
	join_all(t, SAVERS);
	mm_port_set_cpu(0);
	uint32_t differ = 0, wrong = 0;
	for (uint32_t k = 0; k < SHARED; k++) {
		for (int i = 1; i < SAVERS; i++)
			differ += seen[i][k] != seen[0][k];
		wrong += !gives(seen[0][k], k, 7) || save(k, 7) != seen[0][k];
	}
	KEXPECT_EQ(differ, 0);
	KEXPECT_EQ(wrong, 0);
	/* Claims that lost a race are left unused: at most a few. */
	ktest_diag("%u handles claimed for %u stacks",
	           atomic_load(&sh.depot.next), (unsigned)SHARED);
	KEXPECT(atomic_load(&sh.depot.next) >= SHARED);
	sh_heap_release(&heap, &sh);
}

/* Poison mode's table for a span of 16-byte objects: the sizes and
 * owners, then 32 bytes of records an object (2 pages of objects, 6 of
 * table; 21 when the stacks were in the records). The span's pages are
 * the object heap's, the table's the metadata heap's. */
KTEST(spanheap_depot, a_spans_records_take_32_bytes_an_object)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	size_t before = sh_in_use_pages(&heap);
	size_t meta_before = sh_in_use_pages(&sh.meta) - sh_kept_pages(&sh);
	void *p = spanheap_alloc(&sh, 8, 0); /* 9 bytes with its red zone */
	KASSERT(p);
	const struct sizeclass_info *ci = &sizeclass_info[sizeclass_of(9)];
	KASSERT_EQ(ci->size, 16);
	size_t table = ci->nelems * sizeof(struct spanheap_redzone) +
	               sizeof(struct spanheap_rec_head) +
	               2 * ci->nelems * sizeof(struct spanheap_rec);
	KEXPECT_EQ(sizeof(struct spanheap_rec), 16);
	KEXPECT_EQ(sh_in_use_pages(&heap) - before, ci->npages);
	KEXPECT_EQ(sh_in_use_pages(&sh.meta) - sh_kept_pages(&sh) - meta_before,
	           (table + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* The growth's hook: once, a save of another stack, which takes the first
 * pages of the chunk just grown for its own depot chunk. */
static _Atomic bool other_saved;
static uint32_t other_handle;

static void save_meanwhile(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where == MHEAP_HOOK_GROW_COMMITTED &&
	    !atomic_exchange(&other_saved, true))
		other_handle = save(8, 3);
}

/*
 * Two saves make the same chunk at once (one in the growth the other's
 * chunk needed): the loser's pages go back as any page the span heap took
 * for itself does (spanheap_pages_put), free in the metadata heap's span
 * table. Until a review they kept the page heap's mark, and a stray
 * pointer there was told as page-heap memory used through the object
 * API; a stray pointer there is the heap's own metadata now.
 */
KTEST(spanheap_depot, a_chunk_that_lost_its_race_is_free_pages)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	KASSERT(sh.track && !atomic_load(&sh.depot.chunks[0]));
	/* The grown chunks' free pages taken: the first save grows. */
	int n = 0;
	for (size_t pages = PALLOC_CHUNK_PAGES; pages; pages /= 2)
		while (n < 64 &&
		       (fill[n] = mheap_alloc_pages(&sh.meta, pages,
		                                    MHEAP_NO_GROW)) != NULL)
			sizes[n++] = pages;
	KASSERT(n < 64);
	atomic_store(&other_saved, false);
	mheap_test_hook = save_meanwhile;
	uint32_t h = save(7, 3);
	mheap_test_hook = NULL;
	KEXPECT(atomic_load(&other_saved));
	KEXPECT(h && other_handle && h != other_handle && gives(h, 7, 3) &&
	        gives(other_handle, 8, 3));
	/* The winner's chunk is the first of the new chunk's pages, the
	 * loser's the run after it, freed. */
	char *won = (char *)atomic_load(&sh.depot.chunks[0]);
	KASSERT(won);
	char *lost = won + SPANHEAP_DEPOT_CHUNK_PAGES * MM_PAGE_SIZE;
	KEXPECT(mheap_span_lookup(&sh.meta, (uintptr_t)lost) == NULL);
	struct spanheap_where w;
	spanheap_where(&sh, lost, &w);
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_META);
	EXPECT_MISUSE(spanheap_free(&sh, lost), "in the heap's own metadata",
	              lost);
	/* Free in the metadata heap: the loser's, given back. */
	void *again = mheap_alloc_pages(&sh.meta, SPANHEAP_DEPOT_CHUNK_PAGES,
	                                MHEAP_NO_GROW);
	KEXPECT(again == lost);
	if (again)
		mheap_free_pages(&sh.meta, again, SPANHEAP_DEPOT_CHUNK_PAGES);
	arena_unfill(n);
	sh_heap_release(&heap, &sh);
}

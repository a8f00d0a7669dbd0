/*
 * The leaving mark: a free that gives an element to the pool's source
 * first marks it so (mm/mempool.c's mark_leaving), so that a racing
 * free of it that would push it into the reserve is told
 * (mempool_race.a_double_free_racing_a_free_to_the_source_is_told). Here:
 * the mark left in an element that comes back from the source is no
 * double free, and a second free of an element of a caller's source
 * (which no heap check sees) is told by it. And a named cache's pool
 * tells an object of another class at its free, not at the cache's.
 */
#include <stdbool.h>
#include <stdint.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "spanheap_panic_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static struct mempool pool;

/* An element freed to the heap carries the leaving mark in its first
 * word; the heap hands it back to the pool's next allocation (its
 * magazine is last in, first out), which must clear the mark: its free
 * is no double free. */
KTEST(mempool_leaving, a_mark_left_in_a_reused_element_is_no_double_free)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "leave", 1, 64));
	char *e = mempool_alloc(&pool, 0); /* the heap's: the reserve full */
	KASSERT(e != NULL);
	mempool_free(&pool, e); /* to the heap, marked leaving */
	char *again = mempool_alloc(&pool, 0);
	KASSERT(again != NULL);
	KEXPECT(again == e); /* else the test shows nothing */
	KEXPECT(!MM_PORT_PANICS(mempool_free(&pool, again)));
	sh_unpin_after_panic();
	KEXPECT(mempool_destroy(&pool));
	SH_CHECK(&sh, "after the reuse");
	sh_heap_release(&heap, &sh);
}

/* A source of the caller's: four static slots, freed without a check. */
static uintptr_t slots[4][8];
static unsigned next_slot, source_frees;

static void *slot_alloc(void *data, unsigned flags)
{
	(void)data;
	(void)flags;
	return next_slot < 4 ? slots[next_slot++] : NULL;
}

static void slot_free(void *data, void *e)
{
	(void)data;
	(void)e;
	source_frees++;
}

static const struct mempool_source slot_source = {slot_alloc, slot_free};

/* A pool over the caller's source has no heap to tell a double free of
 * an element gone to the source; the leaving mark does (the source saw
 * both frees until it did). */
KTEST(mempool_leaving, a_second_free_to_a_callers_source_is_told)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	next_slot = source_frees = 0;
	KASSERT(mempool_init(&pool, &sh, "slots", 1, sizeof slots[0],
	                     &slot_source, NULL));
	uintptr_t *e = mempool_alloc(&pool, 0); /* the reserve stays full */
	KASSERT(e == slots[1]);
	mempool_free(&pool, e);
	KEXPECT_EQ(source_frees, 1);
	EXPECT_MISUSE(mempool_free(&pool, e), "mempool slots: double free of",
	              e);
	KEXPECT(strstr(mm_port_last_panic(), "freed to the pool's source"));
	KEXPECT_EQ(source_frees, 1);
	KEXPECT(mempool_destroy(&pool));
	sh_heap_release(&heap, &sh);
}

/* A larger object of another class freed to a named cache's pool whose
 * reserve is short: until a review it was kept (it is no smaller than
 * the pool's elements), handed out again as the cache's, and the misuse
 * panicked only at the cache's free, far from it. Same-class objects
 * cannot be told outside poison mode; another class's can. */
KTEST(mempool_leaving, another_class_freed_to_a_caches_pool_is_told)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create(&sh, "bio", 200, 0);
	KASSERT(c);
	KASSERT(mempool_init_cache(&pool, c, "bio-pool", 2));
	struct spanheap_fail_attr all = {.interval = 1,
	                                 .probability = SPANHEAP_FAIL_PROB_ALL,
	                                 .times = -1,
	                                 .seed = 1};
	KASSERT(spanheap_fail_arm(&sh, &all));
	void *e = mempool_alloc(&pool, MM_ATOMIC); /* the reserve's */
	spanheap_fail_disarm(&sh);
	KASSERT(e != NULL);
	char *big = spanheap_alloc(&sh, 512, 0);
	KASSERT(big != NULL);
	EXPECT_MISUSE(mempool_free(&pool, big),
	              "mempool bio-pool: free of an object of 512 bytes", big);
	KEXPECT(strstr(mm_port_last_panic(), "cache 'bio''s, of 208"));
	mempool_free(&pool, e); /* its own, back into the reserve */
	spanheap_free(&sh, big);
	KEXPECT(mempool_destroy(&pool));
	KEXPECT(objcache_destroy(c));
	sh_heap_release(&heap, &sh);
}

/* An element in the reserve whose marker the program wrote over (a use
 * after free), freed again while the reserve is short: the marker no
 * longer tells it, the reserve's slots do. Until a review the free
 * pushed it a second time (the reserve held it twice, to be handed out
 * twice). */
KTEST(mempool_leaving, a_second_free_past_a_scribbled_marker_is_told)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "scrawl", 3, 64));
	struct spanheap_fail_attr all = {.interval = 1,
	                                 .probability = SPANHEAP_FAIL_PROB_ALL,
	                                 .times = -1,
	                                 .seed = 1};
	KASSERT(spanheap_fail_arm(&sh, &all));
	uintptr_t *a = mempool_alloc(&pool, MM_ATOMIC); /* the reserve's */
	uintptr_t *b = mempool_alloc(&pool, MM_ATOMIC);
	spanheap_fail_disarm(&sh);
	KASSERT(a && b);
	mempool_free(&pool, a); /* back into the reserve, which stays short */
	uintptr_t marker = *a;
	*a = 0x5c5c5c5c; /* written after its free */
	EXPECT_MISUSE(mempool_free(&pool, a), "mempool scrawl: double free of",
	              a);
	KEXPECT(strstr(mm_port_last_panic(), "in the pool's reserve already"));
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.curr, 2); /* a once, and the element never taken */
	*a = marker;
	mempool_free(&pool, b);
	KEXPECT(mempool_destroy(&pool));
	SH_CHECK(&sh, "after the scribbled free");
	sh_heap_release(&heap, &sh);
}

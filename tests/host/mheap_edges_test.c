/*
 * The page heap's edges that a mutation round of mm/mheap*.c found no
 * test for: each test here fails against the mutant it names. The
 * scavenger's pacing at its cap, the chunk-bits lookup of a chunk far
 * past the arena, the checker in the middle of a batch that ends at the
 * grown heap's top, and an allocation that missed while another caller
 * grew the heap or freed pages at its top.
 */
#include "mheap_test_util.h"

#include "../../mm/mheap_internal.h"
#include "../../mm/mheap_scav.h"

/* The pace's sleep saturates: huge work sleeps the longest paced sleep,
 * MHEAP_PACE_MAX_NS. Without the clamp of the work the multiplication
 * overflowed to a short sleep: this work times 990 wraps to 974, a
 * sleep of 97 ns. */
KTEST(mheap_edges, pace_saturates_at_its_cap)
{
	KEXPECT_EQ(mheap_pace_sleep_ns(UINT64_MAX / 990 + 1, 10),
	           MHEAP_PACE_MAX_NS);
	KEXPECT_EQ(mheap_pace_sleep_ns(UINT64_MAX, 1), MHEAP_PACE_MAX_NS);
}

/* A heap of 4 chunks, its reserve 0, its scavenger's goal goal percent
 * (0: the default). */
static struct mheap eh;

static bool heap_of_4_chunks(unsigned goal)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0;
	if (goal)
		cfg.goal_percent = goal;
	return mheap_init(&eh, &cfg);
}

static int batch_checks;

/* In the middle of a scavenge batch, the heap must pass its checker. */
static void check_mid_batch(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &eh || where != MHEAP_HOOK_SCAV_UNMAPPED)
		return;
	batch_checks++;
	if (mh_check_panics(h)) {
		if (mm_lock_held(&h->lock))
			mm_lock_release(&h->lock, 0);
		ktest_fail_at(__FILE__, __LINE__, "mid-batch: %s",
		              mm_port_last_panic());
	}
}

/* mheap_chunk_bits refuses a chunk index far past the arena (without
 * its bound it read metadata there and faulted), and the checker accepts
 * a batch's run that ends exactly at the grown heap's top (with `>=` for
 * `>` in its bound it refused one; the other mid-batch checks only saw
 * runs at the bottom). */
KTEST(mheap_edges, chunk_bits_far_away_and_a_batch_at_the_top)
{
	KASSERT(heap_of_4_chunks(0));
	char *p = mheap_alloc_pages(&eh, 512, 0);
	KASSERT(p);
	uint64_t a[8], s[8];
	KEXPECT(mheap_chunk_bits(&eh, 0, a, s));
	KEXPECT(!mheap_chunk_bits(&eh, (size_t)1 << 40, a, s));
	mheap_free_pages(&eh, p + 500 * MM_PAGE_SIZE, 12);
	batch_checks = 0;
	mheap_test_hook = check_mid_batch;
	size_t n = mheap_release_all(&eh);
	mheap_test_hook = NULL;
	KEXPECT_EQ(eh.grown_chunks, 1);
	KEXPECT(n > 0);
	KEXPECT(batch_checks > 0);
	mh_release(&eh);
}

/* What another caller does between an allocation's miss and its next
 * step: 1 grows the heap, 2 frees the top 8 pages. */
static int on_miss;
static char *first_run;

static void act_on_miss(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &eh || where != MHEAP_HOOK_ALLOC_MISSED || !on_miss)
		return;
	int m = on_miss;
	on_miss = 0;
	if (m == 1)
		KEXPECT_EQ(mheap_grow(h, 1, MHEAP_GROW_FOR_RUN), MHEAP_GROW_OK);
	else
		mheap_free_pages(h, first_run + 504 * MM_PAGE_SIZE, 8);
}

static bool full_chunk(void)
{
	if (!heap_of_4_chunks(0))
		return false;
	first_run = mheap_alloc_pages(&eh, 512, 0);
	return first_run != NULL;
}

/* A growth that lands after a miss is used, not repeated: the miss
 * sees the growth's event and retries (without that shortcut the heap
 * grew a second time, 3 growths for 2). */
KTEST(mheap_edges, a_growth_seen_after_a_miss_is_not_repeated)
{
	KASSERT(full_chunk());
	struct mheap_stats st;
	mheap_stats(&eh, &st);
	KEXPECT_EQ(st.n.grows, 1);
	on_miss = 1;
	mheap_test_hook = act_on_miss;
	void *q = mheap_alloc_pages(&eh, 1, 0);
	mheap_test_hook = NULL;
	KEXPECT(q != NULL);
	mheap_stats(&eh, &st);
	KEXPECT_EQ(st.n.grows, 2);
	mh_release(&eh);
}

/* Pages freed at the top between the miss and the growth are found:
 * the growth asks for no new chunk when the top's free run covers the
 * request (asking for 0 chunks there, the allocation got NULL). */
KTEST(mheap_edges, a_free_at_the_top_after_a_miss_is_found)
{
	KASSERT(full_chunk());
	on_miss = 2;
	mheap_test_hook = act_on_miss;
	void *q = mheap_alloc_pages(&eh, 4, 0);
	mheap_test_hook = NULL;
	KEXPECT(q != NULL);
	mh_release(&eh);
}

/* A free is counted for the scavenger, and a large one wakes it when
 * idle only when it leaves the heap over its goal, not at it: 16 pages freed
 * backed against a goal of 50% of the 32 in use is exactly the goal (with `>=`
 * for `>` it woke the scavenger there, for nothing to take). One page more is
 * over it. No scavenger thread runs: idle is set by hand, as the thread sets
 * it. */
KTEST(mheap_edges, a_free_to_exactly_the_goal_does_not_wake)
{
	KASSERT(heap_of_4_chunks(50));
	char *keep = mheap_alloc_pages(&eh, 32, 0);
	char *give = mheap_alloc_pages(&eh, 16, 0);
	KASSERT(keep && give);
	mheap_release_all(&eh); /* no free page stays backed */
	struct mheap_stats st;
	mheap_stats(&eh, &st);
	KASSERT_EQ(st.free_backed_pages, 0);
	eh.scav.idle = true;
	uint64_t frees = eh.scav.backed_frees;
	mheap_free_pages(&eh, give, 16);
	/* Counted: an idle scavenger over its goal stays awake only while
	 * frees have come since its last barren search (bg_idle); without
	 * the count, small frees left it asleep over its goal. */
	KEXPECT_EQ(eh.scav.backed_frees, frees + 1);
	mheap_stats(&eh, &st);
	KEXPECT_EQ(st.in_use_pages, 32);
	KEXPECT_EQ(st.free_backed_pages, st.goal_pages); /* 16 */
	KEXPECT(eh.scav.idle);
	/* Over the goal: woken. */
	char *more = mheap_alloc_pages(&eh, 17, 0);
	KASSERT(more);
	mheap_release_all(&eh);
	eh.scav.idle = true;
	mheap_free_pages(&eh, more, 17);
	KEXPECT(!eh.scav.idle);
	mheap_free_pages(&eh, keep, 32);
	mh_release(&eh);
}

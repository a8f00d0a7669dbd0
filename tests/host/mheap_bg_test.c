/*
 * The page heap's background scavenger's two thresholds (mm/mheap_scav.c,
 * mm/mheap_alloc.c): the smallest batch it asks for when the heap is over
 * its goal by a little (MHEAP_SCAV_MIN_PAGES: a shootdown is worth at least
 * 64 KiB), and the smallest free that wakes it when idle
 * (MHEAP_WAKE_PAGES). Without these tests either could move unseen: the
 * thread's 10 s idle timeout made up for a wake that never came.
 */
#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE
/* The smallest background batch, 64 KiB (mheap_internal.h says so): a
 * number here, not MHEAP_SCAV_MIN_PAGES, so that the test sees it move. */
#define MIN_BATCH ((size_t)(64 << 10) / PG)

static struct mheap heap;

/* heap over 4 chunks with goal_percent given, no reserve and no paced
 * sleeps. */
static bool bg_heap_init(unsigned goal_percent)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.goal_percent = goal_percent;
	cfg.reserve_pages = 0;
	cfg.cpu_permille = 1000;
	return mheap_init(&heap, &cfg);
}

/* One background batch, as the thread runs it (the goal decides). */
static size_t bg_batch(void)
{
	return mheap_scavenge_batch(&heap, 0, 0, MHEAP_SCAV_BG);
}

/* How far free backed pages are over the goal (0 at or under it). */
static size_t over_goal(void)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	return st.free_backed_pages > st.goal_pages
	               ? st.free_backed_pages - st.goal_pages
	               : 0;
}

/* Makes npages more free pages backed: takes the free backed ones and
 * npages scavenged ones after them (they are the lowest free pages here:
 * a batch takes the highest first) and frees them. */
static void make_backed(size_t npages)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t n = st.free_backed_pages + npages;
	char *p = mheap_alloc_pages(&heap, n, 0);
	KASSERT(p);
	mheap_free_pages(&heap, p, n);
}

/*
 * A background batch asks for what the heap is over its goal, but at
 * least 64 KiB (16 pages) and at most MHEAP_SCAV_BATCH_PAGES. 100
 * pages in use and a goal of 100%: 101 free backed (over by 1) give a
 * batch of 16; at the goal, none; over by 40, 40; over by 300, 256.
 * Against the minimum made 17 the first batch took 17; without it, 1.
 */
KTEST(mheap_bg, a_batch_takes_at_least_its_minimum)
{
	KASSERT(bg_heap_init(100));
	char *a = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a);
	make_backed(101);
	KASSERT_EQ(over_goal(), 1);
	KEXPECT_EQ(bg_batch(), MIN_BATCH);
	KEXPECT_EQ(bg_batch(), 0);       /* under the goal now */
	make_backed(40 + MIN_BATCH - 1); /* 15 under before */
	KASSERT_EQ(over_goal(), 40);
	KEXPECT_EQ(bg_batch(), 40);
	make_backed(300);
	KASSERT_EQ(over_goal(), 300);
	KEXPECT_EQ(bg_batch(), MHEAP_SCAV_BATCH_PAGES);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.bg_runs, 3);
	KEXPECT_EQ(st.n.bg_pages, MIN_BATCH + 40 + MHEAP_SCAV_BATCH_PAGES);
	mheap_free_pages(&heap, a, 100);
	MH_CHECK(&heap, "after the batches");
	mh_release(&heap);
}

/* Waits, with no time bound, until the scavenger thread is idle. */
static void wait_idle(void)
{
	for (;;) {
		unsigned long irq = mm_lock_acquire(&heap.lock);
		bool idle = heap.scav.idle;
		mm_lock_release(&heap.lock, irq);
		if (idle)
			return;
		mm_port_yield();
	}
}

/*
 * A free wakes the idle thread when it is of at least 16 pages
 * (MHEAP_WAKE_PAGES) and leaves the heap over its goal. A goal of 0 and
 * the thread idle with nothing free backed: a free of 15 pages puts the
 * heap over its goal and does not wake it (the wake count stays: only
 * frees, refills and stop wake it, and its timeout is no wake); a free of
 * 16 does. Against the test made
 * `npages > MHEAP_WAKE_PAGES`, or the threshold made 15 or 17, one of the
 * two went the wrong way; the thread's 10 s idle timeout hid it from the
 * tests that wait for it to scavenge.
 */
KTEST(mheap_bg, a_free_of_16_pages_wakes_the_idle_thread)
{
	KASSERT(bg_heap_init(0));
	char *a = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a);
	KASSERT_EQ(over_goal(), 0); /* fresh pages are scavenged */
	KASSERT(mheap_scavenger_start(&heap));
	wait_idle();
	uint64_t wakes = mm_event_prepare(&heap.scav.wake);
	mheap_free_pages(&heap, a + 85 * PG, 15);
	KEXPECT_EQ(mm_event_prepare(&heap.scav.wake), wakes);
	mheap_free_pages(&heap, a + 69 * PG, 16);
	KEXPECT(mm_event_prepare(&heap.scav.wake) != wakes);
	mheap_scavenger_stop(&heap);
	mheap_free_pages(&heap, a, 69);
	MH_CHECK(&heap, "after the frees");
	mh_release(&heap);
}

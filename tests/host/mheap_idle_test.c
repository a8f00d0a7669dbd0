/*
 * The page heap's background scavenger going idle (mm/mheap_scav.c,
 * bg_idle): with nothing it may take, it sleeps until a free, a refill or
 * stop wakes it, whether it is at its goal or the free backed pages over
 * the goal all lie in dense chunks (which it skips), and a large free
 * that gives it something to take wakes it again; the same for a heap
 * it serves (scav_also). Its count of backed frees, which tells it so,
 * counts every undone allocation (its backed pages, or its chunk sparse
 * again).
 */
#include <stdatomic.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "../../mm/mheap_testing.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;

/* Times the thread found nothing to take and decided whether to sleep. */
static atomic_int idle_visits;

static void count_idle(struct mheap *h, enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_SCAV_IDLE)
		atomic_fetch_add(&idle_visits, 1);
}

/* Waits, with no time bound, until the thread is idle, or has come round
 * to its idle decision more than `visits` times; returns whether it is
 * idle. *bg_pages gets the pages it released. */
static bool wait_idle_or_visits(int visits, uint64_t *bg_pages)
{
	for (;;) {
		int v = atomic_load(&idle_visits);
		unsigned long irq = mm_lock_acquire(&heap.lock);
		bool idle = heap.scav.idle;
		*bg_pages = heap.counters.bg_pages;
		mm_lock_release(&heap.lock, irq);
		if (idle || v > visits)
			return idle;
		mm_port_yield();
	}
}

/* The most idle decisions the thread can have come to since t0: the one
 * that sent it to sleep, and one more per idle sleep (MHEAP_IDLE_NS, 10 s)
 * that can have timed out since, nothing having woken it. An exact 1
 * assumed the test thread read the count within 10 s of the thread's
 * decision: a host that left it unscheduled that long (a throttled or
 * frozen container) failed the test, as a build with a 1 ms idle sleep
 * did in 9 runs of 50 (none of 30 with this bound). */
static int visits_allowed(uint64_t t0)
{
	return 1 + (int)((mm_port_now_ns() - t0) / MHEAP_IDLE_NS);
}

/* The heap both tests use: 4 chunks, a goal of 0, and no paced sleeps
 * (the whole CPU as budget). */
static bool idle_heap_init(void)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.goal_percent = 0;
	cfg.cpu_permille = 1000;
	return mheap_init(&heap, &cfg);
}

/*
 * Chunk 0 allocated whole, then 16 pages of it freed: 496 pages in use
 * (PALLOC_SCAV_DENSE_PAGES, a dense chunk) and 16 free backed, over a
 * goal of 0. The thread skips the dense chunk, finds nothing, and must go
 * idle. It went round again at once instead, for ever (paced at its
 * budget: with no budget limit, a busy loop), searching every grown chunk
 * under the heap lock each time, and a large free could not wake it, not
 * being idle. Freeing 16 pages more makes the chunk sparse: that free
 * wakes it, it takes the 32 pages and goes idle again.
 */
KTEST(mheap_idle, goes_idle_when_only_dense_chunks_are_left)
{
	KASSERT(idle_heap_init());
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(a);
	_Static_assert(PALLOC_CHUNK_PAGES - 16 >= PALLOC_SCAV_DENSE_PAGES,
	               "chunk 0 stays dense");
	mheap_free_pages(&heap, a + (PALLOC_CHUNK_PAGES - 16) * PG, 16);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.free_backed_pages, 16);
	KASSERT_EQ(st.goal_pages, 0);
	atomic_store(&idle_visits, 0);
	mheap_test_hook = count_idle;
	uint64_t t0 = mm_port_now_ns();
	KASSERT(mheap_scavenger_start(&heap));
	uint64_t released;
	bool idle = wait_idle_or_visits(1, &released);
	int visits = atomic_load(&idle_visits);
	KEXPECT(idle);
	KEXPECT(visits >= 1 && visits <= visits_allowed(t0));
	KEXPECT_EQ(released, 0);
	if (idle) {
		mheap_free_pages(&heap, a + (PALLOC_CHUNK_PAGES - 32) * PG, 16);
		/* Woken: it takes the 32 free backed pages, then finds
		 * nothing more and goes idle (the visit after those). */
		do
			idle = wait_idle_or_visits(visits, &released);
		while (released < 32 || !idle);
		KEXPECT_EQ(released, 32);
	}
	mheap_scavenger_stop(&heap);
	mheap_test_hook = NULL;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages, idle ? 0 : 16);
	MH_CHECK(&heap, "after the scavenger");
	mheap_free_pages(&heap, a, PALLOC_CHUNK_PAGES - (idle ? 32 : 16));
	mh_release(&heap);
}

/*
 * Chunk 1 freed whole (sparse) and chunk 0 dense with 16 free pages, over
 * a goal of 0: the thread releases chunk 1's pages, then goes idle above
 * its goal with the 16 it may not take. Its report must say so: it said
 * "at goal" whatever the reason it was idle.
 */
KTEST(mheap_idle, reports_idle_above_goal_as_such)
{
	KASSERT(idle_heap_init());
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	char *b = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(a && b);
	mheap_free_pages(&heap, a + (PALLOC_CHUNK_PAGES - 16) * PG, 16);
	mheap_free_pages(&heap, b, PALLOC_CHUNK_PAGES);
	mm_port_set_quiet(true);
	unsigned long logs = mm_port_log_count();
	KASSERT(mheap_scavenger_start(&heap));
	/* Until its report, which comes after it went idle (the count's
	 * lock orders the line's writing before the read). */
	while (mm_port_log_count() == logs ||
	       !strstr(mm_port_last_log(), "scavenger: "))
		mm_port_yield();
	const char *line = mm_port_last_log();
	KEXPECT(strstr(line, "idle above its goal"));
	KEXPECT(strstr(line, "16 free backed pages"));
	mheap_scavenger_stop(&heap);
	mm_port_set_quiet(false);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages, 16);
	KEXPECT_EQ(st.n.bg_pages, PALLOC_CHUNK_PAGES);
	MH_CHECK(&heap, "after the scavenger");
	mheap_free_pages(&heap, a, PALLOC_CHUNK_PAGES - 16);
	mh_release(&heap);
}

/* The heap's count of frees that made pages free backed. */
static uint64_t backed_frees(void)
{
	unsigned long irq = mm_lock_acquire(&heap.lock);
	uint64_t n = heap.scav.backed_frees;
	mm_lock_release(&heap.lock, irq);
	return n;
}

/*
 * An allocation undone because its scavenged pages could not be mapped
 * gives its backed pages back free: that is a backed free, which the
 * idle thread must hear of (bg_idle sleeps on while backed_frees equals
 * the count at its last barren search). Two backed pages, the rest of
 * the chunk scavenged: a 64-page run holding both, undone, counts one
 * (against the undo without its count, 0). 64 scavenged pages undone
 * count one too: the run may have made its chunk dense while it was
 * held (the next test); until a review they counted none. So do 128
 * (an undo past 64 pages, by another path).
 */
KTEST(mheap_idle, an_undone_allocation_counts_its_backed_pages_freed)
{
	KASSERT(idle_heap_init());
	char *two = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(two);
	mheap_free_pages(&heap, two, 2);
	mheap_release_all(&heap); /* the chunk scavenged whole */
	two = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(two);
	mheap_free_pages(&heap, two, 2);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.free_backed_pages, 2);
	mm_port_set_quiet(true);
	uint64_t n = backed_frees();
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 64, 0) == NULL); /* the first 64 */
	mm_port_fail_maps(0);
	KEXPECT_EQ(backed_frees(), n + 1);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages, 2);
	char *keep = mheap_alloc_pages(&heap, 64, 0); /* both backed ones */
	KASSERT(keep == two);
	n = backed_frees();
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 64, 0) == NULL); /* all scavenged */
	mm_port_fail_maps(0);
	KEXPECT_EQ(backed_frees(), n + 1);
	/* Past 64 pages the undo unmaps the run and gives it back
	 * (mheap_unmap_and_return): counted too (no test had one). */
	n = backed_frees();
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 128, 0) == NULL);
	mm_port_fail_maps(0);
	mm_port_set_quiet(false);
	KEXPECT_EQ(backed_frees(), n + 1);
	mheap_free_pages(&heap, keep, 64);
	MH_CHECK(&heap, "after the undone allocations");
	mh_release(&heap);
}

/* A heap h's thread serves (scav_also: mm/mheap_scav.c, "served"), made
 * as idle_heap_init makes h. */
static struct mheap served;

/*
 * The first test's case in the heap h's thread serves, h itself empty:
 * the served heap's chunk 0 dense with 16 free backed pages over a goal
 * of 0. The thread skips them and must sleep after one look (with no
 * budget limit, a thread that went round again would be a busy loop);
 * the served heap's free of 16 more wakes it (its frees wake h's event:
 * mheap_scav_wake_of), it takes the 32 and sleeps again.
 */
KTEST(mheap_idle, a_served_heap_of_dense_chunks_lets_the_thread_sleep)
{
	KASSERT(idle_heap_init());
	struct mheap_config cfg = heap.cfg;
	KASSERT(mheap_init(&served, &cfg));
	heap.scav_also = &served;
	served.scav_by = &heap;
	char *a = mheap_alloc_pages(&served, PALLOC_CHUNK_PAGES, 0);
	KASSERT(a);
	mheap_free_pages(&served, a + (PALLOC_CHUNK_PAGES - 16) * PG, 16);
	atomic_store(&idle_visits, 0);
	mheap_test_hook = count_idle;
	uint64_t t0 = mm_port_now_ns();
	KASSERT(mheap_scavenger_start(&heap));
	uint64_t released; /* h's: nothing */
	bool idle = wait_idle_or_visits(1, &released);
	int visits = atomic_load(&idle_visits);
	KEXPECT(idle);
	KEXPECT(visits >= 1 && visits <= visits_allowed(t0));
	struct mheap_stats st;
	mheap_stats(&served, &st);
	KEXPECT_EQ(st.n.bg_pages, 0);
	if (idle) {
		mheap_free_pages(&served, a + (PALLOC_CHUNK_PAGES - 32) * PG,
		                 16);
		do {
			idle = wait_idle_or_visits(visits, &released);
			mheap_stats(&served, &st);
		} while (st.n.bg_pages < 32 || !idle);
		KEXPECT_EQ(st.n.bg_pages, 32);
	}
	mheap_scavenger_stop(&heap);
	mheap_test_hook = NULL;
	mheap_stats(&served, &st);
	KEXPECT_EQ(st.free_backed_pages, idle ? 0 : 16);
	KEXPECT_EQ(released, 0);
	MH_CHECK(&served, "after the scavenger");
	mheap_free_pages(&served, a, PALLOC_CHUNK_PAGES - (idle ? 32 : 16));
	mh_release(&served);
	mh_release(&heap);
}

/* A heap's background searches that found nothing over its goal. */
static uint64_t searches_in_vain(struct mheap *h)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	uint64_t n = h->scav.barren_searches;
	mm_lock_release(&h->lock, irq);
	return n;
}

/*
 * One heap over its goal with nothing the thread may take (chunk 0
 * dense, 16 free backed pages) while the other keeps it busy (3 chunks
 * freed backed: 6 batches of 256 pages, a round each), both ways round:
 * h dense and the heap it serves busy, then the other way. The dense
 * heap is searched once: after a search in vain the thread skips it
 * until a free gives it something new (backed_frees moves), as bg_idle
 * does for its sleep. Until a review only the sleep used that, and the
 * dense heap was searched again every round (7 searches in vain, one a
 * round), each a walk of its chunks from the thread's CPU budget.
 */
KTEST(mheap_idle, a_heap_with_nothing_to_take_is_searched_once_while_busy)
{
	for (int served_busy = 0; served_busy < 2; served_busy++) {
		KASSERT(idle_heap_init());
		struct mheap_config cfg = heap.cfg;
		KASSERT(mheap_init(&served, &cfg));
		heap.scav_also = &served;
		served.scav_by = &heap;
		struct mheap *dense = served_busy ? &heap : &served;
		struct mheap *busy = served_busy ? &served : &heap;
		char *a = mheap_alloc_pages(dense, PALLOC_CHUNK_PAGES, 0);
		char *b = mheap_alloc_pages(busy, 3 * PALLOC_CHUNK_PAGES, 0);
		KASSERT(a && b);
		mheap_free_pages(dense, a + (PALLOC_CHUNK_PAGES - 16) * PG, 16);
		mheap_free_pages(busy, b, 3 * PALLOC_CHUNK_PAGES);
		atomic_store(&idle_visits, 0);
		mheap_test_hook = count_idle;
		KASSERT(mheap_scavenger_start(&heap));
		uint64_t released;
		struct mheap_stats st;
		do { /* no time bound: a hang is the failure */
			KASSERT(wait_idle_or_visits(INT32_MAX, &released));
			mheap_stats(busy, &st);
		} while (st.n.bg_pages < 3 * PALLOC_CHUNK_PAGES);
		mheap_scavenger_stop(&heap);
		mheap_test_hook = NULL;
		KEXPECT_EQ(st.free_backed_pages, 0);
		KEXPECT_EQ(searches_in_vain(dense), 1);
		KEXPECT_EQ(searches_in_vain(busy), 0);
		mheap_stats(dense, &st);
		KEXPECT_EQ(st.free_backed_pages, 16);
		KEXPECT_EQ(st.n.bg_pages, 0);
		MH_CHECK(&heap, "after the scavenger");
		MH_CHECK(&served, "after the scavenger");
		mheap_free_pages(dense, a, PALLOC_CHUNK_PAGES - 16);
		mh_release(&served);
		mh_release(&heap);
	}
}

/* What the background search run inside the undone allocation found. */
static atomic_bool in_window;
static size_t window_found = SIZE_MAX;

/* Whether the thread would skip heap (bg_turn): no backed free since
 * its last search found nothing. */
static bool heap_skipped(void)
{
	unsigned long irq = mm_lock_acquire(&heap.lock);
	bool skipped = heap.scav.barren_frees == heap.scav.backed_frees;
	mm_lock_release(&heap.lock, irq);
	return skipped;
}

/* At the first batch's unmapping (the allocation's scavenge for frames,
 * its run held): a background search, as the thread's would be. */
static void search_in_window(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SCAV_UNMAPPED ||
	    !atomic_exchange(&in_window, false))
		return;
	window_found = mheap_scavenge_batch(h, 0, 0, MHEAP_SCAV_BG);
}

/*
 * An undone allocation of scavenged pages only can still make pages
 * takeable: while it held its run, chunk 0 was dense (504 pages in use)
 * and the background search skipped the chunk's 8 free backed pages;
 * given back, the run leaves it sparse and the 8 takeable. The undo must
 * count as a backed free, else the thread skips the heap (bg_turn) or
 * sleeps on (bg_idle) until another free. Chunk 0: 490 pages in use, 14
 * free scavenged (the run), 8 free backed; chunk 1: one free backed page,
 * which the run's scavenge for frames (one frame short) takes, so that
 * the search runs inside the window (the hook). Before the fix the
 * counts were equal after the undo.
 */
KTEST(mheap_idle, an_undone_scavenged_run_that_made_its_chunk_dense_counts)
{
	KASSERT(idle_heap_init());
	char *a = mheap_alloc_pages(&heap, 490, 0);
	char *s = mheap_alloc_pages(&heap, 14, 0);
	char *b = mheap_alloc_pages(&heap, 8, 0);
	char *f = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a && s == a + 490 * PG && b == s + 14 * PG);
	KASSERT(f == a + PALLOC_CHUNK_PAGES * PG);
	mheap_free_pages(&heap, s, 14);
	mheap_release_all(&heap);
	mheap_free_pages(&heap, b, 8);
	mheap_free_pages(&heap, f, 1);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.free_backed_pages, 9);
	_Static_assert(490 + 14 >= PALLOC_SCAV_DENSE_PAGES &&
	                       490 < PALLOC_SCAV_DENSE_PAGES,
	               "the run makes chunk 0 dense, and only the run");
	atomic_store(&in_window, true);
	mheap_test_hook = search_in_window;
	mm_port_set_free_pages(13); /* the run's 14 frames, one short */
	mm_port_fail_maps(1);
	mm_port_set_quiet(true);
	KEXPECT(mheap_alloc_pages(&heap, 14, 0) == NULL);
	mm_port_set_quiet(false);
	mm_port_fail_maps(0);
	mm_port_set_free_pages(SIZE_MAX / 2);
	mheap_test_hook = NULL;
	KEXPECT(!atomic_load(&in_window));
	KEXPECT_EQ(window_found, 0); /* in vain: the chunk was dense */
	KEXPECT(!heap_skipped());
	/* The premise: the 8 pages are takeable now. */
	KEXPECT_EQ(mheap_scavenge_batch(&heap, 0, 0, MHEAP_SCAV_BG), 8);
	mheap_free_pages(&heap, a, 490);
	MH_CHECK(&heap, "after the undone allocation");
	mh_release(&heap);
}

/*
 * The same through a batch that scavenges for frames: it takes 14 of
 * chunk 1's 22 free backed pages, which leaves the chunk dense (504 in
 * use) while it unmaps them, and a background search then (the hook)
 * skips the 8 left; the batch gives its run back scavenged and the chunk
 * is sparse again: the 8 are takeable, and the return must count as a
 * backed free as an undone allocation does. The batch's allocation (14
 * scavenged pages, chunk 0's first, with no frame to spare) succeeds.
 * Before the fix the counts stayed equal.
 */
KTEST(mheap_idle, a_batch_for_frames_that_made_its_chunk_dense_counts)
{
	KASSERT(idle_heap_init());
	char *g = mheap_alloc_pages(&heap, 14, 0);
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES - 14, 0);
	char *b = mheap_alloc_pages(&heap, 490, 0);
	char *t = mheap_alloc_pages(&heap, 22, 0);
	KASSERT(g && a == g + 14 * PG);
	KASSERT(b == g + PALLOC_CHUNK_PAGES * PG && t == b + 490 * PG);
	mheap_free_pages(&heap, g, 14);
	mheap_release_all(&heap);
	mheap_free_pages(&heap, t, 22);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.free_backed_pages, 22);
	atomic_store(&in_window, true);
	window_found = SIZE_MAX;
	mheap_test_hook = search_in_window;
	mm_port_set_free_pages(0); /* the allocation's 14 frames short */
	char *p = mheap_alloc_pages(&heap, 14, 0);
	mm_port_set_free_pages(SIZE_MAX / 2);
	mheap_test_hook = NULL;
	KEXPECT(p == g);
	KEXPECT(!atomic_load(&in_window));
	KEXPECT_EQ(window_found, 0); /* in vain: the chunk was dense */
	KEXPECT(!heap_skipped());
	KEXPECT_EQ(mheap_scavenge_batch(&heap, 0, 0, MHEAP_SCAV_BG), 8);
	if (p)
		mheap_free_pages(&heap, p, 14);
	mheap_free_pages(&heap, a, PALLOC_CHUNK_PAGES - 14);
	mheap_free_pages(&heap, b, 490);
	MH_CHECK(&heap, "after the batch for frames");
	mh_release(&heap);
}

/*
 * The page heap's scavenging (mm/mheap_scav.c, mm/mheap_alloc.c) through the
 * POSIX port: the locked mode under a short frame pool, the pacing
 * arithmetic, the background thread reaching its goal and started and
 * stopped twice, and a double free of pages a scavenge batch holds. The
 * waits for a batch (an allocation or an extension in place that sleeps
 * until it ends) are in mheap_scav_wait_test.c; debug mode's tests are in
 * mheap_debug_test.c.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "mheap_batch_util.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* one at a time; static: the thread may lag */

KTEST(mheap, scavenges_for_frames_when_short)
{
	KASSERT(mh_new(&heap, 64, 0, 1000));
	char *a = mheap_alloc_pages(&heap, 300, 0);
	char *b = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a && b);
	memset(a, 0xab, 300 * PG);
	mheap_free_pages(&heap, a, 300);
	mm_port_set_free_pages(10);                 /* under the watermark */
	char *c = mheap_alloc_pages(&heap, 600, 0); /* needs 600 frames */
	mm_port_set_free_pages(SIZE_MAX / 2);
	KASSERT(c);
	memset(c, 1, 600 * PG);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.sync_pages, 300);
	KEXPECT(st.n.sync_runs >= 1);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT_EQ(st.in_use_pages, 700);
	MH_CHECK(&heap, "after growing under pressure");
	char *d = mheap_alloc_pages(&heap, 300, 0);
	KEXPECT_EQ(d, a);
	KEXPECT(d && mh_all_bytes(d, 300 * PG, 0));
	/* With frames plenty, nothing is scavenged. */
	mheap_free_pages(&heap, d, 300);
	KEXPECT(mheap_alloc_pages(&heap, 2000, 0));
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.sync_pages, 300);
	mh_release(&heap);
}

/* Frames short by 20 for an allocation's scavenged pages: 20 of the
 * 300 free backed pages are given back, not all of them. */
KTEST(mheap, scavenges_only_what_frames_need)
{
	KASSERT(mh_new(&heap, 64, 0, 0));
	char *a = mheap_alloc_pages(&heap, 300, 0);
	char *b = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a && b);
	mheap_free_pages(&heap, a, 300);
	mm_port_set_free_pages(300);
	char *c = mheap_alloc_pages(&heap, 320, 0); /* past b: fresh */
	mm_port_set_free_pages(SIZE_MAX / 2);
	KASSERT(c);
	KEXPECT(c > b);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.sync_pages, 20);
	KEXPECT_EQ(st.free_backed_pages, 280);
	mheap_free_pages(&heap, b, 100);
	mheap_free_pages(&heap, c, 320);
	MH_CHECK(&heap, "after scavenging for frames");
	mh_release(&heap);
}

/* A watermark near SIZE_MAX (every frame kept: scavenge before any
 * mapping) still scavenges: the sum with the pages wanted must not wrap
 * to a small number that the free frames pass. */
KTEST(mheap, a_huge_low_watermark_still_scavenges)
{
	KASSERT(mh_new(&heap, 64, 0, SIZE_MAX - 10));
	char *a = mheap_alloc_pages(&heap, 300, 0);
	char *b = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a && b);
	mheap_free_pages(&heap, a, 300);
	char *c = mheap_alloc_pages(&heap, 320, 0); /* past b: fresh */
	KASSERT(c);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.sync_pages, 300);
	KEXPECT_EQ(st.free_backed_pages, 0);
	mheap_free_pages(&heap, b, 100);
	mheap_free_pages(&heap, c, 320);
	MH_CHECK(&heap, "after scavenging for a huge watermark");
	mh_release(&heap);
}

KTEST(mheap, pacing_arithmetic)
{
	KEXPECT_EQ(mheap_pace_sleep_ns(1000, 10), 99000); /* 1% */
	KEXPECT_EQ(mheap_pace_sleep_ns(1000, 500), 1000); /* 50% */
	KEXPECT_EQ(mheap_pace_sleep_ns(1000, 1000), 0);   /* no limit */
	KEXPECT_EQ(mheap_pace_sleep_ns(1000, 0), 0);      /* none set */
	KEXPECT_EQ(mheap_pace_sleep_ns(0, 10), 0);
	KEXPECT(mheap_pace_sleep_ns(UINT64_MAX, 1) > 0); /* saturates */
	/* The share work / (work + sleep) is at most the budget. */
	for (unsigned b = 1; b <= 1000; b += 37) {
		uint64_t w = 123457, s = mheap_pace_sleep_ns(w, b);
		KEXPECT(w * 1000 <= (w + s) * b + 1000);
	}
	KEXPECT_EQ(mheap_goal_pages(1000, 10), 100);
	KEXPECT_EQ(mheap_goal_pages(999, 10), 99);
	KEXPECT_EQ(mheap_goal_pages(0, 10), 0);
	KEXPECT_EQ(mheap_goal_pages((size_t)1 << 40, 100), (size_t)1 << 40);
}

/*
 * However much CPU time the thread was charged, its paced sleep is at most
 * MHEAP_PACE_MAX_NS, and within that bound the budget holds exactly. The
 * Go runtime's scavenger bounds the time it paces by (bgscavenge's
 * maxCrit) so that being scheduled away does not buy it an arbitrarily
 * long sleep; here the sleep was work * 99 at 1%, unbounded: 990 s for a
 * stall of 10 s charged to one batch, during which neither a large free
 * nor an atomic caller's refill request woke the thread.
 */
KTEST(mheap, pacing_sleep_is_bounded)
{
	const uint64_t s = 1000 * 1000 * 1000;
	KEXPECT_EQ(mheap_pace_sleep_ns(10 * s, 10), MHEAP_PACE_MAX_NS);
	KEXPECT_EQ(mheap_pace_sleep_ns(s, 1), MHEAP_PACE_MAX_NS);
	KEXPECT_EQ(mheap_pace_sleep_ns(s / 10, 10), 99 * s / 10); /* 100 ms */
	for (unsigned b = 1; b < 1000; b += 37) {
		uint64_t w = MHEAP_PACE_MAX_NS * b / (1000 - b);
		uint64_t z = mheap_pace_sleep_ns(w, b);
		KEXPECT(z <= MHEAP_PACE_MAX_NS);
		KEXPECT(w * 1000 <= (w + z) * b + 1000);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The scavenger loop below gives up only when the thread has released no
 * page for this long: a hang guard (a paced batch takes milliseconds), so
 * that a scavenger stuck short of its goal fails the test by name. */
#define SCAV_NO_PROGRESS_NS 60000000000ull

/* Thread CPU time and CLOCK_MONOTONIC are separate clocks. */
#define CLOCK_SLACK_NS 1000000ull

/* Waits until the background scavenger is idle at its goal (true), or
 * has released no page for SCAV_NO_PROGRESS_NS (false), sampling the
 * heap for tools/plot-heap; *st is its last reading, *end the time after
 * it. */
static bool wait_idle_at_goal(struct mheap_stats *st, uint64_t t0,
                              uint64_t *end)
{
	bool idle = false;
	uint64_t pages = 0, progress_ns = now_ns();
	for (int tick = 0; !idle; tick++) {
		mheap_stats(&heap, st);
		uint64_t now = now_ns();
		*end = now;        /* after st was read */
		if (tick % 5 == 0) /* samples for tools/plot-heap */
			ktest_diag("heapcsv: %lu,%zu,%zu,%zu",
			           (now - t0) / 1000000, st->in_use_pages * 4,
			           st->free_backed_pages * 4,
			           st->free_scav_pages * 4);
		if (st->n.bg_pages != pages) {
			pages = st->n.bg_pages;
			progress_ns = now;
		} else if (now - progress_ns > SCAV_NO_PROGRESS_NS) {
			ktest_diag("no page released in %llu s: giving up",
			           SCAV_NO_PROGRESS_NS / 1000000000);
			break;
		}
		unsigned long irq = mm_lock_acquire(&heap.lock);
		idle = heap.scav.idle &&
		       st->free_backed_pages <= st->goal_pages;
		mm_lock_release(&heap.lock, irq);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return idle;
}

/*
 * A burst of large frees wakes the scavenger, which must bring free backed
 * pages to its goal and go idle. Nothing here bounds the time it takes or
 * its CPU share: the host may stall either thread for any length, and the
 * share under the 1% budget is a measurement (printed here, plotted by
 * make bench-scavenge; the pacing arithmetic itself is pacing_arithmetic).
 * What a stall cannot break: the thread's CPU time advanced, and all of
 * it was spent after the thread was started, so it is at most the wall
 * time since then.
 */
KTEST(mheap, background_reaches_goal)
{
	enum { N = 32, EACH = 64 };
	KASSERT(mh_new(&heap, 64, 0, 0));
	char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = mheap_alloc_pages(&heap, EACH, 0);
		KASSERT(p[i]);
		memset(p[i], 0xab, EACH * PG);
	}
	uint64_t started = now_ns();
	KASSERT(mheap_scavenger_start(&heap));
	struct mheap_stats st;
	/* Its start-up CPU (before it first sleeps) is not the run's. */
	do
		mheap_stats(&heap, &st);
	while (st.n.bg_cpu_ns == 0);
	uint64_t t0 = now_ns(), cpu0 = st.n.bg_cpu_ns;
	for (int i = 4; i < N; i++) /* a burst of large frees */
		mheap_free_pages(&heap, p[i], EACH);
	uint64_t end;
	bool idle = wait_idle_at_goal(&st, t0, &end);
	uint64_t wall = end - t0, cpu = st.n.bg_cpu_ns - cpu0;
	/* It paced itself: its batches' CPU time earned sleeps on pace (a
	 * thread that never slept there passed every check below). */
	unsigned long paced = mm_port_event_returns(&heap.scav.pace);
	mheap_scavenger_stop(&heap);
	ktest_diag("after %lu ms: %lu runs, %lu pages, %lu us CPU "
	           "(%lu per mille, budget %u)",
	           wall / 1000000, st.n.bg_runs, st.n.bg_pages, cpu / 1000,
	           cpu * 1000 / (wall ? wall : 1), MHEAP_DEFAULT_CPU_PERMILLE);
	KEXPECT(idle);
	KEXPECT(st.free_backed_pages <= st.goal_pages);
	KEXPECT_EQ(st.in_use_pages, 4 * EACH);
	KEXPECT(st.n.bg_pages >= (N - 4) * EACH - st.goal_pages);
	KEXPECT(cpu > 0);
	KEXPECT(paced > 0);
	KEXPECT(st.n.bg_cpu_ns <= end - started + CLOCK_SLACK_NS);
	MH_CHECK(&heap, "after the scavenger");
	mh_release(&heap);
}

/* A stop with no scavenger does nothing; a second start keeps the thread
 * the first made; after a stop a start makes a new one. */
KTEST(mheap, scavenger_start_and_stop_twice)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	mheap_scavenger_stop(&heap);
	KEXPECT(heap.scav.thread == NULL);
	KASSERT(mheap_scavenger_start(&heap));
	struct mm_thread *t = heap.scav.thread;
	KEXPECT(t != NULL);
	KEXPECT(mheap_scavenger_start(&heap));
	KEXPECT(heap.scav.thread == t);
	mheap_scavenger_stop(&heap);
	KEXPECT(heap.scav.thread == NULL);
	mheap_scavenger_stop(&heap);
	KASSERT(mheap_scavenger_start(&heap));
	KEXPECT(heap.scav.thread != NULL);
	mheap_scavenger_stop(&heap);
	KEXPECT(heap.scav.thread == NULL);
	mh_release(&heap);
}

/*
 * A double free of pages that a scavenge batch has taken out of the free
 * set (they are allocated in palloc while it unmaps them) must panic. It
 * was taken for a good free: the pages went back free while the batch
 * still held them, the next allocation handed one out, and the batch's
 * return then freed it, scavenged, under its new owner.
 */
KTEST(mheap, double_free_of_pages_being_scavenged_panics)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	pthread_t scav;
	char *a = mh_hold_a_batch(&heap,
	                          &scav); /* [312, 512) freed, then taken */
	KASSERT(a);
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, a + 400 * PG, 2));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(fired);
	KEXPECT(strstr(mm_port_last_panic(), "being scavenged"));
	KEXPECT(strstr(mm_port_last_panic(), "double free"));
	char *b = NULL;
	if (!fired) {
		/* What the missed double free leads to (and the batch's
		 * return does not panic on a page it finds free). */
		b = mheap_alloc_pages(&heap, 2, 0);
		KEXPECT_EQ((uintptr_t)b, (uintptr_t)(a + 400 * PG));
	}
	mh_batch_go(scav);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 312 + (b ? 2 : 0));
	KEXPECT_EQ(st.free_scav_pages, 200 - (b ? 2 : 0));
	uint64_t alloc[PALLOCBITS_WORDS], sc[PALLOCBITS_WORDS];
	KASSERT(mheap_chunk_bits(&heap, 0, alloc, sc));
	if (b) /* b's pages are free and scavenged under their owner */
		KEXPECT(alloc[400 / 64] >> (400 % 64) & 1);
	MH_CHECK(&heap, "after the batch");
	mheap_free_pages(&heap, a, 312);
	mh_release(&heap);
}

/* True if freeing [p, p + npages pages) panicked as a double free of
 * pages being scavenged; the heap's lock is given back after a panic. */
__attribute__((noinline)) static bool free_panics(void *p, size_t npages)
{
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, p, npages));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	return fired && strstr(mm_port_last_panic(), "being scavenged");
}

/*
 * The edges of a taken run: a free of its first or its last page alone is
 * a double free, and so is one from below that reaches into it; a free of
 * the page just below it (the caller's) goes through. No test freed at
 * either end, and an off-by-one in mheap_taken_run_locked's overlap test
 * at either end survived.
 */
KTEST(mheap, double_free_at_either_end_of_a_taken_run_panics)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	pthread_t scav;
	char *a = mh_hold_a_batch(&heap,
	                          &scav); /* [312, 512) freed, then taken */
	KASSERT(a);
	KEXPECT(free_panics(a + 312 * PG, 1));
	KEXPECT(free_panics(a + 511 * PG, 1));
	KEXPECT(free_panics(a + 311 * PG, 2));
	mheap_free_pages(&heap, a + 311 * PG, 1); /* just below: ours */
	mh_batch_go(scav);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 311);
	KEXPECT_EQ(st.scavenging_pages, 0);
	MH_CHECK(&heap, "after the batch");
	mheap_free_pages(&heap, a, 311);
	mh_release(&heap);
}

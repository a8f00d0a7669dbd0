/*
 * The page heap's scavenging (mm/mheap_scav.c, mm/mheap_alloc.c) through the
 * POSIX port: the locked mode under a short frame pool, the pacing
 * arithmetic, the background thread reaching its goal and started and
 * stopped twice, and an allocation or an extension in place that waits
 * (sleeping, not spinning) for a scavenge batch to finish. Debug mode's
 * tests are in mheap_debug_test.c.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
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
static char *heap_chunk0; /* extend_thread's run */

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

/*
 * A fully grown arena whose only free pages a scavenge batch has taken out
 * of the free set to unmap them: an allocation waits for the batch and
 * gets them (it failed: nothing to grow). The batch (release-all, on one
 * thread) is held at its hook until the allocating thread waits.
 */
static void *alloc_one_thread(void *arg)
{
	*(void **)arg = mheap_alloc_pages(&heap, 1, 0);
	return NULL;
}

KTEST(mheap, alloc_waits_for_a_scavenge_batch)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	pthread_t scav, user;
	char *a = mh_hold_a_batch(&heap, &scav);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.scavenging_pages, 200);
	KEXPECT_EQ(st.in_use_pages, 312); /* taken pages are not in use */
	void *got = NULL;
	KASSERT(pthread_create(&user, NULL, alloc_one_thread, &got) == 0);
	do { /* until the allocation waits (no time bound) */
		sched_yield();
		mheap_stats(&heap, &st);
	} while (st.n.scav_waits == 0);
	mh_batch_go(scav);
	pthread_join(user, NULL);
	KEXPECT(got != NULL);
	KEXPECT((char *)got >= a + 312 * PG && (char *)got < a + 512 * PG);
	mheap_free_pages(&heap, got, 1);
	mheap_free_pages(&heap, a, 312);
	MH_CHECK(&heap, "after the wait");
	mh_release(&heap);
}

/*
 * The pages right after a run are free, but a batch has taken them out of
 * the free set to unmap them: an extension into them waits for the batch
 * and gets them. It returned false at once, as if they were in use, and a
 * realloc copied the object instead (the scavenger takes the highest free
 * pages first: those after a large object at the heap's top).
 */
static atomic_bool extend_done;

static void *extend_thread(void *arg)
{
	*(bool *)arg = mheap_extend_pages(&heap, heap_chunk0, 312, 10, 0);
	atomic_store(&extend_done, true);
	return NULL;
}

KTEST(mheap, extend_waits_for_a_scavenge_batch)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	pthread_t scav, user;
	char *a = mh_hold_a_batch(&heap,
	                          &scav); /* [312, 512) freed, then taken */
	KASSERT(a);
	heap_chunk0 = a;
	bool ok = false;
	atomic_store(&extend_done, false);
	KASSERT(pthread_create(&user, NULL, extend_thread, &ok) == 0);
	struct mheap_stats st;
	do { /* until it waits or gives up (no time bound) */
		sched_yield();
		mheap_stats(&heap, &st);
	} while (st.n.scav_waits == 0 && !atomic_load(&extend_done));
	KEXPECT_EQ(st.n.scav_waits, 1);
	mh_batch_go(scav);
	pthread_join(user, NULL);
	KEXPECT(ok);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, ok ? 322 : 312);
	if (ok) /* mapped again after the batch unmapped them */
		memset(a + 312 * PG, 0x5a, 10 * PG);
	MH_CHECK(&heap, "after the extension");
	mheap_free_pages(&heap, a, ok ? 322 : 312);
	mh_release(&heap);
}

/*
 * While a batch holds the only free pages, allocating threads sleep until
 * it ends: their waits on `grown` are counted (scav_waits), once each.
 * Each spun instead, for as long as the batch was held: a failed growth
 * woke the event the thread then waited on with the count it had read
 * before, so every wait ended at once (hundreds of thousands of waits in
 * 50 ms). So in a fully grown arena, where two threads' growths that
 * could not grow also woke each other, and in one whose growth failed for
 * want of memory (the span table's page cannot be mapped). arena_chunks
 * is 1 or 2; the first chunk is allocated whole, 200 pages of it freed
 * and taken by the held batch; nthreads threads then allocate a page.
 */
static void alloc_sleeps_through_a_batch(size_t arena_chunks, unsigned nthreads)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = arena_chunks * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0; /* the second chunk stays ungrown */
	KASSERT(mheap_init(&heap, &cfg));
	pthread_t scav, user[2];
	void *got[2] = {NULL, NULL};
	char *a = mh_hold_a_batch(&heap, &scav);
	KASSERT(a);
	mm_port_set_quiet(true);
	if (arena_chunks > 1)
		mm_port_fail_maps(1u << 30); /* every growth fails */
	uint64_t t0 = now_ns();
	for (unsigned t = 0; t < nthreads; t++)
		KASSERT(pthread_create(&user[t], NULL, alloc_one_thread,
		                       &got[t]) == 0);
	struct mheap_stats st;
	do {
		sched_yield();
		mheap_stats(&heap, &st);
	} while (st.n.scav_waits < nthreads);
	struct timespec ts = {.tv_nsec = 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	mheap_stats(&heap, &st);
	uint64_t waits = st.n.scav_waits;
	/* Each thread's first wait, and one more per wait's timeout that
	 * can have passed: a stalled host stretches the 50 ms, and no wall
	 * clock bounds the test. Spinning, waits are 10^5. */
	uint64_t timeouts = (now_ns() - t0) / MHEAP_GROW_WAIT_NS;
	mm_port_fail_maps(0);
	mh_batch_go(scav);
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(user[t], NULL);
	mm_port_set_quiet(false);
	ktest_diag("%u threads, %zu chunks: %lu waits", nthreads, arena_chunks,
	           (unsigned long)waits);
	KEXPECT(waits <= nthreads * (2 + timeouts));
	for (unsigned t = 0; t < nthreads; t++) {
		KEXPECT(got[t] != NULL);
		if (got[t])
			mheap_free_pages(&heap, got[t], 1);
	}
	mheap_free_pages(&heap, a, 312);
	MH_CHECK(&heap, "after the wait");
	mh_release(&heap);
}

KTEST(mheap, alloc_sleeps_through_a_batch_in_a_full_arena)
{
	alloc_sleeps_through_a_batch(1, 2);
}

KTEST(mheap, alloc_sleeps_through_a_batch_when_growth_fails)
{
	alloc_sleeps_through_a_batch(2, 1);
}

/*
 * The end of a batch wakes `grown`, which an allocation that waits for the
 * batch's pages sleeps on. Without that wake the waiter still got its page,
 * but only when its wait timed out (MHEAP_GROW_WAIT_NS, a second): every
 * test above passed. No clock here: the event's count must have moved
 * from the value read while the thread slept, and nothing else wakes it.
 */
KTEST(mheap, the_end_of_a_batch_wakes_an_allocation_waiting_for_it)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	pthread_t scav, user;
	char *a = mh_hold_a_batch(&heap, &scav);
	KASSERT(a);
	void *got = NULL;
	KASSERT(pthread_create(&user, NULL, alloc_one_thread, &got) == 0);
	while (mm_port_event_waiters(&heap.grown) == 0)
		sched_yield();
	uint64_t seen = mm_event_prepare(&heap.grown);
	mh_batch_go(scav);
	KEXPECT(mm_event_prepare(&heap.grown) != seen);
	pthread_join(user, NULL);
	KEXPECT(got != NULL);
	if (got)
		mheap_free_pages(&heap, got, 1);
	mheap_free_pages(&heap, a, 312);
	MH_CHECK(&heap, "after the wake");
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

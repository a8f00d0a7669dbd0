/*
 * mheap_release_all against scavenge batches other threads hold
 * (mm/mheap_scav.c): it waits for a batch taken before its last pass,
 * whose pages were free when the call began, so that on return none of
 * them is still backed or being unmapped; and it does not wait for one
 * taken after, which a thread that keeps freeing beside the background
 * scavenger could otherwise make last as long as it frees.
 *
 * A batch is held at MHEAP_HOOK_SCAV_UNMAPPED by hold_hook, armed for
 * one batch at a time (slot 0 or 1); each run happens on a thread of its
 * own. No wall-clock bound: a release that waited for ever would end the
 * host test at its timeout, named.
 */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "../../mm/mheap_testing.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* static: the threads may lag */
static sem_t held[2], go[2];
static atomic_int armed = -1; /* the slot the next batch holds in */

static void hold_hook(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SCAV_UNMAPPED)
		return;
	int i = atomic_load(&armed);
	if (i < 0 || !atomic_compare_exchange_strong(&armed, &i, -1))
		return;
	sem_post(&held[i]);
	sem_wait(&go[i]);
}

/* What a release-all thread did: its count and the heap as it returned. */
struct release_run {
	pthread_t t;
	size_t released;
	struct mheap_stats at_return;
	atomic_bool done;
};

static void *release_thread(void *arg)
{
	struct release_run *r = arg;
	r->released = mheap_release_all(&heap);
	mheap_stats(&heap, &r->at_return);
	atomic_store(&r->done, true);
	return NULL;
}

static void *background_batch_thread(void *arg)
{
	(void)arg;
	mheap_scavenge_batch(&heap, MHEAP_SCAV_BATCH_PAGES, PALLOC_SCAV_FORCE,
	                     MHEAP_SCAV_BG);
	return NULL;
}

/* Starts fn on *t with its next batch held in slot i; returns once held. */
static void start_held(pthread_t *t, void *(*fn)(void *), void *arg, int i)
{
	atomic_store(&armed, i);
	KASSERT(pthread_create(t, NULL, fn, arg) == 0);
	sem_wait(&held[i]);
}

/* Until r returned or a release waits on a batch. */
static void until_done_or_waiting(struct release_run *r)
{
	struct mheap_stats st;
	do {
		sched_yield();
		mheap_stats(&heap, &st);
	} while (!atomic_load(&r->done) && st.n.scav_waits == 0);
}

/* r gave back `released` pages itself and returned with nothing backed
 * or being unmapped, scav pages free and scavenged. */
static void expect_settled(const struct release_run *r, size_t released,
                           size_t scav)
{
	KEXPECT_EQ(r->released, released);
	KEXPECT_EQ(r->at_return.scavenging_pages, 0);
	KEXPECT_EQ(r->at_return.free_backed_pages, 0);
	KEXPECT_EQ(r->at_return.free_scav_pages, scav);
}

static char *setup(void)
{
	for (int i = 0; i < 2; i++) {
		sem_init(&held[i], 0, 0);
		sem_init(&go[i], 0, 0);
	}
	atomic_store(&armed, -1);
	if (!mh_new(&heap, 1, 0, 0))
		return NULL;
	mheap_test_hook = hold_hook;
	return mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
}

/* The set-up's chunk with 200 pages freed and a background batch (bg)
 * holding them, stopped at the hook; NULL if the chunk could not be had. */
static char *with_background_batch(pthread_t *bg)
{
	char *a = setup();
	if (!a)
		return NULL;
	mheap_free_pages(&heap, a + 312 * PG, 200);
	start_held(bg, background_batch_thread, NULL, 0);
	return a;
}

/*
 * A background batch holds 200 freed pages when release-all starts:
 * release-all gives back the 50 free backed pages and then waits for the
 * batch, so that as it returns nothing freed before it is backed. Until
 * this version it returned at once, with the 200 pages still being
 * unmapped (a kernel test read "6 pages given back").
 */
KTEST(mheap_release, waits_for_a_batch_taken_before_it)
{
	pthread_t bg;
	char *a = with_background_batch(&bg);
	KASSERT(a);
	mheap_free_pages(&heap, a + 100 * PG, 50);
	struct release_run r = {0};
	KASSERT(pthread_create(&r.t, NULL, release_thread, &r) == 0);
	until_done_or_waiting(&r);
	KEXPECT(!atomic_load(&r.done)); /* waiting for the batch */
	sem_post(&go[0]);
	pthread_join(bg, NULL);
	pthread_join(r.t, NULL);
	mheap_test_hook = NULL;
	expect_settled(&r, 50, 250);
	KEXPECT_EQ(r.at_return.n.bg_pages, 200);
	mheap_free_pages(&heap, a, 100);
	mheap_free_pages(&heap, a + 150 * PG, 162);
	MH_CHECK(&heap, "after the release");
	mh_release(&heap);
}

/*
 * Release-all waits for the batch taken before it (slot 0), not for one
 * a background batch takes while it waits (slot 1): it returns with that
 * one's 30 pages still out. The first release-all, whose batch slot 0
 * is, took its last pass after the second batch and waits for it.
 */
KTEST(mheap_release, does_not_wait_for_a_batch_taken_after_it)
{
	char *a = setup();
	KASSERT(a);
	mheap_free_pages(&heap, a + 312 * PG, 200);
	struct release_run first = {0}, r = {0};
	start_held(&first.t, release_thread, &first, 0);
	mheap_free_pages(&heap, a + 100 * PG, 50);
	KASSERT(pthread_create(&r.t, NULL, release_thread, &r) == 0);
	until_done_or_waiting(&r);
	KEXPECT(!atomic_load(&r.done));
	mheap_free_pages(&heap, a + 200 * PG, 30);
	pthread_t bg;
	start_held(&bg, background_batch_thread, NULL, 1);
	sem_post(&go[0]); /* the first batch returns; r may go */
	pthread_join(r.t, NULL);
	KEXPECT_EQ(r.released, 50);
	KEXPECT_EQ(r.at_return.scavenging_pages, 30);
	sem_post(&go[1]);
	pthread_join(bg, NULL);
	pthread_join(first.t, NULL);
	mheap_test_hook = NULL;
	expect_settled(&first, 200, 280);
	mheap_free_pages(&heap, a, 100);
	mheap_free_pages(&heap, a + 150 * PG, 50);
	mheap_free_pages(&heap, a + 230 * PG, 82);
	MH_CHECK(&heap, "after the releases");
	mh_release(&heap);
}

/*
 * A release-all that waits for a batch counts one wait (scav_waits),
 * however often it wakes before the batch ends: here three wakes of the
 * event it waits on, none of which ends the batch, each seen through
 * (the waiter returned and blocked again, so it went round its loop). A
 * mutant that counted every round counted 4 (the page-allocator round's
 * last gap).
 */
KTEST(mheap_release, counts_one_wait_however_often_it_wakes)
{
	pthread_t bg;
	char *a = with_background_batch(&bg);
	KASSERT(a);
	struct release_run r = {0};
	KASSERT(pthread_create(&r.t, NULL, release_thread, &r) == 0);
	until_done_or_waiting(&r);
	KEXPECT(!atomic_load(&r.done));
	for (int round = 0; round < 3; round++) {
		while (mm_port_event_waiters(&heap.grown) == 0)
			sched_yield(); /* blocked on grown */
		unsigned long n = mm_port_event_returns(&heap.grown);
		mm_event_wake(&heap.grown);
		while (mm_port_event_returns(&heap.grown) == n ||
		       mm_port_event_waiters(&heap.grown) == 0)
			sched_yield(); /* woke, went round, blocked again */
	}
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.scav_waits, 1);
	sem_post(&go[0]);
	pthread_join(bg, NULL);
	pthread_join(r.t, NULL);
	mheap_test_hook = NULL;
	expect_settled(&r, 0, 200);
	KEXPECT_EQ(r.at_return.n.scav_waits, 1);
	mheap_free_pages(&heap, a, 312);
	MH_CHECK(&heap, "after the release");
	mh_release(&heap);
}

/*
 * A release whose one backed page lies in the lowest of many grown chunks,
 * every other free page scavenged: its search goes down from the top chunk
 * past all the others (free pages, none backed), so it must drop the heap
 * lock, which an irqsave port holds with interrupts off, every
 * MHEAP_SCAV_SEARCH_CHUNKS chunks. Until a review it searched the whole
 * arena in one hold: 1024 chunks here, 32768 for a 64 GiB heap.
 */
KTEST(mheap_release, a_search_over_a_large_arena_drops_the_lock)
{
	enum { CHUNKS = 1024 };
	KASSERT(mh_new(&heap, CHUNKS, 0, 0));
	size_t all = CHUNKS * MHEAP_CHUNK_PAGES;
	void *a = mheap_alloc_pages(&heap, all, 0);
	KASSERT(a != NULL);
	mheap_free_pages(&heap, a, all);
	mheap_release_all(&heap);
	void *one = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(one == a);
	mheap_free_pages(&heap, one, 1);
	heap.scav_searched_max = 0;
	KEXPECT_EQ(mheap_release_all(&heap), 1);
	ktest_diag("%zu chunks grown; at most %zu searched in one hold",
	           heap.grown_chunks, heap.scav_searched_max);
	KEXPECT(heap.scav_searched_max <= MHEAP_SCAV_SEARCH_CHUNKS);
	MH_CHECK(&heap, "after the release");
	mh_release(&heap);
}

/*
 * Two runs of backed free pages in one chunk, both taken by one batch: a
 * search that took a run starts anew at the cursor, which stays on that
 * chunk, so the next run there is found too. A search carried on along
 * its circle instead (as the stretches between lock holds are) would
 * pass below the chunk and leave the second run to another batch.
 */
KTEST(mheap_release, one_batch_takes_two_runs_of_one_chunk)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	char *a = mheap_alloc_pages(&heap, MHEAP_CHUNK_PAGES, 0);
	KASSERT(a != NULL);
	mheap_free_pages(&heap, a + 8 * MM_PAGE_SIZE, 8);
	mheap_free_pages(&heap, a + 32 * MM_PAGE_SIZE, 8);
	uint64_t takes = heap.scav_takes;
	KEXPECT_EQ(mheap_release_all(&heap), 16);
	KEXPECT_EQ(heap.scav_takes - takes, 1);
	mheap_free_pages(&heap, a, 8);
	mheap_free_pages(&heap, a + 16 * MM_PAGE_SIZE, 16);
	mheap_free_pages(&heap, a + 40 * MM_PAGE_SIZE, MHEAP_CHUNK_PAGES - 40);
	MH_CHECK(&heap, "after the release");
	mh_release(&heap);
}

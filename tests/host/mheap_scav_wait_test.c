/*
 * The page heap's waits for a scavenge batch (mm/mheap_alloc.c,
 * mm/mheap_scav.c) through the POSIX port: while a batch has taken free
 * pages out of the free set to unmap them, an allocation or an extension
 * in place that needs them waits (sleeping, not spinning) until the batch
 * ends, and the batch's end wakes it. The batch is held at its hook
 * (mheap_batch_util.h) until the waiting thread waits. The rest of the
 * scavenger's tests are in mheap_scav_test.c.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "mheap_batch_util.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* one at a time; static: the thread may lag */
static char *heap_chunk0; /* extend_thread's run */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

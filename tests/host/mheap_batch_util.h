/*
 * tests/host/mheap_batch_util.h: holding a scavenge batch while a test
 * acts. mh_batch_hold starts mheap_release_all(h) on a thread of its own
 * and returns once that thread's first batch has taken its pages out of
 * the free set (stopped at MHEAP_HOOK_SCAV_UNMAPPED); mh_batch_go lets it
 * finish and joins it. One hold at a time per test file.
 */
#ifndef TESTS_HOST_MHEAP_BATCH_UTIL_H
#define TESTS_HOST_MHEAP_BATCH_UTIL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>

#include "../../mm/mheap.h"
#include "../../mm/mheap_testing.h"

static sem_t mh_batch_held, mh_batch_free;
static struct mheap *mh_batch_heap;

static inline void mh_batch_hook(struct mheap *h, enum mheap_hook_point where)
{
	if (h != mh_batch_heap || where != MHEAP_HOOK_SCAV_UNMAPPED)
		return;
	mheap_test_hook = NULL; /* once */
	sem_post(&mh_batch_held);
	sem_wait(&mh_batch_free);
}

/* mheap_release_all(arg) on a thread: a pthread start routine. */
static inline void *mh_release_all_run(void *arg)
{
	mheap_release_all(arg);
	return NULL;
}

/* Starts release-all of h on *t and waits until its first batch holds its
 * pages. False if the thread could not be made (nothing held). */
static inline bool mh_batch_hold(struct mheap *h, pthread_t *t)
{
	sem_init(&mh_batch_held, 0, 0);
	sem_init(&mh_batch_free, 0, 0);
	mh_batch_heap = h;
	mheap_test_hook = mh_batch_hook;
	if (pthread_create(t, NULL, mh_release_all_run, h) != 0) {
		mheap_test_hook = NULL;
		return false;
	}
	sem_wait(&mh_batch_held);
	return true;
}

/* Lets the held batch go and joins release-all's thread t. */
static inline void mh_batch_go(pthread_t t)
{
	sem_post(&mh_batch_free);
	pthread_join(t, NULL);
}

/* Allocates the first chunk of h (fully grown, one chunk) whole, frees its
 * pages [312, 512), and holds a batch of release-all (mh_batch_hold, on
 * *scav) with those 200 pages taken out of the free set. Returns the
 * chunk, NULL on failure. */
static inline char *mh_hold_a_batch(struct mheap *h, pthread_t *scav)
{
	char *a = mheap_alloc_pages(h, PALLOC_CHUNK_PAGES, 0);
	if (!a)
		return NULL;
	mheap_free_pages(h, a + 312 * MM_PAGE_SIZE, 200);
	return mh_batch_hold(h, scav) ? a : NULL;
}

#endif

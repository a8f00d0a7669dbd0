/*
 * tests/real/malloc_hooks_progress.c: malloc-hooks-test's progress
 * scenario (docs/DESIGN.md, "Progress"): a thread stays inside a call,
 * holding its slot, for the whole scenario (a thread the kernel stops or
 * never runs again inside malloc: SIGSTOP stops the whole process, so a
 * hook stands in for it), while other threads allocate and free every
 * kind of object, hand objects to each other, and trim; the background
 * threads run beside them. Every worker must complete its operations
 * while the others keep going; a wait for the held slot that nothing
 * bounds hangs the scenario (the driver's alarm).
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "malloc_hooks_test.h"

enum {
	WORKERS = 3,
	OPS = 20000, /* each worker's operations, at least */
	RING = 256,  /* objects a worker keeps, freed by the next worker */
};

static atomic_bool holder_in, holder_go, all_done;
static atomic_long ops[WORKERS];
static atomic_int workers_done;
static _Atomic(void *) handed[WORKERS][RING];
static _Thread_local volatile bool is_holder; /* volatile: as visit.c's */

static void in_progress_call(enum mm_malloc_hook_point where)
{
	if (is_holder && (where == MM_MALLOC_HOOK_FAST_HELD ||
	                  where == MM_MALLOC_HOOK_SLOW_HELD)) {
		is_holder = false; /* once */
		atomic_store(&holder_in, true);
		while (!atomic_load(&holder_go))
			sched_yield();
	}
}

static void *staying_holder(void *arg)
{
	free(malloc(16)); /* claims its slot */
	is_holder = true;
	free(malloc(48)); /* stays inside until holder_go */
	return arg;
}

/* Operation i of worker w: an object of a size that walks the small
 * classes, every 64th a large one; kept in the worker's ring, and the
 * one it replaces there freed; every 8th also frees an object the next
 * worker kept. Every 4096th trims. false if an allocation failed. */
static bool one_op(unsigned w, long i)
{
	size_t size = i % 64 == 63 ? 300000 : (size_t)(16 + (i * 40) % 8000);
	void *p = malloc(size);
	if (!p)
		return false;
	memset(p, (int)w, size < 64 ? size : 64);
	free(atomic_exchange(&handed[w][i % RING], p));
	if (i % 8 == 0)
		free(atomic_exchange(&handed[(w + 1) % WORKERS][(i / 8) % RING],
		                     NULL));
	if (i % 4096 == 4095)
		(void)malloc_trim(0);
	return true;
}

static void *worker(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg;
	long i = 0;
	bool counted = false;
	while (!atomic_load(&all_done)) {
		if (!one_op(w, i++))
			return (void *)1;
		atomic_store(&ops[w], i);
		if (i == OPS && !counted) {
			counted = true;
			if (atomic_fetch_add(&workers_done, 1) + 1 == WORKERS)
				atomic_store(&all_done, true);
		}
	}
	return NULL;
}

/*
 * Three workers, each at least OPS operations while the others go on,
 * beside a thread held inside its call for good: nothing they do waits
 * for that slot unboundedly (a visit, a reclaim, the sweeper's cycles and
 * visits, malloc_trim pass it by). Prints each worker's count.
 */
int others_progress_beside_a_held_slot(void)
{
	free(malloc(16));
	mm_malloc_test_hook = in_progress_call;
	pthread_t h, t[WORKERS];
	if (pthread_create(&h, NULL, staying_holder, NULL) != 0)
		return 2;
	while (!atomic_load(&holder_in))
		sched_yield();
	for (unsigned w = 0; w < WORKERS; w++)
		if (pthread_create(&t[w], NULL, worker, (void *)(uintptr_t)w) !=
		    0)
			return 2;
	bool failed = false;
	for (unsigned w = 0; w < WORKERS; w++) {
		void *r;
		pthread_join(t[w], &r);
		failed |= r != NULL;
	}
	bool still_in = !atomic_load(&holder_go);
	atomic_store(&holder_go, true);
	pthread_join(h, NULL);
	for (unsigned w = 0; w < WORKERS; w++)
		for (unsigned k = 0; k < RING; k++)
			free(atomic_exchange(&handed[w][k], NULL));
	long lo = atomic_load(&ops[0]), hi = lo;
	for (unsigned w = 1; w < WORKERS; w++) {
		long n = atomic_load(&ops[w]);
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	if (failed || !still_in || lo < OPS) {
		fprintf(stderr,
		        "beside a thread inside its call: workers did %ld..%ld "
		        "operations (%d each expected)%s, the holder %s",
		        lo, hi, OPS, failed ? ", an allocation failed" : "",
		        still_in ? "inside" : "let go");
		return 1;
	}
	printf("# workers did %ld..%ld operations beside a held slot\n", lo,
	       hi);
	return 0;
}

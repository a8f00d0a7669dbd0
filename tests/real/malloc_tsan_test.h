/*
 * tests/real/malloc_tsan_test.h: what the files of make test-malloc-tsan
 * share (malloc_tsan_test.c: the objects, the workers and the stress;
 * malloc_tsan_threads.c: the threads beside them, and more threads than
 * slots; malloc_tsan_late.c: the reclaim of what threads gone in their
 * last key round left in the slots): the library's renamed entry points,
 * an object and its pattern, the workers' inboxes and the side threads'
 * failures.
 */
#ifndef TESTS_REAL_MALLOC_TSAN_TEST_H
#define TESTS_REAL_MALLOC_TSAN_TEST_H

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/ktest.h"
#include "malloc/malloc_internal.h"
#include "malloc/mm_malloc.h"
#include "mm/sizeclasses.h"
#include "tests/host/stress_util.h"

/* The library's entry points, renamed by malloc.mk (MALLOC_TSAN_API). */
void *mmt_malloc(size_t size);
void mmt_free(void *p);
void *mmt_calloc(size_t n, size_t size);
void *mmt_realloc(void *p, size_t size);
void *mmt_memalign(size_t align, size_t size);
void *mmt_aligned_alloc(size_t align, size_t size);
int mmt_posix_memalign(void **out, size_t align, size_t size);
size_t mmt_malloc_usable_size(void *p);
struct mallinfo2 mmt_mallinfo2(void);
int mmt_malloc_trim(size_t pad);

enum {
	WORKERS = 4,
	GENS = 8,   /* threads per worker place, one after another */
	OPS = 6000, /* per worker thread */
	LIVE = 32,  /* objects a worker holds at most */
	INBOX = 64, /* objects handed over, waiting to be freed */
	SHORT_THREADS = 24,
	FORKS = 3,
	CHECK_CHUNK = 4096,
};

struct obj {
	unsigned char *p;
	size_t size;
	unsigned char fill; /* every byte but the first word's */
};

/* Per worker place: the objects handed to it, to free. */
extern struct stress_inbox inboxes[WORKERS];
/* Set to stop the side threads' loops. */
extern atomic_bool stop_side;
/* The side threads' failures (side_failed). */
extern struct stress_failures side_fail;
/* Made after the library's exit key (setup): its destructor, late_free,
 * runs after a thread gave its slot back. */
extern pthread_key_t late_key;

/* Allocates o by one of the calls (a size of every class in turn, random
 * small ones, large ones), checks it and fills it; NULL on failure,
 * counted in f. */
void *obj_new(struct obj *o, uint64_t *rng, unsigned *next_class,
              struct stress_failures *f);
/* Checks o's pattern and frees it. */
void obj_free(struct obj *o, struct stress_failures *f);
/* Counts a side thread's failure (what, at p) under a lock. */
void side_failed(const char *what, const void *p);
/* The library set up in exchange mode, the inboxes and late_key. */
void setup(void);
/* Stops the background threads, if they run; the next allocation's slow
 * path starts them again (malloc_tsan_test.c). */
void stop_background(void);
/* After a run, everything freed: trims, runs the heaps' checkers and
 * expects the bytes in use and large objects as before the run. */
void check_heap_back_to(const struct spanheap_stats *before);

/* The side threads (malloc_tsan_threads.c). */
void *trimmer_main(void *arg);
void *forker_main(void *arg);
void *short_spawner_main(void *arg);
void late_free(void *p);

#endif

/*
 * Progress of every CPU under contention (docs/DESIGN.md, "Progress"),
 * through the POSIX port, built for ThreadSanitizer too: four workers,
 * each a CPU of its own, allocate one size class (one central list, its
 * fold queue and its pending-free bits shared by all) and free a quarter
 * of their objects on the next CPU (remote frees: the queue's
 * compare-and-swap and the bits' fetch-or), while the sweeper and the
 * scavenger run. Every worker goes on until each has made PROGRESS_OPS
 * allocations, so a CPU that loses every race for good while the others
 * win keeps the test running for ever (the run's hang guard reports it);
 * no assert depends on time. The spread of the counts is printed.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"

enum {
	PROGRESS_WORKERS = 4,
	PROGRESS_OPS = 20000, /* allocations each worker must make */
	PROGRESS_RING = 64,   /* objects a worker keeps */
	PROGRESS_SIZE = 96,   /* one class for all */
};

static struct mheap heap;
static struct spanheap sh;
static _Atomic(void *) kept[PROGRESS_WORKERS][PROGRESS_RING];
static _Atomic unsigned at_target;
static _Atomic unsigned long refused;
static unsigned long count[PROGRESS_WORKERS];

static void *progress_worker(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg,
	         next = (w + 1) % PROGRESS_WORKERS;
	mm_port_set_cpu(w);
	unsigned long i = 0;
	while (atomic_load(&at_target) < PROGRESS_WORKERS) {
		void *p = spanheap_alloc(&sh, PROGRESS_SIZE, 0);
		if (!p) {
			atomic_fetch_add(&refused, 1);
			break;
		}
		memset(p, (int)w, PROGRESS_SIZE);
		/* A quarter of the slots are the next CPU's to free. */
		unsigned slot = (unsigned)(i % PROGRESS_RING);
		unsigned owner = slot % 4 == 0 ? next : w;
		void *old = atomic_exchange(&kept[owner][slot], p);
		if (old)
			spanheap_free(&sh, old);
		if (++i == PROGRESS_OPS)
			atomic_fetch_add(&at_target, 1);
	}
	count[w] = i;
	return NULL;
}

/*
 * Every CPU completes its allocations on one class while the others keep
 * allocating and freeing it, on their CPUs and remotely.
 */
KTEST(spanheap_progress, every_cpu_allocates_from_a_shared_class)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_quiet(true); /* the scavenger's "at goal" lines */
	KASSERT(spanheap_sweeper_start(&sh));
	KASSERT(mheap_scavenger_start(&heap));
	atomic_store(&at_target, 0);
	pthread_t t[PROGRESS_WORKERS];
	for (unsigned w = 0; w < PROGRESS_WORKERS; w++)
		KASSERT(pthread_create(&t[w], NULL, progress_worker,
		                       (void *)(uintptr_t)w) == 0);
	for (unsigned w = 0; w < PROGRESS_WORKERS; w++)
		pthread_join(t[w], NULL);
	spanheap_sweeper_stop(&sh);
	mheap_scavenger_stop(&heap);
	mm_port_set_quiet(false);
	mm_port_set_cpu(0);
	for (unsigned w = 0; w < PROGRESS_WORKERS; w++)
		for (unsigned k = 0; k < PROGRESS_RING; k++) {
			void *p = atomic_exchange(&kept[w][k], NULL);
			if (p)
				spanheap_free(&sh, p);
		}
	KEXPECT_EQ(atomic_load(&refused), 0);
	unsigned long lo = count[0], hi = count[0];
	for (unsigned w = 0; w < PROGRESS_WORKERS; w++) {
		KEXPECT(count[w] >= PROGRESS_OPS);
		lo = count[w] < lo ? count[w] : lo;
		hi = count[w] > hi ? count[w] : hi;
	}
	ktest_diag("%d CPUs made %lu..%lu allocations of one class",
	           PROGRESS_WORKERS, lo, hi);
	SH_CHECK(&sh, "after the workers");
	sh_heap_release(&heap, &sh);
}

/* Bringing the kernel heap to rest, for tests that count frames exactly:
 * its sweeper and scavenger threads otherwise give frames back whenever
 * they run. */
#ifndef TESTS_KERNEL_HEAP_UTIL_H
#define TESTS_KERNEL_HEAP_UTIL_H

#include "kernel/heap.h"
#include "kernel/thread.h"

/* Gives everything back (every CPU's span cache, a sweep, every free
 * backed page) until no free page is backed and the background scavenger
 * has no batch in flight; bounded by rounds. Only frees that come later
 * move the frame pool again. Thread context. */
static inline void heap_settle(void)
{
	struct mheap_stats st;
	for (unsigned round = 0; round < 100; round++) {
		heap_release_all();
		mheap_stats(&kheap, &st);
		if (st.free_backed_pages == 0 && st.scavenging_pages == 0)
			return;
		thread_sleep_ns(10000000);
	}
}

/* Stops the heap's background threads (the scavenger, the sweeper) and
 * joins them: a test that counts frames across an operation, or fails
 * the k-th frame allocation, needs neither to move the pool meanwhile.
 * Thread context. */
static inline void heap_threads_stop(void)
{
	mheap_scavenger_stop(&kheap);
	spanheap_sweeper_stop(&kspanheap);
}

/* Starts them again (on the CPUs with the fewest threads); false if
 * either could not start. Thread context. */
static inline bool heap_threads_start(void)
{
	bool scav = mheap_scavenger_start(&kheap);
	bool sweeper = spanheap_sweeper_start(&kspanheap);
	return scav && sweeper;
}

/* Pages the span heap keeps for itself by design (its span structs, the
 * CPUs' magazine slabs, poison mode's stack depot and the all-spans
 * array): they never go back, so frame counts allow for their growth. */
static inline size_t span_meta_pages(void)
{
	unsigned long irq = mm_lock_acquire(&kheap.lock);
	size_t n =
	        kspanheap.nstructs / (MM_PAGE_SIZE / sizeof(struct mspan)) +
	        kspanheap.spans->npages +
	        atomic_load(&kspanheap.mag_slabs) * kspanheap.mag_slab_pages +
	        atomic_load(&kspanheap.depot.pages);
	mm_lock_release(&kheap.lock, irq);
	return n;
}

#endif

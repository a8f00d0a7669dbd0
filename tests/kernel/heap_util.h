/* Bringing the kernel heap to rest, for tests that count frames exactly:
 * its sweeper and scavenger threads otherwise give frames back whenever
 * they run. */
#ifndef TESTS_KERNEL_HEAP_UTIL_H
#define TESTS_KERNEL_HEAP_UTIL_H

#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ksyms.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
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

/* Skips the calling test under mm.debug_pagealloc, where a free gives its
 * pages back itself and none is left for a scavenge to find. */
#define HEAP_SKIP_IF_FREES_SCAVENGE()                                  \
	do {                                                           \
		if (kheap.cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE)        \
			KTEST_SKIP("mm.debug_pagealloc: a free gives " \
			           "its pages back itself, none is "   \
			           "left to scavenge");                \
	} while (0)

/*
 * Frees npages of the span heap's metadata heap, written first so that
 * they are backed, and waits until kheap's background scavenger, which
 * serves that heap too (mm/mheap_scav.c, "served"), has given some of its
 * pages back: *m0 and *m are that heap's statistics before and after.
 * False if the pages could not be had. No bound on the wait: run-ktest's
 * timeout names a hang. Thread context, the scavenger running.
 */
static inline bool heap_meta_free_until_bg_scavenge(size_t npages,
                                                    struct mheap_stats *m0,
                                                    struct mheap_stats *m)
{
	mheap_stats(&kspanheap.meta, m0);
	uint8_t *p = mheap_alloc_pages(&kspanheap.meta, npages, 0);
	if (p == NULL)
		return false;
	memset(p, 0x5a, npages * MM_PAGE_SIZE);
	mheap_free_pages(&kspanheap.meta, p, npages);
	do {
		thread_sleep_ns(1000000);
		mheap_stats(&kspanheap.meta, m);
	} while (m->n.bg_pages == m0->n.bg_pages);
	return true;
}

/* Pages the span heap keeps for itself by design (its span structs, the
 * CPUs' magazine slabs, poison mode's stack depot and the all-spans
 * array): they never go back. */
static inline size_t span_own_pages(void)
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

/* Those, and mm.kasan's shadow pages (mapped as the arena is first used,
 * kept for good): what a frame count allows for the heap's growth.
 * Without the shadow, a test that counted frames failed run alone with
 * mm.kasan (7 frames short: the shadow of the pages it used first), and
 * passed in the suite only because earlier tests had mapped that shadow
 * already. A count that adds heap_meta_frames, which holds the shadow
 * too, takes span_own_pages instead. */
static inline size_t span_meta_pages(void)
{
	return span_own_pages() + kasan_shadow_frames();
}

/* Objects of the guarded pool (mm.guard) that kmalloc_plain met and set
 * aside, for kmalloc_plain_done. */
struct guard_aside {
	void *p[SPANHEAP_GUARD_MAX + 1];
	unsigned n;
};

/*
 * kmalloc(size, flags), never an object of the guarded pool: for tests of
 * what a span's objects do after their free (their free marker, their
 * where line, their stale bytes), which a guarded object, its page
 * unmapped at the free, does not do. With mm.guard=1 a class's refills
 * are all sampled until the pool is full: the pool's objects met on the
 * way wait in *aside for kmalloc_plain_done. Contexts as kmalloc's.
 */
static inline void *kmalloc_plain(size_t size, unsigned flags,
                                  struct guard_aside *aside)
{
	void *p = kmalloc(size, flags);
	while (p && spanheap_guard_owns(&kspanheap.guard, p) &&
	       aside->n < SPANHEAP_GUARD_MAX + 1) {
		aside->p[aside->n++] = p;
		p = kmalloc(size, flags);
	}
	if (p && spanheap_guard_owns(&kspanheap.guard, p)) {
		kfree(p); /* the pool never filled: the caller's failure */
		return NULL;
	}
	return p;
}

/* Frees what kmalloc_plain set aside, and forgets it: asides are the
 * tests' statics, read by the leak scan, where a stale pointer keeps
 * whatever the pool puts at its address next. */
static inline void kmalloc_plain_done(struct guard_aside *aside)
{
	while (aside->n) {
		kfree(aside->p[--aside->n]);
		aside->p[aside->n] = NULL;
	}
}

/* True if one of record t's return addresses is in the function named
 * name (poison mode's records, mm/spanheap_track.h). */
static inline __attribute__((unused)) bool
track_names(const struct spanheap_track *t, const char *name)
{
	for (unsigned i = 0; i < t->npcs; i++) {
		uint64_t off;
		const char *s = ksyms_lookup(t->pc[i], &off);
		if (s && strcmp(s, name) == 0)
			return true;
	}
	return false;
}

#endif

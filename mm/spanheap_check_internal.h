/*
 * mm/spanheap_check_internal.h: what the span heap's checker's two files
 * share (spanheap_check.c, spanheap_check_cache.c): how a fault is
 * reported, and the per-CPU checks spanheap_check calls. Not for anyone
 * else; the checker's design is in spanheap_check.c.
 */
#ifndef MM_SPANHEAP_CHECK_INTERNAL_H
#define MM_SPANHEAP_CHECK_INTERNAL_H

#include "spanheap_internal.h"

/* A fault the checker found: gives the cycle back first (a test may catch
 * the panic and go on with the heap), then panics. Its snapshot's
 * reference stays taken: after a caught panic the all-spans array it
 * holds is never freed. */
#define check_fail(sh, ...) (spanheap_cycle_release(sh), mm_panic(__VA_ARGS__))
/* The same under a class's lock, which goes first. */
#define check_fail_unlock(sh, lock, irq, ...)                    \
	(mm_lock_release(lock, irq), spanheap_cycle_release(sh), \
	 mm_panic(__VA_ARGS__))
/* Every CPU's magazines (spanheap_check_cache.c). Thread context, the
 * cycle semaphore held. */
void spanheap_check_mags(struct spanheap *sh);
/* Every CPU's cached spans, counted per class into listed[]
 * (spanheap_check_cache.c). Thread context, the cycle semaphore held. */
void spanheap_check_cached(struct spanheap *sh, size_t listed[SC_NCLASSES]);

#endif

/*
 * mm/mempool_internal.h: what mempool.c and mempool_check.c share: an
 * element's first word (the reserve's marker) and the reserve's size.
 * Not for callers.
 */
#ifndef MM_MEMPOOL_INTERNAL_H
#define MM_MEMPOOL_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "mempool.h"

/* The word of e that holds the pool's marker while e is in the reserve. */
static inline uintptr_t *mempool_first_word(void *e)
{
	return (uintptr_t *)e;
}

/* The reserve's size (written under the pool's lock, read anywhere). */
static inline uint32_t mempool_min_of(const struct mempool *p)
{
	return atomic_load_explicit(&p->min, memory_order_relaxed);
}

#ifdef MM_TEST_HOOKS
/* Called by mempool_free between its checks and its lock, if set: a test
 * frees the element again there, as a racing double free would. */
extern void (*mempool_test_after_check)(struct mempool *p, void *e);
#endif

#endif

/*
 * mm/mempool_internal.h: what mempool.c, mempool_setup.c and
 * mempool_check.c share: an element's first word (the reserve's
 * marker), the reserve's size, the source's calls and the reserve's
 * push and pop. Not for callers.
 */
#ifndef MM_MEMPOOL_INTERNAL_H
#define MM_MEMPOOL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mempool.h"

struct objcache;
struct spanheap;

/* objcache.c's, for mempool_init_cache_in: c's size into *size if c is
 * on sh's list of caches, looked for under the list's lock before c is
 * read; false, c not read, if it is not there (destroyed, or another
 * heap's). Thread context. */
bool objcache_size_in(struct spanheap *sh, const struct objcache *c,
                      size_t *size);

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

/* mm_panics naming p and op ("allocation from") if p is no pool: min
 * is 0 only in a struct that no init set up (zeroed, or its init failed)
 * or that mempool_destroy emptied, as init and resize refuse 0. Any
 * context but NMI. */
void mempool_assert_set_up(const struct mempool *p, const char *op);

/* An element from p's source (the heap, a named cache or the caller's
 * source), with flags; any context the flags allow. */
void *mempool_source_alloc(struct mempool *p, unsigned flags);

/* Gives e back to p's source. */
void mempool_source_free(struct mempool *p, void *e);

/* mempool_push_locked's answers. */
enum {
	MEMPOOL_PUSH_FULL,
	MEMPOOL_PUSH_KEPT,
	MEMPOOL_PUSH_TWICE,
	MEMPOOL_PUSH_LEFT
};

/* An element on its way to the source holds marker ^ its address ^ this
 * in its first word (mempool.c's mark_leaving): neither the marker nor
 * the marker a mempool_check walk flips (^ 1). */
#define MEMPOOL_LEAVING ((uintptr_t)2)

/* Puts e into the reserve if it is short (MEMPOOL_PUSH_KEPT), else
 * MEMPOOL_PUSH_FULL; MEMPOOL_PUSH_TWICE if e is in it already,
 * MEMPOOL_PUSH_LEFT if a free gave it to the source. Under p->lock. */
int mempool_push_locked(struct mempool *p, void *e);

/* The reserve's last element, taken out of it, or NULL; under p->lock. */
void *mempool_pop_locked(struct mempool *p);

#ifdef MM_TEST_HOOKS
/* Called by mempool_free after its checks and its unlocked test of the
 * reserve's room, before its lock, if set: a test frees the element (or
 * another) there, as a racing free would. */
extern void (*mempool_test_after_check)(struct mempool *p, void *e);
/* Called by mempool_free just before it gives e to the source, if set: a
 * test takes an element from the reserve and frees e again there, as
 * other CPUs could meanwhile. */
extern void (*mempool_test_before_source)(struct mempool *p, void *e);
#endif

#endif

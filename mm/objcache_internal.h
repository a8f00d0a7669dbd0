/*
 * mm/objcache_internal.h: what objcache.c (the caches' list, counters and
 * merged caches) and objcache_own.c (caches with slabs of their own)
 * share. Not for callers: objcache.h and objcache_own.h are the API.
 */
#ifndef MM_OBJCACHE_INTERNAL_H
#define MM_OBJCACHE_INTERNAL_H

#include "objcache_own.h"
#include "spanheap_internal.h"

/* The objects c has out: its counters' sum over the CPUs (approximate
 * while CPUs work). Any context but NMI. */
static inline int64_t objcache_live(const struct objcache *c)
{
	int64_t sum = 0;
	for (size_t cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		sum += __atomic_load_n(&c->counts[cpu * OBJCACHE_MAX],
		                       __ATOMIC_RELAXED);
	return sum;
}

/* A slab header's magic number. */
#define SLAB_MAGIC 0x51ab0b1eu

/* A slab's list (struct objslab.list). */
enum slab_list { LIST_PARTIAL, LIST_FULL, LIST_EMPTY, NLISTS };

struct objslab {
	/* The grace period's, once the slab is off the lists. First, so
	 * that the callback finds the slab at the head. */
	struct mm_rcu_head rcu;
	/* Fixed from slab_new to its release: */
	struct objcache *cache;
	uint32_t magic;
	/* Protected by o->lock: */
	uint32_t nfree;
	uint8_t list; /* enum slab_list; NLISTS while on none */
	struct objslab *next, *prev;
	uint64_t free[OBJSLAB_MAX_OBJS / 64]; /* bit set: object free */
};

struct objcache_own {
	mm_lock_t lock; /* rank MM_RANK_OBJCACHE */
	/* Fixed from setup to destroy: */
	void (*ctor)(void *obj);
	unsigned flags;
	uint32_t npages, nobjs, first;
	/* Protected by lock: */
	struct objslab *lists[NLISTS];
	size_t nslabs[NLISTS];
	/* Written under lock, read by the listing without it: */
	_Atomic size_t slabs; /* the lists' total */
	/* Atomic, no lock: released slabs waiting for a grace period. */
	_Atomic size_t pending;
};

/* The span of the slab (or large object) at base. Any context. */
static inline struct mspan *objslab_span(struct spanheap *sh, const void *base)
{
	return mheap_span_lookup(sh->heap, (uintptr_t)base);
}

/* Makes c (set up but for its slabs, not linked yet) a cache with slabs
 * of its own, c->own; NULL, or why it cannot be. Thread context. */
const char *objcache_own_setup(struct objcache *c, unsigned flags,
                               void (*ctor)(void *));

/* objcache_alloc_slow's and objcache_free_slow's way for such a cache:
 * an object, counted (NULL: no memory, or refused with a line); a free,
 * checked (misuse panics), which the caller counts. */
void *objcache_own_alloc(struct objcache *c, unsigned flags);
void objcache_own_free(struct objcache *c, void *p);

/* After c's unlink (no object out): its slabs back, a grace period
 * waited for those that need one, and c->own freed. Thread context. */
void objcache_own_destroy(struct objcache *c);

#endif

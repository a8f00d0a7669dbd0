/*
 * kernel/kmem_cache.h: named caches and reserved-element pools over the
 * kernel's span heap (kspanheap, kernel/heap.h): Linux's kmem_cache and
 * mempool under their kernel names, thin wrappers of mm/objcache.h and
 * mm/mempool.h.
 */
#ifndef KERNEL_KMEM_CACHE_H
#define KERNEL_KMEM_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/heap.h"

/*
 * Named caches of objects of one size (mm/objcache.h): Linux's kmem_cache,
 * merged into the size class for the size and alignment, counted per
 * cache (slabinfo lists them) and checked at the free (an object of
 * another class panics naming the cache; with mm.debug_poison, one of
 * another cache, or kmalloc's, too) and at the destroy (objects still
 * out: refused, and said). A cache with a constructor or
 * SLAB_TYPESAFE_BY_RCU is not merged (kmem_cache_create_flags). Contexts:
 * create and destroy, thread context; alloc and free as kmalloc's and kfree's.
 */
static inline struct objcache *kmem_cache_create(const char *name, size_t size,
                                                 size_t align)
{
	return objcache_create(&kspanheap, name, size, align);
}

/*
 * Linux's five-argument kmem_cache_create: flags SLAB_TYPESAFE_BY_RCU
 * (or 0) and ctor (or NULL); with either, the cache has slabs of its own,
 * not merged (mm/objcache_own.h): ctor runs once per object when its slab
 * is made, in the allocating context (so it must not sleep, and must be
 * safe in an interrupt if the cache is allocated from one), a freed object
 * comes back as it was left (each CPU keeps a few freed objects in a
 * stash of its own for its next allocations), and kmem_cache_zalloc on a
 * ctor cache is refused (NULL); with SLAB_TYPESAFE_BY_RCU an emptied slab goes
 * back to the heap after a grace period (kernel/rcu.h), and kmem_cache_destroy
 * waits for them (rcu_barrier). kfree of such an object panics naming its
 * cache. With mm.guard its objects are sampled too (the ctor run on a
 * sampled one as it is handed out); SLAB_SKIP_KFENCE (with a ctor or
 * SLAB_TYPESAFE_BY_RCU) says never. Thread context.
 */
#define SLAB_TYPESAFE_BY_RCU OBJCACHE_TYPESAFE_BY_RCU
#define SLAB_SKIP_KFENCE     OBJCACHE_SKIP_GUARD /* never the guarded pool's */
static inline struct objcache *
kmem_cache_create_flags(const char *name, size_t size, size_t align,
                        unsigned flags, void (*ctor)(void *))
{
	return objcache_create_flags(&kspanheap, name, size, align, flags,
	                             ctor);
}

/* Puts the objects of a cache's per-CPU stashes back in their slabs
 * (every CPU's: the world is stopped for it) and gives back its empty
 * slabs (after a grace period for SLAB_TYPESAFE_BY_RCU); a merged cache:
 * nothing. Memory pressure does the same for every such cache (the
 * "slab" shrinker). Thread context, no spinlock held. */
static inline void kmem_cache_shrink(struct objcache *c)
{
	objcache_shrink(c);
}

static inline void *kmem_cache_alloc(struct objcache *c, unsigned flags)
{
	return objcache_alloc(c, flags);
}

static inline void *kmem_cache_zalloc(struct objcache *c, unsigned flags)
{
	return objcache_alloc(c, flags | KM_ZERO);
}

static inline void kmem_cache_free(struct objcache *c, void *p)
{
	objcache_free(c, p);
}

/* Linux's bulk calls (mm/objcache_bulk.h): n objects of c into p[0..n),
 * returning n, or 0 with nothing allocated (all or nothing; Linux's
 * returns an int); and the free of p[0..n), each pointer checked as
 * kmem_cache_free checks it (a misused one panics with its message, after
 * a line naming its index). A batch takes the CPU's magazine or stash in
 * one pin. Contexts as kmem_cache_alloc's and kmem_cache_free's. */
static inline size_t kmem_cache_alloc_bulk(struct objcache *c, unsigned flags,
                                           size_t n, void **p)
{
	return objcache_alloc_bulk(c, flags, n, p);
}

static inline void kmem_cache_free_bulk(struct objcache *c, size_t n, void **p)
{
	objcache_free_bulk(c, n, p);
}

/* True if c is gone; false, with a line, if objects of it are still out
 * (c is kept), and with mm.debug_poison, its live objects by the stack
 * that allocated them (heap_traces.c). Thread context. */
bool kmem_cache_destroy(struct objcache *c);

/* A pool of min reserved kmalloc objects of size bytes (mm/mempool.h:
 * mempool_alloc, mempool_free, mempool_destroy), for the allocations that
 * must make progress when kmalloc has nothing; false, with a line, if it
 * cannot be made. Thread context. */
static inline bool kmempool_init(struct mempool *p, const char *name,
                                 uint32_t min, size_t size)
{
	return mempool_init_heap(p, &kspanheap, name, min, size);
}

/* As kmempool_init, the elements objects of cache c (of its size); no
 * cache is refused (one with a ctor or SLAB_TYPESAFE_BY_RCU is taken, its
 * objects left as the cache keeps them: mempool.h), and a destroyed one
 * panics saying so, c looked for on kspanheap's list before it is read
 * (mempool_init_cache_in). Thread context. */
static inline bool kmempool_init_cache(struct mempool *p, const char *name,
                                       struct objcache *c, uint32_t min)
{
	return mempool_init_cache_in(p, &kspanheap, c, name, min);
}

#endif

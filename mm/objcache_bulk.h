/*
 * mm/objcache_bulk.h: bulk allocation and free on named caches, Linux's
 * kmem_cache_alloc_bulk and kmem_cache_free_bulk (the kernel's wrappers:
 * kernel/kmem_cache.h). Included by mm.h.
 *
 * A merged cache's batch is the span heap's (spanheap_bulk.h: the class's
 * magazine in one pin), counted once per batch; a cache with slabs of its
 * own takes its CPU's stash in one pin, refilled and spilled in batches
 * under the cache's lock as the single calls do. What the batched ways do
 * not take goes by objcache_alloc and objcache_free, object by object: an
 * aligned cache, poison mode (whose side table names each object's
 * owner), a cache whose objects are shadowed (KASAN) or too big for a
 * stash, a destroyed cache (whose calls panic saying so).
 */
#ifndef MM_OBJCACHE_BULK_H
#define MM_OBJCACHE_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "objcache.h"

struct objslab;

/*
 * Fills out[0..n) with n objects of c, as n calls of objcache_alloc(c,
 * flags) would, and returns n; or returns 0 with nothing allocated (all
 * or nothing, as Linux's): when memory runs out part way (the objects had
 * are freed again), for flags objcache_alloc refuses, for out NULL or an
 * n that could not fit the arena (a line naming n and the size). n 0
 * returns 0. Contexts as objcache_alloc's.
 */
size_t objcache_alloc_bulk(struct objcache *c, unsigned flags, size_t n,
                           void **out);

/*
 * Frees the n objects p[0..n) of c (NULL entries: nothing), as n calls
 * of objcache_free would, in order: each pointer checked as
 * objcache_free checks it, a misused one (another cache's or kmalloc's,
 * a double free, the same object twice in the batch included, an
 * interior or foreign pointer) mm_panicking with objcache_free's message
 * after a line naming its index and the pointer. p NULL with n > 0: a
 * line, nothing freed. Contexts as objcache_free's.
 */
void objcache_free_bulk(struct objcache *c, size_t n, void **p);

/* The batches' inner steps, for objcache_bulk.c, on a cache with slabs
 * of its own and the fast ways (stashes, no shadow). objcache_stash.c's:
 * take pops this CPU's stash into out, then takes the rest of n from the
 * slabs under one hold of the lock (objcache_slabs_take), and returns how
 * many it had (fewer: the slabs have no free object); give pushes p[i..)
 * (at most OBJCACHE_BULK_RUN) with the single free's checks, those past a
 * full stash put back in their slabs under one hold of the lock
 * (objcache_slabs_put, objcache_bulk.c's: entries marked stashed; it
 * returns the spare empty slabs, for the caller to release unpinned:
 * objcache_slab_release_chain), and returns the index it stopped at,
 * *stuck set if the entry there is one it did not take (NULL, no object
 * of c, a double free: the single free's to report). live: p is an
 * object of c, out. Any context but NMI; nothing pinned, no mm lock. */
#define OBJCACHE_BULK_RUN 64
size_t objcache_stash_take(struct objcache *c, void **out, size_t n);
size_t objcache_stash_give(struct objcache *c, size_t n, void **p, size_t i,
                           bool *stuck);
bool objcache_own_live(struct objcache *c, const void *p);
size_t objcache_slabs_take(struct objcache *c, void **out, size_t n);
struct objslab *objcache_slabs_put(struct objcache *c, const uintptr_t *ent,
                                   size_t n);

#endif

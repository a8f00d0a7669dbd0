/*
 * mm/objcache_own.h: named caches with spans of their own (slabs), for a
 * constructor and for OBJCACHE_TYPESAFE_BY_RCU: Linux's kmem_cache_create
 * with a ctor or SLAB_TYPESAFE_BY_RCU, which Linux never merges either.
 * Included by mm.h.
 *
 * Such a cache is not served by a size class (objcache.h): its objects
 * lie in slabs, large spans of the span heap's that carry the cache's
 * owner number (mspan.objslab), each cut by the cache into up to
 * OBJSLAB_MAX_OBJS objects after a header. What it gives:
 *   - ctor(obj) runs once per object, when its slab is made, never on an
 *     allocation; a freed object is handed out again as it was left (the
 *     cache keeps its free objects in the header's bitmaps and in per-CPU
 *     stashes of pointers, never in their bytes). MM_ZERO on a cache with
 *     a ctor is refused (NULL and a line: zeroing would undo the ctor;
 *     Linux warns);
 *   - OBJCACHE_TYPESAFE_BY_RCU: a freed object may be handed out again at
 *     once, by this cache only; a slab it empties goes back to the page
 *     heap only after a grace period of the port's RCU (mm_port_call_rcu),
 *     so a reader that found an object under its read lock reads an
 *     object of the type, maybe another one (it rechecks identity). A
 *     port without MM_PORT_RCU cannot make one: refused, saying so.
 * Misuse panics naming the caches: a free to another cache (of either
 * kind), a double free, an interior or foreign pointer; an object given
 * to the heap's own free or realloc (kfree) names its cache.
 *
 * Contexts: objcache_alloc and objcache_free as for every cache (a new
 * slab comes from the page heap as a large object does: thread context
 * without MM_ATOMIC); each takes the cache's lock only when its CPU's
 * stash is empty (alloc) or full (free); the rest, thread context.
 */
#ifndef MM_OBJCACHE_OWN_H
#define MM_OBJCACHE_OWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "objcache.h"

/* objcache_create_flags's flags. */
enum objcache_flags {
	/* Slabs go back to the page heap only after a grace period. */
	OBJCACHE_TYPESAFE_BY_RCU = 1u << 0,
	/* Never sampled by the guarded pool (objcache_guard.c): Linux's
	 * SLAB_SKIP_KFENCE, for tests of the slabs' own layout. */
	OBJCACHE_SKIP_GUARD = 1u << 1,
};

/* Objects a slab holds at most (its free bitmap's bits), and the fewest
 * it is sized for when the object is small enough. */
#define OBJSLAB_MAX_OBJS 256
#define OBJSLAB_MIN_OBJS 8

/*
 * As objcache_create, with flags (enum objcache_flags) and ctor (NULL:
 * none). With neither, the cache is objcache_create's (merged); with
 * either, it has slabs of its own (above): then align is at most a page,
 * and NULL, with a line, for a flag the port cannot give or an unknown
 * one. Thread context.
 */
struct objcache *objcache_create_flags(struct spanheap *sh, const char *name,
                                       size_t size, size_t align,
                                       unsigned flags, void (*ctor)(void *));

/* Puts the objects of c's per-CPU stashes back in their slabs (every
 * CPU's the port can reach, mm_port_each_other_cpu) and gives back c's
 * empty slabs (with OBJCACHE_TYPESAFE_BY_RCU, after a grace period), as
 * Linux's kmem_cache_shrink. A merged cache: nothing. Thread context,
 * nothing pinned, no mm lock held. */
void objcache_shrink(struct objcache *c);

/* objcache_shrink for every cache of sh with slabs of its own, the other
 * CPUs reached once for all (memory pressure: the kernel's "slab"
 * shrinker); a destroy meanwhile waits for it. Returns the objects given
 * back: those the stashes held and those of the slabs released (one may
 * count in both). Thread context, nothing pinned, no mm lock held. */
size_t objcache_shrink_all(struct spanheap *sh);

/* Sets the fast ways of every cache of sh with slabs of its own off
 * while sh's failure injection is armed, and back on after (from
 * spanheap_fail_arm and _disarm), so that every allocation is asked.
 * Thread context (heap->lock, a leaf). */
void objcache_own_fail_switch(struct spanheap *sh);
/* Whether o's calls may take the fast ways; the heap's lock held. */
bool objcache_own_fast(struct spanheap *sh, const struct objcache_own *o);

/* What objcache_shrink_all could give back now: the objects in the
 * stashes and in the empty slabs kept (approximate while CPUs work).
 * Any context but NMI. */
size_t objcache_spare(struct spanheap *sh);

/* What the listing adds for a cache with slabs of its own (zeroes for a
 * merged cache). Any context but NMI; read under the cache's lock. */
struct objcache_slabs {
	unsigned flags; /* enum objcache_flags */
	bool ctor;
	size_t slab_pages, objs_per_slab;
	size_t slabs;     /* on the cache's lists: partial, full, empty */
	size_t pending;   /* emptied, waiting for a grace period */
	size_t free_objs; /* free in the slabs */
	size_t stashed;   /* free in the CPUs' stashes (approximate) */
};
void objcache_slabs_info(const struct objcache *c, struct objcache_slabs *out);

/* Checks c's slabs: each list's slabs of c and in their state, each a
 * large span in use that carries c's owner, its count of free objects
 * its bitmap's, no object both free and stashed; then the stashes (this
 * CPU's, and the others' the port reaches): each entry an object of a
 * listed slab of c marked stashed, none twice in a stash. True if all
 * hold, else false after a line naming the first broken one. A merged
 * cache: true. Thread context, nothing pinned, no mm lock held. */
bool objcache_own_check(struct objcache *c);

#endif

/*
 * mm/objcache_leak.c: the leak scan's view of the caches with slabs of
 * their own (objcache_leak.h): a slab's objects, and which are out.
 *
 * Purpose: such a cache's slabs are large spans of the span heap, which
 * the scan reads but does not judge; its objects are judged as small
 * objects are, and only this cache's files know the slab's layout.
 *
 * Representation: none of its own. A slab (objcache_own.c) is a large
 * span carrying the cache's owner number (mspan.objslab), with a header
 * (struct objslab: the cache, a magic number, the free bitmap, a stashed
 * byte an object) and the objects after it from o->first.
 *
 * Invariants the scan rests on (objcache_own.c's, with every allocator
 * and freer held still):
 *   1. A span's objslab is set only once its header is built (slab_new
 *      stores it last) and cleared before the slab is freed (slab_free
 *      clears it first), so while it is set the span's pages hold a
 *      header naming a cache that lives (a cache's destroy releases its
 *      slabs, and waits for their grace periods, before it goes).
 *   2. An object is out, free in its slab (its bit), or in a CPU's stash
 *      (its byte), never two of these. Both change only pinned (a
 *      stash's push and pop) or under the cache's lock (irqsave), which
 *      a CPU parked by the kernel's stop never holds or sits inside.
 *
 * Locking: none taken; the scan's stillness is the caller's (above).
 * The bitmap words and the stashed bytes are read atomically (relaxed),
 * as objcache_own_check reads them.
 *
 * Records: poison mode's, kept in the slab after its objects
 * (objcache_track.c: the last allocation's and free's, zeroed "never"
 * when the slab is made); the scan reads the allocation's. Outside
 * poison mode nothing is kept; the fast ways test nothing new.
 *
 * Limits: objcache_leak_slab is also the lock-free readers' check
 * (objcache_track.c): outside the scan, its answer holds only while the
 * span is seen the same after what it read.
 */
#include "objcache_leak.h"

#include "objcache_internal.h"
#include "objcache_track.h"
#include "spanheap_internal.h"

bool objcache_leak_slab(const struct mspan *s, struct objcache_leak_slab *out)
{
	uint8_t owner = atomic_load_explicit(&s->objslab, memory_order_acquire);
	if (!owner)
		return false;
	/* Invariant 1: the header's pages are the span's, mapped while it
	 * is in use; the cache lives while a slab of it does. Checked all
	 * the same: a scan that reads garbage must not follow it. */
	const struct objslab *sl = (const struct objslab *)s->base;
	const struct objcache *c = sl->cache;
	if (sl->magic != SLAB_MAGIC || !c || c->owner != owner || !c->own)
		return false;
	const struct objcache_own *o = c->own;
	uint64_t end = (uint64_t)o->first + (uint64_t)o->nobjs * c->objsize;
	uint64_t recs_end = (uint64_t)o->recs +
	                    (uint64_t)o->nobjs * objcache_track_rec_bytes();
	if (end > (uint64_t)s->npages * MM_PAGE_SIZE ||
	    (o->recs && recs_end > (uint64_t)s->npages * MM_PAGE_SIZE))
		return false;
	*out = (struct objcache_leak_slab){.slab = sl,
	                                   .first = s->base + o->first,
	                                   .nobjs = o->nobjs,
	                                   .objsize = (uint32_t)c->objsize,
	                                   .size = (uint32_t)c->size,
	                                   .owner = owner,
	                                   .recs = o->recs};
	return true;
}

bool objcache_leak_out(const void *slab, uint32_t idx)
{
	const struct objslab *sl = slab;
	uint64_t bit = (uint64_t)1 << (idx % 64);
	return !(objslab_free_word(sl, idx / 64) & bit) &&
	       !__atomic_load_n(&sl->stashed[idx], __ATOMIC_RELAXED);
}

bool objcache_leak_tracks(struct spanheap *sh, const void *slab, uint32_t idx,
                          struct spanheap_track *t)
{
	struct spanheap_track freed;
	return objcache_track_read(sh, slab, idx, t, &freed);
}

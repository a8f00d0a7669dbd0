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
 * Records: a large span has no side table, so in poison mode with
 * records (sh->track) a slab keeps its objects' allocation records
 * itself, one struct spanheap_rec an object (16 bytes: when, the CPU,
 * the stack's handle in the heap's depot) after its objects, from
 * o->recs (0: none), zeroed ("never") when the slab is made. Every
 * allocation of such a cache takes objcache_own_alloc_slow in poison
 * mode (o->fast is off), which records it; a free leaves the record (a
 * free object is not judged). Outside poison mode nothing is kept and
 * the geometry is as before; the fast ways test nothing new.
 *
 * Limits: no free records (a free object is never judged); a record is
 * written without the CHANGING mark small objects' get, as the one
 * reader, the scan, runs with the writers held still.
 */
#include "objcache_leak.h"

#include "objcache_internal.h"
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
	if (end > (uint64_t)s->npages * MM_PAGE_SIZE)
		return false;
	*out = (struct objcache_leak_slab){.slab = sl,
	                                   .first = s->base + o->first,
	                                   .nobjs = o->nobjs,
	                                   .objsize = (uint32_t)c->objsize,
	                                   .size = (uint32_t)c->size,
	                                   .owner = owner};
	return true;
}

bool objcache_leak_out(const void *slab, uint32_t idx)
{
	const struct objslab *sl = slab;
	uint64_t bit = (uint64_t)1 << (idx % 64);
	return !(objslab_free_word(sl, idx / 64) & bit) &&
	       !__atomic_load_n(&sl->stashed[idx], __ATOMIC_RELAXED);
}

/* Object idx of slab sl's record. */
static struct spanheap_rec *rec_of(const struct objslab *sl, uint32_t idx)
{
	return (struct spanheap_rec *)((char *)sl + sl->cache->own->recs) + idx;
}

bool objcache_leak_tracks(struct spanheap *sh, const void *slab, uint32_t idx,
                          struct spanheap_track *t)
{
	const struct objslab *sl = slab;
	if (!sl->cache->own->recs)
		return false;
	const struct spanheap_rec *r = rec_of(sl, idx);
	*t = (struct spanheap_track){
	        .ns = __atomic_load_n(&r->ns, __ATOMIC_ACQUIRE)};
	t->cpu = __atomic_load_n(&r->cpu, __ATOMIC_RELAXED);
	if (t->ns)
		t->npcs = spanheap_depot_get(
		        &sh->depot,
		        __atomic_load_n(&r->stack, __ATOMIC_RELAXED), t->pc);
	return true;
}

size_t objcache_leak_rec_bytes(void)
{
	return sizeof(struct spanheap_rec);
}

__attribute__((noinline)) void
objcache_leak_record(struct objcache *c, const void *p, unsigned flags)
{
	struct objslab *sl = (struct objslab *)objslab_span(c->sh, p)->base;
	uint32_t idx =
	        (uint32_t)(((uintptr_t)p - (uintptr_t)sl - c->own->first) /
	                   c->objsize);
	/* The stack from the return address into objcache_own_alloc_slow's
	 * caller: that of this call's frame left out (after). */
	struct spanheap_track t = {0};
	spanheap_track_fill(&t, true, 1,
	                    (uintptr_t)__builtin_return_address(0));
	struct spanheap_rec *r = rec_of(sl, idx);
	__atomic_store_n(&r->stack,
	                 spanheap_depot_save(&c->sh->depot, &c->sh->meta, t.pc,
	                                     t.npcs, flags & MM_NO_GROW),
	                 __ATOMIC_RELEASE);
	__atomic_store_n(&r->cpu, t.cpu, __ATOMIC_RELEASE);
	__atomic_store_n(&r->ns, t.ns, __ATOMIC_RELEASE);
}

/*
 * mm/objcache_guard.c: the guarded pool (spanheap_guard.c) samples the
 * caches with slabs of their own (objcache_own.c), as Linux's KFENCE
 * samples constructor and SLAB_TYPESAFE_BY_RCU caches.
 *
 * Purpose: such a cache's overrun or use after free faults at the access
 * that makes it, in a production heap, as a kmalloc's or a merged
 * cache's sampled object does; until this file those caches were never
 * sampled (rv123).
 *
 * Algorithm: the sample is decided on the cache's slow way only
 * (objcache_own_alloc_slow: its CPU's stash empty, a flag, or no fast
 * way), by the heap's own per-CPU countdown (spanheap_guard_sample), so
 * the fast ways (objcache_stash.c) are untouched. The object gets a slot
 * of kind GUARD_KIND_OWN with the cache's owner number, kept after its
 * free, so that every report about it names the cache; its constructor
 * runs on it before it is handed out (the pool's page is zeroed), and
 * not again: a freed guarded object is never handed out again, its slot
 * reused for another object that is constructed anew. A typesafe
 * cache's (GUARD_KIND_RCU) freed object stays mapped, as it was, until
 * a grace period has passed (spanheap_guard_own.c). Its free comes from
 * the stash's slow free (the fast one finds no slab outside the arena).
 *
 * Limits: objects up to a page (the pool's), and not a cache made with
 * OBJCACHE_SKIP_GUARD (SLAB_SKIP_KFENCE); the batches
 * (objcache_bulk.c) are not sampled; MM_NO_GROW calls are not (the
 * pool's rule).
 */
#include "objcache_guard.h"
#include "objcache_internal.h"

void *objcache_guard_alloc(struct objcache *c, unsigned flags)
{
	struct objcache_own *o = c->own;
	struct spanheap *sh = c->sh;
	if (c->size > MM_PAGE_SIZE || (o->flags & OBJCACHE_SKIP_GUARD) ||
	    !spanheap_guard_sample(sh))
		return NULL;
	unsigned kind = GUARD_KIND_OWN;
	if (o->flags & OBJCACHE_TYPESAFE_BY_RCU)
		kind |= GUARD_KIND_RCU;
	void *p = spanheap_guard_alloc_own(sh, c->size, c->align, flags,
	                                   c->owner, kind);
	if (!p)
		return NULL;
	if (o->ctor)
		o->ctor(p);
	objcache_count(c, 1);
	return p;
}

/* Panics for p, live in the pool, given to c but not c's object. */
static __attribute__((noreturn, noinline)) void other_cache(struct objcache *c,
                                                            const void *p)
{
	unsigned cls;
	uint32_t *owner = spanheap_guard_owner_at(c->sh, p, &cls);
	char part[OBJCACHE_NAME_MAX + 16] = "";
	if (owner)
		spanheap_guard_cache_part(c->sh, *owner, part, sizeof(part));
	spanheap_where_log(c->sh, p);
	mm_panic("objcache: free of %p to cache '%s' (slabs of its own): it "
	         "is a guarded object%s",
	         p, c->name,
	         part[0] ? part : ", kmalloc's or a merged cache's");
}

bool objcache_guard_free(struct objcache *c, void *p)
{
	if (!spanheap_guard_owns(&c->sh->guard, p))
		return false;
	if (!spanheap_guard_free_own(c->sh, p, c->owner))
		other_cache(c, p);
	return true;
}

bool objcache_guard_check(struct objcache *c, const void *p)
{
	if (!spanheap_guard_owns(&c->sh->guard, p))
		return false;
	unsigned cls;
	uint32_t *owner = spanheap_guard_owner_at(c->sh, p, &cls);
	if (!owner) /* not live: the pool's free panics, saying which misuse */
		spanheap_guard_free(c->sh, (void *)p, SPANHEAP_GUARD_UNOWNED);
	if (*owner != c->owner)
		other_cache(c, p);
	return true;
}

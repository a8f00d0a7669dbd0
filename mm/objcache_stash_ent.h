/*
 * mm/objcache_stash_ent.h: a stash entry (objcache_stash.c) and the
 * free's check that makes one of a pointer, inline, for the stash's
 * single calls and its batches (objcache_stash.c). An entry is a slab's
 * page-aligned base or'ed with the object's index.
 *
 * Only for objcache_stash.c.
 */
#ifndef MM_OBJCACHE_STASH_ENT_H
#define MM_OBJCACHE_STASH_ENT_H

#include "objcache_internal.h"

static inline uintptr_t ent_of(const struct objslab *sl, uint32_t idx)
{
	return (uintptr_t)sl | idx;
}

static inline struct objslab *ent_slab(uintptr_t e)
{
	return (struct objslab *)(e & ~(uintptr_t)(MM_PAGE_SIZE - 1));
}

static inline uint32_t ent_idx(uintptr_t e)
{
	return (uint32_t)(e & (MM_PAGE_SIZE - 1));
}

static inline uint64_t bit_of(uint32_t idx)
{
	return (uint64_t)1 << (idx % 64);
}

/* Whether p is object *idx of the slab at base: with x = p's offset
 * past the first object (32 bits; below it, wrapped), rotr(x * dinv,
 * dshift) is x / objsize for the multiples of objsize and, the map being
 * one-to-one, at least nobjs for any other x (Granlund and Montgomery).
 * Any context. */
static inline __attribute__((always_inline)) bool
idx_in_slab(const struct objcache_own *o, uintptr_t base, uintptr_t p,
            uint32_t *idx)
{
	uint32_t x = ((uint32_t)(p - base) - o->first) * o->dinv;
	x = x >> o->dshift | x << ((32 - o->dshift) & 31);
	*idx = x;
	return x < o->nobjs;
}

/* Whether p is an object of c, as objcache_slab_of says (which says why
 * not), and then its slab and index. The span from the span heap's copy
 * of the table (as the free's fast path: a mark is a zeroed block), a
 * span carrying c's owner number, its header naming c, and p an object's
 * start (idx_in_slab). Any context. */
static inline __attribute__((always_inline)) bool
ent_of_obj(struct objcache *c, const struct objcache_own *o, const void *p,
           struct objslab **sl, uint32_t *idx)
{
	struct spanheap *sh = c->sh;
	size_t i = ((uintptr_t)p - sh->arena_base) >> MM_PAGE_SHIFT;
	if (__builtin_expect(i >= atomic_load_explicit(&sh->spanmap_pages,
	                                               memory_order_acquire),
	                     0))
		return false;
	struct mspan *s =
	        atomic_load_explicit(&sh->spanmap[i], memory_order_acquire);
	uintptr_t base = s->base;
	uint32_t x; /* tested below with the rest, in one branch */
	(void)idx_in_slab(o, base, (uintptr_t)p, &x);
	/* The owner number before the header: a span not of c has none.
	 * Alone, not after the state as objcache_slab_of does: it is set
	 * only on a large span in use that is a slab of that cache (0 in
	 * the marks, cleared before the slab is freed, when a span is
	 * made), and on the line the base is read from. */
	if (__builtin_expect(
	            atomic_load_explicit(&s->objslab, memory_order_acquire) !=
	                            c->owner ||
	                    ((struct objslab *)base)->cache != c ||
	                    x >= o->nobjs,
	            0))
		return false;
	*sl = (struct objslab *)base;
	*idx = x;
	return true;
}

#endif

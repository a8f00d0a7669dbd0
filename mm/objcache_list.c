/*
 * mm/objcache_list.c: the named caches' listing (objcache.h's
 * objcache_info and objcache_list, the owner names the misuse reports
 * print) and the checks of caches with slabs of their own
 * (objcache_own.h: objcache_slabs_info, objcache_own_check).
 *
 * Purpose: what a reader of the heap (the kernel's slabinfo and meminfo,
 * the reports, the tests) learns of the caches, apart from the paths
 * that allocate and free (objcache.c, objcache_own.c).
 *
 * Locking: the list under the page heap's lock (a leaf: copies only);
 * a cache's slabs under its own lock (MM_RANK_OBJCACHE, a leaf: the
 * check walks them there and logs after letting it go); the owner names
 * by their sequence lock, with no lock, for reports from any context.
 *
 * Invariants checked: objcache_own.c's, 1 to 3.
 */
#include "objcache_internal.h"

void objcache_owner_name(struct spanheap *sh, uint32_t owner, char *name)
{
	/* A few tries: a create rewriting the slot holds the lock for a few
	 * stores, but a report must not wait on a CPU stopped in the middle. */
	for (int tries = 0; owner && owner <= OBJCACHE_MAX && tries < 64;
	     tries++) {
		_Atomic uint32_t *seq = &sh->objcache_name_seq[owner - 1];
		uint32_t s = atomic_load_explicit(seq, memory_order_acquire);
		if (s & 1)
			continue;
		for (size_t i = 0; i < OBJCACHE_NAME_MAX + 1; i++)
			name[i] = __atomic_load_n(
			        &sh->objcache_names[owner - 1][i],
			        __ATOMIC_ACQUIRE);
		name[OBJCACHE_NAME_MAX] = '\0';
		if (atomic_load_explicit(seq, memory_order_relaxed) == s)
			return;
	}
	mm_name_copy(name, "?", OBJCACHE_NAME_MAX);
}

void objcache_info(const struct objcache *c, struct objcache_info *out)
{
	*out = (struct objcache_info){
	        .size = c->size,
	        .align = c->align,
	        .sizeclass = c->sizeclass,
	        .objsize = c->objsize,
	        .live = objcache_live(c),
	        .owner = c->owner,
	};
	const struct objcache_own *o = c->own;
	if (o) { /* no lock: the listing holds the heap's, a leaf */
		out->slabs =
		        atomic_load_explicit(&o->slabs, memory_order_relaxed);
		out->slab_pages = o->npages;
		out->pending =
		        atomic_load_explicit(&o->pending, memory_order_relaxed);
	}
	mm_name_copy(out->name, c->name, OBJCACHE_NAME_MAX);
}

size_t objcache_list(struct spanheap *sh, struct objcache_info *out, size_t max)
{
	size_t n = 0;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	for (const struct objcache *c = sh->objcaches; c; c = c->next, n++)
		if (n < max)
			objcache_info(c, &out[n]);
	mm_lock_release(&sh->heap->lock, irq);
	return n;
}

void objcache_slabs_info(const struct objcache *c, struct objcache_slabs *out)
{
	*out = (struct objcache_slabs){0};
	struct objcache_own *o = c->own;
	if (!o)
		return;
	out->flags = o->flags;
	out->ctor = o->ctor != NULL;
	out->slab_pages = o->npages;
	out->objs_per_slab = o->nobjs;
	out->pending = atomic_load_explicit(&o->pending, memory_order_acquire);
	unsigned long irq = mm_lock_acquire(&o->lock);
	for (unsigned l = 0; l < NLISTS; l++) {
		out->slabs += o->nslabs[l];
		for (struct objslab *sl = o->lists[l]; sl; sl = sl->next)
			out->free_objs += sl->nfree;
	}
	mm_lock_release(&o->lock, irq);
}

/* Why slab sl, on list l of c, breaks an invariant, or NULL. */
static const char *slab_broken(struct objcache *c, struct objslab *sl,
                               enum slab_list l)
{
	struct objcache_own *o = c->own;
	if (sl->magic != SLAB_MAGIC || sl->cache != c)
		return "not a slab of the cache (magic or cache)";
	struct mspan *s = objslab_span(c->sh, sl);
	if (!mheap_span_is_span(s) ||
	    atomic_load_explicit(&s->state, memory_order_relaxed) !=
	            MSPAN_LARGE ||
	    s->base != (uintptr_t)sl || s->npages != o->npages ||
	    atomic_load_explicit(&s->objslab, memory_order_relaxed) != c->owner)
		return "its span is not a large span of the slab's pages "
		       "carrying the cache's owner";
	for (uint32_t i = o->nobjs; i < OBJSLAB_MAX_OBJS; i++)
		if (sl->free[i / 64] >> (i % 64) & 1)
			return "a free bit past its last object";
	uint32_t n = 0;
	for (unsigned w = 0; w < OBJSLAB_MAX_OBJS / 64; w++)
		for (uint64_t x = sl->free[w]; x; x &= x - 1)
			n++; /* no popcount: the kernel has no libgcc */
	if (n != sl->nfree)
		return "its free count is not its bitmap's";
	enum slab_list want = n == 0          ? LIST_FULL
	                      : n == o->nobjs ? LIST_EMPTY
	                                      : LIST_PARTIAL;
	if (sl->list != l || l != want)
		return "on a list its free count does not say";
	return NULL;
}

bool objcache_own_check(struct objcache *c)
{
	struct objcache_own *o = c->own;
	if (!o)
		return true;
	const char *why = NULL;
	struct objslab *bad = NULL;
	unsigned long irq = mm_lock_acquire(&o->lock);
	size_t total = 0;
	for (unsigned l = 0; l < NLISTS && !why; l++) {
		size_t n = 0;
		struct objslab *prev = NULL;
		for (struct objslab *sl = o->lists[l]; sl && !why;
		     prev = sl, sl = sl->next, n++) {
			why = sl->prev != prev ? "a broken back link"
			                       : slab_broken(c, sl, l);
			bad = sl;
		}
		if (!why && n != o->nslabs[l]) {
			why = "a list's count is not its length";
			bad = NULL;
		}
		total += n;
	}
	if (!why &&
	    total != atomic_load_explicit(&o->slabs, memory_order_relaxed)) {
		why = "the listing's count of slabs is not the lists'";
		bad = NULL;
	}
	mm_lock_release(&o->lock, irq);
	if (why)
		mm_log("objcache: check of cache '%s': slab %p: %s", c->name,
		       (void *)bad, why);
	return !why;
}

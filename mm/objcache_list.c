/*
 * mm/objcache_list.c: the named caches' listing (objcache.h's
 * objcache_info and objcache_list, the owner names the misuse reports
 * print), the counts of caches with slabs of their own (objcache_own.h:
 * objcache_slabs_info, objcache_spare; objcache_stash_count) and their
 * checks (objcache_own_check).
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
 * Invariants checked: objcache_own.c's, 1 to 3 and 5 (a stash's
 * entries one by one, each CPU's while it is pinned or held: an entry
 * stays marked stashed until its CPU takes it out).
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
		out->stashed = objcache_stash_count(c);
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
	out->stashed = objcache_stash_count(c);
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
	uint32_t n = 0;
	for (unsigned w = 0; w < OBJSLAB_MAX_OBJS / 64; w++) {
		uint64_t f = objslab_free_word(sl, w), st = 0,
		         past = w * 64 + 64 <= o->nobjs ? 0
		                : w * 64 >= o->nobjs
		                        ? ~(uint64_t)0
		                        : ~(uint64_t)0 << (o->nobjs % 64);
		for (unsigned b = 0; b < 64; b++)
			st |= (uint64_t) !!__atomic_load_n(
			              &sl->stashed[w * 64 + b],
			              __ATOMIC_RELAXED)
			      << b;
		if ((f | st) & past)
			return "a free bit or stashed byte past its last "
			       "object";
		if (f & st)
			return "an object both free and stashed";
		for (uint64_t x = f; x; x &= x - 1)
			n++; /* no popcount: the kernel has no libgcc */
	}
	if (n != sl->nfree)
		return "its free count is not its bitmap's";
	enum slab_list want = n == 0          ? LIST_FULL
	                      : n == o->nobjs ? LIST_EMPTY
	                                      : LIST_PARTIAL;
	if (sl->list != l || l != want)
		return "on a list its free count does not say";
	return NULL;
}

/* Why entry e of a stash of c breaks invariant 5 (objcache_own.c), or
 * NULL: its slab must be one of c's in use and its object marked
 * stashed, not free. */
static const char *entry_broken(struct objcache *c, uintptr_t e)
{
	struct objcache_own *o = c->own;
	struct objslab *sl =
	        (struct objslab *)(e & ~(uintptr_t)(MM_PAGE_SIZE - 1));
	uint32_t idx = (uint32_t)(e & (MM_PAGE_SIZE - 1));
	struct mspan *s = objslab_span(c->sh, sl);
	if (!mheap_span_is_span(s) || s->base != (uintptr_t)sl ||
	    atomic_load_explicit(&s->state, memory_order_relaxed) !=
	            MSPAN_LARGE ||
	    sl->magic != SLAB_MAGIC || sl->cache != c || idx >= o->nobjs)
		return "an entry that is no object of a slab of the cache";
	uint64_t bit = (uint64_t)1 << (idx % 64);
	if (!__atomic_load_n(&sl->stashed[idx], __ATOMIC_RELAXED))
		return "an entry whose object is not marked stashed";
	if (objslab_free_word(sl, idx / 64) & bit)
		return "an entry whose object is free in its slab";
	return NULL;
}

struct stash_check {
	struct objcache *c;
	const char *why;
	unsigned cpu;
};

/* Checks CPU cpu's stash of k->c (this CPU, pinned, or one held). */
static void stash_check_cpu(unsigned cpu, void *arg)
{
	struct stash_check *k = arg;
	const struct objstash *st = &k->c->own->stash[cpu];
	uint32_t n = __atomic_load_n(&st->n, __ATOMIC_RELAXED);
	const char *why =
	        n > k->c->own->stash_max ? "more entries than it holds" : NULL;
	for (uint32_t i = 0; i < n && !why; i++) {
		why = entry_broken(k->c, st->ent[i]);
		for (uint32_t j = 0; j < i && !why; j++)
			if (st->ent[j] == st->ent[i])
				why = "an object twice in the stash";
	}
	if (why && !k->why) {
		k->why = why;
		k->cpu = cpu;
	}
}

/* The stashes' part of the check: true, or false after a line. */
static bool stashes_check(struct objcache *c)
{
	if (!c->own->stash)
		return true;
	struct stash_check k = {.c = c};
	struct mm_pin pin = mm_port_pin();
	stash_check_cpu((unsigned)pin.cpu, &k);
	mm_port_unpin(pin);
	mm_port_each_other_cpu(stash_check_cpu, &k);
	if (k.why)
		mm_log("objcache: check of cache '%s': CPU %u's stash: %s",
		       c->name, k.cpu, k.why);
	return !k.why;
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
	return !why && stashes_check(c);
}

/* ---- Counts of the stashes (objcache_stash.c) ---- */

size_t objcache_stash_count(const struct objcache *c)
{
	const struct objcache_own *o = c->own;
	size_t n = 0;
	for (unsigned cpu = 0; o->stash && cpu < MM_MAX_CPUS; cpu++)
		n += __atomic_load_n(&o->stash[cpu].n, __ATOMIC_RELAXED);
	return n;
}

size_t objcache_spare(struct spanheap *sh)
{
	size_t n = 0;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	for (const struct objcache *c = sh->objcaches; c; c = c->next)
		if (c->own)
			n += objcache_stash_count(c) +
			     __atomic_load_n(&c->own->nslabs[LIST_EMPTY],
			                     __ATOMIC_RELAXED) *
			             c->own->nobjs;
	mm_lock_release(&sh->heap->lock, irq);
	return n;
}

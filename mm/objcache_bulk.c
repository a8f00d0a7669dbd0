/*
 * mm/objcache_bulk.c: bulk allocation and free on named caches
 * (objcache_bulk.h).
 *
 * Purpose: Linux's kmem_cache_alloc_bulk and kmem_cache_free_bulk: a
 * batch of a cache's objects for less than a call each.
 *
 * Representation: none of its own: the span heap's magazines for a
 * merged cache, the cache's per-CPU stashes (objcache_stash.c) for one
 * with slabs of its own, and the cache's per-CPU counters.
 *
 * Algorithm: each batch picks a way. Merged (a small class, alignment 16,
 * no poison mode): spanheap_alloc_bulk and spanheap_free_bulk_class (the
 * class checked per object, as objcache_free's spanheap_free_class
 * checks it), the counter moved once per batch. Own slabs with the fast
 * ways: runs of this CPU's stash in one pin (objcache_stash_take and
 * _give), the rest of a run taken from, or put back in, the slabs under
 * one hold of the cache's lock (objcache_slabs_take and _put, here: a
 * word of a slab's free bits at a time, its count and list moved once
 * for its run of objects), a new slab by objcache_alloc when the slabs
 * run dry. The rest,
 * and every entry a way does not take, by objcache_alloc or
 * objcache_free, one at a time; an entry that is no live object of the
 * cache (spanheap_where, objcache_own_live) gets a line naming its index
 * before that free's panic. All or nothing: a batch short of n frees
 * what it had by objcache_free_bulk.
 *
 * Invariants and locking: objcache.c's and objcache_stash.c's; nothing
 * here holds a lock or a pin across a call that takes one.
 *
 * Limits: a run moves at most RUN objects in one pin (interrupts off in
 * the kernel), as spanheap_bulk.c's.
 */
#include "objcache_bulk.h"
#include "objcache_internal.h"
#include "spanheap_bulk.h"

#define RUN OBJCACHE_BULK_RUN

enum way {
	WAY_EACH,   /* objcache_alloc and objcache_free per object */
	WAY_MERGED, /* the span heap's bulk calls */
	WAY_OWN,    /* runs of the CPU's stash */
};

/* The way of c's batches (a destroyed cache's slot is past OBJCACHE_MAX:
 * its single calls panic saying so). */
static enum way way_of(const struct objcache *c, bool alloc)
{
	if (c->slot >= OBJCACHE_MAX)
		return WAY_EACH;
	if (c->own)
		return __atomic_load_n(&c->own->fast, __ATOMIC_RELAXED)
		               ? WAY_OWN
		               : WAY_EACH;
	if (c->owner) /* poison mode: each object's owner is set */
		return WAY_EACH;
	if (alloc)
		return c->fast_class - 1u < SC_NCLASSES - 1u ? WAY_MERGED
		                                             : WAY_EACH;
	return c->free_class < OBJCACHE_NO_CLASS ? WAY_MERGED : WAY_EACH;
}

static size_t alloc_each(struct objcache *c, unsigned flags, size_t n,
                         void **out)
{
	for (size_t i = 0; i < n; i++) {
		void *p = objcache_alloc(c, flags);
		if (!p)
			return i;
		out[i] = p;
	}
	return n;
}

/* Runs of the stash; a new slab by the single call when it is dry. */
static size_t alloc_own(struct objcache *c, unsigned flags, size_t n,
                        void **out)
{
	size_t i = 0;
	while (i < n) {
		size_t want = n - i < RUN ? n - i : RUN;
		size_t k = objcache_stash_take(c, out + i, want);
		if (k)
			objcache_count(c, (int64_t)k);
		i += k;
		if (k == want)
			continue;
		void *p = objcache_alloc(c, flags);
		if (!p)
			break;
		out[i++] = p;
	}
	return i;
}

size_t objcache_alloc_bulk(struct objcache *c, unsigned flags, size_t n,
                           void **out)
{
	if (n == 0)
		return 0;
	enum way w = way_of(c, true);
	if (c->slot < OBJCACHE_MAX) {
		if (!out || c->objsize > c->sh->arena_bytes / n) {
			mm_log("objcache: alloc_bulk of %zu objects of cache "
			       "'%s' (%zu bytes) refused: %s",
			       n, c->name, c->objsize,
			       out ? "more than the arena holds"
			           : "out is NULL");
			return 0;
		}
	}
	if (w == WAY_MERGED) {
		size_t got = spanheap_alloc_bulk(c->sh, c->size, flags, n, out);
		if (got)
			objcache_count(c, (int64_t)got);
		return got;
	}
	size_t got =
	        w == WAY_OWN && !(flags & ~(unsigned)(MM_ATOMIC | MM_NO_GROW))
	                ? alloc_own(c, flags, n, out)
	                : alloc_each(c, flags, n, out);
	if (got == n)
		return n;
	objcache_free_bulk(c, got, out); /* all or nothing */
	return 0;
}

/* objcache_bulk.h's; the lock as the stash's refill and spill take it
 * (MM_RANK_OBJCACHE), with nothing pinned. */
static inline struct objslab *slab_of_ent(uintptr_t e)
{
	return (struct objslab *)(e & ~(uintptr_t)(MM_PAGE_SIZE - 1));
}

/* Takes min(n, sl->nfree) of sl's free objects (sl has one) into out,
 * the lowest first, as that many objcache_slab_take_locked would: a word
 * of bits at a time, the count and the list moved once. Returns how
 * many. Locking: o->lock held. */
static size_t slab_take_run(struct objcache *c, struct objslab *sl, void **out,
                            size_t n)
{
	size_t k = n < sl->nfree ? n : sl->nfree, i = 0, size = c->objsize;
	char *first = (char *)objslab_obj(c, sl, 0);
	for (unsigned w = 0; i < k; w++) {
		uint64_t word = objslab_free_word(sl, w);
		if (!word)
			continue;
		for (; word && i < k; word &= word - 1)
			out[i++] = first +
			           (w * 64u + (unsigned)__builtin_ctzll(word)) *
			                   size;
		objslab_set_free_word(sl, w, word);
	}
	sl->nfree -= (uint32_t)k;
	objcache_slab_relist_locked(c->own, sl);
	return k;
}

size_t objcache_slabs_take(struct objcache *c, void **out, size_t n)
{
	struct objcache_own *o = c->own;
	size_t i = 0;
	unsigned long irq = mm_lock_acquire(&o->lock);
	while (i < n) {
		struct objslab *sl = o->lists[LIST_PARTIAL]
		                             ? o->lists[LIST_PARTIAL]
		                             : o->lists[LIST_EMPTY];
		if (!sl)
			break;
		i += slab_take_run(c, sl, out + i, n - i);
	}
	mm_lock_release(&o->lock, irq);
	return i;
}

struct objslab *objcache_slabs_put(struct objcache *c, const uintptr_t *ent,
                                   size_t n)
{
	if (!n)
		return NULL;
	struct objcache_own *o = c->own;
	unsigned long irq = mm_lock_acquire(&o->lock);
	/* By runs of entries of one slab: each object's free bit, then
	 * (release, as the spill orders them) its stashed byte cleared;
	 * the slab's count and list once a run. */
	for (size_t i = 0; i < n;) {
		struct objslab *sl = slab_of_ent(ent[i]);
		size_t j = i;
		do {
			uint32_t idx = (uint32_t)(ent[j] & (MM_PAGE_SIZE - 1));
			objslab_set_free_word(sl, idx / 64,
			                      objslab_free_word(sl, idx / 64) |
			                              (uint64_t)1
			                                      << (idx % 64));
			__atomic_store_n(&sl->stashed[idx], 0,
			                 __ATOMIC_RELEASE);
		} while (++j < n && slab_of_ent(ent[j]) == sl);
		sl->nfree += (uint32_t)(j - i);
		objcache_slab_relist_locked(o, sl);
		i = j;
	}
	struct objslab *gone = objcache_slab_spares_locked(o, NULL);
	mm_lock_release(&o->lock, irq);
	return gone;
}

bool objcache_own_live(struct objcache *c, const void *p)
{
	uintptr_t e = objcache_stash_ent_of(c, p);
	struct objslab *sl = slab_of_ent(e);
	uint32_t idx = (uint32_t)(e & (MM_PAGE_SIZE - 1));
	return e && !__atomic_load_n(&sl->stashed[idx], __ATOMIC_ACQUIRE) &&
	       !(objslab_free_word(sl, idx / 64) & (uint64_t)1 << (idx % 64));
}

/* True if q looks like a live object of c (merged): for the line naming
 * a misused entry only; objcache_free decides. */
static bool merged_live(struct objcache *c, const void *q)
{
	struct spanheap_where w;
	return spanheap_bulk_live_start(c->sh, q, &w) &&
	       w.sizeclass == c->sizeclass &&
	       (w.owner == UINT32_MAX || w.owner == c->owner);
}

/* Frees p[j], which no way took, by objcache_free, after a line naming
 * its index if it is no live object of c. */
static void free_alone(struct objcache *c, size_t n, void **p, size_t j)
{
	void *q = p[j];
	if (!q)
		return;
	if (c->slot < OBJCACHE_MAX &&
	    !(c->own ? objcache_own_live(c, q) : merged_live(c, q)))
		mm_log("objcache: free_bulk to cache '%s': entry %zu of %zu, "
		       "%p, is no live object of the cache (the free's "
		       "report follows)",
		       c->name, j, n, q);
	objcache_free(c, q);
}

void objcache_free_bulk(struct objcache *c, size_t n, void **p)
{
	if (n && !p) {
		mm_log("objcache: free_bulk of %zu objects refused: the array "
		       "is NULL",
		       n);
		return;
	}
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		bool stuck = true;
		enum way w = way_of(c, false);
		if (w == WAY_MERGED)
			j = i + spanheap_free_bulk_class(c->sh, n - i, p + i,
			                                 c->free_class);
		else if (w == WAY_OWN)
			j = objcache_stash_give(c, n, p, i, &stuck);
		/* A stash run stops at a NULL; a merged one skips them. */
		int64_t freed = w == WAY_OWN ? (int64_t)(j - i) : 0;
		for (size_t k = i; w == WAY_MERGED && k < j; k++)
			freed += p[k] != NULL;
		if (freed)
			objcache_count(c, -freed);
		if (j == n)
			return;
		if (!stuck) { /* a run's end */
			i = j;
			continue;
		}
		free_alone(c, n, p, j);
		i = j + 1;
	}
}

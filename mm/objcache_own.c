/*
 * mm/objcache_own.c: named caches with slabs of their own, for a
 * constructor and for OBJCACHE_TYPESAFE_BY_RCU (objcache_own.h).
 *
 * Purpose: what a merged cache (objcache.c) cannot give: an object that
 * stays constructed while it is free, and memory that stays an object of
 * the type for a grace period after the free that emptied its slab.
 * Both need memory no other cache and no kmalloc shares.
 *
 * Representation: a slab is a large span of the span heap
 * (spanheap_large_alloc) of o->npages pages, its objsize-byte objects
 * from o->first on, after a header (struct objslab, at the span's base):
 * the cache, a magic number, its list, its free count, a bitmap of the
 * objects free in the slab and a byte an object, set for those free in a
 * CPU's stash; in poison mode with records, after the objects, two
 * records an object, its last allocation's and free's (o->recs,
 * objcache_track.c). The
 * span carries the cache's owner number (mspan.objslab), which the
 * heap's misuse reports read: a kfree of an object (an interior pointer
 * of a large span) or of the base (the header) names the cache. The
 * cache (struct objcache_own, c->own) keeps its slabs on three lists:
 * partial, full, and empty (at most one kept, for the next allocation,
 * until objcache_shrink), and, unless its objects are so big that a
 * slab holds fewer than two stashes' worth, a stash per CPU
 * (objcache_stash.c): free objects its CPU hands out and takes back
 * without the lock. An object is out, free in its slab, or stashed.
 *
 * Algorithm: an allocation pops this CPU's stash (objcache_stash.c; an
 * empty one is refilled with a batch from the slabs under the lock);
 * without one, it takes the lowest free object of the first partial slab
 * (else of the empty one), or makes a slab (outside the lock: pages,
 * header, then ctor on each object) and takes from it. A free finds the
 * span (the span table), checks it is a slab of this cache and p an
 * object's start, then pushes p on the stash (a full one spills a batch
 * back first), or without one sets its bit under the lock (a bit or a
 * stashed byte set already: a double free). A slab whose last object
 * comes back is kept if no empty one is, else released: freed at once,
 * or with OBJCACHE_TYPESAFE_BY_RCU, queued for a grace period (its
 * header's mm_rcu_head: nothing is allocated on a free) and freed by the
 * callback.
 *
 * Invariants (objcache_own_check, objcache_list.c):
 *   1. A slab is on the list its free count says (0: full, all: empty,
 *      else partial), the lists' counts are their lengths, and o->slabs
 *      is their sum.
 *   2. nfree is the free bitmap's population; no bit or byte at or past
 *      nobjs is set, and no object is both free and stashed.
 *   3. A listed slab's span is a large span in use over o->npages pages
 *      at the header, carrying c's owner number; its header names c.
 *   4. A released slab is on no list; its pages go back (with the flag,
 *      after a grace period) only from then on.
 *   5. Each stash entry names an object of a listed slab of c whose
 *      stashed byte is set, and no object twice.
 *
 * Locking: o->lock (MM_RANK_OBJCACHE, a leaf, irqsave) for the lists,
 * their counts and each listed slab's list, nfree and free bitmap; nothing
 * is called under it (no page heap, no log: a misuse panics after it is
 * let go). The header's cache and magic and o's geometry are fixed.
 * o->pending and o->holds, and the stashed bytes, are atomic; a stash
 * is its CPU's (objcache_stash.c).
 *
 * Poison mode (and mm.kasan's shadow): no poison is written into a free
 * object: a ctor's state must survive, and a TYPESAFE_BY_RCU reader may
 * read a freed object. A ctor cache's free objects, stashed or not, are
 * marked freed in the shadow (MM_SHADOW_FREED, accessible again when
 * handed out), so mm.kasan catches a use after free; a TYPESAFE_BY_RCU
 * cache's stay accessible, as Linux's KASAN leaves them (readers may
 * read them). Double frees and interior pointers are caught in every
 * mode, by the bitmap, the bytes and the offset, and reported with the
 * object's records (objcache_track.c). Every allocation takes
 * objcache_own_alloc_slow and every free own_free_slow (o->fast off),
 * which record them for the leak scan and the reports.
 *
 * Limits: OBJSLAB_MAX_OBJS objects a slab; alignment up to a page;
 * OBJSTASH_MAX objects a stash, each keeping its slab; one empty slab
 * kept; objcache_shrink reaches the stashes of the CPUs the port can
 * reach (mm_port_each_other_cpu), the destroy every one.
 */
#include "objcache_internal.h"
#include "objcache_track.h"
#include "spanheap_internal.h"

static size_t round_up(size_t n, size_t align)
{
	return (n + align - 1) / align * align;
}

/* Whether the fast ways (objcache_stash.c) may take o's calls: it has
 * stashes, and neither poison mode (the slow ways keep the records) nor
 * an armed failure injection (every allocation must be asked) is on.
 * Set under the heap's lock, at the link (objcache.c) and by the switch
 * below, so that an arm between a cache's setup and its link is seen. */
bool objcache_own_fast(struct spanheap *sh, const struct objcache_own *o)
{
	return o->stash && !sh->cfg.poison && !spanheap_fail_armed(sh);
}

void objcache_own_fail_switch(struct spanheap *sh)
{
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	for (struct objcache *c = sh->objcaches; c; c = c->next)
		if (c->own)
			__atomic_store_n(&c->own->fast,
			                 objcache_own_fast(sh, c->own),
			                 __ATOMIC_RELAXED);
	mm_lock_release(&sh->heap->lock, irq);
}

/* Sizes c's slabs (o->npages, nobjs, first) and its stashes; NULL, or
 * why it cannot. */
static const char *geometry(struct objcache *c, struct objcache_own *o)
{
	c->objsize = round_up(c->size, c->align);
	o->first = (uint32_t)round_up(sizeof(struct objslab), c->align);
	/* Poison mode's records (objcache_track.c): two an object, after
	 * the objects (8-byte aligned: 8 more). */
	size_t rec = c->sh->track ? objcache_track_rec_bytes() : 0;
	size_t per = c->objsize + rec, head = o->first + (rec ? 8 : 0);
	/* OBJSLAB_MIN_OBJS objects, fewer for big ones: a slab of at most
	 * 32 KiB unless one object needs more. */
	size_t n = OBJSLAB_MIN_OBJS;
	while (n > 1 && head + n * per > SC_MAX_SIZE)
		n--;
	size_t npages = spanheap_pages_for(head + n * per);
	if (npages > SPANHEAP_LARGE_MAX_PAGES)
		return "a size too large for a slab";
	o->npages = (uint32_t)npages;
	n = (npages * MM_PAGE_SIZE - head) / per;
	o->nobjs = (uint32_t)min_sz(n, OBJSLAB_MAX_OBJS);
	o->recs = rec ? (uint32_t)round_up(o->first + o->nobjs * c->objsize, 8)
	              : 0;
	/* Half a slab at most: a CPU's stash keeps no more than a slab's
	 * worth of pages from going back. */
	o->stash_max = (uint32_t)min_sz(o->nobjs / 2, OBJSTASH_MAX);
	/* objcache_slab_of's divisor: objsize = d << dshift, d odd; each
	 * Newton step doubles the low bits of d's inverse that are right (d
	 * is its own inverse mod 8). A slab is below 4 GiB. */
	uint32_t d = (uint32_t)c->objsize;
	o->dshift = (uint8_t)__builtin_ctzll(d);
	d >>= o->dshift;
	o->dinv = d;
	for (int i = 0; i < 4; i++)
		o->dinv *= 2 - d * o->dinv;
	return NULL;
}

const char *objcache_own_setup(struct objcache *c, unsigned flags,
                               void (*ctor)(void *))
{
	if (flags & ~(unsigned)(OBJCACHE_TYPESAFE_BY_RCU | OBJCACHE_SKIP_GUARD))
		return "unknown flags";
	if ((flags & OBJCACHE_TYPESAFE_BY_RCU) && !MM_PORT_HAS_RCU)
		return "OBJCACHE_TYPESAFE_BY_RCU needs grace periods, and "
		       "this port has no MM_PORT_RCU";
	if (c->align > MM_PAGE_SIZE)
		return "an alignment above a page with slabs of its own";
	struct objcache_own *o = spanheap_meta_alloc(c->sh, sizeof(*o));
	if (!o)
		return "no memory for the cache";
	mm_lock_init(&o->lock, "objcache", MM_RANK_OBJCACHE);
	o->ctor = ctor;
	o->flags = flags;
	o->shadow = c->sh->cfg.poison && !(flags & OBJCACHE_TYPESAFE_BY_RCU);
	const char *why = geometry(c, o);
	if (!why && o->stash_max &&
	    !(o->stash = spanheap_meta_alloc(
	              c->sh, MM_MAX_CPUS * sizeof(struct objstash))))
		why = "no memory for the cache's stashes";
	if (why) {
		spanheap_meta_free(c->sh, o, sizeof(*o));
		return why;
	}
	c->own = o;
	return NULL;
}

/* ---- Lists (o->lock held) ---- */

static void count_locked(struct objcache_own *o, enum slab_list l, int d)
{
	__atomic_store_n(&o->nslabs[l], o->nslabs[l] + (size_t)d,
	                 __ATOMIC_RELAXED);
	atomic_store_explicit(
	        &o->slabs,
	        atomic_load_explicit(&o->slabs, memory_order_relaxed) +
	                (size_t)d,
	        memory_order_relaxed);
}

static void unlink_locked(struct objcache_own *o, struct objslab *sl)
{
	if (sl->prev)
		sl->prev->next = sl->next;
	else
		o->lists[sl->list] = sl->next;
	if (sl->next)
		sl->next->prev = sl->prev;
	count_locked(o, sl->list, -1);
	sl->next = sl->prev = NULL;
	sl->list = NLISTS;
}

static void link_locked(struct objcache_own *o, struct objslab *sl,
                        enum slab_list l)
{
	sl->list = (uint8_t)l;
	sl->prev = NULL;
	sl->next = o->lists[l];
	if (sl->next)
		sl->next->prev = sl;
	o->lists[l] = sl;
	count_locked(o, l, 1);
}

/* Puts sl on the list its free count says (invariant 1). */
void objcache_slab_relist_locked(struct objcache_own *o, struct objslab *sl)
{
	enum slab_list want = sl->nfree == 0          ? LIST_FULL
	                      : sl->nfree == o->nobjs ? LIST_EMPTY
	                                              : LIST_PARTIAL;
	if (sl->list == want)
		return;
	if (sl->list != NLISTS)
		unlink_locked(o, sl);
	link_locked(o, sl, want);
}

uint32_t objcache_slab_take_locked(struct objcache *c, struct objslab *sl)
{
	unsigned w = 0;
	while (!objslab_free_word(sl, w))
		w++;
	uint64_t word = objslab_free_word(sl, w);
	unsigned bit = (unsigned)__builtin_ctzll(word);
	objslab_set_free_word(sl, w, word & ~((uint64_t)1 << bit));
	sl->nfree--;
	objcache_slab_relist_locked(c->own, sl);
	return w * 64 + bit;
}

void objcache_slab_put_locked(struct objcache *c, struct objslab *sl,
                              uint32_t idx)
{
	unsigned w = idx / 64;
	objslab_set_free_word(
	        sl, w, objslab_free_word(sl, w) | (uint64_t)1 << (idx % 64));
	sl->nfree++;
	objcache_slab_relist_locked(c->own, sl);
}

struct objslab *objcache_slab_spares_locked(struct objcache_own *o,
                                            struct objslab *chain)
{
	while (o->nslabs[LIST_EMPTY] > 1) {
		struct objslab *sl = o->lists[LIST_EMPTY];
		unlink_locked(o, sl);
		sl->next = chain;
		chain = sl;
	}
	return chain;
}

/* ---- Slabs ---- */

/* A new slab of c, on no list, every object constructed and free; NULL
 * if the page heap has no pages for it (nothing kept). */
static struct objslab *slab_new(struct objcache *c, unsigned flags)
{
	struct objcache_own *o = c->own;
	struct spanheap *sh = c->sh;
	struct objslab *sl = spanheap_large_alloc(
	        sh, o->npages, MM_PAGE_SIZE, flags & (MM_ATOMIC | MM_NO_GROW));
	if (!sl)
		return NULL;
	*sl = (struct objslab){.cache = c,
	                       .magic = SLAB_MAGIC,
	                       .nfree = o->nobjs,
	                       .list = NLISTS};
	for (uint32_t i = 0; i < o->nobjs; i++)
		sl->free[i / 64] |= (uint64_t)1 << (i % 64);
	if (o->recs) /* "never" allocated (spanheap_track.h) */
		mm_memset((char *)sl + o->recs, 0,
		          o->nobjs * objcache_track_rec_bytes());
	bool shadow = o->shadow;
	for (uint32_t i = 0; i < o->nobjs; i++) {
		char *obj = objslab_obj(c, sl, i);
		if (o->ctor)
			o->ctor(obj);
		if (shadow)
			mm_port_shadow(obj, c->objsize, MM_SHADOW_FREED);
	}
	/* Last: from here a kfree of an object names the cache. */
	atomic_store_explicit(&objslab_span(sh, sl)->objslab, (uint8_t)c->owner,
	                      memory_order_relaxed);
	return sl;
}

/* Gives sl's pages back to the page heap (as a large free). */
static void slab_free(struct objslab *sl)
{
	struct spanheap *sh = sl->cache->sh;
	atomic_store_explicit(&objslab_span(sh, sl)->objslab, 0,
	                      memory_order_relaxed);
	sl->magic = 0;
	spanheap_free(sh, sl);
}

/* The grace period passed: no reader still reads sl's objects. */
static void slab_rcu_done(struct mm_rcu_head *head)
{
	struct objslab *sl = (struct objslab *)head;
	struct objcache_own *o = sl->cache->own;
	slab_free(sl);
	atomic_fetch_sub_explicit(&o->pending, 1, memory_order_release);
}

/* sl, off the lists: freed, or after a grace period (the flag). */
static void slab_release(struct objcache *c, struct objslab *sl)
{
	struct objcache_own *o = c->own;
	if (!(o->flags & OBJCACHE_TYPESAFE_BY_RCU)) {
		slab_free(sl);
		return;
	}
	atomic_fetch_add_explicit(&o->pending, 1, memory_order_relaxed);
	mm_port_call_rcu(&sl->rcu, slab_rcu_done);
}

size_t objcache_slab_release_chain(struct objslab *chain)
{
	size_t n = 0;
	while (chain) {
		struct objslab *next = chain->next;
		n += chain->cache->own->nobjs;
		slab_release(chain->cache, chain);
		chain = next;
	}
	return n;
}

size_t objcache_slab_release_empty(struct objcache *c)
{
	struct objcache_own *o = c->own;
	size_t n = 0;
	for (;;) {
		unsigned long irq = mm_lock_acquire(&o->lock);
		struct objslab *sl = o->lists[LIST_EMPTY];
		if (sl)
			unlink_locked(o, sl);
		mm_lock_release(&o->lock, irq);
		if (!sl)
			return n;
		sl->next = NULL;
		n += objcache_slab_release_chain(sl);
	}
}

/* ---- Allocation and free ---- */

/* An object from the slabs under the lock, or from a new slab; NULL if
 * the page heap has none for it. */
static void *alloc_locked_way(struct objcache *c, unsigned flags)
{
	struct objcache_own *o = c->own;
	unsigned long irq = mm_lock_acquire(&o->lock);
	struct objslab *sl = o->lists[LIST_PARTIAL] ? o->lists[LIST_PARTIAL]
	                                            : o->lists[LIST_EMPTY];
	void *p = sl ? objslab_obj(c, sl, objcache_slab_take_locked(c, sl))
	             : NULL;
	mm_lock_release(&o->lock, irq);
	if (p)
		return p;
	if (!(sl = slab_new(c, flags)))
		return NULL;
	irq = mm_lock_acquire(&o->lock);
	p = objslab_obj(c, sl, objcache_slab_take_locked(c, sl)); /* lists it */
	mm_lock_release(&o->lock, irq);
	return p;
}

void *objcache_own_alloc_slow(struct objcache *c, unsigned flags)
{
	struct objcache_own *o = c->own;
	if (spanheap_bad_flags("objcache_alloc", c->size, flags))
		return NULL;
	if ((flags & MM_ZERO) && o->ctor) {
		mm_log("objcache: MM_ZERO allocation from cache '%s' refused: "
		       "it has a constructor, whose state zeroing would undo",
		       c->name);
		return NULL;
	}
	if (!(flags & MM_ATOMIC))
		spanheap_assert_can_sleep("objcache_alloc (without MM_ATOMIC)");
	/* Every call asked, as the span heap's (armed, the fast ways are
	 * off: objcache_own_fail_switch). */
	if (__builtin_expect(spanheap_fail_armed(c->sh), 0) &&
	    spanheap_fail_should(c->sh, c->size > SC_MAX_SIZE, flags))
		return NULL;
	void *p = NULL; /* the guarded pool's sample: made, counted */
	if (__builtin_expect(c->sh->guard.base != 0, 0) &&
	    (p = objcache_guard_alloc(c, flags)))
		return p;
	if (!(p = objcache_stash_alloc(c)) && !(p = alloc_locked_way(c, flags)))
		return NULL;
	if (c->own->shadow)
		mm_port_shadow(p, c->size, MM_SHADOW_OK);
	if (c->own->recs)
		objcache_track_alloc(c, p, flags);
	if (flags & MM_ZERO)
		mm_memset(p, 0, c->size);
	objcache_count(c, 1);
	return p;
}

struct objslab *objcache_slab_of(struct objcache *c, const void *p,
                                 uint32_t *idx)
{
	struct objcache_own *o = c->own;
	void *e = mheap_span_lookup(c->sh->heap, (uintptr_t)p);
	struct mspan *s = mheap_span_is_span(e) ? e : NULL;
	uint8_t owner = 0;
	if (s && atomic_load_explicit(&s->state, memory_order_acquire) ==
	                 MSPAN_LARGE)
		owner = atomic_load_explicit(&s->objslab, memory_order_relaxed);
	if (!owner)
		objcache_own_not_a_slab(c, p);
	struct objslab *sl = (struct objslab *)s->base;
	if (owner != c->owner || sl->cache != c)
		objcache_own_other_cache(c, p, s, owner);
	uintptr_t off = (uintptr_t)p - s->base;
	if (off < o->first || (off - o->first) % c->objsize ||
	    (off - o->first) / c->objsize >= o->nobjs)
		objcache_own_interior(c, p, s);
	*idx = (uint32_t)((off - o->first) / c->objsize);
	return sl;
}

void objcache_own_free_unstashed(struct objcache *c, struct objslab *sl,
                                 uint32_t idx, void *p)
{
	struct objcache_own *o = c->own;
	uint64_t bit = (uint64_t)1 << (idx % 64);
	/* Poison mode's record of this free, after a first look for a
	 * double free (the lock's look below catches one racing with it):
	 * a double free's report names the first free, not this one. */
	if (o->recs) {
		if (objslab_free_word(sl, idx / 64) & bit)
			objcache_own_double_free(c, p, sl, idx, "free already");
		objcache_track_free(c, sl, idx);
	}
	unsigned long irq = mm_lock_acquire(&o->lock);
	bool twice = objslab_free_word(sl, idx / 64) & bit;
	struct objslab *gone = NULL;
	if (!twice) {
		objcache_slab_put_locked(c, sl, idx);
		gone = objcache_slab_spares_locked(o, NULL);
	}
	mm_lock_release(&o->lock, irq);
	if (twice)
		objcache_own_double_free(c, p, sl, idx, "free already");
	objcache_slab_release_chain(gone);
}

/* ---- Shrink, destroy ---- */

void objcache_shrink(struct objcache *c)
{
	spanheap_assert_can_sleep("objcache_shrink");
	if (!c || !c->own)
		return;
	objcache_stash_drain_all(&c, 1);
	objcache_slab_release_empty(c);
}

void objcache_own_destroy(struct objcache *c)
{
	struct objcache_own *o = c->own;
	/* Unlinked: no shrink_all takes a hold now; wait for those that
	 * did (they shrink for a while, then let go). */
	while (atomic_load_explicit(&o->holds, memory_order_acquire))
		mm_port_yield();
	objcache_stash_drain_unused(c);
	/* No object out (the caller's count): every slab is empty. */
	if (o->lists[LIST_PARTIAL] || o->lists[LIST_FULL])
		mm_panic("objcache: destroy of cache '%s': its count says no "
		         "object is out, but %zu slabs hold some",
		         c->name,
		         o->nslabs[LIST_PARTIAL] + o->nslabs[LIST_FULL]);
	objcache_slab_release_empty(c);
	/* The callbacks read c->own: they all run before it goes. */
	if (o->flags & OBJCACHE_TYPESAFE_BY_RCU)
		mm_port_rcu_barrier();
	c->own = NULL;
	if (o->stash)
		spanheap_meta_free(c->sh, o->stash,
		                   MM_MAX_CPUS * sizeof(struct objstash));
	spanheap_meta_free(c->sh, o, sizeof(*o));
}

/* mm/objcache_internal.h: what objcache.c (the caches' list, counters and
 * merged caches) and objcache_own.c (caches with slabs of their own)
 * share. Not for callers: objcache.h and objcache_own.h are the API. */
#ifndef MM_OBJCACHE_INTERNAL_H
#define MM_OBJCACHE_INTERNAL_H

#include "objcache_guard.h"
#include "objcache_own.h"
#include "spanheap_internal.h"

/* The objects c has out: its counters' sum over the CPUs (approximate
 * while CPUs work). Any context but NMI. */
static inline int64_t objcache_live(const struct objcache *c)
{
	int64_t sum = 0;
	for (size_t cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		sum += __atomic_load_n(&c->counts[cpu * OBJCACHE_MAX],
		                       __ATOMIC_RELAXED);
	return sum;
}

#define SLAB_MAGIC 0x51ab0b1eu /* a slab header's magic number */

/* A slab's list (struct objslab.list). */
enum slab_list { LIST_PARTIAL, LIST_FULL, LIST_EMPTY, NLISTS };

struct objslab {
	/* The grace period's, once the slab is off the lists. First, so
	 * that the callback finds the slab at the head. */
	struct mm_rcu_head rcu;
	/* Fixed from slab_new to its release: */
	struct objcache *cache;
	uint32_t magic;
	/* Protected by o->lock: */
	uint32_t nfree;
	uint8_t list; /* enum slab_list; NLISTS while on none */
	struct objslab *next, *prev;
	/* Bit set: object free in the slab. Written under o->lock, each
	 * word atomically: a free's double-free check reads it without. */
	uint64_t free[OBJSLAB_MAX_OBJS / 64];
	/* Nonzero: object free in a CPU's stash (objcache_stash.c). A
	 * byte each, not a bit: the allocation that takes an object from
	 * the stash clears its byte with a plain store, where a bit would
	 * need an atomic read-modify-write (other CPUs' frees set bits of
	 * the same word). Set by the free that stashes it (an atomic
	 * exchange: 1 there already is a double free), cleared by that
	 * allocation or the spill that puts it back in free[]. An object is
	 * never in both (Linux SLAB's freelist is a byte an object too). */
	uint8_t stashed[OBJSLAB_MAX_OBJS];
};

/* Objects a CPU's stash holds at most, and how many a refill or a spill
 * moves at once (Linux SLAB's array cache: its limit and batchcount),
 * sized so that a stash is two cache lines. */
#define OBJSTASH_MAX   15
#define OBJSTASH_BATCH 8

/* A CPU's stash of free objects of one cache: a stack, the newest on
 * top. An entry is the slab's base (page-aligned) or'ed with the
 * object's index. Owned by its CPU, pinned; else by a drain while that
 * CPU is held (mm_port_each_other_cpu) or while no call uses the cache
 * (destroy). n is stored and loaded atomically: the counts read it from
 * other CPUs. */
struct objstash {
	uint32_t n;
	uintptr_t ent[OBJSTASH_MAX];
};
_Static_assert(sizeof(struct objstash) == 128, "a stash is two lines");
_Static_assert(OBJSLAB_MAX_OBJS <= MM_PAGE_SIZE,
               "an object's index fits below its slab's page-aligned base");
_Static_assert(OBJSTASH_BATCH <= OBJSTASH_MAX, "a batch fits a stash");

struct objcache_own {
	mm_lock_t lock; /* rank MM_RANK_OBJCACHE */
	/* Fixed from setup to destroy (recs: poison mode's records'
	 * offset in a slab, objcache_track.c; 0: none): */
	void (*ctor)(void *obj);
	unsigned flags;
	uint32_t npages, nobjs, first;
	/* The free's index without a division: objsize is odd << dshift,
	 * dinv the odd part's inverse mod 2^32 (objcache_stash.c's slab_of). */
	uint32_t dinv;
	uint8_t dshift;
	/* Whether objects follow the shadow (objcache_own.c, "Poison"):
	 * poison mode and no OBJCACHE_TYPESAFE_BY_RCU. And whether the
	 * fast ways take its calls (objcache_stash.c): stashes, no poison,
	 * no armed failure injection (switched, read relaxed). */
	bool shadow, fast;
	/* Objects a CPU's stash holds at most (0: no stashes, objects so
	 * big that a stash would keep slabs), and the MM_MAX_CPUS stashes
	 * (NULL without). */
	uint32_t stash_max, recs; /* recs: in the padding before stash */
	struct objstash *stash;
	/* Protected by lock: */
	struct objslab *lists[NLISTS];
	/* Written under lock, each atomically: the counts read them. */
	size_t nslabs[NLISTS];
	/* Written under lock, read by the listing without it: */
	_Atomic size_t slabs; /* the lists' total */
	/* Atomic, no lock: released slabs waiting for a grace period. */
	_Atomic size_t pending;
	/* Atomic: objcache_shrink_all's holds; the destroy, the cache
	 * unlinked (no hold begins), waits for none to be left. */
	_Atomic unsigned holds;
};

/* Object idx of slab sl of c. Any context. */
static inline void *objslab_obj(const struct objcache *c,
                                const struct objslab *sl, uint32_t idx)
{
	return (char *)sl + c->own->first + (size_t)idx * c->objsize;
}

/* Atomic accesses to a slab's bitmaps' word w, relaxed unless said. */
static inline uint64_t objslab_free_word(const struct objslab *sl, unsigned w)
{
	return __atomic_load_n(&sl->free[w], __ATOMIC_RELAXED);
}
static inline void objslab_set_free_word(struct objslab *sl, unsigned w,
                                         uint64_t v)
{
	__atomic_store_n(&sl->free[w], v, __ATOMIC_RELAXED);
}

/* The span of the slab (or large object) at base. Any context. */
static inline struct mspan *objslab_span(struct spanheap *sh, const void *base)
{
	return mheap_span_lookup(sh->heap, (uintptr_t)base);
}

/* Makes c (set up but for its slabs, not linked yet) a cache with slabs
 * of its own, c->own; NULL, or why it cannot be. Thread context. */
const char *objcache_own_setup(struct objcache *c, unsigned flags,
                               void (*ctor)(void *));

/* objcache_own.c's slab layer, for the stashes (objcache_stash.c); with
 * o->lock held. Takes a free object of sl: its index. */
uint32_t objcache_slab_take_locked(struct objcache *c, struct objslab *sl);
/* Puts object idx of sl (stashed or out, not free) back as free. */
void objcache_slab_put_locked(struct objcache *c, struct objslab *sl,
                              uint32_t idx);
/* Lists sl as its count says (the batches move runs of bits by hand). */
void objcache_slab_relist_locked(struct objcache_own *o, struct objslab *sl);
/* Unlinks the empty slabs past the one kept onto chain (through their
 * next pointers), for objcache_slab_release_chain after the lock (and the
 * pin); returns the chain's new head. */
struct objslab *objcache_slab_spares_locked(struct objcache_own *o,
                                            struct objslab *chain);
/* Releases a chain of objcache_slab_spares_locked's (of any caches), or every
 * empty slab of c; returns how many objects they held. Thread context or
 * as a free's (a large span's free); nothing pinned, no mm lock held. */
size_t objcache_slab_release_chain(struct objslab *chain);
size_t objcache_slab_release_empty(struct objcache *c);
/* The slab of c holding object p, its index into *idx; misuse panics,
 * naming c. Any context. (objcache_stash.c's free inlines the checks.) */
struct objslab *objcache_slab_of(struct objcache *c, const void *p,
                                 uint32_t *idx);

/* The free's fast check (objcache_stash.c): p's slab base | its index,
 * or 0 for the slow way to refuse or take (tests, objcache_bulk.c). */
uintptr_t objcache_stash_ent_of(struct objcache *c, const void *p);

/* objcache_stash.c: the per-CPU stashes. Any context an objcache call
 * is, unless said. */
/* An object from this CPU's stash (refilled from the slabs if empty),
 * or NULL: no stash, or no free object in any slab. Pins. */
void *objcache_stash_alloc(struct objcache *c);
/* Puts every stash's objects back in their slabs, this CPU's pinned
 * and the others' through mm_port_each_other_cpu (those it reaches),
 * for the n caches cs, and releases the empty slabs past the one each
 * keeps; returns how many objects it moved. Thread context, nothing
 * pinned, no mm lock held. */
size_t objcache_stash_drain_all(struct objcache **cs, size_t n);
/* The same with no call on c running or to come (the destroy): every
 * CPU's, directly. */
void objcache_stash_drain_unused(struct objcache *c);
/* Objects in c's stashes now (approximate while CPUs work). */
size_t objcache_stash_count(const struct objcache *c);

/* objcache_alloc_slow's and objcache_free_slow's way for such a cache
 * (objcache_stash.c: this CPU's stash inline): an object, counted (NULL:
 * no memory, or refused with a line); a free, checked (misuse panics),
 * which the caller counts. */
void *objcache_own_alloc(struct objcache *c, unsigned flags);
void objcache_own_free(struct objcache *c, void *p);
/* objcache_own.c: what the stash does not take. An allocation with any
 * flag, the stash empty or none: every check, the stash refilled, else
 * the slabs. A free to a cache with no stash (p checked, its shadow
 * marked): its bit under the lock. */
void *objcache_own_alloc_slow(struct objcache *c, unsigned flags);
void objcache_own_free_unstashed(struct objcache *c, struct objslab *sl,
                                 uint32_t idx, void *p);

/* After c's unlink (no object out): its slabs back, a grace period
 * waited for those that need one, and c->own freed. Thread context. */
void objcache_own_destroy(struct objcache *c);

#endif

/*
 * mm/objcache_stash.c: the per-CPU stashes of the caches with slabs of
 * their own (objcache_own.c): free objects a CPU hands out and takes back
 * without the cache's lock.
 *
 * Purpose: without them every allocation and free of such a cache took
 * its one lock, a line every CPU using the cache fought over. A stash
 * makes the common alloc+free a few stores to this CPU's lines (pinned,
 * or restartable sequences with MM_PORT_RSEQ), a store and an atomic
 * exchange on the slab's header, as Linux SLAB's array cache does; the
 * span heap's magazines do the same for merged caches and kmalloc.
 *
 * Representation: MM_MAX_CPUS stashes a cache (struct objstash,
 * objcache_internal.h), a stack of up to o->stash_max entries each; an
 * entry is a slab's page-aligned base or'ed with the object's index. A
 * stashed object's byte is set in its slab's stashed array; its free bit
 * is clear, so the slab counts it as out: a slab with stashed objects is
 * never emptied, and so never released.
 *
 * Algorithm: an allocation pops this CPU's stash, clearing the object's
 * stashed byte (a plain store); an empty stash first takes a batch
 * (batch(o): half a stash, at most OBJSTASH_BATCH) from the slabs under
 * the lock. A free sets the object's stashed byte with one atomic
 * exchange: a byte set already is a double free of a stashed object (on
 * any CPU), and a free bit set, of one free in its slab; both panic
 * naming the cache. Then it pushes the entry; a full stash first spills
 * its batch oldest entries back into their slabs under the lock, and
 * slabs that empties past the one kept are released after the unpin
 * (after a drain, once the other CPUs are let go). objcache_shrink and
 * objcache_shrink_all spill whole stashes, this CPU's pinned and the
 * others' while the port holds those CPUs (mm_port_each_other_cpu); the
 * destroy, every CPU's directly, as no call may use the cache then. A batch
 * (objcache_bulk.c) pops or pushes runs of entries in one pin, the count
 * stored once; what the stash cannot give or hold goes to or from the
 * slabs under one hold of the lock. Its free checks an entry in the slab
 * of the entry before by the index alone (objcache_stash_ent.h).
 *
 * Invariants (objcache_own.c's 2 and 5, objcache_own_check): an object is
 * out, free in its slab or in one stash; an entry's stashed byte is set.
 * Order: the refill clears the free bit before it sets the stashed byte;
 * the spill sets the free bit before it clears the byte (release), and a
 * free sets the byte (acquire) before it reads the free bit: a double
 * free that follows the first, on any CPU, sees one of the two. One
 * racing with the refill that takes the object may go unseen.
 *
 * Locking: a stash is its CPU's: touched pinned (mm_port_pin: nothing
 * else runs on the CPU, not an interrupt), by the fast ways' restartable
 * sequences with MM_PORT_RSEQ (objcache_stash_rseq.h: an interrupt
 * restarts them), or by a drain while its CPU is held or no call uses
 * the cache. The cache's lock (MM_RANK_OBJCACHE) is taken pinned for a
 * refill or a spill, as a class's central lock is inside a pin; slabs
 * are released after the unpin (a large free). The entry count n is
 * stored atomically for the counts of other CPUs.
 *
 * Contexts: objcache_own_alloc, _free, objcache_stash_alloc and the
 * batches', any context an objcache call is (interrupts too); the drains
 * and objcache_shrink_all, thread context.
 *
 * Limits: a CPU the port cannot reach keeps its stash until it calls.
 */
#include "objcache_bulk.h"
#include "objcache_internal.h"
#include "objcache_stash_ent.h"
#include "objcache_stash_rseq.h"
#include "objcache_track.h"

static inline void set_n(struct objstash *st, uint32_t n)
{
	__atomic_store_n(&st->n, n, __ATOMIC_RELAXED);
}

/* Objects a refill or a spill moves: half a stash, at most a batch. */
static inline uint32_t batch(const struct objcache_own *o)
{
	uint32_t half = (o->stash_max + 1) / 2;
	return half < OBJSTASH_BATCH ? half : OBJSTASH_BATCH;
}

/* Fills st (empty) with up to a batch of the slabs' free objects. Pinned,
 * st this CPU's. */
static void refill(struct objcache *c, struct objstash *st)
{
	struct objcache_own *o = c->own;
	uint32_t n = 0, want = batch(o);
	unsigned long irq = mm_lock_acquire(&o->lock);
	while (n < want) {
		struct objslab *sl = o->lists[LIST_PARTIAL]
		                             ? o->lists[LIST_PARTIAL]
		                             : o->lists[LIST_EMPTY];
		if (!sl)
			break;
		uint32_t idx = objcache_slab_take_locked(c, sl);
		__atomic_store_n(&sl->stashed[idx], 1, __ATOMIC_RELAXED);
		/* Top down: the lowest object is popped first. */
		st->ent[want - 1 - n++] = ent_of(sl, idx);
	}
	mm_lock_release(&o->lock, irq);
	for (uint32_t i = 0; i < n; i++) /* packed at the bottom */
		st->ent[i] = st->ent[want - n + i];
	set_n(st, n);
}

/* Puts st's k oldest entries back in their slabs and unlinks the empty
 * slabs past the one kept onto *gone. Returns k. Pinned on st's CPU, or
 * st held as the drains hold it. */
static size_t spill(struct objcache *c, struct objstash *st, uint32_t k,
                    struct objslab **gone)
{
	struct objcache_own *o = c->own;
	unsigned long irq = mm_lock_acquire(&o->lock);
	for (uint32_t i = 0; i < k; i++) {
		struct objslab *sl = ent_slab(st->ent[i]);
		uint32_t idx = ent_idx(st->ent[i]);
		objcache_slab_put_locked(c, sl, idx);
		__atomic_store_n(&sl->stashed[idx], 0, __ATOMIC_RELEASE);
	}
	*gone = objcache_slab_spares_locked(o, *gone);
	mm_lock_release(&o->lock, irq);
	uint32_t left = st->n - k;
	for (uint32_t i = 0; i < left; i++)
		st->ent[i] = st->ent[k + i];
	set_n(st, left);
	return k;
}

/* Takes st's top entry (st has one), its stashed byte cleared. Pinned,
 * st this CPU's. */
static inline uintptr_t pop(struct objstash *st)
{
	uint32_t n = st->n - 1;
	uintptr_t e = st->ent[n];
	set_n(st, n);
	/* A plain store: the byte is this object's alone. */
	__atomic_store_n(&ent_slab(e)->stashed[ent_idx(e)], 0,
	                 __ATOMIC_RELAXED);
	return e;
}

void *objcache_stash_alloc(struct objcache *c)
{
	struct objcache_own *o = c->own;
	if (!o->stash)
		return NULL;
	struct mm_pin pin = mm_port_pin();
	struct objstash *st = &o->stash[pin.cpu];
	if (!st->n)
		refill(c, st);
	uintptr_t e = st->n ? pop(st) : 0;
	mm_port_unpin(pin);
	return e ? objslab_obj(c, ent_slab(e), ent_idx(e)) : NULL;
}

/* A free's double-free checks, stashed byte set (acquire) before the free
 * bit is read (the header's "Order"). Any context. */
static inline __attribute__((always_inline)) void
mark_stashed(struct objcache *c, struct objslab *sl, uint32_t idx, void *p)
{
	if (__builtin_expect(
	            __atomic_exchange_n(&sl->stashed[idx], 1, __ATOMIC_ACQ_REL),
	            0))
		objcache_own_double_free(c, p, sl, idx,
		                         "in a CPU's stash already");
	if (__builtin_expect(
	            __atomic_load_n(&sl->free[idx / 64], __ATOMIC_ACQUIRE) &
	                    bit_of(idx),
	            0)) {
		__atomic_store_n(&sl->stashed[idx], 0, __ATOMIC_RELAXED);
		objcache_own_double_free(c, p, sl, idx, "free already");
	}
}

/* A full stash's push: a batch spilled first, its emptied slabs released
 * after the unpin. Pinned on st's CPU (p checked, marked stashed); unpins. */
static __attribute__((noinline)) void push_full(struct objcache *c,
                                                struct objstash *st,
                                                uintptr_t e, struct mm_pin pin)
{
	struct objslab *gone = NULL;
	spill(c, st, batch(c->own), &gone);
	st->ent[st->n] = e;
	set_n(st, st->n + 1);
	mm_port_unpin(pin);
	objcache_slab_release_chain(gone);
}

/* Pushes e (its object marked stashed) on this CPU's stash, pinned, a
 * batch spilled first if it is full. Pins. */
static inline __attribute__((always_inline)) void
push_pinned(struct objcache *c, uintptr_t e)
{
	struct mm_pin pin = mm_port_pin();
	struct objstash *st = &c->own->stash[pin.cpu];
	uint32_t n = st->n;
	if (__builtin_expect(n == c->own->stash_max, 0)) {
		push_full(c, st, e, pin);
		return;
	}
	st->ent[n] = e;
	set_n(st, n + 1);
	mm_port_unpin(pin);
}

/* Frees p, object idx of sl (checked by objcache_slab_of): into this
 * CPU's stash, a batch spilled to the slabs if it is full; a double free
 * panics, naming c. False if c has no stash (nothing done). Pins. */
static inline __attribute__((always_inline)) bool
stash_free(struct objcache *c, struct objslab *sl, uint32_t idx, void *p)
{
	struct objcache_own *o = c->own;
	if (__builtin_expect(!o->stash, 0))
		return false;
	mark_stashed(c, sl, idx, p);
	/* Marked, not yet pushed: no one else can take it. Records are
	 * poison mode's, where every free comes this way (o->fast off). */
	if (o->recs)
		objcache_track_free(c, sl, idx);
	push_pinned(c, ent_of(sl, idx));
	return true;
}

/* ---- The fast ways ---- */

/* Takes this CPU's stash's top entry into *e, its stashed byte cleared;
 * false if the stash is empty. With MM_PORT_RSEQ a restartable sequence,
 * the byte cleared after its commit (objcache_stash_rseq.h says why);
 * else pinned. */
static inline __attribute__((always_inline)) bool
pop_fast(struct objcache_own *o, uintptr_t *e)
{
#ifdef MM_PORT_RSEQ
	bool empty;
	*e = objstash_rseq_pop(o->stash, &empty);
	if (__builtin_expect(empty, 0))
		return false;
	__atomic_store_n(&ent_slab(*e)->stashed[ent_idx(*e)], 0,
	                 __ATOMIC_RELAXED);
	return true;
#else
	struct mm_pin pin = mm_port_pin();
	struct objstash *st = &o->stash[pin.cpu];
	bool some = st->n != 0;
	/* Written either way: GCC's TSan build (-O1) took *e for unset. */
	*e = __builtin_expect(some, 1) ? pop(st) : 0;
	mm_port_unpin(pin);
	return some;
#endif
}

/*
 * The fast ways call nothing on their common path: each way off it is a
 * tail call to the slow one, which does it all again with every check,
 * or a double free's panic; so they set up no frame but the frame
 * pointer's. They take caches with stashes and no shadow (o->fast).
 *
 * An allocation with no flag but MM_ATOMIC and MM_NO_GROW pops this
 * CPU's stash; the rest (other flags, an empty stash) is
 * objcache_own_alloc_slow's. As kmalloc's magazine pop, the pop tests
 * nothing more: a caller without MM_ATOMIC in atomic context is caught
 * off it, on the refill (spanheap.c's rule).
 */
void *objcache_own_alloc(struct objcache *c, unsigned flags)
{
	struct objcache_own *o = c->own;
	/* fast: relaxed, switched while failure injection is armed */
	if (__builtin_expect(
	            !(flags & ~(unsigned)(MM_ATOMIC | MM_NO_GROW)) &&
	                    __atomic_load_n(&o->fast, __ATOMIC_RELAXED),
	            1)) {
		uintptr_t e;
		if (__builtin_expect(pop_fast(o, &e), 1)) {
			void *p = objslab_obj(c, ent_slab(e), ent_idx(e));
			objcache_count(c, 1);
			return p;
		}
	}
	return objcache_own_alloc_slow(c, flags);
}

uintptr_t objcache_stash_ent_of(struct objcache *c, const void *p)
{
	struct objslab *sl;
	uint32_t idx;
	return ent_of_obj(c, c->own, p, &sl, &idx) ? ent_of(sl, idx) : 0;
}

/* The free's way for all objcache_own_free does not take: a guarded
 * object, the checks naming the misuse, the shadow, the stash or slab. */
static __attribute__((noinline)) void own_free_slow(struct objcache *c, void *p)
{
	uint32_t idx;
	if (objcache_guard_free(c, p))
		return;
	struct objslab *sl = objcache_slab_of(c, p, &idx);
	/* Before its byte: once set, another CPU may hand p out. */
	if (c->own->shadow)
		mm_port_shadow(p, c->objsize, MM_SHADOW_FREED);
	if (!stash_free(c, sl, idx, p))
		objcache_own_free_unstashed(c, sl, idx, p);
}

void objcache_own_free(struct objcache *c, void *p)
{
	struct objcache_own *o = c->own;
	struct objslab *sl;
	uint32_t idx;
	if (__builtin_expect(!__atomic_load_n(&o->fast, __ATOMIC_RELAXED) ||
	                             !ent_of_obj(c, o, p, &sl, &idx),
	                     0)) {
		own_free_slow(c, p);
		return;
	}
	mark_stashed(c, sl, idx, p);
	uintptr_t e = ent_of(sl, idx);
#ifdef MM_PORT_RSEQ
	if (__builtin_expect(!objstash_rseq_push(o->stash, o->stash_max, e), 0))
		push_pinned(c, e); /* full (the CPU pinned may differ) */
#else
	push_pinned(c, e);
#endif
}

/* ---- Batches (objcache_bulk.c) ---- */

/* The stash's count is read and stored once a run: pinned, no one
 * else reads this CPU's entries meanwhile (the counts read n, roughly). */
size_t objcache_stash_take(struct objcache *c, void **out, size_t n)
{
	struct mm_pin pin = mm_port_pin();
	struct objstash *st = &c->own->stash[pin.cpu];
	uint32_t have = st->n;
	size_t k = n < have ? n : have;
	for (size_t i = 0; i < k; i++) {
		uintptr_t e = st->ent[have - 1 - i];
		/* A plain store, as pop's: the byte is this object's alone. */
		__atomic_store_n(&ent_slab(e)->stashed[ent_idx(e)], 0,
		                 __ATOMIC_RELAXED);
		out[i] = objslab_obj(c, ent_slab(e), ent_idx(e));
	}
	set_n(st, have - (uint32_t)k);
	mm_port_unpin(pin);
	return k < n ? k + objcache_slabs_take(c, out + k, n - k) : n;
}

size_t objcache_stash_give(struct objcache *c, size_t n, void **p, size_t i,
                           bool *stuck)
{
	struct objcache_own *o = c->own;
	uintptr_t over[OBJCACHE_BULK_RUN];
	size_t nover = 0,
	       end = i + OBJCACHE_BULK_RUN < n ? i + OBJCACHE_BULK_RUN : n;
	/* The slab of the entry before (0: none yet), which that entry,
	 * marked stashed, keeps c's (such a slab is never released): an
	 * entry in its bytes needs idx_in_slab alone, not the table. */
	uintptr_t last = 0, bytes = (uintptr_t)o->npages << MM_PAGE_SHIFT;
	struct mm_pin pin = mm_port_pin();
	struct objstash *st = &o->stash[pin.cpu];
	uint32_t sn = st->n;
	for (; i < end; i++) {
		struct objslab *sl;
		uint32_t idx;
		uintptr_t q = (uintptr_t)p[i];
		/* mark_stashed's checks, refusing (for the single free to
		 * report) where it panics, and changing nothing then. */
		if (last && q - last < bytes) {
			if (!idx_in_slab(o, last, q, &idx))
				break;
			sl = (struct objslab *)last;
		} else if (!ent_of_obj(c, o, p[i], &sl, &idx)) {
			break;
		}
		if (__atomic_exchange_n(&sl->stashed[idx], 1, __ATOMIC_ACQ_REL))
			break;
		if (__atomic_load_n(&sl->free[idx / 64], __ATOMIC_ACQUIRE) &
		    bit_of(idx)) {
			__atomic_store_n(&sl->stashed[idx], 0,
			                 __ATOMIC_RELAXED);
			break;
		}
		last = (uintptr_t)sl;
		if (sn == o->stash_max)
			over[nover++] = ent_of(sl, idx);
		else
			st->ent[sn++] = ent_of(sl, idx);
	}
	set_n(st, sn);
	/* Pinned, as the spill: no entry is seen in no stash and not free. */
	struct objslab *gone = objcache_slabs_put(c, over, nover);
	mm_port_unpin(pin);
	objcache_slab_release_chain(gone);
	*stuck = i < end;
	return i;
}

/* ---- Drains ---- */

struct drain {
	struct objcache **cs;
	size_t n, moved;
	struct objslab *gone; /* released after the CPUs are let go */
};

/* Spills the stashes of cpu (this one, pinned, or one held) whole. */
static void drain_cpu(struct drain *d, unsigned cpu)
{
	for (size_t i = 0; i < d->n; i++) {
		struct objcache *c = d->cs[i];
		struct objstash *st =
		        c->own->stash ? &c->own->stash[cpu] : NULL;
		if (st && st->n)
			d->moved += spill(c, st, st->n, &d->gone);
	}
}

/* mm_port_each_other_cpu's call: nothing runs on cpu meanwhile. */
static void drain_other(unsigned cpu, void *arg)
{
	drain_cpu(arg, cpu);
}

size_t objcache_stash_drain_all(struct objcache **cs, size_t n)
{
	struct drain d = {.cs = cs, .n = n};
	struct mm_pin pin = mm_port_pin();
	drain_cpu(&d, (unsigned)pin.cpu);
	mm_port_unpin(pin);
	mm_port_each_other_cpu(drain_other, &d);
	objcache_slab_release_chain(d.gone);
	return d.moved;
}

void objcache_stash_drain_unused(struct objcache *c)
{
	struct drain d = {.cs = &c, .n = 1};
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		drain_cpu(&d, cpu);
	objcache_slab_release_chain(d.gone);
}

/* ---- Memory pressure ---- */

size_t objcache_shrink_all(struct spanheap *sh)
{
	spanheap_assert_can_sleep("objcache_shrink_all");
	struct objcache *held[OBJCACHE_MAX];
	size_t n = 0;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	for (struct objcache *c = sh->objcaches; c && n < OBJCACHE_MAX;
	     c = c->next)
		if (c->own) {
			atomic_fetch_add_explicit(&c->own->holds, 1,
			                          memory_order_relaxed);
			held[n++] = c;
		}
	mm_lock_release(&sh->heap->lock, irq);
	size_t given = objcache_stash_drain_all(held, n);
	for (size_t i = 0; i < n; i++) {
		given += objcache_slab_release_empty(held[i]);
		atomic_fetch_sub_explicit(&held[i]->own->holds, 1,
		                          memory_order_release);
	}
	return given;
}

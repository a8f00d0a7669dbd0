/*
 * mm/spanheap_guard.c: the guarded pool (spanheap_guard.h), Linux's
 * KFENCE for the span heap.
 *
 * Purpose: find the overruns and uses after free that poison mode finds,
 * in a production heap, at the access that does them. Poison mode checks
 * every object and costs every call; this checks one allocation in
 * guard_interval refills per CPU and costs the others one counter.
 *
 * Representation: a reservation of 2 * nslots + 1 pages, guard pages
 * (never mapped) between object pages: slot i's page is 2 * i + 1. A
 * live slot's page is mapped, its object at the page's end (an overrun
 * faults at once) or at its start (an underrun does), in turn; the rest
 * of the page holds a canary, checked at the free, which catches the
 * overrun shorter than the alignment's slack on the page-end side and any
 * on the other. A freed slot's page is unmapped, so any use faults, and
 * the slot waits at the ring's tail: the pool reuses the slot freed
 * longest ago. Each slot keeps its object's size, class, owner, and the
 * stacks of its allocation and free (the depot's handles) for the
 * reports, which spanheap_where and the port's fault handler give.
 *
 * Sampling: every CPU counts down its refills (spanheap_alloc_refill)
 * and its out-of-line allocations (alloc_call); at 0 the allocation is
 * the pool's. Pinned, a plain decrement of the CPU's own counter, which
 * is 0 and never moves when the heap has no pool: one load and a branch
 * on the refill path. The magazine's pop and push, the fast paths, are
 * untouched. A free finds the pool by the address (outside the arena, so
 * the fast path's span lookup fails and the slow path asks the pool).
 *
 * Locking: the ring, the freed list, the counts and the slot states'
 * changes are under the page heap's lock (the leaf), held for a few loads
 * and stores; nothing is called under it. A slot being set up or torn
 * down is BUSY, owned by one caller, which maps, fills, records and
 * unmaps with no lock. Only a thread can unmap (the port's shootdown
 * waits for the other CPUs): a free from an interrupt handler fills the
 * object with the poison and leaves the slot FREED for the next drain (a
 * thread's guarded allocation or free, the sweeper's every wake, which a
 * sample that finds no slot but FREED ones asks for, a sweep cycle,
 * release-all), which checks the poison before it unmaps. One drain at
 * a time (draining: taken by an exchange, let go under the lock when it
 * finds the list empty, so that no slot is left behind); release-all's
 * waits for another's to end by sleeping
 * on the event drained, which each drain's end wakes.
 *
 * Limits: objects up to a page, alignments up to a page; SPANHEAP_GUARD_MAX
 * slots; MM_NO_GROW allocations are not sampled. The pool's reservation
 * is kept while the heap lives (the heap has no destroy).
 */
#include "objcache.h"
#include "spanheap_internal.h"

/* The canary's byte at address a: varied, so that a copy of another
 * canary's bytes is seen. */
static inline uint8_t canary_at(uintptr_t a)
{
	return (uint8_t)(0xa5u ^ (a & 0x3fu));
}

/* A slot's field store, after slot_busy moved its generation: release,
 * so that a reader that sees it sees the generation moved (a plain move
 * on x86). */
#define slot_set(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELEASE)

static inline uintptr_t page_of(const struct spanheap_guard *g, unsigned i)
{
	return g->base + (2 * (uintptr_t)i + 1) * MM_PAGE_SIZE;
}

const char *spanheap_guard_init(struct spanheap *sh)
{
	struct spanheap_guard *g = &sh->guard;
	unsigned n = sh->cfg.guard_slots;
	if (n == 0)
		return NULL;
	size_t bytes = spanheap_guard_bytes(n);
	void *base = mm_port_reserve(bytes, MM_PAGE_SIZE);
	if (!base)
		return "no address space for the guarded pool";
	/* The port's refusal is not a want of address space: a porter told
	 * that would look at the wrong hook. */
	if (!mm_port_prepare_guarded(base, bytes)) {
		mm_port_unreserve(base, bytes);
		return "the port cannot make the guarded pool's unused pages "
		       "fault (mm_port_prepare_guarded)";
	}
	g->base = (uintptr_t)base;
	g->bytes = bytes;
	g->nslots = n;
	g->interval = sh->cfg.guard_interval;
	for (unsigned i = 0; i < n; i++)
		g->ring[i] = (uint16_t)i;
	g->ring_len = n;
	mm_unused_batch_init(&g->batch);
	mm_event_init(&g->drained, "guard_drained");
	/* Each CPU's countdown starts at its cache's set-up
	 * (spanheap_cache_set_up), at its first use of the heap. */
	return NULL;
}

/*
 * Records the calling stack, the CPU and the time into a slot's fields.
 * The stack starts at from, the return address of the pool's function
 * that calls this (if at), or just past it: poison mode's records start
 * at the heap's caller, and so do these, so that a trace groups a
 * guarded object with its stack's others. The allocation's from is in
 * the heap (alloc_call, the refill: it calls the pool and tests the
 * answer), and the heap's caller is next; the free's is the heap's
 * caller itself, as spanheap_free and its slow path reach the pool by
 * tail calls (and if a compiler made them calls, the stack starts at a
 * heap function, but still holds its caller).
 */
static __attribute__((noinline)) void record(struct spanheap *sh, uint32_t *cpu,
                                             uint32_t *stack, uint64_t *ns,
                                             uintptr_t from, bool at)
{
	uintptr_t pc[SPANHEAP_TRACK_PCS + 4] = {0};
	unsigned n = sh->depot.buckets
	                     ? mm_port_callers(pc, SPANHEAP_TRACK_PCS + 4)
	                     : 0;
	if (n > SPANHEAP_TRACK_PCS + 4)
		n = SPANHEAP_TRACK_PCS + 4; /* a port's slip */
	unsigned skip = 1;                  /* this function's own frame */
	for (unsigned i = 0; i < n && i < 4; i++)
		if (pc[i] == from) {
			skip = at ? i : i + 1;
			break;
		}
	unsigned k = n > skip ? n - skip : 0;
	slot_set(*stack, spanheap_depot_save(&sh->depot, &sh->meta, pc + skip,
	                                     k < SPANHEAP_TRACK_PCS
	                                             ? k
	                                             : SPANHEAP_TRACK_PCS,
	                                     false));
	struct spanheap_track t;
	spanheap_track_fill(&t, false, 0, 0); /* the CPU and the time */
	slot_set(*cpu, t.cpu);
	slot_set(*ns, t.ns);
}

/* The object's first byte on slot page pg: at its end, rounded down to
 * the alignment, or at its start, by turns. */
static uintptr_t place(uintptr_t pg, size_t size, size_t align, bool end)
{
	if (!end)
		return pg;
	size_t round = size ? (size + align - 1) & ~(align - 1) : align;
	return pg + MM_PAGE_SIZE - round;
}

/* Makes slot sl BUSY, its generation moved first, for the readers with
 * no lock (spanheap_guard_report.c, slot_read): the field stores that
 * follow are release (set, below), so a reader that sees one sees the
 * generation moved. Under the heap lock. */
static void slot_busy(struct spanheap_guard_slot *sl)
{
	atomic_store_explicit(
	        &sl->gen,
	        atomic_load_explicit(&sl->gen, memory_order_relaxed) + 1,
	        memory_order_relaxed);
	atomic_store_explicit(&sl->state, GUARD_BUSY, memory_order_relaxed);
}

/* The ring's head slot, made BUSY (its side into *end), or -1 if the
 * ring is empty. */
static long slot_take(struct spanheap *sh, bool *end)
{
	struct spanheap_guard *g = &sh->guard;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	if (g->ring_len == 0) {
		g->full++;
		bool waiting = g->nfreed > 0;
		mm_lock_release(&sh->heap->lock, irq);
		/* Slots wait for a drain this caller (pinned, or in an
		 * interrupt handler) cannot make: the sweeper makes it.
		 * Until it was asked, a pool whose slots were all freed
		 * pinned turned every sample away until the next cycle. */
		if (waiting)
			mm_event_wake(&sh->sweeper.wake);
		return -1;
	}
	unsigned i = g->ring[g->ring_head];
	g->ring_head = (g->ring_head + 1) % g->nslots;
	g->ring_len--;
	*end = !(g->side++ & 1);
	slot_busy(&g->slot[i]);
	mm_lock_release(&sh->heap->lock, irq);
	return (long)i;
}

/* Both allocations: spanheap_guard_alloc's (owner and kind 0) and
 * _alloc_own's. Inline, so that each keeps its arguments in registers
 * (a seventh on the stack grew alloc_call's frame, make test-stack) and
 * record's from is its own return address. */
static inline __attribute__((always_inline)) void *
guard_alloc(struct spanheap *sh, size_t size, size_t align, unsigned flags,
            unsigned cls, uint32_t owner, unsigned kind)
{
	struct spanheap_guard *g = &sh->guard;
	if (size > MM_PAGE_SIZE || align > MM_PAGE_SIZE || (flags & MM_NO_GROW))
		return NULL;
	if (size > 16 && size <= MM_PAGE_SIZE && !(size & (size - 1)) &&
	    size > align)
		align = size; /* the heap's promise for power-of-two sizes */
	if (mm_port_can_sleep())
		spanheap_guard_drain(sh);
	bool end;
	long i = slot_take(sh, &end);
	if (i < 0)
		return NULL;
	struct spanheap_guard_slot *sl = &g->slot[i];
	uintptr_t pg = page_of(g, (unsigned)i);
	if (!mm_port_used((void *)pg, MM_PAGE_SIZE)) {
		unsigned long irq = mm_lock_acquire(&sh->heap->lock);
		/* Back at the head: the same order as before. */
		g->ring_head = (g->ring_head + g->nslots - 1) % g->nslots;
		g->ring[g->ring_head] = (uint16_t)i;
		g->ring_len++;
		g->nomem++;
		atomic_store_explicit(&sl->state, GUARD_FREE,
		                      memory_order_relaxed);
		mm_lock_release(&sh->heap->lock, irq);
		return NULL;
	}
	uintptr_t obj = place(pg, size, align, end);
	for (uintptr_t b = pg; b < obj; b++)
		*(uint8_t *)b = canary_at(b);
	for (uintptr_t b = obj + size; b < pg + MM_PAGE_SIZE; b++)
		*(uint8_t *)b = canary_at(b);
	slot_set(sl->obj, obj);
	slot_set(sl->asked, (uint32_t)size);
	slot_set(sl->cls, (uint16_t)cls);
	slot_set(sl->owner, owner);
	slot_set(sl->kind, (uint8_t)kind);
	slot_set(sl->free_ns, 0);
	slot_set(sl->free_stack, 0);
	record(sh, &sl->alloc_cpu, &sl->alloc_stack, &sl->alloc_ns,
	       (uintptr_t)__builtin_return_address(0), false);
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	atomic_store_explicit(&sl->state, GUARD_LIVE, memory_order_release);
	g->live++;
	g->allocs++;
	mm_lock_release(&sh->heap->lock, irq);
	return (void *)obj;
}

void *spanheap_guard_alloc(struct spanheap *sh, size_t size, size_t align,
                           unsigned flags, unsigned cls)
{
	return guard_alloc(sh, size, align, flags, cls, 0, 0);
}

void *spanheap_guard_alloc_own(struct spanheap *sh, size_t size, size_t align,
                               unsigned flags, uint32_t owner, unsigned kind)
{
	return guard_alloc(sh, size, align, flags, 0, owner, kind);
}

/* Panics for op on p, which is no live object of the pool: says why. */
static __attribute__((noreturn, noinline)) void
refuse(struct spanheap *sh, const char *op, uintptr_t a)
{
	const struct spanheap_guard *g = &sh->guard;
	unsigned i = spanheap_guard_slot_at(g, a);
	const char *why = "an address of one of its guard pages, no object's";
	if (i < g->nslots) {
		const struct spanheap_guard_slot *sl = &g->slot[i];
		uint8_t st =
		        atomic_load_explicit(&sl->state, memory_order_relaxed);
		if (sl->obj == 0)
			why = "a page no object was ever given (never "
			      "allocated)";
		else if (a != sl->obj)
			why = "an interior pointer (not the object's first "
			      "byte)";
		else if (st != GUARD_LIVE)
			why = op[0] == 'f' ? "an object freed already (a "
			                     "double free)"
			                   : "an object freed already (a use "
			                     "after free?)";
		else
			why = "an object being freed meanwhile by another "
			      "CPU (a double free)";
	}
	char part[OBJCACHE_NAME_MAX + 16] = "";
	if (i < g->nslots)
		spanheap_guard_cache_part(sh, g->slot[i].owner, part,
		                          sizeof(part));
	spanheap_where_log(sh, (const void *)a);
	mm_panic("spanheap: %s of %#lx, in the guarded pool%s: %s", op,
	         (unsigned long)a, part, why);
}

/* Slot i's object, live, p its first byte: panics otherwise. For the
 * calls that read a live object without freeing it. */
static struct spanheap_guard_slot *live_slot(struct spanheap *sh, uintptr_t a,
                                             const char *op)
{
	struct spanheap_guard *g = &sh->guard;
	unsigned i = spanheap_guard_slot_at(g, a);
	if (i >= g->nslots || g->slot[i].obj != a ||
	    atomic_load_explicit(&g->slot[i].state, memory_order_acquire) !=
	            GUARD_LIVE)
		refuse(sh, op, a);
	return &g->slot[i];
}

uintptr_t spanheap_guard_canary_damage(const struct spanheap_guard_slot *sl,
                                       uintptr_t pg)
{
	for (uintptr_t b = pg; b < sl->obj; b++)
		if (*(const uint8_t *)b != canary_at(b))
			return b;
	for (uintptr_t b = sl->obj + sl->asked; b < pg + MM_PAGE_SIZE; b++)
		if (*(const uint8_t *)b != canary_at(b))
			return b;
	return 0;
}

__attribute__((noreturn, noinline)) void
spanheap_guard_damaged(struct spanheap *sh,
                       const struct spanheap_guard_slot *sl, uintptr_t b,
                       const char *what)
{
	char part[OBJCACHE_NAME_MAX + 16];
	spanheap_guard_cache_part(sh, sl->owner, part, sizeof(part));
	spanheap_where_log(sh, (const void *)sl->obj);
	if (b < sl->obj)
		mm_panic("spanheap: guarded object %#lx (%u bytes asked, size "
		         "class %u%s): %s: the byte %lu before its start was "
		         "written (an underrun)",
		         (unsigned long)sl->obj, sl->asked, sl->cls, part, what,
		         (unsigned long)(sl->obj - b));
	mm_panic("spanheap: guarded object %#lx (%u bytes asked, size class "
	         "%u%s): %s: byte %lu of it was written%s",
	         (unsigned long)sl->obj, sl->asked, sl->cls, part, what,
	         (unsigned long)(b - sl->obj),
	         b - sl->obj >= sl->asked ? ", past its end (an overrun)"
	                                  : " after its free");
}

/* Whether the free's caller (cls, owner: spanheap_guard_free's and
 * _free_own's) may free live slot sl: false for another class or another
 * cache with slabs of its own (the caller reports it); a panic naming
 * the cache for an object of a named cache given to the heap's free, or
 * of a cache with slabs of its own given to a merged cache's. Under the
 * heap lock (irq), let go before a panic. */
static bool may_free(struct spanheap *sh, const struct spanheap_guard_slot *sl,
                     uintptr_t a, unsigned cls, uint32_t owner,
                     unsigned long irq)
{
	bool own = sl->kind & GUARD_KIND_OWN, ok;
	if (owner)
		ok = own && sl->owner == owner;
	else if (!own && cls != SPANHEAP_GUARD_UNOWNED)
		ok = sl->cls == cls; /* objcache's class test */
	else if (!sl->owner)
		ok = true; /* the heap's own callers' object */
	else {
		uint32_t o = sl->owner;
		mm_lock_release(&sh->heap->lock, irq);
		spanheap_guard_owned(sh, "free", a, o);
	}
	if (!ok)
		mm_lock_release(&sh->heap->lock, irq);
	return ok;
}

/* Both frees: spanheap_guard_free's (owner 0) and _free_own's. Inline, so
 * that the free's record starts at the heap's caller (record's from). */
static inline __attribute__((always_inline)) bool
guard_free(struct spanheap *sh, void *p, unsigned cls, uint32_t owner)
{
	struct spanheap_guard *g = &sh->guard;
	uintptr_t a = (uintptr_t)p;
	unsigned i = spanheap_guard_slot_at(g, a);
	if (i >= g->nslots)
		refuse(sh, "free", a);
	struct spanheap_guard_slot *sl = &g->slot[i];
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	uint8_t st = atomic_load_explicit(&sl->state, memory_order_relaxed);
	if (st != GUARD_LIVE || a != sl->obj) {
		mm_lock_release(&sh->heap->lock, irq);
		refuse(sh, "free", a);
	}
	if (!may_free(sh, sl, a, cls, owner, irq))
		return false;
	slot_busy(sl);
	mm_lock_release(&sh->heap->lock, irq);
	uintptr_t bad = spanheap_guard_canary_damage(sl, page_of(g, i));
	if (bad)
		spanheap_guard_damaged(sh, sl, bad, "seen at its free");
	record(sh, &sl->free_cpu, &sl->free_stack, &sl->free_ns,
	       (uintptr_t)__builtin_return_address(0), true);
	if (sl->kind & GUARD_KIND_RCU)
		spanheap_guard_rcu_wait(sh, i); /* readers may read it still */
	else
		spanheap_guard_retire(sh, i, true);
	return true;
}

bool spanheap_guard_free(struct spanheap *sh, void *p, unsigned cls)
{
	return guard_free(sh, p, cls, 0);
}

bool spanheap_guard_free_own(struct spanheap *sh, void *p, uint32_t owner)
{
	return guard_free(sh, p, 0, owner);
}

/* Takes up to MM_UNUSED_BATCH_PAGES FREED slots off the list into v;
 * returns how many. Finding the list empty, it ends the drain (clears
 * draining) in the same hold of the lock: a free pushes its slot under
 * the lock and then tries to drain, so it either pushed before this look
 * (and the drain takes its slot) or finds draining clear and drains
 * itself. Until this version the flag was cleared after the lock was let
 * go, and a slot freed between the two waited, mapped, for some later
 * free's drain (test no_freed_slot_outlives_the_frees). */
static unsigned freed_take(struct spanheap *sh, uint16_t *v)
{
	struct spanheap_guard *g = &sh->guard;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	unsigned n = g->nfreed < MM_UNUSED_BATCH_PAGES ? g->nfreed
	                                               : MM_UNUSED_BATCH_PAGES;
	g->nfreed -= n;
	for (unsigned k = 0; k < n; k++)
		v[k] = g->freed[g->nfreed + k];
	if (n == 0)
		atomic_store(&g->draining, false);
	mm_lock_release(&sh->heap->lock, irq);
	return n;
}

size_t spanheap_guard_drain(struct spanheap *sh)
{
	struct spanheap_guard *g = &sh->guard;
	if (!g->base)
		return 0;
	spanheap_assert_can_sleep("spanheap_guard_drain");
	if (atomic_exchange(&g->draining, true))
		return 0;
	uint16_t v[SPANHEAP_GUARD_MAX];
	unsigned n;
	size_t pages = 0;
	while ((n = freed_take(sh, v)) != 0) {
		mheap_hook(sh->heap, MHEAP_HOOK_GUARD_DRAINING);
		pages += n;
		for (unsigned k = 0; k < n; k++) {
			struct spanheap_guard_slot *sl = &g->slot[v[k]];
			for (uint32_t b = 0; b < sl->asked; b++)
				if (((const uint8_t *)sl->obj)[b] !=
				    SPANHEAP_POISON_BYTE)
					spanheap_guard_damaged(
					        sh, sl, sl->obj + b,
					        "seen before its page was "
					        "unmapped");
			mm_port_unused_begin((void *)page_of(g, v[k]),
			                     MM_PAGE_SIZE, &g->batch);
		}
		mm_port_unused_finish(&g->batch);
		unsigned long irq = mm_lock_acquire(&sh->heap->lock);
		for (unsigned k = 0; k < n; k++) {
			atomic_store_explicit(&g->slot[v[k]].state, GUARD_FREE,
			                      memory_order_relaxed);
			g->ring[(g->ring_head + g->ring_len) % g->nslots] =
			        v[k];
			g->ring_len++;
		}
		mm_lock_release(&sh->heap->lock, irq);
	}
	mm_event_wake(&g->drained);
	return pages;
}

size_t spanheap_guard_usable(struct spanheap *sh, const void *p, const char *op,
                             bool unowned)
{
	struct spanheap_guard_slot *sl = live_slot(sh, (uintptr_t)p, op);
	/* A cache with slabs of its own: no call of the heap's takes its
	 * objects, as its slabs' spans tell spanheap_span_of. */
	if ((unowned || (sl->kind & GUARD_KIND_OWN)) && sl->owner)
		spanheap_guard_owned(sh, op, (uintptr_t)p, sl->owner);
	return sl->asked;
}

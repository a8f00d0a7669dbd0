/*
 * mm/spanheap_guard_report.c: what the guarded pool (spanheap_guard.c)
 * tells: what an address of the pool is (spanheap_where's kind GUARD, and
 * its log lines with the object's stacks, for the fault handler that
 * catches an access to a guard page or a freed object's page), the
 * pool's counts, and its checks.
 *
 * An address on a guard page is given to the nearer of its two
 * neighbours' objects: KFENCE's rule, as an overrun of the left one and
 * an underrun of the right one both land there.
 */
#include "objcache.h"
#include "spanheap_internal.h"

/* The slot that address a of the pool is about, or nslots if none ever
 * had an object near it. */
static unsigned nearest(const struct spanheap_guard *g, uintptr_t a)
{
	size_t pi = (a - g->base) >> MM_PAGE_SHIFT;
	if (pi & 1)
		return (unsigned)(pi / 2);
	unsigned left = pi ? (unsigned)(pi / 2 - 1) : g->nslots;
	unsigned right = pi / 2 < g->nslots ? (unsigned)(pi / 2) : g->nslots;
	uintptr_t dl = UINTPTR_MAX, dr = UINTPTR_MAX;
	if (left < g->nslots && g->slot[left].obj)
		dl = a - (g->slot[left].obj + g->slot[left].asked);
	if (right < g->nslots && g->slot[right].obj)
		dr = g->slot[right].obj - a;
	if (dl == UINTPTR_MAX && dr == UINTPTR_MAX)
		return g->nslots;
	return dl <= dr ? left : right;
}

/* What slot_read gives for a slot that changed while it was read. */
#define GUARD_CHANGED 0xff

/* Slot sl's fields into *o and its records into the raw r (allocation's,
 * free's), with no lock: its state, or GUARD_CHANGED if the slot changed
 * while read (a slot's fields change only BUSY, gen moved first:
 * slot_busy; a BUSY slot's may be half written). */
static uint8_t slot_read(struct spanheap *sh,
                         const struct spanheap_guard_slot *sl,
                         struct spanheap_guard_obj *o, struct spanheap_rec r[2])
{
	uint32_t gen = atomic_load_explicit(&sl->gen, memory_order_acquire);
	uint8_t st = atomic_load_explicit(&sl->state, memory_order_acquire);
	o->obj = __atomic_load_n(&sl->obj, __ATOMIC_ACQUIRE);
	o->cls = __atomic_load_n(&sl->cls, __ATOMIC_ACQUIRE);
	mheap_hook(sh->heap, MHEAP_HOOK_GUARD_READING);
	o->asked = __atomic_load_n(&sl->asked, __ATOMIC_ACQUIRE);
	o->owner = __atomic_load_n(&sl->owner, __ATOMIC_ACQUIRE);
	o->kind = __atomic_load_n(&sl->kind, __ATOMIC_ACQUIRE);
	r[0] = (struct spanheap_rec){
	        .ns = __atomic_load_n(&sl->alloc_ns, __ATOMIC_ACQUIRE),
	        .cpu = __atomic_load_n(&sl->alloc_cpu, __ATOMIC_ACQUIRE),
	        .stack = __atomic_load_n(&sl->alloc_stack, __ATOMIC_ACQUIRE)};
	r[1] = (struct spanheap_rec){
	        .ns = __atomic_load_n(&sl->free_ns, __ATOMIC_ACQUIRE),
	        .cpu = __atomic_load_n(&sl->free_cpu, __ATOMIC_ACQUIRE),
	        .stack = __atomic_load_n(&sl->free_stack, __ATOMIC_ACQUIRE)};
	if (atomic_load_explicit(&sl->gen, memory_order_relaxed) != gen ||
	    atomic_load_explicit(&sl->state, memory_order_relaxed) != st)
		return GUARD_CHANGED;
	return st;
}

/* Raw record r as the public struct, its stack from sh's depot. */
static void guard_rec(struct spanheap *sh, const struct spanheap_rec *r,
                      struct spanheap_track *t)
{
	t->ns = r->ns;
	t->cpu = r->cpu;
	t->npcs = spanheap_depot_get(&sh->depot, r->stack, t->pc);
}

/* The state of the object of a slot read as st (not GUARD_CHANGED), o
 * and r: a BUSY slot whose free is not recorded is being set up or
 * freed, and is still allocated. */
static enum spanheap_obj_state state_of(uint8_t st,
                                        const struct spanheap_guard_obj *o,
                                        const struct spanheap_rec r[2])
{
	if (!o->obj)
		return SPANHEAP_OBJ_UNUSED;
	return st == GUARD_LIVE || (st == GUARD_BUSY && r[1].ns == 0)
	               ? SPANHEAP_OBJ_ALLOCATED
	               : SPANHEAP_OBJ_FREE;
}

void spanheap_guard_where(struct spanheap *sh, uintptr_t a,
                          struct spanheap_where *w)
{
	const struct spanheap_guard *g = &sh->guard;
	w->kind = SPANHEAP_WHERE_GUARD;
	w->state = SPANHEAP_OBJ_UNUSED;
	unsigned i = nearest(g, a);
	w->index = i;
	if (i >= g->nslots)
		return;
	w->span_base = g->base + (2 * (uintptr_t)i + 1) * MM_PAGE_SIZE;
	w->span_pages = 1;
	w->on_guard = ((a - g->base) >> MM_PAGE_SHIFT) % 2 == 0;
	/* One read of the slot: a slot reused meanwhile gives state NONE
	 * (said as such), never one object's fields with another's. */
	struct spanheap_guard_obj o;
	struct spanheap_rec r[2];
	uint8_t st = slot_read(sh, &g->slot[i], &o, r);
	/* BUSY with a free recorded: torn down, or set up for a new
	 * object over the old one's fields. */
	if (st == GUARD_CHANGED || (st == GUARD_BUSY && r[1].ns != 0)) {
		w->state = SPANHEAP_OBJ_NONE;
		return;
	}
	w->state = state_of(st, &o, r);
	if (w->state == SPANHEAP_OBJ_UNUSED)
		return;
	w->sizeclass = o.cls;
	w->elemsize = o.asked;
	w->asked = o.asked;
	/* A cache with slabs of its own keeps its name on a freed one. */
	w->owner = w->state == SPANHEAP_OBJ_ALLOCATED || o.kind ? o.owner
	                                                        : UINT32_MAX;
	w->start = o.obj;
	if (a >= o.obj)
		w->offset = a - o.obj;
	else
		w->before = o.obj - a;
	w->cpu = (int)r[0].cpu;
	if (w->state == SPANHEAP_OBJ_FREE && r[1].ns)
		guard_rec(sh, &r[1], &w->freed);
}

/* The line's "N bytes into|past the end of|before the start of" part,
 * into buf. */
static void where_part(char *buf, size_t size, const struct spanheap_where *w)
{
	if (w->before)
		spanheap_text_put(
		        buf, size,
		        spanheap_text_put(buf, size, 0, "", w->before),
		        " bytes before the start of", UINT64_MAX);
	else if (w->offset >= w->asked)
		spanheap_text_put(buf, size,
		                  spanheap_text_put(buf, size, 0, "",
		                                    w->offset - w->asked),
		                  " bytes past the end of", UINT64_MAX);
	else
		spanheap_text_put(
		        buf, size,
		        spanheap_text_put(buf, size, 0, "", w->offset),
		        " bytes into", UINT64_MAX);
}

void spanheap_guard_cache_part(struct spanheap *sh, uint32_t owner, char *buf,
                               size_t size)
{
	char name[OBJCACHE_NAME_MAX + 1] = "";
	buf[0] = '\0';
	if (owner)
		objcache_owner_name(sh, owner, name);
	if (!name[0])
		return;
	size_t n = spanheap_text_put(buf, size, 0, ", cache '", UINT64_MAX);
	n = spanheap_text_put(buf, size, n, name, UINT64_MAX);
	spanheap_text_put(buf, size, n, "''s", UINT64_MAX);
}

void spanheap_guard_where_log(struct spanheap *sh, uintptr_t a,
                              const struct spanheap_where *w)
{
	const struct spanheap_guard *g = &sh->guard;
	if (w->state == SPANHEAP_OBJ_NONE) {
		mm_log("spanheap: %#lx: in the guarded pool, near slot %u, "
		       "whose object changed while it was read (freed or "
		       "allocated meanwhile)",
		       (unsigned long)a, w->index);
		return;
	}
	if (w->state == SPANHEAP_OBJ_UNUSED) {
		mm_log("spanheap: %#lx: in the guarded pool [%#lx, +%zu "
		       "pages), near no object it ever held",
		       (unsigned long)a, (unsigned long)g->base,
		       g->bytes / MM_PAGE_SIZE);
		return;
	}
	char part[64], name[OBJCACHE_NAME_MAX + 1] = "";
	where_part(part, sizeof(part), w);
	if (w->owner != 0 && w->owner != UINT32_MAX)
		objcache_owner_name(sh, w->owner, name);
	mm_log("spanheap: %#lx: %s guarded object %#lx (%s; %u bytes asked, "
	       "size class %u%s%s%s), slot %u of the guarded pool%s",
	       (unsigned long)a, part, (unsigned long)w->start,
	       spanheap_obj_state_name(w->state), w->asked, w->sizeclass,
	       name[0] ? ", cache '" : "", name, name[0] ? "''s" : "", w->index,
	       w->on_guard ? ", on a guard page" : "");
	/* The records read again: of the object described only if the
	 * slot still holds it as it was. */
	struct spanheap_guard_obj o;
	struct spanheap_rec r[2];
	uint8_t st = slot_read(sh, &g->slot[w->index], &o, r);
	if (st == GUARD_CHANGED || o.obj != w->start || o.asked != w->asked ||
	    state_of(st, &o, r) != w->state || (int)r[0].cpu != w->cpu) {
		mm_log("spanheap: object %#lx: its slot changed since: its "
		       "records are not shown",
		       (unsigned long)w->start);
		return;
	}
	struct spanheap_track t;
	guard_rec(sh, &r[0], &t);
	uint64_t now = mm_port_now_ns();
	spanheap_track_log(w->start, &t, "allocated", now);
	if (w->state == SPANHEAP_OBJ_FREE)
		spanheap_track_log(w->start, &w->freed, "freed", now);
}

bool spanheap_guard_tracks(struct spanheap *sh, uintptr_t a,
                           struct spanheap_track *alloc,
                           struct spanheap_track *freed)
{
	const struct spanheap_guard *g = &sh->guard;
	size_t pi = (a - g->base) >> MM_PAGE_SHIFT;
	if (!spanheap_guard_owns(g, (const void *)a) || !(pi & 1))
		return false;
	struct spanheap_guard_obj o;
	struct spanheap_rec r[2];
	uint8_t st = slot_read(sh, &g->slot[pi / 2], &o, r);
	if (!o.obj)
		return false;
	if (st == GUARD_BUSY || st == GUARD_CHANGED) {
		*alloc = (struct spanheap_track){.ns = SPANHEAP_TRACK_CHANGING};
		*freed = *alloc;
		return true;
	}
	guard_rec(sh, &r[0], alloc);
	guard_rec(sh, &r[1], freed);
	return true;
}

bool spanheap_guard_live(struct spanheap *sh, unsigned i,
                         struct spanheap_guard_obj *o,
                         struct spanheap_track *alloc)
{
	struct spanheap_rec r[2];
	if (i >= sh->guard.nslots ||
	    slot_read(sh, &sh->guard.slot[i], o, r) != GUARD_LIVE || !o->obj)
		return false;
	guard_rec(sh, &r[0], alloc);
	return true;
}

void spanheap_guard_stats(struct spanheap *sh, struct spanheap_stats *st)
{
	struct spanheap_guard *g = &sh->guard;
	if (!g->base)
		return;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	st->guard_slots = g->nslots;
	st->guard_live = g->live;
	st->guard_allocs = g->allocs;
	st->guard_frees = g->frees;
	st->guard_full = g->full;
	st->guard_nomem = g->nomem;
	mm_lock_release(&sh->heap->lock, irq);
}

/* Panics, the heap lock (irq) released first. */
#define guard_fail(sh, irq, ...) \
	(mm_lock_release(&(sh)->heap->lock, irq), mm_panic(__VA_ARGS__))

/* The ring and the freed list: each slot once, in the state its list
 * means; the live count. Under the heap lock (irq). */
static void check_lists(struct spanheap *sh, unsigned long irq)
{
	struct spanheap_guard *g = &sh->guard;
	uint8_t seen[SPANHEAP_GUARD_MAX] = {0};
	unsigned live = 0;
	/* A slot is on one list at most: lengths past the slots are damage,
	 * named before an entry is read (the freed list's could run past
	 * its array). */
	if (g->ring_len > g->nslots || g->nfreed > g->nslots - g->ring_len)
		guard_fail(
		        sh, irq,
		        "spanheap: check: guarded pool: %u free and %u freed "
		        "slots listed, more than its %u slots",
		        g->ring_len, g->nfreed, g->nslots);
	for (unsigned k = 0; k < g->ring_len + g->nfreed; k++) {
		bool ring = k < g->ring_len;
		unsigned i = ring ? g->ring[(g->ring_head + k) % g->nslots]
		                  : g->freed[k - g->ring_len];
		/* Named before slot[i] is read: a damaged entry may be any
		 * 16-bit value, past the slot array. */
		if (i >= g->nslots)
			guard_fail(sh, irq,
			           "spanheap: check: guarded pool: slot %u on "
			           "its %s list, which has %u slots",
			           i, ring ? "free" : "freed", g->nslots);
		uint8_t st = atomic_load_explicit(&g->slot[i].state,
		                                  memory_order_relaxed);
		if (seen[i]++ || st != (ring ? GUARD_FREE : GUARD_FREED))
			guard_fail(sh, irq,
			           "spanheap: check: guarded pool: slot %u on "
			           "its %s list twice or in state %u",
			           i, ring ? "free" : "freed", (unsigned)st);
	}
	unsigned rcu = 0;
	for (unsigned i = 0; i < g->nslots; i++) {
		uint8_t st = atomic_load_explicit(&g->slot[i].state,
		                                  memory_order_relaxed);
		live += st == GUARD_LIVE;
		rcu += st == GUARD_RCU;
	}
	if (live != g->live)
		guard_fail(sh, irq,
		           "spanheap: check: guarded pool: %u live slots, "
		           "counted %u",
		           live, g->live);
	if (rcu != g->nrcu)
		guard_fail(sh, irq,
		           "spanheap: check: guarded pool: %u slots waiting "
		           "for a grace period, counted %u",
		           rcu, g->nrcu);
}

void spanheap_guard_check(struct spanheap *sh)
{
	struct spanheap_guard *g = &sh->guard;
	if (!g->base)
		return;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	check_lists(sh, irq);
	mm_lock_release(&sh->heap->lock, irq);
	/* Each live object's canary, under the lock (its page stays mapped
	 * while it is live, and no free can start meanwhile). */
	for (unsigned i = 0; i < g->nslots; i++) {
		irq = mm_lock_acquire(&sh->heap->lock);
		const struct spanheap_guard_slot *sl = &g->slot[i];
		uintptr_t bad =
		        atomic_load_explicit(&sl->state,
		                             memory_order_relaxed) == GUARD_LIVE
		                ? spanheap_guard_canary_damage(
		                          sl, g->base + (2 * (uintptr_t)i + 1) *
		                                                MM_PAGE_SIZE)
		                : 0;
		mm_lock_release(&sh->heap->lock, irq);
		if (bad)
			spanheap_guard_damaged(sh, sl, bad,
			                       "seen by the check");
	}
}

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

static enum spanheap_obj_state state_of(const struct spanheap_guard_slot *sl)
{
	if (!sl->obj)
		return SPANHEAP_OBJ_UNUSED;
	uint8_t st = atomic_load_explicit(&sl->state, memory_order_acquire);
	return st == GUARD_LIVE || (st == GUARD_BUSY && sl->free_ns == 0)
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
	const struct spanheap_guard_slot *sl = &g->slot[i];
	w->span_base = g->base + (2 * (uintptr_t)i + 1) * MM_PAGE_SIZE;
	w->span_pages = 1;
	w->on_guard = ((a - g->base) >> MM_PAGE_SHIFT) % 2 == 0;
	w->state = state_of(sl);
	if (w->state == SPANHEAP_OBJ_UNUSED)
		return;
	w->sizeclass = sl->cls;
	w->elemsize = sl->asked;
	w->asked = sl->asked;
	w->owner = w->state == SPANHEAP_OBJ_ALLOCATED ? sl->owner : UINT32_MAX;
	w->start = sl->obj;
	if (a >= sl->obj)
		w->offset = a - sl->obj;
	else
		w->before = sl->obj - a;
	w->cpu = (int)sl->alloc_cpu;
	struct spanheap_track alloc;
	if (w->state == SPANHEAP_OBJ_FREE && sl->free_ns)
		spanheap_guard_tracks(sh, sl->obj, &alloc, &w->freed);
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

void spanheap_guard_where_log(struct spanheap *sh, uintptr_t a,
                              const struct spanheap_where *w)
{
	const struct spanheap_guard *g = &sh->guard;
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
	struct spanheap_track t, freed;
	if (!spanheap_guard_tracks(sh, w->start, &t, &freed))
		return;
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
	const struct spanheap_guard_slot *sl = &g->slot[pi / 2];
	if (!sl->obj)
		return false;
	alloc->ns = sl->alloc_ns;
	alloc->cpu = sl->alloc_cpu;
	alloc->npcs =
	        spanheap_depot_get(&sh->depot, sl->alloc_stack, alloc->pc);
	freed->ns = sl->free_ns;
	freed->cpu = sl->free_cpu;
	freed->npcs = spanheap_depot_get(&sh->depot, sl->free_stack, freed->pc);
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
	for (unsigned i = 0; i < g->nslots; i++)
		live += atomic_load_explicit(&g->slot[i].state,
		                             memory_order_relaxed) ==
		        GUARD_LIVE;
	if (live != g->live)
		guard_fail(sh, irq,
		           "spanheap: check: guarded pool: %u live slots, "
		           "counted %u",
		           live, g->live);
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

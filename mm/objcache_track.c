/*
 * mm/objcache_track.c: poison mode's records of the objects of caches
 * with slabs of their own (objcache_track.h), and what reads them.
 *
 * Purpose: a merged cache's objects live in the span heap's spans and
 * get its records (spanheap_track.c): a double free or a use after free
 * of one is reported with who allocated and who freed it. A constructor
 * or SLAB_TYPESAFE_BY_RCU cache's objects live in slabs of its own,
 * large spans with no side table; without these records a developer
 * chasing a double free of such an object had the second free's
 * backtrace alone. Linux's SLUB gives both stacks for every cache
 * (slub_debug=U); this gives them here too.
 *
 * Representation: in poison mode with records (sh->track), a slab keeps
 * two struct spanheap_rec an object after its objects, from o->recs
 * (objcache_own.c's geometry): [2 idx] the last allocation's, [2 idx + 1]
 * the last free's; 16 bytes each (when, the CPU, the stack's handle in
 * the heap's depot), zeroed ("never") when the slab is made. The stacks
 * are the depot's, shared with the span heap's records.
 *
 * Algorithm: objcache_own_alloc_slow records each allocation (every one
 * takes it in poison mode: o->fast is off) once the object is taken; the
 * free records after its double-free check (the stash's byte, or the
 * free bit) and before the object is pushed or put back, so that a
 * double free's report names the first free, not the second. A writer
 * marks the record SPANHEAP_TRACK_CHANGING first and writes the time
 * last; a reader reads the time before and after the rest (a sequence
 * count), as spanheap_track.c's do.
 *
 * Invariants: a record is written only by the holder of its object (the
 * allocation that took it, the free that marked it), so never by two at
 * once; a reader without the object sees a true record or CHANGING.
 *
 * Locking: none. The readers (reports, spanheap_where_log,
 * spanheap_object_tracks, spanheap_alloc_traces) check the span and the
 * header as the leak scan does (objcache_leak_slab: the owner number,
 * the magic, the cache's geometry), keep what they need of them (the
 * records' offset too) and follow nothing of the header after: a slab
 * freed meanwhile (its cache destroyed, its pages another's) holds
 * anything, and a reader that read its cache pointer again followed
 * 0xa5a5... on the host and faulted at 0x64 in the kernel (the shell's
 * fault hook caught it: "try again"; objcache_track_race_test.c,
 * kmem_cache_track_test.c). What such a slab gives reads as CHANGING, or
 * "being made or freed", when the span is seen to change after; its
 * bytes are read all the same (mapped on the host; in the kernel under
 * mm.debug_pagealloc perhaps not: the shell's readers run under the
 * fault hook).
 *
 * Limits: the last allocation and free only; a record lives as long as
 * its slab (an object of a slab made since its free has none); stacks
 * are what the port's walk finds. Poison mode only: outside it the slabs
 * keep no records and nothing here is called.
 */
#include "objcache_track.h"

#include "objcache_internal.h"
#include "objcache_leak.h"
#include "spanheap_internal.h"

/* Object idx's record (freed: the free's) of the slab at base whose
 * records start at recs. */
static struct spanheap_rec *rec_at(const void *base, uint32_t recs,
                                   uint32_t idx, bool freed)
{
	return (struct spanheap_rec *)((char *)base + recs) + 2 * (size_t)idx +
	       freed;
}

/* The same of slab sl, held (its cache's geometry read through it). */
static struct spanheap_rec *rec_of(const struct objslab *sl, uint32_t idx,
                                   bool freed)
{
	return rec_at(sl, sl->cache->own->recs, idx, freed);
}

size_t objcache_track_rec_bytes(void)
{
	return 2 * sizeof(struct spanheap_rec);
}

/* Writes record r: changing first, the time last (the header). Inline:
 * the stack's frames left out are its caller's to say. */
static inline __attribute__((always_inline)) void
rec_write(struct objcache *c, struct spanheap_rec *r, uintptr_t after,
          unsigned flags)
{
	__atomic_store_n(&r->ns, SPANHEAP_TRACK_CHANGING, __ATOMIC_RELAXED);
	struct spanheap_track t = {0};
	spanheap_track_fill(&t, true, 1, after);
	__atomic_store_n(&r->stack,
	                 spanheap_depot_save(&c->sh->depot, &c->sh->meta, t.pc,
	                                     t.npcs, flags & MM_NO_GROW),
	                 __ATOMIC_RELEASE);
	__atomic_store_n(&r->cpu, t.cpu, __ATOMIC_RELEASE);
	__atomic_store_n(&r->ns, t.ns, __ATOMIC_RELEASE);
}

__attribute__((noinline)) void
objcache_track_alloc(struct objcache *c, const void *p, unsigned flags)
{
	struct objslab *sl = (struct objslab *)objslab_span(c->sh, p)->base;
	uint32_t idx =
	        (uint32_t)(((uintptr_t)p - (uintptr_t)sl - c->own->first) /
	                   c->objsize);
	/* The stack from the return into objcache_own_alloc_slow's caller:
	 * that of this call's frame left out (after). */
	rec_write(c, rec_of(sl, idx, false),
	          (uintptr_t)__builtin_return_address(0), flags);
}

__attribute__((noinline)) void
objcache_track_free(struct objcache *c, struct objslab *sl, uint32_t idx)
{
	/* The depot may grow for it, as for a small object's free
	 * (spanheap_redzone.c's record). */
	rec_write(c, rec_of(sl, idx, true),
	          (uintptr_t)__builtin_return_address(0), 0);
}

/* Record r into t, read as a sequence count, its stack from the depot. */
static void rec_read(struct spanheap *sh, const struct spanheap_rec *r,
                     struct spanheap_track *t)
{
	uint64_t ns = __atomic_load_n(&r->ns, __ATOMIC_ACQUIRE);
	uint32_t cpu = __atomic_load_n(&r->cpu, __ATOMIC_ACQUIRE);
	uint32_t stack = __atomic_load_n(&r->stack, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&r->ns, __ATOMIC_ACQUIRE) != ns)
		ns = SPANHEAP_TRACK_CHANGING;
	*t = (struct spanheap_track){.ns = ns};
	if (ns == 0 || ns == SPANHEAP_TRACK_CHANGING)
		return;
	t->cpu = cpu;
	t->npcs = spanheap_depot_get(&sh->depot, stack, t->pc);
}

/* Object idx's two records, of the slab at base whose records start at
 * recs (nonzero). */
static void recs_read(struct spanheap *sh, const void *base, uint32_t recs,
                      uint32_t idx, struct spanheap_track *alloc,
                      struct spanheap_track *freed)
{
	rec_read(sh, rec_at(base, recs, idx, true), freed);
	rec_read(sh, rec_at(base, recs, idx, false), alloc);
}

bool objcache_track_read(struct spanheap *sh, const struct objslab *sl,
                         uint32_t idx, struct spanheap_track *alloc,
                         struct spanheap_track *freed)
{
	uint32_t recs = sl->cache->own->recs;
	if (!recs)
		return false;
	recs_read(sh, sl, recs, idx, alloc, freed);
	return true;
}

/* mm_logs object start's two records t. */
static void track_log2(uintptr_t start, const struct spanheap_track *t)
{
	uint64_t now = mm_port_now_ns();
	spanheap_track_log(start, &t[0], "allocated", now);
	spanheap_track_log(start, &t[1], "freed", now);
}

void objcache_track_report(struct spanheap *sh, const struct objslab *sl,
                           uint32_t idx)
{
	struct spanheap_track t[2];
	if (objcache_track_read(sh, sl, idx, &t[0], &t[1]))
		track_log2((uintptr_t)objslab_obj(sl->cache, sl, idx), t);
}

/* ---- By address, no lock ---- */

/* Large span s's slab into *ls; false if s is no built slab
 * (objcache_leak_slab's checks) or no longer in use. What the readers
 * below read of the slab after this comes from *ls, never through its
 * header again: a slab freed meanwhile may hold anything by then (its
 * cache pointer, read again, was followed into 0xa5s: rv116). */
static bool slab_of(struct spanheap *sh, const struct mspan *s,
                    struct objcache_leak_slab *ls)
{
	if (atomic_load_explicit(&s->state, memory_order_acquire) !=
	            MSPAN_LARGE ||
	    !objcache_leak_slab(s, ls))
		return false;
	mheap_hook(sh->heap, MHEAP_HOOK_OWN_SLAB_READ);
	return true;
}

/* Where a falls in large span s: its slab into *ls, the object's index
 * (ls->nobjs past the objects, UINT32_MAX in the header); false if s is
 * no slab (slab_of). */
static bool slab_where(struct spanheap *sh, const struct mspan *s, uintptr_t a,
                       struct objcache_leak_slab *ls, uint32_t *idx)
{
	if (!slab_of(sh, s, ls))
		return false;
	if (a < ls->first)
		*idx = UINT32_MAX;
	else if ((a - ls->first) / ls->objsize >= ls->nobjs)
		*idx = ls->nobjs;
	else
		*idx = (uint32_t)((a - ls->first) / ls->objsize);
	return true;
}

/* Whether s still carries the slab ls was read from. */
static bool slab_same(const struct mspan *s,
                      const struct objcache_leak_slab *ls)
{
	return atomic_load_explicit(&s->state, memory_order_acquire) ==
	               MSPAN_LARGE &&
	       atomic_load_explicit(&s->objslab, memory_order_acquire) ==
	               ls->owner &&
	       __atomic_load_n(&s->base, __ATOMIC_RELAXED) ==
	               (uintptr_t)ls->slab;
}

/* Object idx of slab ls's records (its cache keeps them), read with no
 * lock: both changing if s was seen to change after. */
static void slab_recs(struct spanheap *sh, const struct mspan *s,
                      const struct objcache_leak_slab *ls, uint32_t idx,
                      struct spanheap_track *alloc,
                      struct spanheap_track *freed)
{
	recs_read(sh, ls->slab, ls->recs, idx, alloc, freed);
	if (!slab_same(s, ls)) /* freed meanwhile: nothing is true */
		*alloc = *freed =
		        (struct spanheap_track){.ns = SPANHEAP_TRACK_CHANGING};
}

bool objcache_track_tracks(struct spanheap *sh, const struct mspan *s,
                           uintptr_t a, struct spanheap_track *alloc,
                           struct spanheap_track *freed)
{
	struct objcache_leak_slab ls;
	uint32_t idx;
	if (!slab_where(sh, s, a, &ls, &idx) || idx >= ls.nobjs || !ls.recs)
		return false;
	slab_recs(sh, s, &ls, idx, alloc, freed);
	return true;
}

void objcache_track_report_at(struct spanheap *sh, const struct mspan *s,
                              uintptr_t a)
{
	struct objcache_leak_slab ls;
	uint32_t idx;
	struct spanheap_track t[2];
	if (!slab_where(sh, s, a, &ls, &idx) || idx >= ls.nobjs || !ls.recs)
		return;
	slab_recs(sh, s, &ls, idx, &t[0], &t[1]);
	track_log2(ls.first + (uintptr_t)idx * ls.objsize, t);
}

/* Object idx of slab ls's state, as its bit and byte say. */
static const char allocated[] = "allocated";
static const char *state_of(const struct objcache_leak_slab *ls, uint32_t idx)
{
	const struct objslab *sl = ls->slab;
	if (objslab_free_word(sl, idx / 64) & (uint64_t)1 << (idx % 64))
		return "free";
	if (__atomic_load_n(&sl->stashed[idx], __ATOMIC_RELAXED))
		return "free, in a CPU's stash";
	return allocated;
}

/* The line of an address in the header of or past the objects of slab
 * ls (idx UINT32_MAX or ls->nobjs): no object. */
static void where_no_object(const struct objcache_leak_slab *ls, uintptr_t a,
                            uint32_t idx, const char *name, unsigned pages)
{
	uintptr_t base = (uintptr_t)ls->slab;
	mm_log("objcache: %#lx: %s cache '%s''s slab [%#lx, +%u pages) (%u "
	       "objects of %u bytes from +%lu), no object",
	       (unsigned long)a,
	       idx == UINT32_MAX ? "in the header of"
	                         : "past the objects (the records, the "
	                           "tail) of",
	       name, (unsigned long)base, pages, ls->nobjs, ls->objsize,
	       (unsigned long)(ls->first - base));
}

void objcache_track_where_log(struct spanheap *sh, const struct mspan *s,
                              uintptr_t a)
{
	struct objcache_leak_slab ls;
	uint32_t idx;
	struct spanheap_track t[2];
	const char *state = NULL;
	bool in = slab_where(sh, s, a, &ls, &idx);
	if (in && idx < ls.nobjs) {
		state = state_of(&ls, idx);
		if (ls.recs)
			recs_read(sh, ls.slab, ls.recs, idx, &t[0], &t[1]);
	}
	/* All read first, then said of a slab seen the same after only. */
	if (!in || !slab_same(s, &ls)) {
		mm_log("objcache: %#lx: in a slab of a cache with slabs of its "
		       "own, being made or freed",
		       (unsigned long)a);
		return;
	}
	char name[OBJCACHE_NAME_MAX + 1];
	objcache_owner_name(sh, ls.owner, name);
	unsigned pages = __atomic_load_n(&s->npages, __ATOMIC_RELAXED);
	if (!state) {
		where_no_object(&ls, a, idx, name, pages);
		return;
	}
	uintptr_t start = ls.first + (uintptr_t)idx * ls.objsize;
	mm_log("objcache: %#lx: %lu bytes into object %u at %#lx (%s) of "
	       "cache '%s''s slab [%#lx, +%u pages) (%u-byte objects, %u "
	       "bytes asked)",
	       (unsigned long)a, (unsigned long)(a - start), idx,
	       (unsigned long)start, state, name, (unsigned long)ls.slab, pages,
	       ls.objsize, ls.size);
	if (ls.recs)
		track_log2(start, t);
}

bool objcache_track_object(struct spanheap *sh, const struct mspan *s,
                           uintptr_t a, struct objcache_track_obj *out)
{
	if (!atomic_load_explicit(&s->objslab, memory_order_acquire))
		return false;
	struct objcache_leak_slab ls;
	uint32_t idx;
	*out = (struct objcache_track_obj){.changing = true};
	if (!slab_where(sh, s, a, &ls, &idx))
		return true;
	const char *state = idx < ls.nobjs ? state_of(&ls, idx) : NULL;
	if (!slab_same(s, &ls)) /* read from a slab freed meanwhile */
		return true;
	*out = (struct objcache_track_obj){
	        .slab = (uintptr_t)ls.slab,
	        .start = ls.first + (uintptr_t)idx * ls.objsize,
	        .idx = idx,
	        .nobjs = ls.nobjs,
	        .objsize = ls.objsize,
	        .size = ls.size,
	        .owner = ls.owner,
	        .pages = __atomic_load_n(&s->npages, __ATOMIC_RELAXED),
	        .state = state,
	        .live = state == allocated};
	return true;
}

/* ---- Grouping by stack ---- */

void objcache_track_traces(struct spanheap *sh, struct spanheap_trace_table *tt,
                           const struct mspan *s)
{
	struct objcache_leak_slab ls;
	if (!slab_of(sh, s, &ls) ||
	    (tt->owner != SPANHEAP_OWNER_ANY && tt->owner != ls.owner) ||
	    !ls.recs)
		return;
	for (uint32_t i = 0; i < ls.nobjs; i++) {
		if (!objcache_leak_out(ls.slab, i))
			continue;
		struct spanheap_track t;
		rec_read(sh, rec_at(ls.slab, ls.recs, i, false), &t);
		/* Being allocated or freed meanwhile: left out, as a small
		 * object's; a slab freed meanwhile: the rest too. */
		if (!slab_same(s, &ls))
			return;
		if (t.ns == 0 || t.ns == SPANHEAP_TRACK_CHANGING ||
		    !objcache_leak_out(ls.slab, i))
			continue;
		spanheap_trace_add(tt, &t, ls.size);
	}
}

/* ---- The free's misuse reports ---- */

void objcache_own_double_free(struct objcache *c, const void *p,
                              const struct objslab *sl, uint32_t idx,
                              const char *how)
{
	objcache_track_report(c->sh, sl, idx);
	mm_panic("objcache: double free of %p to cache '%s' (object %u of "
	         "slab %p): %s",
	         p, c->name, idx, (const void *)sl, how);
}

void objcache_own_not_a_slab(struct objcache *c, const void *p)
{
	uint32_t idx;
	struct mspan *s = spanheap_span_of(c->sh, p, &idx, "free");
	spanheap_track_report(s, (uintptr_t)p);
	mm_panic("objcache: free of %p to cache '%s' (slabs of its own): the "
	         "object is of span %#lx, size class %u (%zu-byte objects): "
	         "kmalloc's or a merged cache's",
	         p, c->name, (unsigned long)s->base, (unsigned)s->sizeclass,
	         spanheap_object_bytes(s));
}

void objcache_own_other_cache(struct objcache *c, const void *p,
                              const struct mspan *s, uint8_t owner)
{
	char name[OBJCACHE_NAME_MAX + 1];
	objcache_owner_name(c->sh, owner, name);
	objcache_track_report_at(c->sh, s, (uintptr_t)p);
	mm_panic("objcache: free of %p to cache '%s': the object is of cache "
	         "'%s''s slabs",
	         p, c->name, name);
}

void objcache_own_interior(struct objcache *c, const void *p,
                           const struct mspan *s)
{
	const struct objcache_own *o = c->own;
	objcache_track_report_at(c->sh, s, (uintptr_t)p);
	mm_panic("objcache: free of %p to cache '%s': an interior pointer of "
	         "its slab [%#lx, +%u pages) (objects of %zu bytes from +%u)",
	         p, c->name, (unsigned long)s->base, o->npages, c->objsize,
	         o->first);
}

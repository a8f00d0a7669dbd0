/*
 * mm/spanheap_leak.c: the leak scan (spanheap_leak.h), Linux's kmemleak
 * for the span heap, run on demand with the heap held still.
 *
 * Representation, all in the caller's work memory (nothing allocated,
 * so a scan runs with the world stopped): a header; room for max leak
 * records; one entry per small tracked span, per slab of a cache with
 * slabs of its own (its objects, after its header) and per other large
 * span from the all-spans snapshot, sorted by base, each with the number
 * of its first object in a global numbering; a mark bit per object; and
 * a stack of marked objects not yet scanned (one slot per object).
 *
 * The scan: every word of the roots, and of the blocks the heap's users
 * keep in its metadata heap (a pool's reserve), that points into the
 * arena is looked up (a binary search of the sorted entries; the span table
 * would give the span, but not its entry); a live object it points into is
 * marked and pushed. Then the stack is drained: each object's words
 * (the bytes asked, for a small one; a large one's pages) are read the
 * same way. A word that points into the guarded pool marks the live
 * object on that slot's page (numbered after the spans' objects), read
 * and judged as a small one. Last, the live small, slabs' and guarded
 * objects left unmarked are the leaks, less those younger than min_age_ns.
 *
 * Liveness is poison mode's side table (asked is SPANHEAP_REDZONE_FREE
 * for a free object), exact with no magazines, a guarded slot's state,
 * and a slab's free bit and stashed byte (objcache_leak.c, which keeps
 * their records too); so a heap without records is refused.
 */
#include "spanheap_leak.h"

#include "objcache_leak.h"
#include "spanheap_internal.h"

/* One span in the work memory. */
struct lspan {
	uintptr_t base, end; /* its objects: [base, end) */
	const struct mspan *s;
	/* A slab of a cache with slabs of its own (objcache_leak.h): its
	 * header; NULL for a span of the heap's own objects. */
	const void *slab;
	uint32_t first;       /* the global number of its object 0 */
	uint32_t nelems;      /* 1 for a large span */
	uint32_t stride;      /* an object's element: elemsize, or objsize */
	uint32_t size, owner; /* a slab's: its objects' size, cache */
};

struct lwork {
	size_t max, kept; /* leak records: room, filled */
};

/* A scan's state. */
struct scan {
	struct spanheap *sh;
	uintptr_t work_lo, work_hi; /* never read, never judged */
	/* Never read either: the pool's slots, whose obj words point to
	 * every live guarded object (the heap may be in the roots, as a
	 * kernel's is in its bss). */
	uintptr_t slots_lo, slots_hi;
	/* Never read either: the heap's own records of its arena's bounds,
	 * sh->arena_base and the page heap's struct (its base, its palloc's
	 * bounds and search addresses), whose words point at objects by
	 * chance: the first object of a span at the arena's base would be
	 * reachable from them (before the metadata heap, page 0 held the
	 * all-spans array, and no object was there). */
	uintptr_t self_lo, self_hi, heap_lo, heap_hi;
	struct lspan *sp;
	size_t nsp;
	uint64_t *marks;
	uint32_t *gray;
	size_t ngray, nobj; /* nobj: the spans' objects; a pool slot's is
	                     * nobj + its index */
	uint64_t gmarks[(SPANHEAP_GUARD_MAX + 63) / 64]; /* the pool's */
	struct spanheap_leak_result *r;
};

static struct spanheap_leak *records(const struct lwork *w)
{
	return (struct spanheap_leak *)(w + 1);
}

const struct spanheap_leak *spanheap_leak_list(const void *work)
{
	return records(work);
}

/* The last entry whose base (or, by_first, first object's number) is
 * at most key; 0 if none is (or no entry). */
static size_t last_at_most(const struct scan *sc, uintptr_t key, bool by_first)
{
	size_t lo = 0, hi = sc->nsp;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		uintptr_t at = by_first ? sc->sp[mid].first : sc->sp[mid].base;
		if (at <= key)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The entry whose span holds address a, or NULL. */
static const struct lspan *span_at(const struct scan *sc, uintptr_t a)
{
	size_t i = last_at_most(sc, a, false);
	if (sc->nsp == 0 || a < sc->sp[i].base || a >= sc->sp[i].end)
		return NULL;
	return &sc->sp[i];
}

/* The entry holding object number g. */
static const struct lspan *span_of_number(const struct scan *sc, uint32_t g)
{
	return &sc->sp[last_at_most(sc, g, true)];
}

/* A large object, read whole, not judged (a slab's objects are). */
static bool is_large(const struct lspan *e)
{
	return e->s->sizeclass == 0 && !e->slab;
}

/* The bytes asked for object idx of small entry or slab e, or FREE (a
 * slab's object free in it or stashed). */
static uint32_t asked_of(const struct lspan *e, uint32_t idx)
{
	if (e->slab)
		return objcache_leak_out(e->slab, idx) ? e->size
		                                       : SPANHEAP_REDZONE_FREE;
	const struct spanheap_redzone *rz = e->s->redzone;
	return rz[idx].asked;
}

/* Marks and pushes the live object word a points into, if any. */
static void mark(struct scan *sc, uintptr_t a)
{
	const struct lspan *e = span_at(sc, a);
	if (!e)
		return;
	uint32_t idx = 0;
	if (!is_large(e)) {
		idx = (uint32_t)((a - e->base) / e->stride);
		if (asked_of(e, idx) == SPANHEAP_REDZONE_FREE)
			return;
	}
	uint32_t g = e->first + idx;
	uint64_t bit = 1ull << (g % 64);
	if (sc->marks[g / 64] & bit)
		return;
	sc->marks[g / 64] |= bit;
	sc->gray[sc->ngray++] = g;
}

/* The live guarded object whose slot's page a points into is marked and
 * pushed (a word on a guard page, or past the object, marks nothing). An
 * object of 0 bytes asked is its start's: as a span's object of 0 bytes,
 * which has its element; until a review none of its words counted, and a
 * held malloc(0) the pool sampled was a leak (the fuzz harness's check). */
static void mark_guarded(struct scan *sc, uintptr_t a)
{
	const struct spanheap_guard *g = &sc->sh->guard;
	size_t pi = (a - g->base) >> MM_PAGE_SHIFT;
	unsigned i = (unsigned)(pi / 2);
	if (pi % 2 == 0 || i >= g->nslots)
		return;
	const struct spanheap_guard_slot *sl = &g->slot[i];
	size_t bytes = sl->asked ? sl->asked : 1;
	if (atomic_load_explicit(&sl->state, memory_order_acquire) !=
	            GUARD_LIVE ||
	    a < sl->obj || a >= sl->obj + bytes)
		return;
	uint64_t bit = 1ull << (i % 64);
	if (sc->gmarks[i / 64] & bit)
		return;
	sc->gmarks[i / 64] |= bit;
	sc->gray[sc->ngray++] = (uint32_t)(sc->nobj + i);
}

/* Reads the words of [lo, hi), less the work memory, the slots and the
 * heap's own bounds (struct scan). */
static void scan_range(struct scan *sc, uintptr_t lo, uintptr_t hi)
{
	const uintptr_t hole[4][2] = {{sc->work_lo, sc->work_hi},
	                              {sc->slots_lo, sc->slots_hi},
	                              {sc->self_lo, sc->self_hi},
	                              {sc->heap_lo, sc->heap_hi}};
	for (unsigned i = 0; i < 4; i++)
		if (lo < hole[i][1] && hi > hole[i][0]) {
			scan_range(sc, lo, hole[i][0]);
			scan_range(sc, hole[i][1], hi);
			return;
		}
	uintptr_t base = sc->sh->arena_base;
	size_t bytes = sc->sh->arena_bytes;
	for (uintptr_t a = (lo + 7) & ~(uintptr_t)7; a + 8 <= hi && a >= lo;
	     a += 8) {
		uintptr_t v = *(const uintptr_t *)a;
		sc->r->words++;
		if (v - base < bytes)
			mark(sc, v);
		else if (spanheap_guard_owns(&sc->sh->guard, (void *)v))
			mark_guarded(sc, v);
	}
}

/* A block of the users' metadata (spanheap_meta_blocks.c), read as a
 * root: a pool's reserve array points to the elements it holds, which
 * nothing else may (until the array moved out of the objects, it was an
 * object reached from the pool's struct). Conservative: a leaked pool's
 * array keeps its elements. */
static void scan_block(uintptr_t lo, uintptr_t hi, void *arg)
{
	scan_range(arg, lo, hi);
}

/* Reads every marked object's words until none is left unread. */
static void drain(struct scan *sc)
{
	while (sc->ngray) {
		uint32_t g = sc->gray[--sc->ngray];
		if (g >= sc->nobj) {
			const struct spanheap_guard_slot *sl =
			        &sc->sh->guard.slot[g - sc->nobj];
			scan_range(sc, sl->obj, sl->obj + sl->asked);
			continue;
		}
		const struct lspan *e = span_of_number(sc, g);
		uint32_t idx = g - e->first;
		if (is_large(e)) {
			scan_range(sc, e->base, e->end);
			continue;
		}
		uintptr_t obj = e->base + (uintptr_t)idx * e->stride;
		scan_range(sc, obj, obj + asked_of(e, idx));
	}
}

/* Sorts sp[0..n) by base (heapsort: no recursion, no memory). */
static void sift(struct lspan *sp, size_t i, size_t n)
{
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && sp[c + 1].base > sp[c].base)
			c++;
		if (sp[i].base >= sp[c].base)
			return;
		struct lspan t = sp[i];
		sp[i] = sp[c];
		sp[c] = t;
		i = c;
	}
}

static void sort_spans(struct lspan *sp, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift(sp, i, n);
	for (size_t end = n; end > 1; end--) {
		struct lspan t = sp[0];
		sp[0] = sp[end - 1];
		sp[end - 1] = t;
		sift(sp, 0, end - 1);
	}
}

/* Span s's entry into *e: a small tracked span's objects, a slab's (a
 * cache with slabs of its own: objects after its header, judged as
 * small ones), or a large object's pages; false for a span the scan
 * leaves alone. The slab's header is read with its span in use, its
 * pages mapped (objcache_leak.c, invariant 1). */
static bool entry_of(const struct mspan *s, struct lspan *e)
{
	uint8_t st = atomic_load_explicit(&s->state, memory_order_acquire);
	struct objcache_leak_slab sl;
	if (st == MSPAN_SMALL && s->redzone && (s->poison & SPAN_TRACKED))
		*e = (struct lspan){.base = s->base,
		                    .end = s->base +
		                           (uintptr_t)s->nelems * s->elemsize,
		                    .s = s,
		                    .nelems = s->nelems,
		                    .stride = (uint32_t)s->elemsize};
	else if (st != MSPAN_LARGE)
		return false;
	else if (objcache_leak_slab(s, &sl))
		*e = (struct lspan){.base = sl.first,
		                    .end = sl.first +
		                           (uintptr_t)sl.nobjs * sl.objsize,
		                    .s = s,
		                    .slab = sl.slab,
		                    .nelems = sl.nobjs,
		                    .stride = sl.objsize,
		                    .size = sl.size,
		                    .owner = sl.owner};
	else
		*e = (struct lspan){.base = s->base,
		                    .end = s->base +
		                           (uintptr_t)s->npages * MM_PAGE_SIZE,
		                    .s = s,
		                    .nelems = 1};
	return true;
}

/* The spans the scan judges or reads, into sp (room for room of them):
 * how many, or room + 1 if they do not fit. */
static size_t spans_collect(struct spanheap *sh, struct lspan *sp, size_t room)
{
	struct spanheap_snapshot snap;
	spanheap_snapshot(sh, &snap);
	size_t n = 0;
	for (size_t i = 0; i < snap.len && n <= room; i++) {
		struct lspan e;
		if (!entry_of(snap.arr->v[i], &e))
			continue;
		if (n == room) {
			n++;
			break;
		}
		sp[n++] = e;
	}
	spanheap_snapshot_put(sh, &snap);
	return n;
}

size_t spanheap_leak_work_bytes(struct spanheap *sh, size_t max)
{
	spanheap_assert_can_sleep("spanheap_leak_work_bytes");
	struct spanheap_snapshot snap;
	spanheap_snapshot(sh, &snap);
	size_t spans = snap.len, objects = 0;
	for (size_t i = 0; i < snap.len; i++) {
		const struct mspan *s = snap.arr->v[i];
		uint8_t st =
		        atomic_load_explicit(&s->state, memory_order_relaxed);
		/* A slab's objects at most: its header is not read here,
		 * where nothing holds the slab from going back. */
		bool slab =
		        atomic_load_explicit(&s->objslab, memory_order_relaxed);
		objects += st == MSPAN_SMALL ? __atomic_load_n(&s->nelems,
		                                               __ATOMIC_RELAXED)
		           : slab            ? OBJSLAB_MAX_OBJS
		                             : 1;
	}
	spanheap_snapshot_put(sh, &snap);
	/* A quarter more, and 64 spans of the most objects. */
	spans += spans / 4 + 64;
	objects += objects / 4 + 64 * SC_MAX_NELEMS;
	return sizeof(struct lwork) + max * sizeof(struct spanheap_leak) +
	       spans * sizeof(struct lspan) + (objects + 63) / 64 * 8 +
	       (objects + SPANHEAP_GUARD_MAX) * sizeof(uint32_t);
}

/* Lays the scan out in work: the spans collected and sorted, numbered,
 * then the marks (cleared) and the stack. False if they do not fit. */
static bool layout(struct scan *sc, struct lwork *w, size_t bytes)
{
	uintptr_t at = (uintptr_t)(records(w) + w->max);
	uintptr_t end = (uintptr_t)w + bytes;
	if (at > end)
		return false;
	sc->sp = (struct lspan *)at;
	size_t room = (end - at) / sizeof(struct lspan);
	sc->nsp = spans_collect(sc->sh, sc->sp, room);
	if (sc->nsp > room)
		return false;
	sort_spans(sc->sp, sc->nsp);
	size_t nobj = 0;
	for (size_t i = 0; i < sc->nsp; i++) {
		sc->sp[i].first = (uint32_t)nobj;
		nobj += sc->sp[i].nelems;
	}
	at += sc->nsp * sizeof(struct lspan);
	size_t words = (nobj + 63) / 64, ngray = nobj + sc->sh->guard.nslots;
	if (ngray > UINT32_MAX ||
	    (end - at) / 8 < words + (ngray * sizeof(uint32_t) + 7) / 8)
		return false;
	sc->marks = (uint64_t *)at;
	sc->gray = (uint32_t *)(at + words * 8);
	sc->nobj = nobj;
	mm_memset(sc->marks, 0, words * 8);
	return true;
}

/* Counts the live object l, not reached from the roots: young, or a
 * leak, kept in w while there is room. */
static void unreached(struct scan *sc, struct lwork *w,
                      const struct spanheap_leak *l, uint64_t now,
                      uint64_t min_age_ns)
{
	if (l->addr < sc->work_hi && l->addr + l->asked > sc->work_lo)
		return; /* the work memory: the caller's, in use */
	/* A record changing is an allocation under way: young; so is one
	 * later than now (another CPU's clock ahead; until a review its
	 * age wrapped to nearly 2^64 ns and it was reported). */
	if (l->alloc.ns == SPANHEAP_TRACK_CHANGING ||
	    (l->alloc.ns &&
	     (l->alloc.ns > now || now - l->alloc.ns < min_age_ns))) {
		sc->r->young++;
		return;
	}
	if (w->kept < w->max)
		records(w)[w->kept++] = *l;
	sc->r->leaks++;
}

/* Judges small entry or slab e's live objects: the unmarked ones old
 * enough are leaks. */
static void judge(struct scan *sc, struct lwork *w, const struct lspan *e,
                  uint64_t now, uint64_t min_age_ns)
{
	const struct spanheap_redzone *rz = e->s->redzone;
	for (uint32_t idx = 0; idx < e->nelems; idx++) {
		uint32_t asked = asked_of(e, idx);
		if (asked == SPANHEAP_REDZONE_FREE)
			continue;
		sc->r->objects++;
		uint32_t g = e->first + idx;
		if (sc->marks[g / 64] >> (g % 64) & 1) {
			sc->r->reachable++;
			continue;
		}
		struct spanheap_leak l = {
		        .addr = e->base + (uintptr_t)idx * e->stride,
		        .asked = asked,
		        .sizeclass = e->s->sizeclass,
		        .owner = e->slab ? e->owner : rz[idx].owner};
		struct spanheap_track freed;
		if (e->slab ? !objcache_leak_tracks(sc->sh, e->slab, idx,
		                                    &l.alloc)
		            : !spanheap_object_tracks(sc->sh, (void *)l.addr,
		                                      &l.alloc, &freed))
			l.alloc = (struct spanheap_track){0};
		unreached(sc, w, &l, now, min_age_ns);
	}
}

/* Judges the guarded pool's live objects as judge does a span's (their
 * records are their slots'). */
static void judge_guarded(struct scan *sc, struct lwork *w, uint64_t now,
                          uint64_t min_age_ns)
{
	const struct spanheap_guard *g = &sc->sh->guard;
	for (unsigned i = 0; i < g->nslots; i++) {
		const struct spanheap_guard_slot *sl = &g->slot[i];
		if (atomic_load_explicit(&sl->state, memory_order_acquire) !=
		    GUARD_LIVE)
			continue;
		sc->r->objects++;
		if (sc->gmarks[i / 64] >> (i % 64) & 1) {
			sc->r->reachable++;
			continue;
		}
		struct spanheap_leak l = {.addr = sl->obj,
		                          .asked = sl->asked,
		                          .sizeclass = sl->cls,
		                          .owner = sl->owner};
		struct spanheap_track freed;
		if (!spanheap_guard_tracks(sc->sh, sl->obj, &l.alloc, &freed))
			l.alloc = (struct spanheap_track){0};
		unreached(sc, w, &l, now, min_age_ns);
	}
}

long spanheap_leak_scan(struct spanheap *sh, void *work, size_t bytes,
                        const struct spanheap_leak_range *roots, size_t nroots,
                        uint64_t min_age_ns, size_t max,
                        struct spanheap_leak_result *result)
{
	*result = (struct spanheap_leak_result){0};
	if (!sh->track)
		return SPANHEAP_LEAK_NO_RECORDS;
	struct lwork *w = work;
	if ((uintptr_t)work % 8 || bytes < sizeof(*w))
		return SPANHEAP_LEAK_RETRY;
	*w = (struct lwork){.max = max};
	struct scan sc = {
	        .sh = sh,
	        .work_lo = (uintptr_t)work,
	        .work_hi = (uintptr_t)work + bytes,
	        .slots_lo = (uintptr_t)sh->guard.slot,
	        .slots_hi = (uintptr_t)(sh->guard.slot + SPANHEAP_GUARD_MAX),
	        .self_lo = (uintptr_t)&sh->arena_base,
	        .self_hi = (uintptr_t)(&sh->arena_base + 1),
	        .heap_lo = (uintptr_t)sh->heap,
	        .heap_hi = (uintptr_t)(sh->heap + 1),
	        .r = result};
	if (!layout(&sc, w, bytes))
		return SPANHEAP_LEAK_RETRY;
	for (size_t i = 0; i < nroots; i++)
		scan_range(&sc, roots[i].lo, roots[i].hi);
	spanheap_meta_blocks_each(sh, scan_block, &sc);
	drain(&sc);
	uint64_t now = mm_port_now_ns();
	for (size_t i = 0; i < sc.nsp; i++)
		if (!is_large(&sc.sp[i]))
			judge(&sc, w, &sc.sp[i], now, min_age_ns);
	judge_guarded(&sc, w, now, min_age_ns);
	return (long)result->leaks;
}

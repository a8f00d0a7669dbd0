/*
 * mm/spanheap_track.c: poison mode's record of who allocated and who freed
 * each small object (Linux's slub_debug=U), and the reports that print it.
 *
 * Purpose: poison mode names the victim of a bug (the object whose poison
 * or red zone changed, or that was freed twice) at the heap's next look
 * at it, not the code that did it. What a developer asks next is who
 * had the object: who allocated it (the likely writer past its end), who
 * freed it (the holder of the stale pointer, or the first of two frees).
 * The records answer that in the report itself, and through
 * spanheap_object_tracks for a debugger or a shell.
 *
 * Representation: a poison span's side table (spanheap_redzone.c) holds,
 * after the nelems sizes asked, the heap's depot, then two struct
 * spanheap_rec per object, the last allocation's and the last free's:
 * when (mm_port_now_ns), on which CPU, and the handle of the call's
 * stack (SPANHEAP_TRACK_PCS return addresses, mm_port_callers, innermost
 * first) in the heap's stack depot (spanheap_depot.c), which keeps each
 * distinct stack once. 2 x 16 bytes an object, on top of the 8 of its
 * size and owner: a 16-byte object's span takes 6 pages of table beside
 * its 2 (21 when the records held their stacks). A heap whose
 * port records no callers (mm_port_callers gives none when spanheap_init
 * asks: the hosted malloc, whose programs have no frame pointers to walk)
 * keeps only the sizes; its spans are made without SPAN_TRACKED.
 *
 * Algorithm: alloc_call records the allocation (spanheap_track_alloc),
 * spanheap_poison_freed the free, each after the checks that may report
 * the object (span_take's, the free's), so that a report shows the
 * previous owner's calls, not the call that found the damage (the
 * panic's own backtrace names that one). A realloc that keeps the object
 * in place is neither. The allocation was recorded in span_take until
 * this version, where the stack above depended on how the object was
 * found (a span cached, one refilled, one made): one caller's objects
 * then carried up to three stacks, which spanheap_alloc_traces counted
 * apart (spanheap_traces_test.c). Every small allocation of the mode
 * passes alloc_call, at a depth that depends only on the call.
 *
 * spanheap_alloc_traces groups the live objects (those whose size entry
 * is not SPANHEAP_REDZONE_FREE) by their allocation's stack, comparing a
 * hash first: a walk of every poison span, with a linear search of the
 * caller's table (tens of entries) per object.
 *
 * Locking: an object's records are its own, written by whoever holds it
 * (the CPU that hands it out, pinned, and the caller that frees it),
 * never at once; spanheap_object_tracks and spanheap_alloc_traces read
 * them without a lock (the latter walks the all-spans array in batches
 * copied from snapshots, invariant 2, and holds none while it reads).
 * A reader gives a true record or says it could not read one: a record
 * is marked SPANHEAP_TRACK_CHANGING (spanheap_track_begin) before its
 * object's size entry changes, its time written last, and read as a
 * sequence count (rec_load: a live object whose allocation is not yet
 * recorded was counted under its previous owner's stack); the table
 * and its span's size are read once, and what was read is kept only if
 * the span is still the same after (span_same); the stacks come from
 * the heap's depot, not from a table that may have been reused. The
 * stores are release and the loads acquire (on x86 plain moves, kept in
 * order by the compiler); the writers pay, in poison mode alone, one
 * more store an allocation and a free.
 *
 * Limits: small objects only (a large object's pages go back at its free,
 * and mm.debug_pagealloc unmaps them), but for the objects of a cache
 * with slabs of its own, whose slabs keep their records
 * (objcache_track.c: spanheap_object_tracks and spanheap_alloc_traces
 * read them there); the records live as long as the
 * span, so an object in a span made since its free has none; the stack is
 * what the port's walk finds (frame pointers, in this kernel).
 */
#include "objcache_track.h"
#include "spanheap_internal.h"

/* The return addresses a free's record leaves out: into
 * spanheap_track_record's caller and from it into the path. */
#define TRACK_SKIP 2

/* The records' part of s's table: after the sizes, 8-byte aligned. */
static struct spanheap_rec_head *head_of(const struct mspan *s)
{
	size_t off = spanheap_track_offset(s->nelems);
	return (struct spanheap_rec_head *)((char *)s->redzone + off);
}

/* s's records: after the part's head, two an object. */
static struct spanheap_rec *tracks_of(const struct mspan *s)
{
	return (struct spanheap_rec *)(head_of(s) + 1);
}

size_t spanheap_track_offset(uint32_t nelems)
{
	return ((size_t)nelems * sizeof(struct spanheap_redzone) + 7) & ~7ul;
}

/* Record r into *out, read as a sequence count: ns before and after the
 * rest. A record being written (ns SPANHEAP_TRACK_CHANGING, set before
 * the object's size entry changes: spanheap_track_begin) or rewritten
 * meanwhile gives ns SPANHEAP_TRACK_CHANGING, its other fields unread. */
static void rec_load(const struct spanheap_rec *r, struct spanheap_rec *out)
{
	uint64_t ns = __atomic_load_n(&r->ns, __ATOMIC_ACQUIRE);
	out->cpu = __atomic_load_n(&r->cpu, __ATOMIC_ACQUIRE);
	out->stack = __atomic_load_n(&r->stack, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&r->ns, __ATOMIC_ACQUIRE) != ns)
		ns = SPANHEAP_TRACK_CHANGING;
	out->ns = ns;
}

/* Object idx's two records of table rz (of a span of nelems objects)
 * into out: the allocation's read again after the free's, so that the
 * pair is of one moment (else the allocation's is given as changing). */
static void recs_load(const void *rz, uint32_t nelems, uint32_t idx,
                      struct spanheap_rec out[2])
{
	const struct spanheap_rec *r =
	        (const struct spanheap_rec
	                 *)((const char *)rz + spanheap_track_offset(nelems) +
	                    sizeof(struct spanheap_rec_head)) +
	        2 * (size_t)idx;
	rec_load(&r[0], &out[0]);
	rec_load(&r[1], &out[1]);
	if (__atomic_load_n(&r[0].ns, __ATOMIC_ACQUIRE) != out[0].ns)
		out[0].ns = SPANHEAP_TRACK_CHANGING;
}

/* Record r, loaded, as the public struct, its stack from depot d (once
 * the span was found the same after the load: d may come from its
 * table); a changing one keeps nothing but its ns. */
static void rec_expand(const struct spanheap_depot *d,
                       const struct spanheap_rec *r, struct spanheap_track *t)
{
	*t = (struct spanheap_track){.ns = r->ns};
	if (r->ns == SPANHEAP_TRACK_CHANGING)
		return;
	t->cpu = r->cpu;
	t->npcs = spanheap_depot_get(d, r->stack, t->pc);
}

/* Whether s is still the small span with table rz of n objects that a
 * reader began with: a span freed meanwhile gave its table back (state
 * DEAD first, spanheap_poison_span_gone), and what was read of it may be
 * anything. A struct made anew with the same table, pages and count
 * holds the same objects, whose records the table then holds. */
static bool span_same(const struct mspan *s, const void *rz, uint32_t n,
                      uintptr_t base)
{
	return atomic_load_explicit(&s->state, memory_order_acquire) ==
	               MSPAN_SMALL &&
	       __atomic_load_n(&s->redzone, __ATOMIC_RELAXED) == rz &&
	       __atomic_load_n(&s->nelems, __ATOMIC_RELAXED) == n &&
	       __atomic_load_n(&s->base, __ATOMIC_RELAXED) == base;
}

void spanheap_track_begin(const struct mspan *s, uint32_t idx, bool freed)
{
	struct spanheap_rec *r = &tracks_of(s)[2 * (size_t)idx + freed];
	/* Before the stores that follow it, all release. */
	__atomic_store_n(&r->ns, SPANHEAP_TRACK_CHANGING, __ATOMIC_RELAXED);
}

bool spanheap_track_probe(void)
{
	uintptr_t pc[1];
	return mm_port_callers(pc, 1) > 0;
}

__attribute__((noinline)) void
spanheap_track_record(struct spanheap *sh, const struct mspan *s, uint32_t idx,
                      bool freed, uintptr_t after, bool no_grow)
{
	/* The heap's own frames, at most 4 for the paths that pass after
	 * (tail calls make it fewer), then the record's. */
	struct spanheap_track t = {0}; /* no pc read unset (LTO warns) */
	spanheap_track_fill(&t, true, TRACK_SKIP, after);
	struct spanheap_rec *r = &tracks_of(s)[2 * (size_t)idx + freed];
	/* Marked changing by spanheap_track_begin, before the size entry
	 * changed: the time goes last, and ends the change. */
	uint32_t stack = spanheap_depot_save(&sh->depot, &sh->meta, t.pc,
	                                     t.npcs, no_grow);
	__atomic_store_n(&r->stack, stack, __ATOMIC_RELEASE);
	__atomic_store_n(&r->cpu, t.cpu, __ATOMIC_RELEASE);
	__atomic_store_n(&r->ns, t.ns, __ATOMIC_RELEASE);
}

__attribute__((noinline)) void
spanheap_track_alloc(struct spanheap *sh, const void *p, unsigned flags)
{
	struct mspan *s = mheap_span_lookup(sh->heap, (uintptr_t)p);
	if (!mheap_span_is_span(s) ||
	    atomic_load_explicit(&s->state, memory_order_acquire) !=
	            MSPAN_SMALL ||
	    !(s->poison & SPAN_TRACKED) || !s->redzone)
		return;
	/* The record starts at the return address of alloc_call's frame
	 * (whatever function it was inlined into), whichever frames of this
	 * call the compiler left out. */
	mheap_hook(sh->heap, MHEAP_HOOK_TRACK_TAKEN);
	spanheap_track_record(sh, s, obj_index(s, (uintptr_t)p - s->base),
	                      false, (uintptr_t)__builtin_return_address(0),
	                      flags & MM_NO_GROW);
}

/* mm_logs record t of the object at a: what happened (allocated, freed),
 * when (before now), where and its stack. */
void spanheap_track_log(uintptr_t a, const struct spanheap_track *t,
                        const char *what, uint64_t now)
{
	if (t->ns == SPANHEAP_TRACK_CHANGING) {
		mm_log("spanheap: object %#lx: its last %s record changed "
		       "while it was read (another CPU's call meanwhile)",
		       (unsigned long)a, what);
		return;
	}
	if (t->ns == 0) {
		mm_log("spanheap: object %#lx: never %s since its span was "
		       "made",
		       (unsigned long)a, what);
		return;
	}
	char stack[SPANHEAP_TRACK_PCS * 100], name[96];
	size_t len = spanheap_text_put(stack, sizeof(stack), 0, "", UINT64_MAX);
	for (unsigned i = 0; i < t->npcs && i < SPANHEAP_TRACK_PCS; i++) {
		mm_port_pc_name(t->pc[i], name, sizeof(name));
		if (i)
			len = spanheap_text_put(stack, sizeof(stack), len,
			                        " <- ", UINT64_MAX);
		len = spanheap_text_put(stack, sizeof(stack), len, name,
		                        UINT64_MAX);
	}
	uint64_t ago = now > t->ns ? now - t->ns : 0;
	mm_log("spanheap: object %#lx: last %s on CPU %u, %lu us before: %s",
	       (unsigned long)a, what, t->cpu, (unsigned long)(ago / 1000),
	       t->npcs ? stack : "(no stack)");
}

void spanheap_track_report(const struct mspan *s, uintptr_t a)
{
	const void *rz = __atomic_load_n(&s->redzone, __ATOMIC_RELAXED);
	uint32_t n = __atomic_load_n(&s->nelems, __ATOMIC_RELAXED);
	uintptr_t base = __atomic_load_n(&s->base, __ATOMIC_RELAXED);
	if (!(__atomic_load_n(&s->poison, __ATOMIC_RELAXED) & SPAN_TRACKED) ||
	    !rz || a < base ||
	    atomic_load_explicit(&s->state, memory_order_acquire) !=
	            MSPAN_SMALL)
		return;
	uint32_t idx = obj_index(s, a - base);
	if (idx >= n || idx >= SC_MAX_NELEMS)
		return;
	uintptr_t start = base + (uintptr_t)idx * s->elemsize;
	/* The heap's depot, from the table: dereferenced only once the
	 * span is found the same after the read. */
	const struct spanheap_depot *d = __atomic_load_n(
	        &((const struct spanheap_rec_head *)((const char *)rz +
	                                             spanheap_track_offset(n)))
	                 ->depot,
	        __ATOMIC_RELAXED);
	struct spanheap_rec r[2];
	recs_load(rz, n, idx, r);
	if (!span_same(s, rz, n, base))
		r[0].ns = r[1].ns = SPANHEAP_TRACK_CHANGING;
	struct spanheap_track t[2];
	rec_expand(d, &r[0], &t[0]);
	rec_expand(d, &r[1], &t[1]);
	uint64_t now = mm_port_now_ns();
	spanheap_track_log(start, &t[0], "allocated", now);
	spanheap_track_log(start, &t[1], "freed", now);
}

bool spanheap_object_tracks(struct spanheap *sh, const void *p,
                            struct spanheap_track *alloc,
                            struct spanheap_track *freed)
{
	uintptr_t a = (uintptr_t)p;
	if (sh->track && spanheap_guard_owns(&sh->guard, p))
		return spanheap_guard_tracks(sh, a, alloc, freed);
	if (!sh->track || a - sh->arena_base >= sh->arena_bytes)
		return false;
	struct mspan *s = mheap_span_lookup(sh->heap, a);
	if (mheap_span_is_span(s) &&
	    atomic_load_explicit(&s->objslab, memory_order_acquire))
		return objcache_track_tracks(sh, s, a, alloc, freed);
	if (!mheap_span_is_span(s) ||
	    atomic_load_explicit(&s->state, memory_order_acquire) !=
	            MSPAN_SMALL ||
	    !(__atomic_load_n(&s->poison, __ATOMIC_RELAXED) & SPAN_TRACKED))
		return false;
	/* The table and its size once: every read below is of this one. */
	const void *rz = __atomic_load_n(&s->redzone, __ATOMIC_RELAXED);
	uint32_t n = __atomic_load_n(&s->nelems, __ATOMIC_RELAXED);
	uintptr_t base = __atomic_load_n(&s->base, __ATOMIC_RELAXED);
	uint32_t idx = obj_index(s, a - base);
	if (!rz || a < base || idx >= n || idx >= SC_MAX_NELEMS)
		return false;
	struct spanheap_rec r[2];
	recs_load(rz, n, idx, r);
	if (!span_same(s, rz, n, base)) /* freed meanwhile: nothing is true */
		r[0].ns = r[1].ns = SPANHEAP_TRACK_CHANGING;
	rec_expand(&sh->depot, &r[0], alloc);
	rec_expand(&sh->depot, &r[1], freed);
	return true;
}

/* ---- Grouping by stack -------------------------------------------------- */

static uint32_t stack_hash(const struct spanheap_track *r)
{
	uint64_t h = r->npcs;
	for (uint32_t i = 0; i < r->npcs && i < SPANHEAP_TRACK_PCS; i++)
		h = (h ^ r->pc[i]) * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(h >> 32);
}

static bool same_stack(const struct spanheap_trace *t,
                       const struct spanheap_track *r)
{
	if (t->npcs != r->npcs)
		return false;
	for (uint32_t i = 0; i < r->npcs && i < SPANHEAP_TRACK_PCS; i++)
		if (t->pc[i] != r->pc[i])
			return false;
	return true;
}

void spanheap_trace_add(struct spanheap_trace_table *tt,
                        const struct spanheap_track *r, uint32_t asked)
{
	uint32_t h = stack_hash(r);
	size_t i = 0;
	for (; i < tt->n; i++)
		if (tt->t[i].hash == h && same_stack(&tt->t[i], r))
			break;
	if (i == tt->n) {
		if (tt->n == tt->max) {
			tt->rest++;
			return;
		}
		struct spanheap_trace *e = &tt->t[tt->n++];
		*e = (struct spanheap_trace){
		        .oldest_ns = UINT64_MAX, .hash = h, .npcs = r->npcs};
		if (e->npcs > SPANHEAP_TRACK_PCS)
			e->npcs = SPANHEAP_TRACK_PCS;
		for (uint32_t k = 0; k < e->npcs; k++)
			e->pc[k] = r->pc[k];
	}
	tt->t[i].objects++;
	tt->t[i].bytes += asked;
	if (r->ns < tt->t[i].oldest_ns)
		tt->t[i].oldest_ns = r->ns;
}

/* Counts the live objects of span s (small, its records kept, its table
 * rz of n objects). An object whose size entry or allocation record
 * changes while read is being allocated or freed, and is left out; so
 * are the rest of a span freed meanwhile (each object is counted only
 * if its span was still the same after its read). */
static void trace_span(const struct spanheap *sh,
                       struct spanheap_trace_table *tt, const struct mspan *s,
                       const void *rz, uint32_t n)
{
	const struct spanheap_redzone *e = rz;
	uintptr_t base = __atomic_load_n(&s->base, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < n && i < SC_MAX_NELEMS; i++) {
		uint32_t asked = __atomic_load_n(&e[i].asked, __ATOMIC_ACQUIRE);
		if (asked == SPANHEAP_REDZONE_FREE ||
		    (tt->owner != SPANHEAP_OWNER_ANY &&
		     __atomic_load_n(&e[i].owner, __ATOMIC_RELAXED) !=
		             tt->owner))
			continue;
		struct spanheap_rec rec[2];
		recs_load(rz, n, i, rec);
		bool same_asked =
		        __atomic_load_n(&e[i].asked, __ATOMIC_ACQUIRE) == asked;
		if (!span_same(s, rz, n, base))
			return;
		if (rec[0].ns == SPANHEAP_TRACK_CHANGING || !same_asked)
			continue;
		struct spanheap_track r;
		rec_expand(&sh->depot, &rec[0], &r);
		spanheap_trace_add(tt, &r, asked);
	}
}

/* Counts the guarded pool's live objects (spanheap_guard.c) of class cls
 * (0: all), which no span holds: their records are their slots'. A slot
 * that changes while read is left out (spanheap_guard_live). */
static void trace_guard(struct spanheap *sh, struct spanheap_trace_table *tt,
                        unsigned cls)
{
	for (unsigned i = 0; i < sh->guard.nslots; i++) {
		struct spanheap_guard_obj o;
		struct spanheap_track r;
		if (!spanheap_guard_live(sh, i, &o, &r) ||
		    (cls && o.cls != cls) ||
		    (tt->owner != SPANHEAP_OWNER_ANY && o.owner != tt->owner))
			continue;
		spanheap_trace_add(tt, &r, o.asked);
	}
}

/* Sorts t[0..n) by objects, most first (insertion: n is a table's). */
static void traces_sort(struct spanheap_trace *t, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct spanheap_trace x = t[i];
		size_t j = i;
		for (; j > 0 && t[j - 1].objects < x.objects; j--)
			t[j] = t[j - 1];
		t[j] = x;
	}
}

/* Copies up to max span structs of the all-spans array from index at
 * into out: how many (0 past its end). The array is only appended to,
 * and a larger one keeps its order, so the next call goes on from at +
 * the count; the structs themselves are never freed. */
static size_t spans_copy(struct spanheap *sh, size_t at, struct mspan **out,
                         size_t max)
{
	struct spanheap_snapshot snap;
	spanheap_snapshot(sh, &snap);
	size_t k = 0;
	for (; at + k < snap.len && k < max; k++)
		out[k] = snap.arr->v[at + k];
	spanheap_snapshot_put(sh, &snap);
	return k;
}

size_t spanheap_alloc_traces(struct spanheap *sh, unsigned cls,
                             struct spanheap_trace *t, size_t max, size_t *rest)
{
	return spanheap_alloc_traces_owned(sh, cls, SPANHEAP_OWNER_ANY, t, max,
	                                   rest);
}

size_t spanheap_alloc_traces_owned(struct spanheap *sh, unsigned cls,
                                   uint32_t owner, struct spanheap_trace *t,
                                   size_t max, size_t *rest)
{
	spanheap_assert_can_sleep("spanheap_alloc_traces");
	*rest = 0;
	if (!sh->track || cls >= SC_NCLASSES)
		return 0;
	struct spanheap_trace_table tt = {.t = t, .max = max, .owner = owner};
	/* The spans are read with no snapshot held, in batches copied from
	 * it: a caller's fault hook that ends a read of a table freed
	 * meanwhile (spanheap_track.h) then leaves no reference behind. */
	struct mspan *batch[32];
	size_t k;
	for (size_t at = 0; (k = spans_copy(sh, at, batch, 32)) != 0; at += k)
		for (size_t i = 0; i < k; i++) {
			struct mspan *s = batch[i];
			if (!cls && atomic_load_explicit(&s->objslab,
			                                 memory_order_acquire))
				objcache_track_traces(sh, &tt, s);
			if (atomic_load_explicit(&s->state,
			                         memory_order_acquire) !=
			            MSPAN_SMALL ||
			    !(__atomic_load_n(&s->poison, __ATOMIC_RELAXED) &
			      SPAN_TRACKED) ||
			    (cls && __atomic_load_n(&s->sizeclass,
			                            __ATOMIC_RELAXED) != cls))
				continue;
			/* The table and its size once (the span may be
			 * freed and made anew while it is read). */
			const void *rz =
			        __atomic_load_n(&s->redzone, __ATOMIC_RELAXED);
			if (rz)
				trace_span(sh, &tt, s, rz,
				           __atomic_load_n(&s->nelems,
				                           __ATOMIC_RELAXED));
		}
	trace_guard(sh, &tt, cls);
	*rest = tt.rest;
	traces_sort(t, tt.n);
	return tt.n;
}

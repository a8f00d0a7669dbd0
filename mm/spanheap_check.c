/*
 * mm/spanheap_check.c: the span heap's checker (spanheap_check).
 *
 * Purpose: every invariant the span heap keeps, as an executable check
 * that tests run after their operations and a debug build can run live:
 * each span's bitmaps, counts, markers and table entries; each class's
 * lists against the spans' sweepgens and owners (an empty listed span
 * must be queued, else it is held for no one); each class's fold queue
 * against the spans' queued flags; the span-struct free list (dead
 * structs only, with nothing marked, listed or queued, all of them) and
 * the large spans' counts against the all-spans array; every CPU's magazines
 * (other CPUs' through mm_port_each_other_cpu, where the port can reach them).
 * What palloc_check_locked is to the page allocator.
 *
 * Files: this one holds the algorithm and the checks of spans, lists,
 * fold queues and span structs; the per-CPU checks (magazines, cached
 * spans) are in spanheap_check_cache.c, and what the two share (how a
 * fault is reported) in spanheap_check_internal.h.
 *
 * Algorithm: hold the cycle semaphore (invariant 5: no span is claimed
 * meanwhile); check every CPU's magazines; walk a snapshot of the
 * all-spans array (invariant 2); then each class's fold queue and lists
 * under its lock, the cached spans, the span-struct allocator, the
 * metadata blocks' runs (spanheap_meta_blocks.c), and last
 * mheap_check of the object heap and of the metadata heap. A fault found is
 * reported with mm_panic once the semaphore (and a class's lock, or another CPU
 * the port holds) is let go.
 *
 * Invariants: it checks spanheap.c's 6 to 8 and the counts behind the
 * statistics; it keeps none of its own.
 *
 * Locking: thread context, no mm lock held; it takes each class's lock
 * and the heap's lock (for the snapshot) in turn.
 *
 * Limits: meaningful only when no other CPU allocates or frees; O(spans
 * and objects) in time; another CPU's magazines are checked only where
 * the port can reach it (not in the hosted malloc).
 */
#include "spanheap_check_internal.h"

/* ---- The checker
 * ------------------------------------------------------------------ */

/* Poison mode's flags and side table of span s, fixed at its making from
 * the heap's mode: a wrong one reads a table that is not there, or skips
 * the checks. */
static void check_poison_flags(struct spanheap *sh, struct mspan *s,
                               unsigned cls)
{
	unsigned mode =
	        sh->cfg.poison ? 1u | (sh->track ? SPAN_TRACKED : 0) : 0;
	if (s->poison != mode || (s->redzone != NULL) != (mode != 0))
		check_fail(sh,
		           "spanheap: check: span %p [%#lx] of class %u: "
		           "poison flags %#x and side table %p, where the "
		           "heap's mode makes %#x and %s",
		           (void *)s, (unsigned long)s->base, cls,
		           (unsigned)s->poison, s->redzone, mode,
		           mode ? "a table" : "none");
}

static void check_small(struct spanheap *sh, struct mspan *s)
{
	unsigned cls = s->sizeclass;
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	if (cls == 0 || cls >= SC_NCLASSES || s->elemsize != ci->size ||
	    s->nelems != ci->nelems || s->npages != ci->npages ||
	    s->divmul != ci->divmul || s->dinv != ci->dinv ||
	    s->dshift != ci->dshift ||
	    s->mag_offset != cls * sizeof(struct mmag))
		check_fail(sh,
		           "spanheap: check: span %p [%#lx] of class %u does "
		           "not match its class",
		           (void *)s, (unsigned long)s->base, cls);
	check_poison_flags(sh, s, cls);
	unsigned cnt = 0;
	uint32_t fi = atomic_load_explicit(&s->freeindex, memory_order_relaxed);
	uint32_t mk = atomic_load_explicit(&s->marked, memory_order_relaxed);
	for (unsigned w = 0; w < SC_BITMAP_WORDS; w++) {
		uint64_t a = atomic_load_explicit(&s->alloc_bits[w],
		                                  memory_order_relaxed);
		uint64_t p = atomic_load_explicit(&s->pending[w],
		                                  memory_order_relaxed);
		uint64_t l = atomic_load_explicit(&s->local_free[w],
		                                  memory_order_relaxed);
		uint64_t m = spanheap_bits_below(s->nelems, w);
		uint64_t pre = spanheap_bits_below(fi, w);
		uint64_t alloc = (a | pre) & m;
		/* Invariant 7's second half (until a review unchecked). */
		if (alloc & ~spanheap_bits_below(mk, w))
			check_fail(sh,
			           "spanheap: check: span [%#lx] class %u: "
			           "object %u allocated at or past the span's "
			           "marked count %u (freeindex %u)",
			           (unsigned long)s->base, cls,
			           w * 64 +
			                   (unsigned)__builtin_ctzll(
			                           alloc &
			                           ~spanheap_bits_below(mk, w)),
			           mk, fi);
		if ((a & ~m) || (p & ~alloc) || (l & ~alloc) || (p & l))
			check_fail(sh,
			           "spanheap: check: span [%#lx] class %u word "
			           "%u: alloc %#lx pending %#lx local %#lx "
			           "freeindex %u",
			           (unsigned long)s->base, cls, w,
			           (unsigned long)a, (unsigned long)p,
			           (unsigned long)l, fi);
		cnt += (unsigned)pallocbits_popcount(a & m & ~pre) +
		       (unsigned)pallocbits_popcount(pre & m);
	}
	/* A cached span's count is brought up to date when it is folded. */
	bool cached = atomic_load(&s->sweepgen) % 2 == 1;
	if (!cached && cnt != s->alloc_count)
		check_fail(sh,
		           "spanheap: check: span [%#lx] class %u counts %u "
		           "allocated, its bitmaps %u",
		           (unsigned long)s->base, cls, s->alloc_count, cnt);
}

/*
 * Every free object below marked of span s (on a central list: the
 * caller holds its class's lock, so no CPU hands its objects out and the
 * sweeper cannot claim and free it meanwhile) carries the free marker:
 * the free's test of a second free relies on it alone. Free: clear in
 * alloc_bits (a listed span's freeindex is 0), or freed and not folded
 * yet (pending or local bit). Objects in magazines count as allocated
 * here; spanheap_check_mags looks at them. In poison mode each also holds the
 * poison (spanheap_poison.c), and its side-table entry is a free one's
 * (SPANHEAP_REDZONE_FREE, no owner: the free clears both). Returns the first
 * object without them, and sets *damage to the offset of its first changed
 * byte, or returns 0 (the caller panics after it lets go of the lock).
 */
/* check_markers' damage for a free object whose poison side-table entry
 * is an allocated one's (bytes asked, or a cache as its owner). */
#define DAMAGE_ENTRY (-2)

/* True if object i's entry in poison span s's side table is a free
 * one's. */
static bool entry_free(const struct mspan *s, uint32_t i)
{
	const struct spanheap_redzone *e =
	        (const struct spanheap_redzone *)s->redzone + i;
	return __atomic_load_n(&e->asked, __ATOMIC_RELAXED) ==
	               SPANHEAP_REDZONE_FREE &&
	       __atomic_load_n(&e->owner, __ATOMIC_RELAXED) == 0;
}

static uintptr_t check_markers(struct spanheap *sh, struct mspan *s,
                               long *damage)
{
	uint32_t marked =
	        atomic_load_explicit(&s->marked, memory_order_acquire);
	for (uint32_t i = 0; i < marked && i < s->nelems; i++) {
		uint64_t b = (uint64_t)1 << (i % 64);
		unsigned w = i / 64;
		if ((atomic_load_explicit(&s->alloc_bits[w],
		                          memory_order_relaxed) &
		     ~(atomic_load_explicit(&s->pending[w],
		                            memory_order_relaxed) |
		       atomic_load_explicit(&s->local_free[w],
		                            memory_order_relaxed))) &
		    b)
			continue; /* allocated */
		uintptr_t a = s->base + (uintptr_t)i * s->elemsize;
		if (s->redzone && !entry_free(s, i)) {
			*damage = DAMAGE_ENTRY;
			return a;
		}
		long off = spanheap_free_damage(sh, s, a);
		if (off >= 0) {
			*damage = off;
			return a;
		}
	}
	return 0;
}

static void check_entries(struct spanheap *sh, struct mspan *s)
{
	for (size_t i = 0; i < s->npages; i++)
		if (mheap_span_lookup(sh->heap, s->base + i * MM_PAGE_SIZE) !=
		    s)
			check_fail(sh,
			           "spanheap: check: span table entry of page "
			           "%zu of span [%#lx] is wrong",
			           i, (unsigned long)s->base);
}

/* What check_spans counts in the all-spans array. */
struct span_counts {
	size_t small[SC_NCLASSES], queued[SC_NCLASSES];
	size_t dead, large, large_pages;
};

/* Every span in the snapshot: table entries, and a small span's bitmaps,
 * counts and class; counts them into *n. */
static void check_spans(struct spanheap *sh,
                        const struct spanheap_snapshot *snap,
                        struct span_counts *n)
{
	for (size_t i = 0; i < snap->len; i++) {
		struct mspan *s = snap->arr->v[i];
		uint8_t st = atomic_load(&s->state);
		if (st == MSPAN_DEAD) {
			n->dead++;
			continue;
		}
		check_entries(sh, s);
		if (st == MSPAN_LARGE) {
			n->large++;
			n->large_pages += s->npages;
			continue;
		}
		check_small(sh, s);
		n->small[s->sizeclass]++;
		n->queued[s->sizeclass] += atomic_load(&s->queued) != 0;
	}
}

/* The spans of the list from first, linked through qnext (a fold queue or
 * its backlog), at most max: each a small span of class cls with its
 * queued flag set. Returns how many, or max + 1 for a longer list (a
 * cycle). Under the class's lock (irq). */
static size_t check_queue_list(struct spanheap *sh, struct mcentral *c,
                               unsigned long irq, unsigned cls,
                               struct mspan *first, size_t max)
{
	size_t n = 0;
	for (struct mspan *s = first; s && n <= max;
	     s = atomic_load(&s->qnext), n++)
		if (atomic_load(&s->state) != MSPAN_SMALL ||
		    s->sizeclass != cls || !atomic_load(&s->queued))
			check_fail_unlock(
			        sh, &c->lock, irq,
			        "spanheap: check: span [%#lx] on class "
			        "%u's fold queue: state %u, class %u, "
			        "queued %u",
			        (unsigned long)s->base, cls,
			        (unsigned)atomic_load(&s->state), s->sizeclass,
			        (unsigned)atomic_load(&s->queued));
	return n;
}

/* Class cls's fold queue and backlog against the spans whose queued flag
 * is set (nqueued): the same number. A flag set on a span that is on
 * neither would keep it from the page heap for good (spanheap_span_place
 * frees no queued span). */
static void check_queue(struct spanheap *sh, unsigned cls, size_t nqueued,
                        size_t max)
{
	struct mcentral *c = spanheap_central_of(sh, cls, __func__);
	unsigned long irq = mm_lock_acquire(&c->lock);
	size_t n = check_queue_list(sh, c, irq, cls,
	                            atomic_load(&c->fold_queue), max) +
	           check_queue_list(sh, c, irq, cls,
	                            atomic_load(&c->fold_backlog), max);
	mm_lock_release(&c->lock, irq);
	if (n != nqueued)
		check_fail(sh,
		           "spanheap: check: class %u has %zu spans marked "
		           "queued, %zu on its fold queue and backlog",
		           cls, nqueued, n);
}

/* Span s on list k of class cls (0, 1: partial; 2, 3: full), under the
 * class's lock (irq): its class, state, list, sweepgen and fullness. */
static void check_listed(struct spanheap *sh, struct mcentral *c,
                         unsigned long irq, unsigned cls, unsigned k,
                         uint32_t sg, struct mspan *s)
{
	bool swept = (k % 2) == (sg / 2) % 2, partial = k < 2;
	uint32_t v = atomic_load(&s->sweepgen);
	if (s->sizeclass != cls || atomic_load(&s->state) != MSPAN_SMALL ||
	    s->list != (partial ? MSPAN_LIST_PARTIAL : MSPAN_LIST_FULL) ||
	    v != (swept ? sg : sg - 2) ||
	    (partial ? s->alloc_count >= s->nelems
	             : s->alloc_count != s->nelems) ||
	    atomic_load(&s->freeindex) != 0 || atomic_load(&s->owner) != 0)
		check_fail_unlock(sh, &c->lock, irq,
		                  "spanheap: check: span [%#lx] on class %u's "
		                  "%s %s list: class %u, sweepgen %u (sg %u), "
		                  "%u of %u allocated, owner %u",
		                  (unsigned long)s->base, cls,
		                  swept ? "swept" : "unswept",
		                  partial ? "partial" : "full", s->sizeclass, v,
		                  sg, s->alloc_count, s->nelems,
		                  (unsigned)atomic_load(&s->owner));
	/* An empty span goes back to the page heap when it is placed,
	 * unless it is queued, and then whoever takes it off frees it: an
	 * empty one listed and not queued is held for no one. */
	if (s->alloc_count == 0 && !atomic_load(&s->queued))
		check_fail_unlock(sh, &c->lock, irq,
		                  "spanheap: check: span [%#lx] on class %u's "
		                  "%s partial list is empty and not queued (it "
		                  "should have gone back to the page heap)",
		                  (unsigned long)s->base, cls,
		                  swept ? "swept" : "unswept");
	/* A free's pending bit on a swept span is folded by whoever takes
	 * the span off its fold queue, or by the next cycle, which frees
	 * counted since the flip will start: with neither, it waits for a
	 * cycle that need not come (spanheap_span_place's requeue; the sweep
	 * model's S7). A free that queued the span (or found it queued)
	 * and sets its bit after a taker's fold and placement leaves it so,
	 * counted; a spill counts its batch after its last bit, so a check
	 * beside a spill could fail here: the check is for a quiet heap. */
	if (swept && spanheap_span_has_pending(s) && !atomic_load(&s->queued) &&
	    spanheap_pending_since_flip(sh) == 0)
		check_fail_unlock(
		        sh, &c->lock, irq,
		        "spanheap: check: span [%#lx] on class %u's "
		        "swept %s list has pending frees, is not "
		        "queued and nothing is pending since the flip "
		        "(no fold is coming for them)",
		        (unsigned long)s->base, cls,
		        partial ? "partial" : "full");
}

/* Class cls's four lists against sweepgen sg: each span on them, each
 * list's count, and the free markers of the first span's free objects
 * that has any (a write after a free erases one). Returns the spans
 * listed. */
static size_t check_central(struct spanheap *sh, unsigned cls, uint32_t sg)
{
	struct mcentral *c = spanheap_central_of(sh, cls, __func__);
	uintptr_t unmarked = 0;
	long damage = -1;
	struct mspan *unmarked_span = NULL;
	size_t listed = 0;
	unsigned long irq = mm_lock_acquire(&c->lock);
	for (unsigned k = 0; k < 4; k++) {
		struct mspan_list_head *l =
		        k < 2 ? &c->partial[k] : &c->full[k - 2];
		size_t n = 0;
		for (struct mspan *s = l->first; s; s = s->next, n++) {
			check_listed(sh, c, irq, cls, k, sg, s);
			if (!unmarked) {
				unmarked = check_markers(sh, s, &damage);
				unmarked_span = s;
			}
		}
		if (n != l->n)
			check_fail_unlock(sh, &c->lock, irq,
			                  "spanheap: check: class %u list %u "
			                  "holds %zu spans, counts %zu",
			                  cls, k, n, l->n);
		listed += n;
	}
	mm_lock_release(&c->lock, irq);
	if (unmarked && damage == DAMAGE_ENTRY)
		check_fail(
		        sh,
		        "spanheap: check: free object %#lx of span [%#lx] "
		        "class %u has an allocated object's side-table entry "
		        "(bytes asked, or a named cache as its owner)",
		        (unsigned long)unmarked,
		        (unsigned long)unmarked_span->base, cls);
	else if (unmarked && damage == SPANHEAP_DAMAGE_MARKER)
		check_fail(sh,
		           "spanheap: check: free object %#lx of span [%#lx] "
		           "class %u has lost its free marker: written after "
		           "its free?",
		           (unsigned long)unmarked,
		           (unsigned long)unmarked_span->base, cls);
	else if (unmarked)
		check_fail(sh,
		           "spanheap: check: free object %#lx of span [%#lx] "
		           "class %u was written after its free: byte %lu is "
		           "%#x, not the poison %#x",
		           (unsigned long)unmarked,
		           (unsigned long)unmarked_span->base, cls,
		           (unsigned long)damage,
		           (unsigned)((const uint8_t *)unmarked)[damage],
		           SPANHEAP_POISON_BYTE);
	return listed;
}

/* True if s, on the span-struct free list, is not dead, or still says it
 * holds objects (marked), is listed or queued. A free whose fast path read
 * a freed span's table entry before it was cleared tests the struct's
 * marked count: left as it was, it would pass, and the object would go
 * into a magazine (spanheap_span_free clears it first). */
static bool free_struct_bad(struct mspan *s)
{
	return atomic_load(&s->state) != MSPAN_DEAD ||
	       atomic_load(&s->marked) != 0 ||
	       atomic_load(&s->list) != MSPAN_LIST_NONE ||
	       atomic_load(&s->queued) != 0 || spanheap_struct_inuse_marked(s);
}

/* The span-struct allocator's free list and counts: every struct on it
 * dead, with nothing marked, listed or queued (one in use there would be
 * handed out again) and its in-use bit clear, as many as the array's
 * dead ones, and every other struct's bit set (the count); and the large
 * spans' counts against the array's. */
static void check_structs(struct spanheap *sh, const struct span_counts *n)
{
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	size_t nfree = 0;
	struct mspan *live = NULL;
	for (struct mspan *s = sh->free_structs; s; s = s->next, nfree++)
		if (!live && free_struct_bad(s))
			live = s;
	size_t inuse = spanheap_structs_inuse_locked(sh);
	size_t taken = sh->nstructs - nfree;
	bool bad = nfree != sh->nstructs_free || sh->nstructs != sh->spans->len;
	uint64_t large = sh->n.large_allocs - sh->n.large_frees;
	size_t large_pages = sh->large_in_use_pages;
	mm_lock_release(&sh->heap->lock, irq);
	if (bad)
		check_fail(
		        sh,
		        "spanheap: check: %zu free span structs, counts %zu; "
		        "%zu made, array holds %zu",
		        nfree, sh->nstructs_free, sh->nstructs, sh->spans->len);
	if (live)
		check_fail(
		        sh,
		        "spanheap: check: span struct %p on the free list is "
		        "in use: state %u, span [%#lx], marked %u, list %u, "
		        "queued %u",
		        (void *)live, (unsigned)atomic_load(&live->state),
		        (unsigned long)live->base, atomic_load(&live->marked),
		        (unsigned)atomic_load(&live->list),
		        (unsigned)atomic_load(&live->queued));
	if (n->dead != nfree)
		check_fail(sh,
		           "spanheap: check: %zu dead span structs, %zu on the "
		           "free list",
		           n->dead, nfree);
	if (n->large != large || n->large_pages != large_pages)
		check_fail(sh,
		           "spanheap: check: %zu large spans of %zu pages, "
		           "counts %lu of %zu pages",
		           n->large, n->large_pages, (unsigned long)large,
		           large_pages);
	if (inuse != taken)
		check_fail(sh,
		           "spanheap: check: %zu span structs marked in use, "
		           "%zu off the free list",
		           inuse, taken);
}

void spanheap_check(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_check");
	/* No sweep cycle meanwhile: a flip, a claim or a span freed by the
	 * sweeper would look like a fault (the shell's stress checks right
	 * after its flush, which wakes the sweeper). */
	spanheap_cycle_acquire(sh);
	spanheap_check_mags(sh);
	struct spanheap_snapshot snap;
	spanheap_snapshot(sh, &snap);
	struct span_counts n = {0};
	size_t listed[SC_NCLASSES] = {0};
	check_spans(sh, &snap, &n);
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		check_queue(sh, cls, n.queued[cls], snap.len);
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		listed[cls] = check_central(sh, cls, snap.sweepgen);
	spanheap_check_cached(sh, listed);
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		size_t counted = atomic_load(
		        &spanheap_central_of(sh, cls, __func__)->nspans);
		if (n.small[cls] != listed[cls] || n.small[cls] != counted)
			check_fail(sh,
			           "spanheap: check: class %u has %zu spans, "
			           "%zu on lists or cached, counts %zu",
			           cls, n.small[cls], listed[cls], counted);
	}
	check_structs(sh, &n);
	spanheap_snapshot_put(sh, &snap);
	spanheap_cycle_release(sh);
	spanheap_guard_check(sh);
	spanheap_meta_blocks_check(sh);
	mheap_check(sh->heap);
	mheap_check(&sh->meta);
}

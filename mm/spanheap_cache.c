/*
 * mm/spanheap_cache.c: the per-CPU caches' slow paths: the refill and the
 * magazines' spills (their drains and the caches' flush are
 * spanheap_flush.c's).
 *
 * Purpose: what spanheap.c's fast paths call when the magazine or the
 * cached span runs out: a span from the central lists or a new one (Go's
 * mcache.refill), and a full magazine's older half given back to its
 * spans in a prefetched batch (local bits for this CPU's own span, else
 * pending bits). Modelled on the Go runtime's mcache and tcmalloc's
 * per-CPU caches.
 *
 * Representation: struct mcache (spanheap_types.h): a cached span per
 * class (spanheap_empty_span when none), a magazine per class in the
 * CPU's slab of slots (made here at the first free or refill, with
 * MHEAP_ATOMIC, and kept), the flushgen that says whether a cycle began
 * since the last flush, and counters only their CPU writes.
 *
 * Algorithm (refill): flush first if a cycle began since the last one;
 * then the cached span's later words, its own frees folded (kept if at
 * least 1/8 came free), else the span goes back to the central lists and
 * spanheap_central_cache_span gives one; else a new span from the page
 * heap, for a thread caller unpinned (the CPU may change meanwhile, and
 * what it finds there then is used first).
 *
 * Invariants: those of spanheap.c (6 and 8); a cache's spans are owned
 * by its CPU (owner cpu + 1) until given back.
 *
 * Locking: every function here runs pinned on the cache's CPU (no lock
 * guards a cache), except where it says it unpins; a class's lock is
 * taken only by the central-list calls it makes; spanheap_flush_all
 * reaches other CPUs' caches through mm_port_each_other_cpu.
 *
 * Limits: a magazine slab the metadata heap cannot give (MHEAP_ATOMIC,
 * spanheap_meta.c) leaves the CPU without magazines until a later free or
 * refill makes one; a refill under MM_NO_GROW makes none.
 */
#include "spanheap_internal.h"

/* Per-CPU counters: their CPU writes them pinned (no interrupt can
 * interleave), others read them; atomics, no RMW. The store is release:
 * a spill's pending bytes must not be seen before the pending bits it set
 * (the flip reads them acquire for its base, spanheap_pending_total in
 * spanheap_sweeper.c: a base
 * that took in a count whose bit a placement after the flip then missed
 * left that bit owed no fold, the sweep model's S7 and its mutant
 * COUNT_BEFORE_BIT). Relaxed, arm64 and riscv64 may show the count
 * first; x86 never does. */
static inline void count_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c,
	                      atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_release);
}

/* Wakes the sweeper if this CPU's pending bytes crossed a 256 KiB step
 * and the total passed the threshold. */
#define KICK_SHIFT 18

/* ---- Per-CPU caches
 * ---------------------------------------------------------- */

static void cache_install(struct spanheap *sh, struct mcache *mc, unsigned cls,
                          struct mspan *s)
{
	uint32_t sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	atomic_store_explicit(&s->sweepgen, sg + 3, memory_order_relaxed);
	atomic_store_explicit(&s->owner, (uint8_t)(mc - sh->caches + 1),
	                      memory_order_relaxed);
	spanheap_span_fill_cache(s);
	mc->alloc[cls] = s;
	mc->cached |= (uint64_t)1 << cls;
}

/*
 * Gives object idx of the small span s (class cls) back to the span
 * (pinned on cpu): the local bit if this CPU caches s (no atomic), else
 * the pending bit (one atomic OR) after queueing the span for a fold.
 * The object keeps its free marker until the span hands it out again. Returns
 * 1 for a pending bit (the caller adds the bytes to this CPU's pending
 * count), else 0.
 */
static inline __attribute__((always_inline)) unsigned
span_give_back(struct spanheap *sh, unsigned cpu, struct mspan *s, unsigned cls,
               uint32_t idx, uintptr_t a)
{
	unsigned w = idx / 64;
	uint64_t b = (uint64_t)1 << (idx % 64);
	if (atomic_load_explicit(&s->owner, memory_order_relaxed) == cpu + 1) {
		uint64_t lf = load_relaxed64(&s->local_free[w]);
		if ((lf | load_relaxed64(&s->pending[w])) & b)
			spanheap_bad_object("double free", (void *)a, s);
		atomic_store_explicit(&s->local_free[w], lf | b,
		                      memory_order_relaxed);
		return 0;
	}
	/* Queue the span before the bit is set: until then our object
	 * keeps it in use, so it cannot be freed and reused meanwhile. */
	if (!atomic_load_explicit(&s->queued, memory_order_relaxed) &&
	    !atomic_exchange_explicit(&s->queued, 1, memory_order_acq_rel)) {
		spanheap_fold_queue_push(&sh->central[cls], s);
		/* Here, once a span a cycle, not on every remote free: there
		 * the hook's test cost the kernel's (built with the hooks)
		 * cross-CPU pair 7 guest instructions. */
		mheap_hook(sh->heap, MHEAP_HOOK_REMOTE_QUEUED);
	}
	uint64_t old = atomic_fetch_or_explicit(&s->pending[w], b,
	                                        memory_order_release);
	if (old & b)
		spanheap_bad_object("double free", (void *)a, s);
	return 1;
}

/* Objects a spill looks up before it gives them back. */
#define SPILL_BATCH 16

/*
 * Gives the n objects obj[0..n) (class cls, CPU cpu, pinned; off the
 * magazine already) back to their spans. Returns true if the sweeper
 * should be kicked (after the unpin).
 *
 * In batches: first every object's span is looked up and its first line
 * and its pending bits are prefetched, then each object is given back.
 * One at a time, each give-back would wait for its span's cache misses
 * in turn (a free of 10^6 objects in random order touches a cold span at
 * every object); batched, the misses overlap.
 */
bool spanheap_mag_give_back(struct spanheap *sh, unsigned cpu, unsigned cls,
                            const uintptr_t *obj, uint32_t n)
{
	spanheap_class_checked(cls, __func__); /* span_give_back's index */
	struct mcache *mc = &sh->caches[cpu];
	uint64_t before = atomic_load_explicit(&mc->n.pending_bytes,
	                                       memory_order_relaxed);
	uint32_t remote = 0;
	struct mspan *span[SPILL_BATCH];
	/* Every object was checked when it was freed: a small span's, so
	 * its table entry is mapped and holds the span. */
	void *_Atomic const *map = sh->spanmap;
	uintptr_t arena = sh->arena_base;
	while (n) {
		uint32_t k = n < SPILL_BATCH ? n : SPILL_BATCH;
		for (uint32_t i = 0; i < k; i++) {
			struct mspan *s = atomic_load_explicit(
			        &map[(obj[i] - arena) >> MM_PAGE_SHIFT],
			        memory_order_relaxed);
			__builtin_prefetch(s, 0);
			__builtin_prefetch((const void *)&s->pending[0], 1);
			span[i] = s;
		}
		for (uint32_t i = 0; i < k; i++) {
			struct mspan *s = span[i];
			remote += span_give_back(sh, cpu, s, cls,
			                         obj_index(s, obj[i] - s->base),
			                         obj[i]);
		}
		obj += k;
		n -= k;
	}
	/* Once per spill: the class's size, times the pending bits set. */
	uint64_t added = (uint64_t)remote * sizeclass_info[cls].size;
	count_add(&mc->n.pending_bytes, added);
	return (before >> KICK_SHIFT) != ((before + added) >> KICK_SHIFT);
}

/*
 * Makes CPU cpu's slab of magazine slots (pinned: an atomic page
 * allocation, which never sleeps) and gives each class its slots, at the
 * CPU's first free or first refill (mag_fill). False if there is no memory
 * for it now; a free then goes straight to its span, a refill fills
 * nothing, and the next one tries again. The slab comes zeroed
 * (MHEAP_ZERO writes only pages that held data), so the 0 below each
 * class's slots is there without a write: the pages of the classes the
 * CPU never uses stay untouched. Until this version each 0 was written,
 * and every page of the 32 KiB slab was resident at the CPU's first call.
 */
__attribute__((noinline)) bool spanheap_mag_slab_make(struct spanheap *sh,
                                                      unsigned cpu)
{
	if (sh->cfg.poison || spanheap_fail_armed(sh))
		return false; /* every object goes by its span */
	uintptr_t *slab = mheap_alloc_pages(&sh->meta, sh->mag_slab_pages,
	                                    MHEAP_ATOMIC | MHEAP_ZERO);
	if (!slab)
		return false;
	atomic_fetch_add_explicit(&sh->mag_slabs, 1, memory_order_relaxed);
	struct mcache *mc = &sh->caches[cpu];
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		uintptr_t *base = slab + sh->mag_off[cls]; /* mag_base */
		mag_set_limit(&mc->mag[cls], base + sh->mag_max[cls]);
		mc->mag_spills[cls] = 0;
		mag_set_top(&mc->mag[cls], base);
	}
	/* Last, atomic: the statistics read it from other CPUs. */
	__atomic_store_n(&mc->slab, slab, __ATOMIC_RELEASE);
	return true;
}

/*
 * The slow paths' claim of object a's free: its free marker written by one
 * atomic exchange, before the work they do (a slab made, a spill, a span's
 * lock), so that of two frees of one object that both passed the fast
 * path's test of the marker (on two CPUs at once) one is told here. Until
 * a review the marker was written only by the push after that work: two
 * CPUs' first frees of one object both made their slabs and both pushed
 * it, and it was handed out twice. False if a carried the marker already
 * (a double free; the caller unpins, then claim_refused). Poison mode
 * claims nothing here: its red zone's checks come first, and its side
 * table tells a double free (spanheap_poison_freed).
 */
static bool claim_free(struct spanheap *sh, uintptr_t a)
{
	if (sh->cfg.poison)
		return true;
	uintptr_t mk = sh->mag_cookie ^ a;
	return __atomic_exchange_n(&obj_words(a)[1], mk, __ATOMIC_RELAXED) !=
	       mk;
}

static __attribute__((noreturn, noinline)) void
claim_refused(struct spanheap *sh, uintptr_t a)
{
	struct mspan *s = mheap_span_lookup(sh->heap, a);
	spanheap_free_refused(s, obj_index(s, a - s->base), a);
}

static void mag_full_claimed(struct spanheap *sh, uintptr_t a, unsigned cls,
                             struct mm_pin pin);

/* spanheap_mag_full's way when the fast path's pin pinned nothing, and the way
 * of a restartable sequence that found the magazine full: the claim (none
 * if marked: a restarted attempt of this free's own sequence stored the
 * marker), a pin, then the magazine again (as alloc_unpinned). */
__attribute__((noinline)) void spanheap_free_unpinned(struct spanheap *sh,
                                                      uintptr_t a, unsigned cls,
                                                      bool marked)
{
	if (!marked && !claim_free(sh, a))
		claim_refused(sh, a);
	struct mm_pin pin = mm_port_pin();
	struct mmag *m = &sh->caches[pin.cpu].mag[cls];
	uintptr_t *t = mag_top(m);
	if (t < m->limit) { /* not so in a cache not set up: both are 0 */
		mag_push(m, t, a, sh->mag_cookie);
		mm_port_unpin(pin);
	} else {
		mag_full_claimed(sh, a, cls, pin);
	}
}

/*
 * Sizes. A magazine's size (its limit) follows how its CPU uses the class,
 * as tcmalloc sizes its per-class thread-cache lists: a magazine starts at
 * its class's most, halves, down to its floor (mag_floor), at every
 * MAG_SHRINK_SPILLS-th spill in a row with no refill of it empty between,
 * and doubles, up to the most, at each such refill (mag_refilled). A CPU
 * that only frees a class (a consumer of objects another CPU allocates)
 * then holds at most the floor's objects of it, about 4 KiB, where at the
 * most it held up to 64 KiB of them that no CPU could reuse; one that
 * allocates the class keeps a large magazine. The floor is in bytes, not
 * objects, as a spill's batch is what overlaps its spans' cache misses:
 * 16 objects of 64 bytes, 8 to a spill, took the bulk workload's free
 * phase from 40 to 58 ns an object; 4 KiB (64 of them) left it at 40.
 */
#define MAG_SHRINK_SPILLS 3u
_Static_assert(sizeof(struct mcache) == 2048,
               "a CPU's cache is 2 KiB: caches[cpu] is a shift");

/* Full magazine cls of CPU cpu (pinned, base its first slot) is to
 * spill: counts the spill, and halves the magazine at every
 * MAG_SHRINK_SPILLS-th in a row. Returns its size, in objects. */
static uint32_t mag_spilled(struct spanheap *sh, unsigned cpu, unsigned cls,
                            uintptr_t *base)
{
	struct mcache *mc = &sh->caches[cpu];
	uint32_t size = (uint32_t)(mc->mag[cls].limit - base);
	if (++mc->mag_spills[cls] < MAG_SHRINK_SPILLS)
		return size;
	mc->mag_spills[cls] = 0;
	uint32_t floor = mag_floor(sh, cls);
	size = size / 2 > floor ? size / 2 : floor;
	mag_set_limit(&mc->mag[cls], base + size);
	return size;
}

/*
 * A full magazine: its older half goes back to the spans in one batch
 * (mag_give_back), the recent half stays (it is the cache-warm one), and
 * the free (object a, checked) goes in. Or this CPU has no slab yet (its
 * first free, unless a refill made it), which the free makes first. Or
 * its magazine is held at size 0 (failure injection armed, spanheap_fail.c):
 * straight to the span; or was, and injection is off now: the floor back,
 * then the push. Or the fast path's pin pinned nothing: a pin, then the
 * magazine it could not see. Pinned by pin (mm_port_pin_fast's); unpins.
 * First of all, the free's claim (claim_free).
 */
__attribute__((noinline)) void spanheap_mag_full(struct spanheap *sh,
                                                 uintptr_t a, unsigned cls,
                                                 struct mm_pin pin)
{
	if (__builtin_expect(MM_PIN_FAST_MAY_BE_NONE && pin.cpu == MM_PIN_NONE,
	                     0)) {
		spanheap_free_unpinned(sh, a, cls, false);
		return;
	}
	if (!claim_free(sh, a)) {
		mm_port_unpin(pin);
		claim_refused(sh, a);
	}
	mag_full_claimed(sh, a, cls, pin);
}

/* spanheap_mag_full's work, a's free claimed (claim_free). */
static void mag_full_claimed(struct spanheap *sh, uintptr_t a, unsigned cls,
                             struct mm_pin pin)
{
	struct mmag *m = &sh->caches[pin.cpu].mag[cls];
	bool kick = false;
	bool zero = sh->caches[pin.cpu].slab &&
	            m->limit == mag_base(sh, pin.cpu, cls);
	if (zero && !spanheap_fail_armed(sh)) {
		/* Held at size 0 by a failure injection since disarmed:
		 * its floor back (spanheap_cache_flush's way). */
		mag_set_limit(m,
		              mag_base(sh, pin.cpu, cls) + mag_floor(sh, cls));
		mag_push(m, mag_top(m), a, sh->mag_cookie);
	} else if (!sh->caches[pin.cpu].slab || zero) {
		/* No slab yet: make it, or straight to the span if there
		 * is no memory for one now (or injection is armed). The
		 * CPU's first free sets its cache up first. */
		spanheap_cache_ready(sh, pin.cpu);
		if (!zero && spanheap_mag_slab_make(sh, pin.cpu)) {
			mag_push(m, mag_top(m), a, sh->mag_cookie);
		} else {
			/* Marked as a push would have: every free object
			 * below marked carries it, and a second free of a
			 * is told by it alone. Poison mode's way, every
			 * free: the red zone's check, the poison first. */
			if (sh->cfg.poison)
				spanheap_poison_freed(sh, a, cls);
			obj_words(a)[1] = sh->mag_cookie ^ a;
			kick = spanheap_mag_give_back(sh, pin.cpu, cls, &a, 1);
		}
	} else {
		uintptr_t *base = mag_base(sh, pin.cpu, cls);
		uint32_t n = (uint32_t)(mag_top(m) - base);
		uint32_t keep = mag_spilled(sh, pin.cpu, cls, base) / 2;
		kick = spanheap_mag_give_back(sh, pin.cpu, cls, base, n - keep);
		for (uint32_t i = 0; i < keep; i++)
			base[i] = base[n - keep + i];
		mag_push(m, base + keep, a, sh->mag_cookie);
	}
	mm_port_unpin(pin);
	if (kick)
		spanheap_sweeper_kick(sh);
}

/*
 * A CPU's first allocation (pinned by pin): its cache set up, then the
 * refill again, which counts this allocation towards the guarded pool's
 * next (its countdown read 0, a cache not set up). Apart, so that the
 * refill's common way (a slab made) is the instructions it was.
 */
__attribute__((noinline, cold)) void *
spanheap_alloc_first_use(struct spanheap *sh, size_t size, unsigned flags,
                         struct mm_pin pin)
{
	spanheap_cache_set_up(sh, pin.cpu);
	return spanheap_alloc_refill(sh, size, flags, pin);
}

/* A span with free objects should be kept after a fold if at least this
 * share (1/8) came free; else it goes back and a fuller one comes. */
static inline bool worth_keeping(const struct mspan *s)
{
	return (uint32_t)(s->nelems - s->alloc_count) * 8 >= s->nelems;
}

/*
 * The slow path: the cached span of class cls has no free bit left in
 * alloc_cache. Pinned (*pin), the CPU's cache set up; a thread caller unpins to
 * ask the page heap and pins again, so pin->cpu may change. Returns an object
 * or NULL, and sets *kick if the sweeper should be kicked (after the unpin).
 */
void *spanheap_cache_refill(struct spanheap *sh, unsigned cls, size_t size,
                            unsigned flags, struct mm_pin *pin, bool *kick)
{
	struct mcache *mc = &sh->caches[pin->cpu];
	if (spanheap_cache_stale(sh, pin->cpu))
		*kick = spanheap_cache_flush(sh, pin->cpu); /* a cycle began */
	struct mspan *s = mc->alloc[cls];
	if (s != &spanheap_empty_span) {
		if (spanheap_span_fill_cache(s))
			return span_next_fast(sh, s, size);
		spanheap_span_fold(sh, s);
		if (worth_keeping(s) && spanheap_span_fill_cache(s))
			return span_next_fast(sh, s, size);
		mc->alloc[cls] = &spanheap_empty_span;
		spanheap_uncache_span(sh, s);
	}
	count_add(&mc->n.refills, 1);
	s = spanheap_central_cache_span(sh, cls);
	if (!s && (flags & MM_ATOMIC)) {
		s = spanheap_span_new(sh, cls, 0, 0, flags);
	} else if (!s) {
		mm_port_unpin(*pin);
		/* Checked here, off the fast path: a caller that forgot
		 * MM_ATOMIC is caught the first time it needs a span. */
		spanheap_assert_can_sleep("spanheap_alloc (without MM_ATOMIC)");
		s = spanheap_span_new(sh, cls, 0, 0, flags);
		mheap_hook(sh->heap, MHEAP_HOOK_SPAN_MADE);
		*pin = mm_port_pin();
		mc = spanheap_cache_ready(sh, pin->cpu); /* maybe its first */
		struct mspan *cur = mc->alloc[cls];
		if (cur != &spanheap_empty_span) {
			/* Something on this CPU refilled meanwhile. */
			void *p = span_next_fast(sh, cur, size);
			if (!p && spanheap_span_fill_cache(cur))
				p = span_next_fast(sh, cur, size);
			if (p) {
				if (s)
					spanheap_span_place(sh, s);
				return p;
			}
			mc->alloc[cls] = &spanheap_empty_span;
			spanheap_uncache_span(sh, cur);
		}
	}
	if (!s)
		return NULL;
	cache_install(sh, mc, cls, s);
	return span_next_fast(sh, s, size);
}

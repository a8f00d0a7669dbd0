/*
 * mm/spanheap.c: the span heap's allocation paths and its API; and the
 * design of the whole heap, below (the free paths are in spanheap_free.c).
 *
 * Purpose: objects of every size from any CPU and any context but NMI,
 * on top of the page heap. Modelled on the Go runtime's mspan, mcache and
 * mcentral (malloc.go, mcache.go, mcentral.go, mgcsweep.go). The layers
 * under the fast paths have files of their own (spanheap_internal.h lists
 * them): spans in spanheap_span.c, the central lists in
 * spanheap_central.c, the per-CPU caches' slow paths in spanheap_cache.c,
 * sweeping in spanheap_sweep.c, set-up in spanheap_init.c, the free
 * paths in spanheap_free.c; calloc,
 * realloc and usable size, which build on the fast paths, in
 * spanheap_realloc.c.
 *
 * Representation. A small span is npages pages cut into nelems objects of
 * one class. Object i is allocated when i < freeindex or its bit in
 * alloc_bits is set; it is freed when its bit in pending (anyone, one
 * atomic OR) or local_free (a magazine spill by the CPU caching the span,
 * no atomic) is set, and free again once a sweep or fold has cleared all
 * three. alloc_cache
 * holds the free bits from freeindex on (bit 0 = object freeindex), so
 * the fast path is a count-trailing-zeros and two stores.
 *
 * sweepgen (sg = sh->sweepgen, advancing by 2 per cycle), as Go's:
 *   sg - 2  needs sweeping        sg - 1  being swept
 *   sg      swept                 sg + 1  cached before the cycle began
 *   sg + 3  swept, then cached
 * Cached spans hold an odd value: sg + 3 when cached, which the next flip
 * turns into sg + 1, and later flips into sg - 1, sg - 3, ... The
 * sweeper only claims spans at sg - 2 (even), so it never touches a
 * cached span however many flips pass, and the CPU that uncaches a span
 * folds it, whatever its age (spanheap_uncache_span: a fold is a sweep
 * of a span no one else can reach). Every central-list
 * section reads sg under the class's lock, and the flip passes through
 * each class's lock after advancing sg (spanheap_sweep.c), so a span is
 * always on the list that matches its sweepgen.
 *
 * A small span's marked count is one past the highest object it has
 * handed out since it was made (span_take and mag_fill raise it; objects
 * are handed out lowest first, so none at or past it ever was). Every free
 * object below it was freed, or put into a magazine by mag_fill, and
 * carries the free marker in its second word, cookie ^ its address,
 * written by the free (or mag_fill) and cleared when the object is handed
 * out again. A large object's second word is cleared when it is made, so
 * that no realloc copies a stale marker back home (spanheap_large_alloc).
 *
 * Algorithm.
 *   alloc   pinned (with MM_PORT_RSEQ: a restartable sequence, rseq.h):
 *           the newest object of the CPU's magazine for the class (a LIFO
 *           array of objects it freed or a refill put there, in the
 *           CPU's slab of slots; inline in the caller for a class it
 *           knows: spanheap_alloc_class);
 *           else, pinned, the cached span's next free bit, and the next
 *           few (up to 1 KiB of small objects) go into the empty magazine
 *           (mag_fill), so that the allocations after it pop; when the
 *           span's bits run out, the slow path scans its later words,
 *           then folds the span's own frees (local and pending), then
 *           hands the span back and takes one from the central lists,
 *           sweeping on demand (bounded), then makes a new span from the
 *           page heap.
 *   free    the span table gives the span; the checks (span in use, start
 *           of an object, no free marker) come first; then, pinned (or as
 *           a restartable sequence), the magazine. A full magazine spills
 *           its older half to the spans in one prefetched batch: local
 *           bits for the CPU's own span, else pending bits (one atomic OR
 *           each).
 *   large   a span of its own, straight from the page heap; freed at
 *           once (a compare-and-swap on its state catches a second free).
 *
 * Invariants (the span heap's files cite them by number; spanheap_check
 * verifies 6 to 8):
 *   1. The heap lock is a leaf: nothing under it takes another lock,
 *      allocates, logs, sleeps or calls a port hook (mm_panic and
 *      mm_lock_held aside).
 *   2. The all-spans array is read under the heap lock or through a
 *      snapshot (spanheap_structs.c) that holds a reference to the array
 *      it walks; an array replaced by a larger one is freed by the last
 *      snapshot's release.
 *   3. Nothing waits for another CPU holding the heap lock or a class's
 *      lock (the page heap's scavenger unmaps without its lock).
 *   4. Code holding an mm lock cannot re-enter the heap: the locks are
 *      irqsave, and nothing under them faults or allocates.
 *   5. A sweep cycle is held from flip to finish by its own semaphore (an
 *      atomic flag and an event count), not by a lock.
 *   6. A cached span is on no list and has an odd sweepgen; every other
 *      live small span is on the one of its class's lists (partial or
 *      full, swept or unswept) that its sweepgen says, claimed by a sweep
 *      (sg - 1), or held by the one caller that took it off.
 *   7. Every free object of a small span below its marked count carries
 *      the free marker; no object at or past it was ever handed out.
 *   8. A magazine holds only freed objects of its class, each with its
 *      marker, between the 0 below its first slot and its limit.
 *
 * Locking (ranks in port.h): a class's lock (MM_RANK_CENTRAL) guards its
 * four lists and the list links; the heap's lock (MM_RANK_HEAP, a leaf)
 * guards the span-struct allocator, the all-spans array and sweepgen's
 * writers. The per-CPU cache needs no lock: its CPU is pinned
 * (mm_port_pin: interrupts off in the kernel), or, for a magazine's pop
 * and push with MM_PORT_RSEQ, the step is a restartable sequence whose
 * one store commits it, and which the port's interrupt entry restarts
 * (rseq.h); a pinned slow path cannot be interleaved by one on its CPU.
 * Nothing sleeps pinned: a thread caller unpins before it asks the page
 * heap for a span; the one request made pinned, a CPU's slab of magazine
 * slots (at its first free or refill, spanheap_mag_slab_make), is MHEAP_ATOMIC
 * whatever the caller's flags, which never sleeps and never waits for
 * another CPU's growth (mheap.h). The heap's own structures (span structs,
 * the all-spans array, the slabs, poison mode's side tables, the stack
 * depot) come from its metadata heap (spanheap_meta.c), apart from the
 * object pages; its lock ranks as the page heap's and is never taken with
 * it.
 *
 * Limits: objects up to SC_MAX_SIZE (32 KiB) come from size classes,
 * larger ones are spans of their own; alignments are powers of two up to
 * a page or page multiples above it; MM_MAX_CPUS caches (each written
 * only once its CPU uses the heap: spanheap_cache_set_up); span structs and
 * magazine slabs are never given back (a floor of a few metadata-heap
 * pages per thousand spans once made, plus 8 pages per CPU that ever
 * freed or refilled).
 */
#include "spanheap_internal.h"

_Static_assert(offsetof(struct mspan, alloc_bits) == 64,
               "what the fast paths read fits in the span's first line");

/* The placeholder every empty cache slot points at: no free bits, so the
 * fast path falls through to the slow one. Never written. */
struct mspan spanheap_empty_span;

/* ---- Allocation
 * -------------------------------------------------------------- */

/* An object of class cls: the fast path, else the slow one. */
static inline void *alloc_small(struct spanheap *sh, unsigned cls, size_t size,
                                unsigned flags)
{
	struct mm_pin pin = mm_port_pin();
	struct mcache *mc = spanheap_cache_ready(sh, pin.cpu);
	void *p = (void *)spanheap_mag_pop(&mc->mag[cls]);
	if (!p) {
		/* An empty magazine's refill, as spanheap_alloc_refill's:
		 * zeroed and aligned allocations grow it back too. */
		if (mc->slab)
			mag_refilled(sh, pin.cpu, cls);
		p = span_next_fast(sh, mc->alloc[cls], size);
	}
	bool kick = false;
	if (__builtin_expect(!p, 0))
		p = spanheap_cache_refill(sh, cls, size, flags, &pin, &kick);
	mm_port_unpin(pin);
	if (kick)
		spanheap_sweeper_kick(sh);
	return p;
}

/* ---- The API
 * ------------------------------------------------------------------- */

/* The class that serves size bytes aligned to align (at least 16), or 0
 * if it takes a large span of its own. */
static unsigned class_for(size_t size, size_t align)
{
	if (size > SC_MAX_SIZE || align > MM_PAGE_SIZE)
		return 0;
	if (align <= 16)
		return sizeclass_of(size);
	unsigned cls = sizeclass_of(size > align ? size : align);
	while (cls < SC_NCLASSES && sizeclass_info[cls].size % align)
		cls++;
	return cls < SC_NCLASSES ? cls : 0;
}

/* The class that serves size bytes aligned to align in poison mode: that
 * of a byte more, so that an exact fit gets the next class and a red zone
 * (spanheap_redzone.c), but for 32 KiB, which stays small; a power of two
 * up to a page keeps its natural alignment (a class of its multiples). */
static unsigned poison_class(size_t size, size_t align)
{
	if (size >= SC_MAX_SIZE)
		return class_for(size, align);
	if (size > align && size <= MM_PAGE_SIZE && !(size & (size - 1)))
		align = size;
	return class_for(size + 1, align);
}

unsigned spanheap_class_serving(const struct spanheap *sh, size_t size,
                                size_t align)
{
	if (align < 16)
		align = 16;
	return sh->cfg.poison ? poison_class(size, align)
	                      : class_for(size, align);
}

/* True if this allocation is the guarded pool's (spanheap_guard.c): CPU
 * mc's countdown, pinned, reached 0. A heap with no pool has every
 * countdown at 0 for good: one load and a branch. */
static inline __attribute__((always_inline)) bool
guard_due(const struct spanheap *sh, struct mcache *mc)
{
	uint32_t left = mc->guard_left;
	if (__builtin_expect(left == 0, 1))
		return false;
	mc->guard_left = left == 1 ? sh->guard.interval : left - 1;
	return left == 1;
}

/* guard_due for an unpinned caller: pins for it. */
__attribute__((noinline)) bool spanheap_guard_sample(struct spanheap *sh)
{
	struct mm_pin pin = mm_port_pin();
	bool due = guard_due(sh, spanheap_cache_ready(sh, pin.cpu));
	mm_port_unpin(pin);
	return due;
}

/* Every allocation but the fast path's, and realloc's (inject false:
 * spanheap_realloc asked spanheap_fail_should itself). */
static void *alloc_call(struct spanheap *sh, size_t size, size_t align,
                        unsigned flags, bool inject)
{
	void *p = NULL;
	unsigned cls = 0;
	/* A heap never set up (zeroed: its fast path falls here for a large
	 * or zeroed object) followed its NULL page heap (review). */
	spanheap_assert_set_up(sh);
	/* Off the magazine's pop, every call without MM_ATOMIC: a caller in
	 * atomic context that forgot it is caught while memory is plentiful
	 * (Linux's might_sleep), not the day its class needs a new span. */
	if (!(flags & MM_ATOMIC))
		spanheap_assert_can_sleep("spanheap_alloc (without MM_ATOMIC)");
	if (!spanheap_bad_flags("alloc", size, flags) &&
	    size <= sh->arena_bytes) {
		cls = sh->cfg.poison ? poison_class(size, align)
		                     : class_for(size, align);
		/* Before anything is taken: an injected NULL leaves all as
		 * it was, and is not counted as the page heap's refusal. */
		if (inject && __builtin_expect(spanheap_fail_armed(sh), 0) &&
		    (cls ||
		     spanheap_large_possible(sh, spanheap_pages_for(size),
		                             align, flags)) &&
		    spanheap_fail_should(sh, cls == 0, flags))
			return NULL;
		/* The guarded pool's objects are zeroed, and recorded. */
		if (cls && __builtin_expect(sh->guard.base != 0, 0) &&
		    spanheap_guard_sample(sh) &&
		    (p = spanheap_guard_alloc(sh, size, align, flags, cls)))
			return p;
		p = cls ? alloc_small(sh, cls, size, flags)
		        : spanheap_large_alloc(sh, spanheap_pages_for(size),
		                               align, flags);
	}
	bool large = cls == 0; /* the page heap zeroed it (MHEAP_ZERO) */
	if (!p) {
		if (flags & MM_ATOMIC) {
			unsigned long irq = mm_lock_acquire(&sh->heap->lock);
			sh->n.atomic_fails++;
			mm_lock_release(&sh->heap->lock, irq);
		}
		return NULL;
	}
	/* All of it: a realloc with MM_ZERO that grows in place relies on
	 * it (and reads no stale bytes of an earlier object). A large one's
	 * pages the page heap zeroed, writing only those that held data:
	 * calloc of 4 GiB of fresh memory took 11.6 s and made all of it
	 * resident when it was written here. */
	if ((flags & MM_ZERO) && !large)
		mm_memset(p, 0, spanheap_usable_size(sh, p));
	if (sh->track && !large)
		spanheap_track_alloc(sh, p, flags);
	return p;
}

static void *alloc_any(struct spanheap *sh, size_t size, size_t align,
                       unsigned flags)
{
	return alloc_call(sh, size, align, flags, true);
}

void *spanheap_alloc_decided(struct spanheap *sh, size_t size, unsigned flags)
{
	return alloc_call(sh, size, 16, flags, false);
}

/*
 * Moves the next free objects of s, the cached span of class cls of CPU
 * cpu (pinned, the owner), from its allocation cache into the class's
 * magazine: at most k of them, and no more than it has room for. A CPU
 * with no slab of slots yet (no free or refill has made it) makes it
 * first, unless the allocation's flags forbid growing the heap; with no
 * memory for it, nothing moves. Each object gets its free marker, as a
 * freed object in a magazine carries, and marked rises past them. The
 * lowest address goes on top, so the pops hand them out in address
 * order, as span_take would have.
 *
 * An empty magazine's refill does this after it takes its own object
 * (spanheap_alloc_refill): a CPU that allocates more than it frees of a
 * class (a producer whose objects another CPU frees, a burst of
 * allocations) then pops k times for each refill instead of calling one
 * per allocation. k is the class's mag_fill (spanheap_init): 1 KiB of
 * objects, at most 16, none for a class whose objects are larger than
 * 512 bytes, so that few lines are written before their time.
 */
static inline __attribute__((always_inline)) void
mag_fill(struct spanheap *sh, unsigned cpu, unsigned cls, struct mspan *s,
         unsigned k, unsigned flags)
{
	if (__builtin_expect(!sh->caches[cpu].slab, 0) &&
	    ((flags & MM_NO_GROW) || !spanheap_mag_slab_make(sh, cpu)))
		return;
	struct mmag *m = &sh->caches[cpu].mag[cls];
	uintptr_t *t = mag_top(m);
	size_t room = (size_t)(m->limit - t);
	if (!room)
		return;
	uint64_t ac = s->alloc_cache;
	unsigned n = popcount64(ac);
	if (n > k)
		n = k;
	if (n > room)
		n = (unsigned)room;
	uint32_t fi = atomic_load_explicit(&s->freeindex, memory_order_relaxed);
	uintptr_t base = s->base, size = s->elemsize, cookie = sh->mag_cookie;
	/* The j-th free bit (lowest first) into slot n-1-j. */
	uint64_t run = ((uint64_t)1 << n) - 1; /* n <= MAG_FILL_MAX < 64 */
	if ((ac & run) == run) {
		/* The next n objects are all free (a span's untouched part,
		 * the common case): one add each. */
		uintptr_t o = base + (uintptr_t)fi * size;
		for (unsigned j = n; j-- > 0; o += size) {
			obj_words(o)[1] = cookie ^ o;
			t[j] = o;
		}
		fi += n;
		ac >>= n;
	} else {
		for (unsigned j = n; j-- > 0;) {
			unsigned bit = (unsigned)__builtin_ctzll(ac);
			uint32_t idx = fi + bit;
			fi = idx + 1;
			ac = (ac >> bit) >> 1;
			uintptr_t o = base + (uintptr_t)idx * size;
			obj_words(o)[1] = cookie ^ o;
			t[j] = o;
		}
	}
	s->alloc_cache = ac;
	atomic_store_explicit(&s->freeindex, fi, memory_order_relaxed);
	if (fi > atomic_load_explicit(&s->marked, memory_order_relaxed))
		atomic_store_explicit(&s->marked, fi, memory_order_release);
	mag_set_top(m, t + n);
}

/* The slow half of spanheap_alloc's fast path: refill (pinned by pin),
 * unpin, and fall back to the general path on failure. */
static __attribute__((noinline)) void *alloc_fast_miss(struct spanheap *sh,
                                                       size_t size,
                                                       unsigned flags,
                                                       struct mm_pin pin)
{
	bool kick = false;
	void *p = spanheap_cache_refill(sh, sizeclass_of(size), size, flags,
	                                &pin, &kick);
	mm_port_unpin(pin);
	if (kick)
		spanheap_sweeper_kick(sh);
	return p ? p : alloc_any(sh, size, 16, flags);
}

/*
 * spanheap_alloc_refill's way when the fast path's pin pinned nothing
 * (mm_port_pin_fast): a pin, the magazine the fast path could not see,
 * then the refill. Apart, so that the refill never assigns its pin: GCC
 * then kept it on the stack and read it back with one 16-byte load of two
 * 8-byte stores, which cannot be forwarded (bulk's allocation rounds 6 to
 * 20 ns an object).
 */
static __attribute__((noinline)) void *
alloc_unpinned(struct spanheap *sh, size_t size, unsigned flags)
{
	struct mm_pin pin = mm_port_pin();
	uintptr_t a = spanheap_mag_pop(&sh->mags[pin.cpu][sizeclass_of(size)]);
	if (a) {
		mm_port_unpin(pin);
		return (void *)a;
	}
	return spanheap_alloc_refill(sh, size, flags, pin);
}

/* An empty magazine: the cached span's next free bit, and the next few
 * free ones into the magazine (mag_fill); or, with none left, a refill
 * (alloc_fast_miss). Pinned (pin); unpins. Out of line, so that the
 * magazine's path keeps to a few registers (no saves). */
__attribute__((noinline)) void *spanheap_alloc_refill(struct spanheap *sh,
                                                      size_t size,
                                                      unsigned flags,
                                                      struct mm_pin pin)
{
	if (__builtin_expect(MM_PIN_FAST_MAY_BE_NONE && pin.cpu == MM_PIN_NONE,
	                     0))
		return alloc_unpinned(sh, size, flags);
	if (__builtin_expect(spanheap_fail_armed(sh) || sh->cfg.poison, 0)) {
		/* Every call of an armed heap comes here, and of a poison
		 * one (no magazines), which alloc_call gives its class. */
		mm_port_unpin(pin);
		return alloc_any(sh, size, 16, flags);
	}
	if (__builtin_expect(guard_due(sh, &sh->caches[pin.cpu]), 0)) {
		mm_port_unpin(pin);
		void *g = spanheap_guard_alloc(sh, size, 16, flags,
		                               sizeclass_of(size));
		return g ? g : alloc_any(sh, size, 16, flags);
	}
	unsigned cls = sizeclass_of(size);
	if (__builtin_expect(sh->caches[pin.cpu].slab != NULL, 1))
		mag_refilled(sh, pin.cpu, cls);
	else if (!spanheap_cache_used(sh, pin.cpu))
		return spanheap_alloc_first_use(sh, size, flags, pin);
	struct mspan *s = sh->caches[pin.cpu].alloc[cls];
	uint64_t ac = s->alloc_cache;
	if (__builtin_expect(ac == 0, 0))
		return alloc_fast_miss(sh, size, flags, pin);
	void *p = span_take(sh, s, ac, size);
	unsigned k = sh->mag_fill[cls];
	if (k && s->alloc_cache)
		mag_fill(sh, pin.cpu, cls, s, k, flags);
	mm_port_unpin(pin);
	return p;
}

#ifdef MM_PORT_RSEQ
/* An empty magazine seen by a restartable sequence, which pins nothing: a
 * pin, then spanheap_alloc_refill (not the magazine again: an interrupt
 * may have filled it since, but the span's object will do). The pin goes
 * straight into the call's registers: an inline helper that took it as a
 * struct had GCC build it in an SSE register through the stack, a store
 * forward that fails, on every refill (the hosted malloc's
 * producer/consumer ran at 82 ns an op instead of 25). */
__attribute__((noinline)) void *
spanheap_alloc_refill_pin(struct spanheap *sh, size_t size, unsigned flags)
{
	/* Unpinned: a refill's check, as alloc_call's. */
	if (!(flags & MM_ATOMIC))
		spanheap_assert_can_sleep("spanheap_alloc (without MM_ATOMIC)");
	return spanheap_alloc_refill(sh, size, flags, mm_port_pin());
}
#endif

/*
 * The fast path: the class's magazine's offset from the heap's table, then
 * as spanheap_alloc_class (the pin, the magazine's newest object, the
 * unpin, or with MM_PORT_RSEQ the pop's restartable sequence; on an empty
 * magazine the cached span's next free bit, out of line). No lock, no
 * atomic read-modify-write, and no call with an inline pin (the miss is a
 * tail call). Any context but NMI.
 */
SPANHEAP_FAST void *spanheap_alloc(struct spanheap *sh, size_t size,
                                   unsigned flags)
{
	/* MM_ZERO, and any bit that is not a flag (refused), go the long
	 * way: one test either way. */
	if (__builtin_expect(size <= SC_MAX_SIZE &&
	                             !(flags & ~(MM_ATOMIC | MM_NO_GROW)),
	                     1)) {
		return spanheap_alloc_mag(sh, sh->mag_by16[(size + 15) / 16],
		                          size, flags);
	}
	return alloc_any(sh, size, 16, flags);
}

/* spanheap_alloc without the flags' test (spanheap_fast.h): the kernel's
 * kmalloc of a size known at run time, two instructions fewer. */
SPANHEAP_FAST void *spanheap_alloc_sized(struct spanheap *sh, size_t size,
                                         unsigned flags)
{
	if (__builtin_expect(size <= SC_MAX_SIZE, 1))
		return spanheap_alloc_mag(sh, sh->mag_by16[(size + 15) / 16],
		                          size, flags);
	return alloc_any(sh, size, 16, flags);
}

void *spanheap_alloc_aligned(struct spanheap *sh, size_t size, size_t align,
                             unsigned flags)
{
	bool pow2 = align && !(align & (align - 1));
	if (!(pow2 && align <= MM_PAGE_SIZE) &&
	    !(align > MM_PAGE_SIZE && align % MM_PAGE_SIZE == 0)) {
		mm_log("spanheap: aligned alloc of %zu bytes refused: "
		       "alignment %zu is neither a power of two up to %zu nor "
		       "a multiple of %zu",
		       size, align, (size_t)MM_PAGE_SIZE, (size_t)MM_PAGE_SIZE);
		return NULL;
	}
	return alloc_any(sh, size, align < 16 ? 16 : align, flags);
}

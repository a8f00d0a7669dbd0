/*
 * mm/spanheap.c: spans, per-CPU caches and central lists; allocation and
 * free of objects.
 *
 * Purpose: objects of every size from any CPU and any context but NMI,
 * on top of the page heap. Modelled on the Go runtime's mspan, mcache and
 * mcentral (malloc.go, mcache.go, mcentral.go, mgcsweep.go); the sweeper
 * thread is in spanheap_sweep.c.
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
 * sweeps it first unless it still reads sg + 3. Every central-list
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
 * out again.
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
 * slots (at its first free or refill, mag_slab_make), is MHEAP_ATOMIC
 * whatever the caller's flags, which never sleeps and never waits for
 * another CPU's growth (mheap.h).
 */
#include "spanheap_internal.h"

_Static_assert(offsetof(struct mspan, alloc_bits) == 64,
               "what the fast paths read fits in the span's first line");

/* The placeholder every empty cache slot points at: no free bits, so the
 * fast path falls through to the slow one. Never written. */
struct mspan spanheap_empty_span;

/* ---- Small helpers ------------------------------------------------------ */

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static inline unsigned popcount64(uint64_t x)
{
	return (unsigned)pallocbits_popcount(x);
}

static inline uint64_t load_relaxed64(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* Mask of the valid object bits of word w of a span with nelems objects. */
static inline uint64_t word_mask(uint32_t nelems, unsigned w)
{
	uint32_t lo = w * 64;
	if (nelems >= lo + 64)
		return ~(uint64_t)0;
	if (nelems <= lo)
		return 0;
	return ((uint64_t)1 << (nelems - lo)) - 1;
}

static inline unsigned span_words(const struct mspan *s)
{
	return ((unsigned)s->nelems + 63) / 64;
}

unsigned mheap_flags_of(unsigned flags)
{
	return ((flags & MM_ATOMIC) ? MHEAP_ATOMIC : 0) |
	       ((flags & MM_NO_GROW) ? MHEAP_NO_GROW : 0);
}

/* Per-CPU counters: their CPU writes them pinned (no interrupt can
 * interleave), others read them; relaxed atomics, no RMW. */
static inline void count_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c,
	                      atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

/* An object's words: word 1 is the free marker (cookie ^ address), set
 * while the object is free. */
static inline uintptr_t *obj_words(uintptr_t a)
{
	return (uintptr_t *)a;
}

/* The index of the object at byte offset off of small span s (exact for
 * every offset of the span: tools/gen-sizeclasses.c checks divmul). */
static inline uint32_t obj_index(const struct mspan *s, uintptr_t off)
{
	return (uint32_t)(((uint64_t)off * s->divmul) >> 32);
}

/* For byte offset off of span s: the object index if off starts an
 * object, and at least SC_MAX_NELEMS if not (for a small span; 0 for a
 * large one, whose dinv is 0, and for the table's zeroed marks). The
 * inverse of the size's odd part, then a rotation right by its trailing
 * zero bits (Granlund and Montgomery's divisibility test):
 * tools/gen-sizeclasses.c checks it for every offset of every span. So
 * one comparison with s->marked tells "the start of a marked object". */
static inline uint32_t obj_start_index(const struct mspan *s, uint32_t off)
{
	uint32_t x = off * s->dinv;
	unsigned r = s->dshift;
	return x >> r | x << ((32 - r) & 31);
}

/* ---- Misuse -------------------------------------------------------------- */

__attribute__((noreturn)) static void
bad_object(const char *what, const void *p, const struct mspan *s)
{
	mm_panic("spanheap: %s: pointer %p, span [%#lx, +%u pages), size "
	         "class %u (%u-byte objects)",
	         what, p, (unsigned long)s->base, s->npages,
	         (unsigned)s->sizeclass, s->elemsize);
}

/* The span table has no span for p: say what p is. */
__attribute__((noreturn)) static void
bad_pointer(struct spanheap *sh, const char *op, const void *p, void *entry)
{
	struct mheap *h = sh->heap;
	uintptr_t a = (uintptr_t)p;
	if (a < h->arena_base ||
	    a - h->arena_base >= h->arena_pages * MM_PAGE_SIZE)
		mm_panic("spanheap: %s of a foreign pointer %p: outside the "
		         "heap arena [%#lx, +%zu MiB) (a stack, kernel data or "
		         "the direct map?)",
		         op, p, (unsigned long)h->arena_base,
		         h->arena_pages * MM_PAGE_SIZE >> 20);
	if (entry == MHEAP_SPAN_PAGES)
		mm_panic("spanheap: %s of %p: page-heap memory "
		         "(mheap_alloc_pages) used through the object API",
		         op, p);
	if (entry == MHEAP_SPAN_FREED_LARGE)
		mm_panic("spanheap: %s of %p: a large span freed twice (or "
		         "used after its free)",
		         op, p);
	mm_panic("spanheap: %s of %p: inside the heap arena but in no span "
	         "(never allocated, or its span was freed)",
	         op, p);
}

/*
 * The span holding p, checked: in use, and p the start of an object.
 * *idx gets the object's index. op names the call for the messages.
 */
static struct mspan *span_of(struct spanheap *sh, const void *p, uint32_t *idx,
                             const char *op)
{
	void *e = mheap_span_lookup(sh->heap, (uintptr_t)p);
	if (!mheap_span_is_span(e))
		bad_pointer(sh, op, p, e);
	struct mspan *s = e;
	uint8_t state = atomic_load_explicit(&s->state, memory_order_acquire);
	uintptr_t off = (uintptr_t)p - s->base;
	if (state == MSPAN_DEAD || off >= (uintptr_t)s->npages * MM_PAGE_SIZE)
		bad_object(op[0] == 'f' ? "free of an object whose span was "
		                          "freed (a double free?)"
		                        : "a pointer into a freed span",
		           p, s);
	if (state == MSPAN_LARGE) {
		if (off != 0)
			bad_object(op[0] == 'f' ? "free of an interior pointer "
			                          "of a large object"
			                        : "an interior pointer of a "
			                          "large object",
			           p, s);
		*idx = 0;
		return s;
	}
	uint32_t i = obj_index(s, off);
	if ((uintptr_t)i * s->elemsize != off || i >= s->nelems)
		bad_object(op[0] == 'f' ? "free of an interior pointer"
		                        : "an interior pointer",
		           p, s);
	*idx = i;
	return s;
}

/* ---- The span-struct allocator and the all-spans array ------------------ */

#define STRUCTS_PER_PAGE (MM_PAGE_SIZE / sizeof(struct mspan))
_Static_assert(STRUCTS_PER_PAGE >= 8, "span structs are small");

/* Pages for an all-spans array of cap entries (header included). */
static size_t spans_pages(size_t cap)
{
	size_t bytes = sizeof(struct spanheap_spans) + cap * sizeof(void *);
	return (bytes + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE;
}

/* Drops a reference to an all-spans array; the last frees its pages. */
void spanheap_spans_put(struct spanheap *sh, struct spanheap_spans *a)
{
	if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
		mheap_free_pages(sh->heap, a, a->npages);
}

/*
 * Makes sure a span struct is free, growing the allocator (and the
 * all-spans array) from the page heap. False if memory ran out. No lock
 * held; thread context, or atomic with MM_ATOMIC.
 */
static bool structs_reserve(struct spanheap *sh, unsigned flags)
{
	struct mheap *h = sh->heap;
	unsigned long irq = mm_lock_acquire(&h->lock);
	bool have = sh->free_structs != NULL;
	size_t need = sh->spans->len + STRUCTS_PER_PAGE;
	size_t cap = sh->spans->cap;
	mm_lock_release(&h->lock, irq);
	if (have)
		return true;

	struct spanheap_spans *na = NULL;
	if (need > cap) {
		size_t ncap = cap * 2 > need ? cap * 2 : need;
		size_t np = spans_pages(ncap);
		na = mheap_alloc_pages(h, np, mheap_flags_of(flags));
		if (!na)
			return false;
		ncap = (np * MM_PAGE_SIZE - sizeof(*na)) / sizeof(void *);
		*na = (struct spanheap_spans){.cap = ncap, .npages = np};
		na->v = (struct mspan **)(na + 1);
		atomic_init(&na->refs, 1);
	}
	struct mspan *page = mheap_alloc_pages(h, 1, mheap_flags_of(flags));
	if (!page) {
		if (na)
			mheap_free_pages(h, na, na->npages);
		return false;
	}
	if (na)
		mheap_hook(h, MHEAP_HOOK_SPANS_SIZED);
	struct spanheap_spans *old = NULL;
	irq = mm_lock_acquire(&h->lock);
	struct spanheap_spans *cur = sh->spans;
	/* Other CPUs may have replaced the array meanwhile, more than once:
	 * na was sized from the cap read above, and must hold what is
	 * there now. Too small, it goes back and the caller tries again
	 * (until this check, the copy ran past its end). */
	if (na && cur->len + STRUCTS_PER_PAGE > cur->cap &&
	    cur->len + STRUCTS_PER_PAGE <= na->cap) {
		for (size_t i = 0; i < cur->len; i++)
			na->v[i] = cur->v[i];
		na->len = cur->len;
		sh->spans = na;
		old = cur; /* its live reference is dropped below */
		na = NULL;
		cur = sh->spans;
	}
	if (cur->len + STRUCTS_PER_PAGE <= cur->cap) {
		for (size_t i = 0; i < STRUCTS_PER_PAGE; i++) {
			struct mspan *s = &page[i];
			*s = (struct mspan){0};
			cur->v[cur->len++] = s;
			s->next = sh->free_structs;
			sh->free_structs = s;
		}
		sh->nstructs += STRUCTS_PER_PAGE;
		sh->nstructs_free += STRUCTS_PER_PAGE;
		page = NULL;
	}
	mm_lock_release(&h->lock, irq);
	if (old)
		spanheap_spans_put(sh, old);
	if (na)
		mheap_free_pages(h, na, na->npages);
	if (page) /* the array is full and na could not replace it */
		mheap_free_pages(h, page, 1);
	return true;
}

/* A free span struct, or NULL. Locking: the heap lock. */
static struct mspan *struct_get_locked(struct spanheap *sh)
{
	struct mspan *s = sh->free_structs;
	if (s) {
		sh->free_structs = s->next;
		sh->nstructs_free--;
		s->next = NULL;
	}
	return s;
}

/* Takes a snapshot of the all-spans array (invariant 2). */
void spanheap_snapshot(struct spanheap *sh, struct spanheap_snapshot *snap)
{
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	snap->arr = sh->spans;
	snap->len = snap->arr->len;
	snap->sweepgen =
	        atomic_load_explicit(&sh->sweepgen, memory_order_relaxed);
	atomic_fetch_add_explicit(&snap->arr->refs, 1, memory_order_relaxed);
	mm_lock_release(&sh->heap->lock, irq);
}

void spanheap_snapshot_put(struct spanheap *sh, struct spanheap_snapshot *snap)
{
	spanheap_spans_put(sh, snap->arr);
	snap->arr = NULL;
}

/* ---- Spans ----------------------------------------------------------------
 */

/*
 * A new span from the page heap: a small span of class cls, or (cls 0) a
 * large span of npages pages at base (already allocated). NULL if memory
 * ran out (base is then freed). No lock held; pinned only if MM_ATOMIC.
 */
static struct mspan *span_new(struct spanheap *sh, unsigned cls, uintptr_t base,
                              size_t npages, unsigned flags)
{
	struct mheap *h = sh->heap;
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	if (cls) {
		npages = ci->npages;
		base = (uintptr_t)mheap_alloc_pages(h, npages,
		                                    mheap_flags_of(flags));
		if (!base)
			return NULL;
	}
	struct mspan *s = NULL;
	while (!s) {
		if (!structs_reserve(sh, flags)) {
			mheap_free_pages(h, (void *)base, npages);
			return NULL;
		}
		unsigned long irq = mm_lock_acquire(&h->lock);
		s = struct_get_locked(sh);
		if (s) {
			/* Acquire and release: the table may grow without
			 * the heap lock, and a free that reads the copy must
			 * see the new entries' "none" (mheap.c). */
			size_t mapped = atomic_load_explicit(
			        &h->spanmap_pages, memory_order_acquire);
			if (atomic_load_explicit(&sh->spanmap_pages,
			                         memory_order_relaxed) !=
			    mapped)
				atomic_store_explicit(&sh->spanmap_pages,
				                      mapped,
				                      memory_order_release);
			s->base = base;
			s->npages = (uint32_t)npages;
			s->elemsize =
			        cls ? ci->size
			            : (uint32_t)min_sz(npages * MM_PAGE_SIZE,
			                               UINT32_MAX);
			s->nelems = cls ? ci->nelems : 1;
			__atomic_store_n(&s->sizeclass, (uint8_t)cls,
			                 __ATOMIC_RELAXED);
			s->divmul = cls ? ci->divmul : 0;
			s->dinv = cls ? ci->dinv : 0;
			_Static_assert(SC_NCLASSES * sizeof(struct mmag) <=
			                       UINT16_MAX,
			               "a magazine's offset fits mag_offset");
			s->mag_offset = (uint16_t)(cls * sizeof(struct mmag));
			s->dshift = cls ? ci->dshift : 0;
			atomic_store_explicit(&s->freeindex, 0,
			                      memory_order_relaxed);
			s->alloc_count = cls ? 0 : 1;
			s->alloc_cache = 0;
			atomic_store_explicit(&s->marked, 0,
			                      memory_order_relaxed);
			/* list, next and prev are already clear: a span
			 * leaves its lists before it is freed. */
			for (unsigned w = 0; w < SC_BITMAP_WORDS; w++) {
				atomic_store_explicit(&s->local_free[w], 0,
				                      memory_order_relaxed);
				atomic_store_explicit(&s->alloc_bits[w], 0,
				                      memory_order_relaxed);
				atomic_store_explicit(&s->pending[w], 0,
				                      memory_order_relaxed);
			}
			/* Read under the heap lock, which the flip holds: a
			 * span made before a flip is in its snapshot. */
			atomic_store_explicit(
			        &s->sweepgen,
			        atomic_load_explicit(&sh->sweepgen,
			                             memory_order_relaxed),
			        memory_order_relaxed);
			atomic_store_explicit(&s->state,
			                      cls ? MSPAN_SMALL : MSPAN_LARGE,
			                      memory_order_release);
			if (!cls) {
				sh->large_in_use_pages += npages;
				sh->n.large_allocs++;
			}
		}
		mm_lock_release(&h->lock, irq);
	}
	if (cls) {
		/* None handed out yet (marked 0): span_take raises it. */
		atomic_fetch_add_explicit(&sh->central[cls].nspans, 1,
		                          memory_order_relaxed);
	}
	mheap_span_set(h, base, npages, s);
	return s;
}

/*
 * Gives an empty span back: its table entries, its pages, its struct.
 * The caller owns s (on no list, not cached). Any context but NMI, no
 * lock held.
 */
void spanheap_span_free(struct spanheap *sh, struct mspan *s)
{
	struct mheap *h = sh->heap;
	unsigned cls = s->sizeclass;
	uintptr_t base = s->base;
	size_t npages = s->npages;
	/* marked first: a racing free's fast path (a misuse) then takes the
	 * slow one, which reads the state. */
	atomic_store_explicit(&s->marked, 0, memory_order_relaxed);
	atomic_store_explicit(&s->state, MSPAN_DEAD, memory_order_release);
	/* Entries before pages: once freed, the pages may be someone
	 * else's, with entries of their own. */
	mheap_span_set(h, base, npages, cls ? NULL : MHEAP_SPAN_FREED_LARGE);
	if (cls)
		atomic_fetch_sub_explicit(&sh->central[cls].nspans, 1,
		                          memory_order_relaxed);
	mheap_free_pages(h, (void *)base, npages);
	unsigned long irq = mm_lock_acquire(&h->lock);
	if (!cls) {
		sh->large_in_use_pages -= npages;
		sh->n.large_frees++;
	} else {
		sh->n.freed_spans++;
	}
	s->next = sh->free_structs;
	sh->free_structs = s;
	sh->nstructs_free++;
	mm_lock_release(&h->lock, irq);
}

/* Points alloc_cache and freeindex at the first free object at or after
 * freeindex. False if there is none. Owner only. */
static bool span_fill_cache(struct mspan *s)
{
	uint32_t fi = atomic_load_explicit(&s->freeindex, memory_order_relaxed);
	while (fi < s->nelems) {
		unsigned w = fi / 64, b = fi % 64;
		uint64_t free = ~load_relaxed64(&s->alloc_bits[w]) &
		                word_mask(s->nelems, w);
		free >>= b;
		if (free) {
			fi += (uint32_t)__builtin_ctzll(free);
			free >>= __builtin_ctzll(free);
			s->alloc_cache = free;
			atomic_store_explicit(&s->freeindex, fi,
			                      memory_order_relaxed);
			return true;
		}
		fi = (w + 1) * 64;
	}
	s->alloc_cache = 0;
	atomic_store_explicit(&s->freeindex, s->nelems, memory_order_relaxed);
	return false;
}

/*
 * Takes the first free object of alloc_cache ac (s->alloc_cache, not 0).
 * span_fill_cache leaves no bit at or beyond nelems in it. Raises marked
 * past the object if it is the first one handed out at its index: free
 * objects are handed out lowest first, so those never handed out are
 * exactly the ones at or past marked, and every free one below it was
 * freed (so it carries its marker). Clears the object's marker word: it
 * may hold a stale marker, a previous span's at the same address. Owner,
 * pinned.
 */
static inline __attribute__((always_inline)) void *span_take(struct mspan *s,
                                                             uint64_t ac)
{
	unsigned bit = (unsigned)__builtin_ctzll(ac);
	uint32_t idx =
	        atomic_load_explicit(&s->freeindex, memory_order_relaxed) + bit;
	s->alloc_cache = (ac >> bit) >> 1;
	atomic_store_explicit(&s->freeindex, idx + 1, memory_order_relaxed);
	if (idx >= atomic_load_explicit(&s->marked, memory_order_relaxed))
		atomic_store_explicit(&s->marked, idx + 1,
		                      memory_order_release);
	uintptr_t *o = (uintptr_t *)(s->base + (uintptr_t)idx * s->elemsize);
	o[1] = 0; /* the free marker (free_small) */
	return o;
}

/* The next free object of the cached span s, or NULL. */
static inline void *span_next_fast(struct mspan *s)
{
	uint64_t ac = s->alloc_cache;
	return ac ? span_take(s, ac) : NULL;
}

__attribute__((noreturn)) static void bad_fold(struct mspan *s, unsigned w,
                                               uint64_t bits, const char *what)
{
	unsigned i = w * 64 + (unsigned)__builtin_ctzll(bits);
	bad_object(what, (void *)(s->base + (uintptr_t)i * s->elemsize), s);
}

/*
 * Folds the span's frees into its bitmaps: commits the allocated prefix
 * [0, freeindex) to alloc_bits, clears the bits of freed objects (pending
 * taken with an atomic exchange, local_free the owner's), and starts
 * freeindex again at 0. Returns the objects freed. The caller owns s: it
 * caches s (pinned) or swept it (sweepgen sg - 1).
 */
unsigned spanheap_span_fold(struct spanheap *sh, struct mspan *s)
{
	uint32_t fi = atomic_load_explicit(&s->freeindex, memory_order_relaxed);
	unsigned nalloc = 0, nlocal = 0, nremote = 0, count = 0;
	for (unsigned w = 0; w < span_words(s); w++) {
		uint64_t a0 = load_relaxed64(&s->alloc_bits[w]);
		uint32_t lo = w * 64;
		uint64_t pre = fi >= lo + 64 ? ~(uint64_t)0
		               : fi > lo     ? ((uint64_t)1 << (fi - lo)) - 1
		                             : 0;
		uint64_t a = (a0 | pre) & word_mask(s->nelems, w);
		nalloc += popcount64(a & ~a0);
		uint64_t p = load_relaxed64(&s->pending[w]);
		if (p)
			p = atomic_exchange_explicit(&s->pending[w], 0,
			                             memory_order_acquire);
		uint64_t l = load_relaxed64(&s->local_free[w]);
		if (p & l)
			bad_fold(s, w, p & l,
			         "double free (freed on its own CPU and from "
			         "another)");
		uint64_t f = p | l;
		if (f & ~a)
			bad_fold(s, w, f & ~a,
			         "freed object was not allocated (heap "
			         "corrupted)");
		atomic_store_explicit(&s->local_free[w], 0,
		                      memory_order_relaxed);
		atomic_store_explicit(&s->alloc_bits[w], a & ~f,
		                      memory_order_relaxed);
		nlocal += popcount64(l);
		nremote += popcount64(p);
		count += popcount64(a & ~f);
	}
	s->alloc_count = count;
	/* After the bits: a free that reads freeindex 0 sees them. */
	atomic_store_explicit(&s->freeindex, 0, memory_order_release);
	s->alloc_cache = 0;
	struct mcentral *c = &sh->central[s->sizeclass];
	if (nalloc)
		atomic_fetch_add_explicit(&c->nalloc, nalloc,
		                          memory_order_relaxed);
	if (nlocal)
		atomic_fetch_add_explicit(&c->nlocal, nlocal,
		                          memory_order_relaxed);
	if (nremote)
		atomic_fetch_add_explicit(&c->nremote, nremote,
		                          memory_order_relaxed);
	return nlocal + nremote;
}

/* ---- Central lists ----------------------------------------------------------
 */

/*
 * Puts a span the caller owns (swept or folded, not cached) where it
 * belongs: freed if empty, else on the swept partial or full list.
 * Locks the class; any context but NMI.
 */
void spanheap_span_place(struct spanheap *sh, struct mspan *s)
{
	struct mcentral *c = &sh->central[s->sizeclass];
	/* An empty span goes back to the page heap, except when it is on a
	 * fold queue: whoever takes it off frees it. queued is read under
	 * the class's lock, under which the queue's taker clears it and
	 * then skips a span on no list: read before, a taker could clear it
	 * and skip the span between the read and the push below, leaving
	 * an empty span on the partial list until the next cycle. */
	unsigned long irq = mm_lock_acquire(&c->lock);
	if (s->alloc_count == 0 &&
	    !atomic_load_explicit(&s->queued, memory_order_acquire)) {
		mm_lock_release(&c->lock, irq);
		spanheap_span_free(sh, s);
		return;
	}
	uint32_t sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	atomic_store_explicit(&s->sweepgen, sg, memory_order_relaxed);
	if (s->alloc_count < s->nelems)
		list_push(&c->partial[swept_idx(sg)], s, MSPAN_LIST_PARTIAL);
	else
		list_push(&c->full[swept_idx(sg)], s, MSPAN_LIST_FULL);
	mm_lock_release(&c->lock, irq);
}

/* Pushes s on its class's fold queue. Any context but NMI. */
static void fold_queue_push(struct mcentral *c, struct mspan *s)
{
	struct mspan *head =
	        atomic_load_explicit(&c->fold_queue, memory_order_relaxed);
	do
		atomic_store_explicit(&s->qnext, head, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&c->fold_queue, &head, s,
	                                              memory_order_release,
	                                              memory_order_relaxed));
}

/* The most queued spans a refill folds. */
#define FOLD_QUEUE_BUDGET 16

/*
 * Folds spans from class cls's fold queue: spans on a central list that
 * remote frees have touched. With take (a refill, pinned), at most
 * FOLD_QUEUE_BUDGET, and returns the first with free objects for the
 * cache; without (the sweeper), all of them, placed. Spans that are
 * cached or being swept are left to their owner.
 */
struct mspan *spanheap_fold_queue(struct spanheap *sh, unsigned cls, bool take)
{
	struct mcentral *c = &sh->central[cls];
	/* The backlog first: what an earlier call took but did not fold. */
	unsigned long irq = mm_lock_acquire(&c->lock);
	struct mspan *q = c->fold_backlog;
	c->fold_backlog = NULL;
	mm_lock_release(&c->lock, irq);
	if (!q && atomic_load_explicit(&c->fold_queue, memory_order_relaxed))
		q = atomic_exchange_explicit(&c->fold_queue, NULL,
		                             memory_order_acquire);
	struct mspan *found = NULL;
	unsigned budget = take ? FOLD_QUEUE_BUDGET : UINT32_MAX;
	while (q && !found && budget) {
		struct mspan *s = q;
		q = atomic_load_explicit(&s->qnext, memory_order_relaxed);
		budget--;
		irq = mm_lock_acquire(&c->lock);
		atomic_store_explicit(&s->queued, 0, memory_order_release);
		if (s->list == MSPAN_LIST_NONE) {
			mm_lock_release(&c->lock, irq);
			continue;
		}
		uint32_t sg = atomic_load_explicit(&sh->sweepgen,
		                                   memory_order_acquire);
		list_remove_any(c, s, sg);
		atomic_store_explicit(&s->sweepgen, sg - 1,
		                      memory_order_relaxed);
		mm_lock_release(&c->lock, irq);
		spanheap_span_fold(sh, s);
		atomic_fetch_add_explicit(&sh->queue_folded, 1,
		                          memory_order_relaxed);
		if (take && s->alloc_count < s->nelems)
			found = s;
		else
			spanheap_span_place(sh, s);
	}
	if (q) {
		/* The rest (still queued) waits in the backlog: no re-push,
		 * so a refill costs its budget, not the queue's length. */
		mheap_hook(sh->heap, MHEAP_HOOK_FOLD_REST);
		irq = mm_lock_acquire(&c->lock);
		if (c->fold_backlog) { /* another CPU's rest meanwhile */
			struct mspan *t = q;
			while (atomic_load_explicit(&t->qnext,
			                            memory_order_relaxed))
				t = atomic_load_explicit(&t->qnext,
				                         memory_order_relaxed);
			atomic_store_explicit(&t->qnext, c->fold_backlog,
			                      memory_order_relaxed);
		}
		c->fold_backlog = q;
		mm_lock_release(&c->lock, irq);
	}
	return found;
}

/* The most unswept spans a refill sweeps before it makes a new span. */
#define CACHE_SPAN_BUDGET 32

/*
 * A span of class cls with free objects for a cache (Go's
 * mcentral.cacheSpan): a swept partial span, else unswept spans swept
 * now (partial first, then full, at most CACHE_SPAN_BUDGET), else NULL.
 * Pinned.
 */
static struct mspan *central_cache_span(struct spanheap *sh, unsigned cls)
{
	struct mcentral *c = &sh->central[cls];
	unsigned long irq = mm_lock_acquire(&c->lock);
	uint32_t sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	unsigned sw = swept_idx(sg), un = 1 - sw;
	struct mspan *s = list_pop(&c->partial[sw]);
	mm_lock_release(&c->lock, irq);
	if (s)
		return s;
	s = spanheap_fold_queue(sh, cls, true);
	if (s)
		return s;
	irq = mm_lock_acquire(&c->lock);
	sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	sw = swept_idx(sg);
	un = 1 - sw;
	for (unsigned budget = 0; budget < CACHE_SPAN_BUDGET; budget++) {
		s = list_pop(&c->partial[un]);
		if (!s)
			s = list_pop(&c->full[un]);
		if (!s)
			break;
		atomic_store_explicit(&s->sweepgen, sg - 1,
		                      memory_order_relaxed);
		mm_lock_release(&c->lock, irq);
		spanheap_span_fold(sh, s);
		atomic_fetch_add_explicit(&sh->demand_swept, 1,
		                          memory_order_relaxed);
		if (s->alloc_count < s->nelems)
			return s;
		irq = mm_lock_acquire(&c->lock);
		sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
		sw = swept_idx(sg);
		un = 1 - sw;
		atomic_store_explicit(&s->sweepgen, sg, memory_order_relaxed);
		list_push(&c->full[sw], s, MSPAN_LIST_FULL);
	}
	mm_lock_release(&c->lock, irq);
	return NULL;
}

/* ---- Per-CPU caches
 * ---------------------------------------------------------- */

static void cache_install(struct spanheap *sh, struct mcache *mc, unsigned cls,
                          struct mspan *s)
{
	uint32_t sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	atomic_store_explicit(&s->sweepgen, sg + 3, memory_order_relaxed);
	atomic_store_explicit(&s->owner, (uint8_t)(mc - sh->caches + 1),
	                      memory_order_relaxed);
	span_fill_cache(s);
	mc->alloc[cls] = s;
}

/* Hands a cached span back (pinned, its owner): folds its frees (a stale
 * span, cached before a flip, is swept by that) and places it. */
static void uncache_span(struct spanheap *sh, struct mspan *s)
{
	atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
	atomic_store_explicit(
	        &s->sweepgen,
	        atomic_load_explicit(&sh->sweepgen, memory_order_acquire) - 1,
	        memory_order_relaxed);
	spanheap_span_fold(sh, s);
	spanheap_span_place(sh, s);
}

/* ---- Magazines
 * ------------------------------------------------------------------- */

/* Wakes the sweeper if this CPU's pending bytes crossed a 256 KiB step
 * and the total passed the threshold. */
#define KICK_SHIFT 18

/* Slots left unused at the start of a CPU's slab (see spanheap_init):
 * the first class's 0 is the last of them, its first slot at byte 512.
 * Few enough that the slab stays 8 pages (half a page took it to 9). */
#define MAG_SLAB_SKEW (512 / sizeof(uintptr_t) - 1)

/* An empty magazine's refill puts up to MAG_FILL_BYTES of the span's next
 * objects, and at most MAG_FILL_MAX, into it (mag_fill). */
#define MAG_FILL_BYTES 1024u
#define MAG_FILL_MAX   16u
_Static_assert(MAG_FILL_MAX < 64, "mag_fill's run mask");

/* What top and limit point just past until a CPU's slab is made: a 0,
 * never written (a push finds the magazine full first). */
static uintptr_t mag_none[1];

/* sh->mags[MM_PIN_NONE]: every class's magazine empty and full at once,
 * for good (mm_port_pin_fast's pin that pinned nothing). Never written. */
static struct mmag mags_none[SC_NCLASSES] = {
        [0 ... SC_NCLASSES - 1] = {.top = &mag_none[1], .limit = &mag_none[1]}};

/* The newest object's end: written by the owner, pinned or by a
 * restartable sequence's commit; relaxed, as statistics read it from other
 * CPUs. */
static inline uintptr_t *mag_top(struct mmag *m)
{
	return __atomic_load_n(&m->top, __ATOMIC_RELAXED);
}

static inline void mag_set_top(struct mmag *m, uintptr_t *t)
{
	__atomic_store_n(&m->top, t, __ATOMIC_RELAXED);
}

/* Puts object a (checked, free) at t, the top of magazine m, below its
 * limit, and writes its free marker. Pinned. */
static inline __attribute__((always_inline)) void
mag_push(struct mmag *m, uintptr_t *t, uintptr_t a, uintptr_t cookie)
{
	*t = a;
	obj_words(a)[1] = cookie ^ a;
	mag_set_top(m, t + 1);
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
			bad_object("double free", (void *)a, s);
		atomic_store_explicit(&s->local_free[w], lf | b,
		                      memory_order_relaxed);
		return 0;
	}
	/* Queue the span before the bit is set: until then our object
	 * keeps it in use, so it cannot be freed and reused meanwhile. */
	if (!atomic_load_explicit(&s->queued, memory_order_relaxed) &&
	    !atomic_exchange_explicit(&s->queued, 1, memory_order_acq_rel))
		fold_queue_push(&sh->central[cls], s);
	uint64_t old = atomic_fetch_or_explicit(&s->pending[w], b,
	                                        memory_order_release);
	if (old & b)
		bad_object("double free", (void *)a, s);
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
static bool mag_give_back(struct spanheap *sh, unsigned cpu, unsigned cls,
                          const uintptr_t *obj, uint32_t n)
{
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
 * Gives every object of magazine cls of CPU cpu (pinned) back to its span.
 * Returns true if the sweeper should be kicked (after the unpin).
 */
static bool mag_drain(struct spanheap *sh, unsigned cpu, unsigned cls)
{
	if (!sh->caches[cpu].slab)
		return false;
	struct mmag *m = &sh->caches[cpu].mag[cls];
	uintptr_t *base = mag_base(sh, cpu, cls);
	uint32_t n = (uint32_t)(mag_top(m) - base);
	mag_set_top(m, base);
	return mag_give_back(sh, cpu, cls, base, n);
}

/* Empties every magazine of CPU cpu (pinned) into the spans. */
static bool mag_drain_all(struct spanheap *sh, unsigned cpu)
{
	bool kick = false;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		kick |= mag_drain(sh, cpu, cls);
	return kick;
}

bool spanheap_mags_drain_here(struct spanheap *sh)
{
	struct mm_pin pin = mm_port_pin();
	bool kick = mag_drain_all(sh, pin.cpu);
	mm_port_unpin(pin);
	return kick;
}

/*
 * Makes CPU cpu's slab of magazine slots (pinned: an atomic page
 * allocation, which never sleeps) and gives each class its slots, at the
 * CPU's first free or first refill (mag_fill). False if there is no memory
 * for it now; a free then goes straight to its span, a refill fills
 * nothing, and the next one tries again.
 */
static __attribute__((noinline)) bool mag_slab_make(struct spanheap *sh,
                                                    unsigned cpu)
{
	uintptr_t *slab =
	        mheap_alloc_pages(sh->heap, sh->mag_slab_pages, MHEAP_ATOMIC);
	if (!slab)
		return false;
	atomic_fetch_add_explicit(&sh->mag_slabs, 1, memory_order_relaxed);
	struct mcache *mc = &sh->caches[cpu];
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		uintptr_t *base = slab + sh->mag_off[cls]; /* mag_base */
		base[-1] = 0; /* what a pop of the empty magazine reads */
		mc->mag[cls].limit = base + sh->mag_max[cls];
		mag_set_top(&mc->mag[cls], base);
	}
	/* Last, atomic: the statistics read it from other CPUs. */
	__atomic_store_n(&mc->slab, slab, __ATOMIC_RELEASE);
	return true;
}

static void mag_full(struct spanheap *sh, uintptr_t a, unsigned cls,
                     struct mm_pin pin);

/* mag_full's way when the fast path's pin pinned nothing, and the way of
 * a restartable sequence that found the magazine full: a pin, then the
 * magazine again (as alloc_unpinned). */
static __attribute__((noinline)) void free_unpinned(struct spanheap *sh,
                                                    uintptr_t a, unsigned cls)
{
	struct mm_pin pin = mm_port_pin();
	struct mmag *m = &sh->caches[pin.cpu].mag[cls];
	uintptr_t *t = mag_top(m);
	if (t < m->limit) {
		mag_push(m, t, a, sh->mag_cookie);
		mm_port_unpin(pin);
	} else {
		mag_full(sh, a, cls, pin);
	}
}

/*
 * A full magazine: its older half goes back to the spans in one batch
 * (mag_give_back), the recent half stays (it is the cache-warm one), and
 * the free (object a, checked) goes in. Or this CPU has no slab yet (its
 * first free, unless a refill made it), which the free makes first. Or
 * the fast path's pin pinned nothing: a pin, then the magazine it could
 * not see. Pinned by pin (mm_port_pin_fast's); unpins.
 */
static __attribute__((noinline)) void mag_full(struct spanheap *sh, uintptr_t a,
                                               unsigned cls, struct mm_pin pin)
{
	if (__builtin_expect(MM_PIN_FAST_MAY_BE_NONE && pin.cpu == MM_PIN_NONE,
	                     0)) {
		free_unpinned(sh, a, cls);
		return;
	}
	struct mmag *m = &sh->caches[pin.cpu].mag[cls];
	bool kick = false;
	if (!sh->caches[pin.cpu].slab) {
		/* No slab yet: make it, or straight to the span if there
		 * is no memory for one now. */
		if (mag_slab_make(sh, pin.cpu)) {
			mag_push(m, mag_top(m), a, sh->mag_cookie);
		} else {
			/* Marked as a push would have: every free object
			 * below marked carries it, and a second free of a
			 * is told by it alone. */
			obj_words(a)[1] = sh->mag_cookie ^ a;
			kick = mag_give_back(sh, pin.cpu, cls, &a, 1);
		}
	} else {
		uintptr_t *base = mag_base(sh, pin.cpu, cls);
		uint32_t keep = sh->mag_max[cls] / 2;
		uint32_t n = (uint32_t)(mag_top(m) - base);
		kick = mag_give_back(sh, pin.cpu, cls, base, n - keep);
		for (uint32_t i = 0; i < keep; i++)
			base[i] = base[n - keep + i];
		mag_push(m, base + keep, a, sh->mag_cookie);
	}
	mm_port_unpin(pin);
	if (kick)
		spanheap_sweeper_kick(sh);
}

/* Hands back everything CPU cpu (pinned) caches: its magazines, then its
 * spans. Returns true if the sweeper should be kicked (after the unpin). */
static bool cache_flush(struct spanheap *sh, unsigned cpu)
{
	struct mcache *mc = &sh->caches[cpu];
	bool kick = mag_drain_all(sh, cpu);
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mspan *s = mc->alloc[cls];
		if (s != &spanheap_empty_span) {
			mc->alloc[cls] = &spanheap_empty_span;
			uncache_span(sh, s);
		}
	}
	mc->flushgen =
	        atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	return kick;
}

void spanheap_flush_cache(struct spanheap *sh)
{
	struct mm_pin pin = mm_port_pin();
	bool kick = cache_flush(sh, pin.cpu);
	mm_port_unpin(pin);
	if (kick)
		spanheap_sweeper_kick(sh);
}

/* A span with free objects should be kept after a fold if at least this
 * share (1/8) came free; else it goes back and a fuller one comes. */
static inline bool worth_keeping(const struct mspan *s)
{
	return (uint32_t)(s->nelems - s->alloc_count) * 8 >= s->nelems;
}

/*
 * The slow path: the cached span of class cls has no free bit left in
 * alloc_cache. Pinned (*pin); a thread caller unpins to ask the page heap
 * and pins again, so pin->cpu may change. Returns an object or NULL, and
 * sets *kick if the sweeper should be kicked (after the unpin).
 */
static void *alloc_slow(struct spanheap *sh, unsigned cls, unsigned flags,
                        struct mm_pin *pin, bool *kick)
{
	struct mcache *mc = &sh->caches[pin->cpu];
	if (mc->flushgen !=
	    atomic_load_explicit(&sh->sweepgen, memory_order_relaxed))
		*kick = cache_flush(sh, pin->cpu); /* a cycle began */
	struct mspan *s = mc->alloc[cls];
	if (s != &spanheap_empty_span) {
		if (span_fill_cache(s))
			return span_next_fast(s);
		spanheap_span_fold(sh, s);
		if (worth_keeping(s) && span_fill_cache(s))
			return span_next_fast(s);
		mc->alloc[cls] = &spanheap_empty_span;
		uncache_span(sh, s);
	}
	count_add(&mc->n.refills, 1);
	s = central_cache_span(sh, cls);
	if (!s && (flags & MM_ATOMIC)) {
		s = span_new(sh, cls, 0, 0, flags);
	} else if (!s) {
		mm_port_unpin(*pin);
		/* Checked here, off the fast path: a caller that forgot
		 * MM_ATOMIC is caught the first time it needs a span. */
		spanheap_assert_can_sleep("spanheap_alloc (without MM_ATOMIC)");
		s = span_new(sh, cls, 0, 0, flags);
		*pin = mm_port_pin();
		mc = &sh->caches[pin->cpu];
		struct mspan *cur = mc->alloc[cls];
		if (cur != &spanheap_empty_span) {
			/* Something on this CPU refilled meanwhile. */
			void *p = span_next_fast(cur);
			if (!p && span_fill_cache(cur))
				p = span_next_fast(cur);
			if (p) {
				if (s)
					spanheap_span_place(sh, s);
				return p;
			}
			mc->alloc[cls] = &spanheap_empty_span;
			uncache_span(sh, cur);
		}
	}
	if (!s)
		return NULL;
	cache_install(sh, mc, cls, s);
	return span_next_fast(s);
}

/* An object of class cls: the fast path, else the slow one. */
static inline void *alloc_small(struct spanheap *sh, unsigned cls,
                                unsigned flags)
{
	struct mm_pin pin = mm_port_pin();
	struct mcache *mc = &sh->caches[pin.cpu];
	void *p = (void *)spanheap_mag_pop(&mc->mag[cls]);
	if (!p)
		p = span_next_fast(mc->alloc[cls]);
	bool kick = false;
	if (__builtin_expect(!p, 0))
		p = alloc_slow(sh, cls, flags, &pin, &kick);
	mm_port_unpin(pin);
	if (kick)
		spanheap_sweeper_kick(sh);
	return p;
}

/* ---- Large objects
 * ------------------------------------------------------------ */

/* npages pages aligned to align bytes (a page multiple), as a large
 * span; npages 0 (size 0 with a large alignment) gets one page. */
static void *alloc_large(struct spanheap *sh, size_t npages, size_t align,
                         unsigned flags)
{
	struct mheap *h = sh->heap;
	if (npages == 0)
		npages = 1;
	size_t extra = align > MM_PAGE_SIZE ? align / MM_PAGE_SIZE - 1 : 0;
	if (npages > h->arena_pages || extra > h->arena_pages - npages)
		return NULL;
	if ((flags & MM_ATOMIC) && npages + extra > MHEAP_ATOMIC_MAX_PAGES)
		return NULL;
	unsigned hf =
	        mheap_flags_of(flags) | ((flags & MM_ZERO) ? MHEAP_ZERO : 0);
	uintptr_t raw = (uintptr_t)mheap_alloc_pages(h, npages + extra, hf);
	if (!raw)
		return NULL;
	uintptr_t base = raw;
	if (extra) {
		uintptr_t rem = raw % align;
		base = rem ? raw + (align - rem) : raw;
		size_t head = (base - raw) / MM_PAGE_SIZE;
		size_t tail = extra - head;
		if (head)
			mheap_free_pages(h, (void *)raw, head);
		if (tail)
			mheap_free_pages(h,
			                 (void *)(base + npages * MM_PAGE_SIZE),
			                 tail);
	}
	struct mspan *s = span_new(sh, 0, base, npages, flags);
	return s ? (void *)base : NULL;
}

static void free_large(struct spanheap *sh, struct mspan *s, void *p)
{
	uint8_t want = MSPAN_LARGE;
	if (!atomic_compare_exchange_strong_explicit(
	            &s->state, &want, MSPAN_DEAD, memory_order_acq_rel,
	            memory_order_relaxed))
		bad_object("a large span freed twice", p, s);
	/* span_free stores DEAD again; harmless. */
	spanheap_span_free(sh, s);
}

/* ---- The API
 * ------------------------------------------------------------------- */

static size_t pages_for(size_t size)
{
	return size / MM_PAGE_SIZE + (size % MM_PAGE_SIZE != 0);
}

static void *alloc_any(struct spanheap *sh, size_t size, size_t align,
                       unsigned flags)
{
	void *p = NULL;
	bool large = true; /* the page heap zeroed it (MHEAP_ZERO) */
	if (size > sh->heap->arena_pages * MM_PAGE_SIZE) {
		p = NULL;
	} else if (align <= 16 && size <= SC_MAX_SIZE) {
		p = alloc_small(sh, sizeclass_of(size), flags);
		large = false;
	} else if (align <= MM_PAGE_SIZE && size <= SC_MAX_SIZE) {
		unsigned cls = sizeclass_of(size > align ? size : align);
		while (cls < SC_NCLASSES && sizeclass_info[cls].size % align)
			cls++;
		large = cls >= SC_NCLASSES;
		p = !large ? alloc_small(sh, cls, flags)
		           : alloc_large(sh, pages_for(size), align, flags);
	} else {
		p = alloc_large(sh, pages_for(size), align, flags);
	}
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
	return p;
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
	    ((flags & MM_NO_GROW) || !mag_slab_make(sh, cpu)))
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
	void *p = alloc_slow(sh, sizeclass_of(size), flags, &pin, &kick);
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
	struct mspan *s = sh->caches[pin.cpu].alloc[sizeclass_of(size)];
	uint64_t ac = s->alloc_cache;
	if (__builtin_expect(ac == 0, 0))
		return alloc_fast_miss(sh, size, flags, pin);
	void *p = span_take(s, ac);
	unsigned cls = s->sizeclass, k = sh->mag_fill[cls];
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
	if (__builtin_expect(size <= SC_MAX_SIZE && !(flags & MM_ZERO), 1)) {
		return spanheap_alloc_mag(sh, sh->mag_by16[(size + 15) / 16],
		                          size, flags);
	}
	return alloc_any(sh, size, 16, flags);
}

void *spanheap_alloc_aligned(struct spanheap *sh, size_t size, size_t align,
                             unsigned flags)
{
	bool pow2 = align && !(align & (align - 1));
	if (!(pow2 && align <= MM_PAGE_SIZE) &&
	    !(align > MM_PAGE_SIZE && align % MM_PAGE_SIZE == 0))
		return NULL;
	return alloc_any(sh, size, align < 16 ? 16 : align, flags);
}

void *spanheap_calloc(struct spanheap *sh, size_t n, size_t size,
                      unsigned flags)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total))
		return NULL;
	return spanheap_alloc(sh, total, flags | MM_ZERO);
}

/* The size an allocation of size bytes actually gets. */
static size_t rounded_size(size_t size)
{
	if (size <= SC_MAX_SIZE)
		return sizeclass_info[sizeclass_of(size)].size;
	return pages_for(size) * MM_PAGE_SIZE;
}

/*
 * Resizes the large span s (p's: the caller owns it) to npages pages in
 * place: the pages after it if they are free (mheap_extend_pages), or its
 * tail given back. True if it did. Thread context: the page heap may map
 * pages and sleep. Its table entries are set before it grows into pages
 * and after it leaves them, so that a lookup of its own pages always
 * finds it; npages and elemsize change under the heap lock (the owner
 * reads them; the checker runs when nothing allocates).
 */
static bool large_resize(struct spanheap *sh, struct mspan *s, size_t npages)
{
	struct mheap *h = sh->heap;
	size_t have = s->npages;
	uintptr_t at = s->base + npages * MM_PAGE_SIZE;
	if (npages > have) {
		if (!mheap_extend_pages(h, (void *)s->base, have,
		                        npages - have))
			return false;
		mheap_span_set(h, s->base + have * MM_PAGE_SIZE, npages - have,
		               s);
	} else if (npages < have) {
		mheap_span_set(h, at, have - npages, MHEAP_SPAN_FREED_LARGE);
	}
	unsigned long irq = mm_lock_acquire(&h->lock);
	s->npages = (uint32_t)npages;
	s->elemsize = (uint32_t)min_sz(npages * MM_PAGE_SIZE, UINT32_MAX);
	sh->large_in_use_pages = sh->large_in_use_pages + npages - have;
	mm_lock_release(&h->lock, irq);
	if (npages < have)
		mheap_free_pages(h, (void *)at, have - npages);
	return true;
}

/*
 * A large object grows in place into free pages after it; failing that
 * it moves, with an eighth more than asked for, so that a buffer grown a
 * little at a time is copied a logarithmic number of times, not at every
 * step (a file read 64 KiB at a time into one buffer up to 256 MiB took
 * 79 s copying at every step, against glibc's 0.23). A large object that
 * shrinks gives its tail pages back. With MM_ZERO every byte past size up
 * to the usable size is zero afterwards, as the allocation left them, so
 * a later growth in place reads zeros too.
 */
void *spanheap_realloc(struct spanheap *sh, void *p, size_t size,
                       unsigned flags)
{
	if (!p)
		return spanheap_alloc(sh, size, flags);
	if (size == 0) {
		spanheap_free(sh, p);
		return NULL;
	}
	uint32_t idx;
	struct mspan *s = span_of(sh, p, &idx, "realloc");
	bool large = atomic_load_explicit(&s->state, memory_order_relaxed) ==
	             MSPAN_LARGE;
	size_t old = spanheap_usable_size(sh, p);
	bool keep = size <= old && rounded_size(size) >= old / 2 &&
	            (old <= SC_MAX_SIZE || rounded_size(size) == old);
	if (!keep && large && size > SC_MAX_SIZE && !(flags & MM_ATOMIC) &&
	    size <= sh->heap->arena_pages * MM_PAGE_SIZE)
		keep = large_resize(sh, s, pages_for(size));
	if (keep) {
		if (flags & MM_ZERO) {
			/* Past the old usable size: pages it grew into,
			 * whatever they held; below it, past size: what the
			 * caller gave up. */
			size_t from = min_sz(size, old);
			mm_memset((char *)p + from, 0,
			          spanheap_usable_size(sh, p) - from);
		}
		return p;
	}
	size_t want = size;
	if (large && size > old && size > SC_MAX_SIZE && !(flags & MM_ATOMIC))
		want = size + size / 8 > size ? size + size / 8 : size;
	void *n = spanheap_alloc(sh, want, flags & ~MM_ZERO);
	if (!n && want != size)
		n = spanheap_alloc(sh, size, flags & ~MM_ZERO);
	if (!n)
		return NULL;
	size_t copy = min_sz(old, size);
	mm_memcpy(n, p, copy);
	if (flags & MM_ZERO)
		mm_memset((char *)n + copy, 0,
		          spanheap_usable_size(sh, n) - copy);
	spanheap_free(sh, p);
	return n;
}

size_t spanheap_usable_size(struct spanheap *sh, const void *p)
{
	uint32_t idx;
	struct mspan *s = span_of(sh, p, &idx, "usable size");
	if (atomic_load_explicit(&s->state, memory_order_relaxed) ==
	    MSPAN_LARGE)
		return (size_t)s->npages * MM_PAGE_SIZE;
	return s->elemsize;
}

/* A free of object idx of s that carries its free marker: say what is
 * wrong. Freed since it was handed out (its local or pending bit, or a
 * magazine) is a double free, and so is one a refill put into a magazine
 * and no one took (below freeindex, or in alloc_bits once folded); never
 * handed out since its span last folded is a free of an object that is
 * not allocated. */
__attribute__((noreturn, noinline)) static void
free_refused(struct mspan *s, uint32_t idx, uintptr_t a)
{
	unsigned w = idx / 64, b = idx % 64;
	bool allocated = idx < atomic_load_explicit(&s->freeindex,
	                                            memory_order_acquire) ||
	                 (load_relaxed64(&s->alloc_bits[w]) >> b & 1);
	bool freed = (load_relaxed64(&s->local_free[w]) |
	              load_relaxed64(&s->pending[w])) >>
	                     b &
	             1;
	if (allocated || freed)
		bad_object("double free", (void *)a, s);
	bad_object("free of an object that is not allocated (a double "
	           "free?)",
	           (void *)a, s);
}

#ifdef MM_PORT_RSEQ
/*
 * mag_push as a restartable sequence (mm/rseq.h) on this CPU's magazine
 * mag_off bytes into its array: the CPU's index, the magazine, its top
 * and limit, the slot, the marker (cookie ^ a, in object a's word 1); the
 * commit is the store of the raised top. A restart repeats the slot's
 * store (above the top, read by no one) and the marker's (the same value).
 * Returns false, having stored nothing, if the magazine is full. Any
 * context but NMI, nothing pinned.
 */
static inline __attribute__((always_inline)) bool
rseq_push(struct spanheap *sh, size_t mag_off, uintptr_t a, uintptr_t marker)
{
	uintptr_t *t;
	struct mmag *m;
	unsigned long cpu;
	bool full;
	__asm__ volatile(
	        "1:\n\t" MM_PORT_RSEQ_CPU "\n\t"
	        "movq %c[mags](%[sh], %[cpu], 8), %[m]\n\t"
	        "movq (%[m], %[off]), %[t]\n\t"
	        "cmpq 8(%[m], %[off]), %[t]\n\t"
	        "jae 2f\n\t"
	        "movq %[a], (%[t])\n\t"
	        "movq %[mk], 8(%[a])\n\t"
	        "leaq 8(%[t]), %[t]\n\t"
	        "movq %[t], (%[m], %[off])\n" /* the commit */
	        "2:\n\t" MM_RSEQ_RECORD("1b", "2b")
	        : "=@ccae"(full), [t] "=&r"(t), [m] "=&r"(m), [cpu] "=&r"(cpu)
	        : [sh] "r"(sh), [off] "r"(mag_off), [a] "r"(a),
	          [mk] "r"(marker), [mags] "i"(offsetof(struct spanheap, mags)),
	          MM_PORT_RSEQ_CPU_ARGS
	        : "memory");
	return !full;
}
#endif

/*
 * Frees object idx of the small span s (checked: in use, p the start of
 * object idx < marked). The object must be allocated: every free object
 * below marked carries the free marker (cookie ^ address) in its second
 * word, from its free until it is handed out again, whichever way it
 * went; so the marker alone tells, with no look at the span's bitmaps
 * (another cache line). Then, pinned (or as a restartable sequence,
 * rseq_push), into this CPU's magazine
 * (last in, first out: the next allocation of the class gets it back
 * while it is still in cache), whose older half goes back to the spans
 * when it is full (mag_full). Every free takes the magazine, those of
 * objects of this CPU's own cached span too: a local bit in the span
 * (Go's and mimalloc's way) is reused only when the span's allocation
 * cache runs dry, after the allocations have walked the rest of the span,
 * and in the mixed-size workload that walk cost a fifth of the time (24
 * against 19-20 ns an op). Two CPUs freeing one object at the same
 * instant may both pass the marker test: the check and the mark are not
 * one atomic operation.
 */
static inline __attribute__((always_inline)) void
free_small(struct spanheap *sh, struct mspan *s, void *p)
{
	uintptr_t a = (uintptr_t)p, cookie = sh->mag_cookie;
	uintptr_t *o = obj_words(a);
	if (__builtin_expect(o[1] == (cookie ^ a), 0))
		free_refused(s, obj_index(s, a - s->base), a);
#ifdef MM_PORT_RSEQ
	if (__builtin_expect(!rseq_push(sh, s->mag_offset, a, cookie ^ a), 0))
		free_unpinned(sh, a, s->sizeclass);
#else
	struct mm_pin pin = mm_port_pin_fast();
	struct mmag *m =
	        (struct mmag *)((char *)sh->mags[pin.cpu] + s->mag_offset);
	uintptr_t *t = mag_top(m);
	if (__builtin_expect(t >= m->limit, 0)) {
		mag_full(sh, a, s->sizeclass, pin);
		return;
	}
	mag_push(m, t, a, cookie);
	mm_port_unpin_fast(pin);
#endif
}

/* Everything the fast path of spanheap_free does not take: NULL, large
 * spans, and misuse (span_of says what is wrong). */
static __attribute__((noinline)) void free_slow(struct spanheap *sh, void *p)
{
	if (!p)
		return;
	uint32_t idx;
	struct mspan *s = span_of(sh, p, &idx, "free");
	if (atomic_load_explicit(&s->state, memory_order_relaxed) ==
	    MSPAN_LARGE)
		free_large(sh, s, p);
	else if (idx >= atomic_load_explicit(&s->marked, memory_order_acquire))
		free_refused(s, idx, (uintptr_t)p); /* never handed out */
	else
		free_small(sh, s, p);
}

/*
 * The fast path: the span from the lock-free table, the checks (p the
 * start of an object below marked, not yet free), then the pin and the
 * magazine. No test of the entry or the state: a large span's dinv and
 * marked are 0, a span's marked is 0 before it dies, and an entry that is
 * no span is a zeroed block (mheap.h), so each fails the checks and goes
 * the slow way, which tells them apart. The object keeps its span in use,
 * so nothing needs the pin before the magazine. Any context but NMI.
 */
SPANHEAP_FAST void spanheap_free(struct spanheap *sh, void *p)
{
	/* An address below the base wraps to a huge index. */
	size_t i = ((uintptr_t)p - sh->arena_base) >> MM_PAGE_SHIFT;
	if (__builtin_expect(i < atomic_load_explicit(&sh->spanmap_pages,
	                                              memory_order_acquire),
	                     1)) {
		/* A span, or one of the table's zeroed marks (mheap.h), on
		 * which the checks below fail. */
		struct mspan *s = atomic_load_explicit(&sh->spanmap[i],
		                                       memory_order_acquire);
		uint32_t off = (uint32_t)((uintptr_t)p - s->base);
		/* Beyond marked: no marker to test, never handed out. */
		if (__builtin_expect(
		            obj_start_index(s, off) <
		                    atomic_load_explicit(&s->marked,
		                                         memory_order_acquire),
		            1)) {
			free_small(sh, s, p);
			return;
		}
	}
	free_slow(sh, p);
}

/* ---- Set-up
 * ---------------------------------------------------------------------- */

void spanheap_config_default(struct spanheap_config *cfg)
{
	*cfg = (struct spanheap_config){
	        .pending_permille = SPANHEAP_DEFAULT_PENDING_PERMILLE,
	        .min_pending_bytes = SPANHEAP_DEFAULT_MIN_PENDING,
	        .period_ns = SPANHEAP_DEFAULT_PERIOD_NS,
	        .batch_spans = SPANHEAP_DEFAULT_BATCH_SPANS,
	        .cpu_permille = SPANHEAP_DEFAULT_CPU_PERMILLE,
	};
}

bool spanheap_init(struct spanheap *sh, struct mheap *h,
                   const struct spanheap_config *cfg)
{
	spanheap_assert_can_sleep("spanheap_init");
	if (cfg->pending_permille == 0 || cfg->pending_permille > 1000 ||
	    cfg->batch_spans == 0 || cfg->period_ns == 0 ||
	    cfg->cpu_permille == 0 || cfg->cpu_permille > 1000) {
		mm_log("spanheap: bad config: pending %u per mille, batch %u "
		       "spans, period %lu ns",
		       cfg->pending_permille, cfg->batch_spans,
		       (unsigned long)cfg->period_ns);
		return false;
	}
#ifdef MM_PORT_RSEQ
	/* The fast paths are sequences only an initialised table restarts
	 * (mm/port.h, MM_PORT_RSEQ): without it an interrupt that uses the
	 * magazine would corrupt the one it interrupted. */
	if (mm_rseq_count() == 0) {
		mm_log("spanheap: MM_PORT_RSEQ, but no restartable sequences: "
		       "mm_rseq_init was not called, or the linker script "
		       "dropped the section mm_rseq");
		return false;
	}
#endif
	mm_memset(sh, 0, sizeof(*sh));
	sh->heap = h;
	sh->arena_base = h->arena_base;
	sh->arena_bytes = h->arena_pages * MM_PAGE_SIZE;
	sh->spanmap = h->spanmap;
	sh->cfg = *cfg;
	/* Start high enough that sg - 3 never wraps below 0 in practice. */
	atomic_init(&sh->sweepgen, 4);
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		mm_lock_init(&sh->central[cls].lock, "mcentral",
		             MM_RANK_CENTRAL);
	/* The magazines' cookie: any value not 0 works; one that differs
	 * per heap and per boot makes a stray match of a marker unlikely. */
	uint64_t z = mm_port_now_ns() ^ (uintptr_t)sh;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	sh->mag_cookie = (uintptr_t)(z ^ (z >> 31)) | 1;
	/* The slots start 512 bytes into the slab: a pop reads the slot
	 * below the top, and at the page's first words it would falsely
	 * alias (4 KiB) the object it pops, whose second word the free and
	 * the alloc store to, when the object starts a page, the commonest
	 * place (see MHEAP_SPANMAP_SKEW). */
	uint32_t slots = (uint32_t)MAG_SLAB_SKEW;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		uint32_t max = SPANHEAP_MAG_BYTES / sizeclass_info[cls].size;
		if (max < SPANHEAP_MAG_MIN)
			max = SPANHEAP_MAG_MIN;
		if (max > SPANHEAP_MAG_MAX)
			max = SPANHEAP_MAG_MAX;
		sh->mag_max[cls] = max;
		/* mag_fill's k: 1 KiB of objects, at most 16, at most half
		 * the magazine; none below 2. */
		uint32_t fill = MAG_FILL_BYTES / sizeclass_info[cls].size;
		if (fill > MAG_FILL_MAX)
			fill = MAG_FILL_MAX;
		if (fill > max / 2)
			fill = max / 2;
		sh->mag_fill[cls] = (uint8_t)(fill < 2 ? 0 : fill);
		sh->mag_off[cls] = slots + 1; /* below it, the 0 */
		slots += 1 + max;
	}
	sh->mag_slab_pages =
	        ((size_t)slots * sizeof(uintptr_t) + MM_PAGE_SIZE - 1) /
	        MM_PAGE_SIZE;
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++) {
		for (unsigned cls = 0; cls < SC_NCLASSES; cls++) {
			sh->caches[cpu].alloc[cls] = &spanheap_empty_span;
			sh->caches[cpu].mag[cls] = (struct mmag){
			        .top = &mag_none[1], .limit = &mag_none[1]};
		}
		sh->mags[cpu] = sh->caches[cpu].mag;
		sh->caches[cpu].flushgen = 4;
	}
	sh->mags[MM_PIN_NONE] = mags_none;
	for (size_t i = 0; i <= SC_MAX_SIZE / 16; i++)
		sh->mag_by16[i] =
		        (uint16_t)(sizeclass_by16[i] * sizeof(struct mmag));
	size_t np = spans_pages(STRUCTS_PER_PAGE * 4);
	struct spanheap_spans *a = mheap_alloc_pages(h, np, 0);
	if (!a) {
		mm_log("spanheap: no memory for the span array");
		return false;
	}
	*a = (struct spanheap_spans){.cap = (np * MM_PAGE_SIZE - sizeof(*a)) /
	                                    sizeof(void *),
	                             .npages = np};
	a->v = (struct mspan **)(a + 1);
	atomic_init(&a->refs, 1);
	sh->spans = a;
	mm_event_init(&sh->sweeper.wake, "spanheap_sweep");
	mm_event_init(&sh->sweeper.pace, "spanheap_pace");
	mm_event_init(&sh->sweeper.cycle_done, "spanheap_cycle");
	return true;
}

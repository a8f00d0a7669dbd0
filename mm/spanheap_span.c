/*
 * mm/spanheap_span.c: spans; the misuse checks that find a pointer's span
 * (span structs and the all-spans array are in spanheap_structs.c, large
 * objects in spanheap_large.c).
 *
 * Purpose: the span layer under the per-CPU caches and the central lists:
 * make a span from the page heap, fold its frees into its bitmaps, give it
 * back when empty; and the span of a pointer, checked, for the free and the
 * misuse reports. Modelled on the Go runtime's mspan (mheap.go, mbitmap.go).
 *
 * Representation: struct mspan (mspan.h); spanheap.c says what its bits,
 * freeindex, alloc_cache, marked and sweepgen mean. The page heap's span
 * table maps each of a span's pages to its struct while it lives.
 *
 * Algorithm: a new span takes its pages from the page heap (a thread
 * caller whose pages would grow it first folds queued spans if a cycle
 * is owed, spanheap_sweep_before_growth; one the page heap refuses sweeps,
 * spanheap_reclaim, and asks once more), a struct from
 * spanheap_structs.c, then its table entries.
 * A fold commits [0, freeindex) to alloc_bits and clears the freed bits
 * (pending by one atomic exchange a word, local_free by its owner).
 *
 * Invariants: a span's table entries name it from before it is handed
 * out until after its last object is freed, so a lookup of its own pages
 * always finds it; a span is freed only empty and owned (on no list, not
 * cached, not queued).
 *
 * Locking: a span's fields are its owner's (spanheap.c says who owns a
 * span when); the heap's lock (MM_RANK_HEAP, a leaf) is taken to make and
 * free a span's struct and to change a large span's size. No function
 * here takes a class lock itself (spanheap_reclaim's cycle does).
 *
 * Limits: a span's struct is never given back (spanheap_structs.c).
 */
#include "objcache.h"
#include "objcache_track.h"
#include "spanheap_internal.h"

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

/* ---- Misuse -------------------------------------------------------------- */

void spanheap_bad_object(const char *what, const void *p, const struct mspan *s)
{
	spanheap_track_report(s, (uintptr_t)p);
	mm_panic("spanheap: %s: pointer %p, span [%#lx, +%u pages), size "
	         "class %u (%zu-byte objects)",
	         what, p, (unsigned long)s->base, s->npages,
	         (unsigned)s->sizeclass, spanheap_object_bytes(s));
}

void spanheap_bad_class(unsigned cls, const char *fn)
{
	mm_panic("spanheap: %s: size class %u out of range (the small "
	         "classes are 1 to %u)",
	         fn, cls, (unsigned)SC_NCLASSES - 1);
}

/* The same, with the call that was given p: "OP of WHAT". */
__attribute__((noreturn)) static void bad_object_op(const char *op,
                                                    const char *what,
                                                    const void *p,
                                                    const struct mspan *s)
{
	spanheap_track_report(s, (uintptr_t)p);
	mm_panic("spanheap: %s of %s: pointer %p, span [%#lx, +%u pages), "
	         "size class %u (%zu-byte objects)",
	         op, what, p, (unsigned long)s->base, s->npages,
	         (unsigned)s->sizeclass, spanheap_object_bytes(s));
}

/* p is on pages a large free or a shrink marked (MHEAP_SPAN_FREED_LARGE):
 * the object the ring remembers there, where p is in it; a second free
 * only at its start. Until a review every such pointer was called a
 * large span freed twice, a live object's tail that a realloc gave back
 * too. */
__attribute__((noreturn)) static void freed_large(struct spanheap *sh,
                                                  const char *op, const void *p)
{
	struct spanheap_where w = {0};
	if (!spanheap_freed_large_find(sh, (uintptr_t)p, &w))
		mm_panic("spanheap: %s of %p: on pages a large object gave "
		         "back (its free, or a realloc's shrink of it), one of "
		         "the heap's last %u large frees no more: a large span "
		         "freed twice, or used after its free",
		         op, p, (unsigned)SPANHEAP_FREED_LARGE_RING);
	if (w.span_base == w.start && w.offset == 0)
		mm_panic("spanheap: %s of %p: a large span freed twice (or "
		         "used after its free)",
		         op, p);
	if (w.span_base != w.start)
		mm_panic("spanheap: %s of %p: in the tail [%p, +%u pages) a "
		         "realloc gave back of the large object %p (+%u "
		         "pages): used after the shrink",
		         op, p, (void *)w.span_base, w.freed_pages,
		         (void *)w.start, w.span_pages);
	mm_panic("spanheap: %s of %p: %zu bytes into the large object %p (+%u "
	         "pages), freed since (a stale interior pointer)",
	         op, p, w.offset, (void *)w.start, w.span_pages);
}

/* The span table has no span for p: say what p is. */
__attribute__((noreturn)) static void
bad_pointer(struct spanheap *sh, const char *op, const void *p, void *entry)
{
	struct mheap *h = sh->heap;
	uintptr_t a = (uintptr_t)p;
	if (spanheap_meta_holds(sh, a))
		mm_panic("spanheap: %s of %p: in the heap's own metadata "
		         "(" SPANHEAP_META_WHAT "), never an object",
		         op, p);
	if (a < h->arena_base ||
	    a - h->arena_base >= h->arena_pages * MM_PAGE_SIZE)
		mm_panic("spanheap: %s of a foreign pointer %p: outside the "
		         "heap arena [%#lx, +%zu MiB) (a stack, static data, "
		         "another allocator's memory or a mapping?)",
		         op, p, (unsigned long)h->arena_base,
		         h->arena_pages * MM_PAGE_SIZE >> 20);
	if (entry == MHEAP_SPAN_PAGES)
		mm_panic("spanheap: %s of %p: page-heap memory used through "
		         "the object API (pages of mheap_alloc_pages)",
		         op, p);
	if (entry == MHEAP_SPAN_FREED_LARGE)
		freed_large(sh, op, p);
	mm_panic("spanheap: %s of %p: inside the heap arena but in no span "
	         "(never allocated, or its span was freed)",
	         op, p);
}

/* p is inside a slab of a named cache with spans of its own (an object
 * of that cache, or the slab's header at its base) given to the heap's
 * own calls (kfree, krealloc), which would free or resize the whole slab
 * under the cache's objects. */
__attribute__((noreturn)) static void own_object(struct spanheap *sh,
                                                 const char *op, const void *p,
                                                 const struct mspan *s)
{
	char name[SPANHEAP_OBJCACHE_NAME];
	objcache_owner_name(
	        sh, atomic_load_explicit(&s->objslab, memory_order_relaxed),
	        name);
	objcache_track_report_at(sh, s, (uintptr_t)p); /* poison mode */
	mm_panic("spanheap: %s of %p: an object of cache '%s' (a cache with "
	         "spans of its own, slab [%#lx, +%u pages)): give it back "
	         "with objcache_free (kmem_cache_free) to '%s'",
	         op, p, name, (unsigned long)s->base, s->npages, name);
}

/*
 * The span holding p, checked: in use, and p the start of an object.
 * *idx gets the object's index. op names the call for the messages.
 */
struct mspan *spanheap_span_of(struct spanheap *sh, const void *p,
                               uint32_t *idx, const char *op)
{
	/* Every free the fast path does not take, a zeroed heap's all:
	 * until a review it followed its NULL page heap. */
	spanheap_assert_set_up(sh);
	void *e = mheap_span_lookup(sh->heap, (uintptr_t)p);
	if (!mheap_span_is_span(e))
		bad_pointer(sh, op, p, e);
	struct mspan *s = e;
	uint8_t state = atomic_load_explicit(&s->state, memory_order_acquire);
	uintptr_t off = (uintptr_t)p - s->base;
	if (state == MSPAN_DEAD || off >= (uintptr_t)s->npages * MM_PAGE_SIZE)
		bad_object_op(op,
		              op[0] == 'f'
		                      ? "an object whose span was freed (a "
		                        "double free?)"
		                      : "a pointer into a freed span",
		              p, s);
	if (state == MSPAN_LARGE) {
		/* At the base too: no object starts there, it is the
		 * header, and until a review a kfree of it freed the slab
		 * under the cache's objects. */
		if (atomic_load_explicit(&s->objslab, memory_order_relaxed))
			own_object(sh, op, p, s);
		if (off != 0)
			bad_object_op(op,
			              "an interior pointer of a large object",
			              p, s);
		*idx = 0;
		return s;
	}
	uint32_t i = obj_index(s, off);
	if ((uintptr_t)i * s->elemsize != off || i >= s->nelems)
		bad_object_op(op, "an interior pointer", p, s);
	*idx = i;
	return s;
}

/* ---- Spans --------------------------------------------------------------- */

/* spanheap_span.h: a thread caller whose pages would grow the page heap
 * first folds queued spans until its pages came back, at most a budget,
 * if frees pending passed the sweeper's threshold or a cycle runs
 * (spanheap_sweep_before_growth); one the page heap refuses
 * sweeps (spanheap_reclaim) and asks once more: frees not swept yet are
 * memory too. An atomic caller gets NULL; its refusal was counted, and
 * the sweeper runs when frees pass its threshold. */
void *spanheap_span_pages(struct spanheap *sh, size_t npages, unsigned hflags,
                          unsigned flags)
{
	if (!(flags & MM_ATOMIC) && mheap_would_grow(sh->heap, npages))
		spanheap_sweep_before_growth(sh, npages);
	hflags |= MHEAP_SPAN_ENTRIES;
	void *p = mheap_alloc_pages(sh->heap, npages, hflags);
	if (!p && !(flags & MM_ATOMIC) && spanheap_reclaim(sh))
		p = mheap_alloc_pages(sh->heap, npages, hflags);
	return p;
}

/* Makes struct s (just taken from the free structs) the span of class
 * cls (0: large) over npages pages at base: fixed fields, empty bitmaps,
 * the heap's sweepgen, and last its state; rz: its poison side table
 * (all objects marked), or NULL. Under the heap lock. */
static void span_init_locked(struct spanheap *sh, struct mspan *s, unsigned cls,
                             uintptr_t base, size_t npages, void *rz)
{
	struct mheap *h = sh->heap;
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	/* Acquire and release: the table may grow without the heap lock,
	 * and a free that reads the copy must see the new entries' "none"
	 * (mheap_grow.c). */
	size_t mapped =
	        atomic_load_explicit(&h->spanmap_pages, memory_order_acquire);
	if (atomic_load_explicit(&sh->spanmap_pages, memory_order_relaxed) !=
	    mapped)
		atomic_store_explicit(&sh->spanmap_pages, mapped,
		                      memory_order_release);
	s->base = base;
	s->npages = (uint32_t)npages;
	s->elemsize = cls ? ci->size
	                  : (uint32_t)min_sz(npages * MM_PAGE_SIZE, UINT32_MAX);
	__atomic_store_n(&s->nelems, (uint16_t)(cls ? ci->nelems : 1),
	                 __ATOMIC_RELAXED);
	__atomic_store_n(&s->sizeclass, (uint8_t)cls, __ATOMIC_RELAXED);
	s->divmul = cls ? ci->divmul : 0;
	s->dinv = cls ? ci->dinv : 0;
	_Static_assert(SC_NCLASSES * sizeof(struct mmag) <= UINT16_MAX,
	               "a magazine's offset fits mag_offset");
	s->mag_offset = (uint16_t)(cls * sizeof(struct mmag));
	s->dshift = cls ? ci->dshift : 0;
	/* Both read by the lock-free readers (spanheap_track.c, _where.c),
	 * which check the state after: stored as they load them. */
	__atomic_store_n(&s->poison,
	                 (uint8_t)(rz ? (sh->track ? 1 | SPAN_TRACKED : 1) : 0),
	                 __ATOMIC_RELAXED);
	__atomic_store_n(&s->redzone, rz, __ATOMIC_RELAXED);
	atomic_store_explicit(&s->objslab, 0, memory_order_relaxed);
	atomic_store_explicit(&s->freeindex, 0, memory_order_relaxed);
	s->alloc_count = cls ? 0 : 1;
	s->alloc_cache = 0;
	atomic_store_explicit(&s->marked, rz ? ci->nelems : 0,
	                      memory_order_relaxed);
	/* list, next, prev already clear: it left its lists to be freed. */
	for (unsigned w = 0; w < SC_BITMAP_WORDS; w++) {
		atomic_store_explicit(&s->local_free[w], 0,
		                      memory_order_relaxed);
		atomic_store_explicit(&s->alloc_bits[w], 0,
		                      memory_order_relaxed);
		atomic_store_explicit(&s->pending[w], 0, memory_order_relaxed);
	}
	/* Read under the heap lock, which the flip holds: a span made
	 * after a flip is swept (sg), one made before it unswept once its
	 * taker puts it on a list. */
	atomic_store_explicit(
	        &s->sweepgen,
	        atomic_load_explicit(&sh->sweepgen, memory_order_relaxed),
	        memory_order_relaxed);
	atomic_store_explicit(&s->state, cls ? MSPAN_SMALL : MSPAN_LARGE,
	                      memory_order_release);
	if (!cls) {
		sh->large_in_use_pages += npages;
		sh->n.large_allocs++;
	}
}

/*
 * A new span from the page heap: a small span of class cls, or (cls 0) a
 * large span of npages pages at base (already allocated). NULL if memory
 * ran out (base is then freed). No lock held; pinned only if MM_ATOMIC.
 */
struct mspan *spanheap_span_new(struct spanheap *sh, unsigned cls,
                                uintptr_t base, size_t npages, unsigned flags)
{
	struct mheap *h = sh->heap;
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	void *rz = NULL;
	if (cls) {
		npages = ci->npages;
		base = (uintptr_t)spanheap_span_pages(
		        sh, npages, mheap_flags_of(flags), flags);
		if (!base || !spanheap_redzone_make(sh, cls, base, flags, &rz))
			return NULL;
	}
	struct mspan *s = NULL;
	while (!s) {
		if (!spanheap_structs_reserve(sh, flags)) {
			spanheap_redzone_put(sh, rz, cls);
			spanheap_pages_put(h, (void *)base, npages);
			return NULL;
		}
		unsigned long irq = mm_lock_acquire(&h->lock);
		s = spanheap_struct_get_locked(sh);
		if (s)
			span_init_locked(sh, s, cls, base, npages, rz);
		mm_lock_release(&h->lock, irq);
	}
	if (cls) {
		/* None handed out yet (marked 0): span_take raises it. */
		atomic_fetch_add_explicit(
		        &spanheap_central_of(sh, cls, __func__)->nspans, 1,
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
	if (s->poison)
		spanheap_poison_check_span(sh, s); /* all of them free now */
	/* marked first: a racing free's fast path (a misuse) then takes the
	 * slow one, which reads the state. */
	atomic_store_explicit(&s->marked, 0, memory_order_relaxed);
	atomic_store_explicit(&s->state, MSPAN_DEAD, memory_order_release);
	/* The poison table after the state: given back before it, a leak
	 * scan (spanheap_leak.c) of a world stopped while this thread was
	 * between the two read the table of a span still SMALL, unmapped by
	 * mm.debug_pagealloc (a fault with the world stopped) or reused. */
	if (s->poison)
		spanheap_poison_span_gone(sh, s);
	/* Entries before pages: once freed, the pages may be someone
	 * else's, with entries of their own. */
	if (!cls)
		spanheap_freed_large_note(sh, base, npages, base, npages);
	mheap_span_set(h, base, npages, cls ? NULL : MHEAP_SPAN_FREED_LARGE);
	if (cls)
		atomic_fetch_sub_explicit(
		        &spanheap_central_of(sh, cls, __func__)->nspans, 1,
		        memory_order_relaxed);
	/* Before the pages go: then they may be another's, shadow and all. */
	if (sh->cfg.poison)
		mm_port_shadow((void *)base, npages * MM_PAGE_SIZE,
		               MM_SHADOW_PAGE_FREE);
	mheap_free_pages(h, (void *)base, npages);
	unsigned long irq = mm_lock_acquire(&h->lock);
	if (!cls) {
		sh->large_in_use_pages -= npages;
		sh->n.large_frees++;
	} else {
		sh->n.freed_spans++;
	}
	spanheap_struct_put_locked(sh, s);
	mm_lock_release(&h->lock, irq);
}

/* Points alloc_cache and freeindex at the first free object at or after
 * freeindex. False if there is none. Owner only. */
bool spanheap_span_fill_cache(struct mspan *s)
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

__attribute__((noreturn)) static void bad_fold(struct mspan *s, unsigned w,
                                               uint64_t bits, const char *what)
{
	unsigned i = w * 64 + (unsigned)__builtin_ctzll(bits);
	spanheap_bad_object(what,
	                    (void *)(s->base + (uintptr_t)i * s->elemsize), s);
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
	unsigned nlocal = 0, nremote = 0, count = 0;
	for (unsigned w = 0; w < span_words(s); w++) {
		uint64_t a0 = load_relaxed64(&s->alloc_bits[w]);
		uint32_t lo = w * 64;
		uint64_t pre = fi >= lo + 64 ? ~(uint64_t)0
		               : fi > lo     ? ((uint64_t)1 << (fi - lo)) - 1
		                             : 0;
		uint64_t a = (a0 | pre) & word_mask(s->nelems, w);
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
	struct mcentral *c = spanheap_central_of(sh, s->sizeclass, __func__);
	if (nlocal)
		atomic_fetch_add_explicit(&c->nlocal, nlocal,
		                          memory_order_relaxed);
	if (nremote)
		atomic_fetch_add_explicit(&c->nremote, nremote,
		                          memory_order_relaxed);
	return nlocal + nremote;
}

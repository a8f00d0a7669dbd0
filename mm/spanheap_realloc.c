/*
 * mm/spanheap_realloc.c: the span heap's calls around the fast paths
 * (spanheap.c): zeroed arrays, reallocation, usable size, and what a
 * free, a realloc or a usable size of an object that is not allocated
 * says.
 *
 * Purpose: the API calls that build on allocation and free, and the
 * misuse verdicts both share, kept out of the fast paths' file.
 *
 * Representation: none of its own. An object's state is read as the free
 * path reads it (spanheap.c): its span's marked count, the free marker in
 * its second word, and for the verdicts the span's bitmaps.
 *
 * Algorithm. A realloc to no more than the object's usable size and at
 * least half of it keeps the object where it is (for a large one, only if
 * it needs as many pages); a large object otherwise grows into the free
 * pages after it or gives its tail back (spanheap_large_resize), also to
 * a small size of a class of one object a span no smaller than its pages
 * (stays_large); anything else allocates, copies and frees.
 *
 * Invariants: those of spanheap.c, which these calls keep by calling its
 * allocation and free; a realloc and a usable size check the object as a
 * free does (invariant 7) before they read or keep it.
 *
 * Locking: none of its own; the locks of the allocation, free and
 * spanheap_large_resize it calls. Contexts: spanheap_calloc and
 * spanheap_realloc as spanheap_alloc (MM_ATOMIC from interrupt handlers; a
 * large object grows in place only without it); spanheap_usable_size from any
 * context but NMI.
 *
 * Limits: a realloc never moves a small object to a smaller class unless
 * the new size is under half the old one.
 */
#include "spanheap_copy.h"
#include "spanheap_internal.h"

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
	return spanheap_pages_for(size) * MM_PAGE_SIZE;
}

/* Whether object idx of s was handed out since its span last folded:
 * allocated by freeindex or the bitmap, or freed and not folded yet. */
static bool handed_out_since_fold(struct mspan *s, uint32_t idx)
{
	unsigned w = idx / 64, b = idx % 64;
	bool allocated = idx < atomic_load_explicit(&s->freeindex,
	                                            memory_order_acquire) ||
	                 (load_relaxed64(&s->alloc_bits[w]) >> b & 1);
	bool freed = (load_relaxed64(&s->local_free[w]) |
	              load_relaxed64(&s->pending[w])) >>
	                     b &
	             1;
	return allocated || freed;
}

/* A call (op: "realloc", "usable size") given object idx of s that
 * carries its free marker, or that was never handed out: as
 * spanheap_free_refused (below) says for a free, the object's records
 * first (until a review a use after free's panic came without them). */
__attribute__((noreturn, noinline)) static void
use_refused(const char *op, struct mspan *s, uint32_t idx, uintptr_t a)
{
	spanheap_track_report(s, a);
	if (handed_out_since_fold(s, idx))
		mm_panic("spanheap: %s of an object already freed (a use after "
		         "free?): pointer %p, span [%#lx, +%u pages), size "
		         "class "
		         "%u (%zu-byte objects)",
		         op, (void *)a, (unsigned long)s->base, s->npages,
		         (unsigned)s->sizeclass, spanheap_object_bytes(s));
	mm_panic("spanheap: %s of an object that is not allocated: pointer "
	         "%p, span [%#lx, +%u pages), size class %u (%zu-byte objects)",
	         op, (void *)a, (unsigned long)s->base, s->npages,
	         (unsigned)s->sizeclass, spanheap_object_bytes(s));
}

/* The free's checks of small object idx of s at a (invariant 7): handed
 * out (below marked) and not freed since (no free marker; in poison mode
 * not free by its side-table entry either, as the free asks it,
 * spanheap_poison_freed); else use_refused. Until a review the marker
 * alone: after a write over it, the usable size of a freed poison object
 * was the free entry's UINT32_MAX, and a realloc handed it back. */
static inline void check_allocated(struct spanheap *sh, const char *op,
                                   struct mspan *s, uint32_t idx, uintptr_t a)
{
	if (idx >= atomic_load_explicit(&s->marked, memory_order_acquire) ||
	    obj_words(a)[1] == (sh->mag_cookie ^ a) ||
	    (s->poison &&
	     spanheap_redzone_asked(s, idx) == SPANHEAP_REDZONE_FREE))
		use_refused(op, s, idx, a);
}

/* The end of a realloc that keeps p (object idx of s) for size bytes,
 * where the caller may have written used bytes: in poison mode the red
 * zone checked and moved; with MM_ZERO, zeros past size up to the usable
 * size, or up to old bytes when the pages past them are ones a growth in
 * place took zeroed (spanheap_large_resize with MM_ZERO: it writes only
 * those that held data; a memset here made every one resident): past
 * used, the red zone; below it, past size, what the caller gave up. */
static void *kept(struct spanheap *sh, struct mspan *s, uint32_t idx, void *p,
                  size_t size, size_t used, size_t old, unsigned flags)
{
	if (s->poison)
		spanheap_redzone_resize(sh, s, idx, (uintptr_t)p, size);
	if (flags & MM_ZERO) {
		size_t from = min_sz(size, used);
		size_t to = min_sz(spanheap_usable_size(sh, p), old);
		if (to > from)
			mm_memset((char *)p + from, 0, to - from);
	}
	return p;
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
/* A realloc of an object of the guarded pool: a new object (of the
 * heap's, or the pool's again), the bytes asked copied; or, no more than
 * those asked and no memory, p as it is (no failure to inject). */
static void *guard_realloc(struct spanheap *sh, void *p, size_t size,
                           unsigned flags)
{
	size_t used = spanheap_guard_usable(sh, p, "realloc", true);
	bool within = size <= used;
	void *n = within ? spanheap_alloc_decided(sh, size, flags)
	                 : spanheap_alloc(sh, size, flags);
	if (!n && within && (flags & MM_ZERO))
		mm_memset((char *)p + size, 0, used - size);
	if (!n)
		return within ? p : NULL;
	mm_memcpy(n, p, min_sz(used, size));
	spanheap_free(sh, p);
	return n;
}

/* True if an object of old bytes in span s serves size as it is: no
 * larger, not under half of it, and a large one's pages exactly. A
 * poison object keeps a byte of red zone, as alloc_call's. */
static bool fits_in_place(const struct mspan *s, size_t size, size_t old)
{
	return size + (s->poison && old < SC_MAX_SIZE) <= old &&
	       rounded_size(size) >= old / 2 &&
	       (old <= SC_MAX_SIZE || rounded_size(size) == old);
}

/* True if a large object resized to size bytes stays a large object of
 * its own pages: a large size, or a small one whose class gives each
 * object a span of its own (28545 to 32768 bytes) with no fewer pages:
 * as a large object it takes no more memory, and no more span structs.
 * A shrink across the small/large boundary then gives its tail back
 * where it was, and the growth back extends it in place: until a review
 * such a shrink always moved the object to its class, and a buffer
 * resized between 32 KiB - 64 and 32 KiB + 1 copied 32 KiB every call
 * (700 ns a call under LD_PRELOAD, against glibc's 21 and jemalloc's
 * 158: tools/bench-cliffs). A class of several objects a span (20480
 * bytes, two a span of 10 pages) keeps them: the object moves, and its
 * free is a magazine's push again, not the page heap's. */
static bool stays_large(size_t size)
{
	if (size > SC_MAX_SIZE)
		return true;
	const struct sizeclass_info *ci = &sizeclass_info[sizeclass_of(size)];
	return ci->nelems == 1 &&
	       spanheap_pages_for(size) <= (size_t)ci->npages;
}

/* realloc's move of p, of which the caller may have written used bytes,
 * to a new object of size bytes (an eighth more if a large one grows):
 * the new object, or NULL, p untouched. */
static void *moved(struct spanheap *sh, void *p, size_t size, bool grows,
                   size_t used, unsigned flags)
{
	/* The eighth stops at the largest object there may be: past it the
	 * allocation of want would be refused. */
	size_t want = size, most = SPANHEAP_LARGE_MAX_PAGES * MM_PAGE_SIZE;
	if (grows && size > SC_MAX_SIZE && !(flags & MM_ATOMIC) && size < most)
		want = size + min_sz(size / 8, most - size);
	/* A large object is zeroed by its allocation, which writes only
	 * the pages that held data (a memset here made every page of it
	 * resident); a small one after the copy, which costs less. */
	unsigned zero = size > SC_MAX_SIZE ? 0 : MM_ZERO;
	void *n = spanheap_alloc_decided(sh, want, flags & ~zero);
	if (!n && want != size)
		n = spanheap_alloc_decided(sh, size, flags & ~zero);
	if (!n)
		return NULL;
	size_t copy = min_sz(used, size);
	mm_memcpy(n, p, copy);
	if (flags & zero)
		mm_memset((char *)n + copy, 0,
		          spanheap_usable_size(sh, n) - copy);
	spanheap_free(sh, p);
	return n;
}

void *spanheap_realloc(struct spanheap *sh, void *p, size_t size,
                       unsigned flags)
{
	if (!p)
		return spanheap_alloc(sh, size, flags);
	if (spanheap_bad_flags("realloc", size, flags))
		return NULL; /* p stays as it was */
	if (size == 0) {
		spanheap_free(sh, p);
		return NULL;
	}
	if (spanheap_guard_owns(&sh->guard, p))
		return guard_realloc(sh, p, size, flags);
	uint32_t idx;
	struct mspan *s = spanheap_span_of(sh, p, &idx, "realloc");
	bool large = atomic_load_explicit(&s->state, memory_order_relaxed) ==
	             MSPAN_LARGE;
	/* The free's checks: a small object must have been handed out and
	 * not freed since (no free marker). Without them, a size that keeps
	 * the object handed a freed one back as the caller's. */
	if (!large)
		check_allocated(sh, "realloc", s, idx, (uintptr_t)p);
	if (s->poison) /* a named cache's objects are its own */
		spanheap_redzone_not_owned(sh, s, idx, (uintptr_t)p, "realloc");
	size_t old = large ? (size_t)s->npages * MM_PAGE_SIZE : s->elemsize;
	/* What the caller may have written: in poison mode, what it asked
	 * for (the rest is the red zone, spanheap_redzone.c). */
	size_t used = s->poison ? spanheap_redzone_asked(s, idx) : old;
	bool keep = fits_in_place(s, size, old);
	bool fits = size <= SC_MAX_SIZE
	                    ? size <= sh->heap->arena_pages * MM_PAGE_SIZE
	                    : spanheap_large_possible(
	                              sh, spanheap_pages_for(size), 0, flags);
	/* No more than the usable size: p stays if it cannot move. */
	bool within = size <= (large ? old : used);
	/* It needs memory: one eligible call, p untouched if it fails;
	 * unless no arena holds it (alloc_call's refusal, not counted). */
	if (!keep && !within && fits &&
	    __builtin_expect(spanheap_fail_armed(sh), 0) &&
	    spanheap_fail_should(sh, size > SC_MAX_SIZE, flags))
		return NULL;
	/* A shrink gives pages back as a large free does, in any context
	 * and whatever an allocation of its size could get; a growth may
	 * map and sleep. */
	bool resizes = large && stays_large(size);
	bool shrinks = resizes && spanheap_pages_for(size) < s->npages;
	if (!keep && resizes && (shrinks || (fits && !(flags & MM_ATOMIC))))
		keep = spanheap_large_resize(sh, s, spanheap_pages_for(size),
		                             flags);
	if (keep)
		return kept(sh, s, idx, p, size, used, old, flags);
	void *n = moved(sh, p, size, large && size > old, used, flags);
	return n || !within ? n : kept(sh, s, idx, p, size, used, old, flags);
}

size_t spanheap_usable_size(struct spanheap *sh, const void *p)
{
	return spanheap_usable_size_as(sh, p, "usable size");
}

size_t spanheap_usable_size_as(struct spanheap *sh, const void *p,
                               const char *op)
{
	if (!p)
		return 0; /* as malloc_usable_size and Linux's ksize */
	if (spanheap_guard_owns(&sh->guard, p))
		return spanheap_guard_usable(sh, p, op, false);
	uint32_t idx;
	struct mspan *s = spanheap_span_of(sh, p, &idx, op);
	if (atomic_load_explicit(&s->state, memory_order_relaxed) ==
	    MSPAN_LARGE)
		return (size_t)s->npages * MM_PAGE_SIZE;
	/* A freed object's size is no one's to use: the free's checks, as
	 * spanheap.h promises (they read the object's second word, which
	 * its owner's caller has in cache). */
	check_allocated(sh, op, s, idx, (uintptr_t)p);
	/* Poison mode: the bytes asked for; past them is the red zone. */
	return s->poison ? spanheap_redzone_asked(s, idx) : s->elemsize;
}

void spanheap_check_free_as(struct spanheap *sh, const void *p, const char *op)
{
	spanheap_usable_size_as(sh, p, op); /* foreign, interior, freed */
	if (!p || spanheap_guard_owns(&sh->guard, p))
		return;
	uint32_t idx;
	struct mspan *s = spanheap_span_of(sh, p, &idx, op);
	if (s->poison) /* a named cache's objects are its own, as a free's */
		spanheap_redzone_not_owned(sh, s, idx, (uintptr_t)p, op);
}

/* A free of object idx of s that carries its free marker: say what is
 * wrong. Freed since it was handed out (its local or pending bit, or a
 * magazine) is a double free, and so is one a refill put into a magazine
 * and no one took (below freeindex, or in alloc_bits once folded); never
 * handed out since its span last folded is a free of an object that is
 * not allocated. */
__attribute__((noreturn, noinline)) void
spanheap_free_refused(struct mspan *s, uint32_t idx, uintptr_t a)
{
	if (handed_out_since_fold(s, idx))
		spanheap_bad_object("double free", (void *)a, s);
	spanheap_bad_object("free of an object that is not allocated (a double "
	                    "free?)",
	                    (void *)a, s);
}

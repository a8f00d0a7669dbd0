/*
 * mm/spanheap_span.h: the span layer's calls (spanheap_span.c) as the
 * span heap's other files use them: misuse reports, a pointer's checked
 * span, making, folding, placing and freeing spans, large objects; and
 * taking a cached span's next free object (inline, for the fast paths).
 * Included by spanheap_internal.h; not for the heap's users.
 */
#ifndef MM_SPANHEAP_SPAN_H
#define MM_SPANHEAP_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mspan.h"
#include "spanheap.h"
#include "spanheap_redzone.h"

/* Panics naming p, its span and its class: what is wrong. */
__attribute__((noreturn)) void
spanheap_bad_object(const char *what, const void *p, const struct mspan *s);

/* Panics naming fn and cls, a class index out of [1, SC_NCLASSES)
 * (spanheap_span.c). */
__attribute__((noreturn, cold)) void spanheap_bad_class(unsigned cls,
                                                        const char *fn);

/*
 * cls, if it is a size class of small objects, [1, SC_NCLASSES); else
 * panics naming fn. For the slow paths' class indexes (the loops over
 * every class, a span's class): the arrays indexed by class lie inside
 * struct spanheap, so an index one past the end reads the next field,
 * where no sanitizer sees it. A compare and a branch never taken; the
 * fast paths do not call it (their class comes from a checked span).
 * Any context.
 */
static inline unsigned spanheap_class_checked(unsigned cls, const char *fn)
{
	if (__builtin_expect(cls - 1 >= SC_NCLASSES - 1, 0))
		spanheap_bad_class(cls, fn);
	return cls;
}

/* A free of object idx of s, at a, that carries its free marker or was
 * never handed out: panics saying which misuse it is (spanheap_realloc.c). */
__attribute__((noreturn, noinline)) void
spanheap_free_refused(struct mspan *s, uint32_t idx, uintptr_t a);

/* Span structs and the all-spans array (spanheap_structs.c). Gives back
 * pages the span heap took and no span holds. Any context but NMI, no
 * lock held. */
void spanheap_pages_put(struct mheap *h, void *p, size_t npages);
/* Makes sure a struct is free for the next span (flags: the allocation's);
 * false if memory ran out. No lock held. */
bool spanheap_structs_reserve(struct spanheap *sh, unsigned flags);
/* A free struct (NULL if none: reserve first). Locking: the heap's lock
 * must be held. */
struct mspan *spanheap_struct_get_locked(struct spanheap *sh);
/* Puts dead span s's struct back on the free list, its in-use bit
 * cleared. Locking: the heap's lock must be held. */
void spanheap_struct_put_locked(struct spanheap *sh, struct mspan *s);
/* The first entry at or after i of a snapshot's array whose struct was
 * in use (off the free list) when looked at, or snap->len: a walk of the
 * spans in use that skips the peak's dead structs a bitmap word at a
 * time. Any context that holds the snapshot; no lock. */
size_t spanheap_snapshot_next_inuse(const struct spanheap_snapshot *snap,
                                    size_t i);
/* For the checker: the structs whose in-use bit is set, of the live
 * array's (to be those off the free list), under the heap's lock; and
 * whether s's is. */
size_t spanheap_structs_inuse_locked(struct spanheap *sh);
bool spanheap_struct_inuse_marked(const struct mspan *s);

/* The span of p, checked (in use, p an object's start; panics if not);
 * *idx gets the object's index. op names the call in the messages. */
struct mspan *spanheap_span_of(struct spanheap *sh, const void *p,
                               uint32_t *idx, const char *op);

/* A new small span of class cls, or (cls 0) a large one over npages pages
 * at base; NULL if memory ran out. No lock held; pinned only if
 * MM_ATOMIC. */
struct mspan *spanheap_span_new(struct spanheap *sh, unsigned cls,
                                uintptr_t base, size_t npages, unsigned flags);

/* npages from the page heap (hflags: enum mheap_alloc_flags) for a span
 * or a large object; NULL if it has none, after a thread caller's
 * sweep. Their span-table entries are left as they were
 * (MHEAP_SPAN_ENTRIES): the caller's span_new or pages_put sets them. */
void *spanheap_span_pages(struct spanheap *sh, size_t npages, unsigned hflags,
                          unsigned flags);

/* Points the span's allocation cache at its next free objects; false if
 * it has none. Owner only. */
bool spanheap_span_fill_cache(struct mspan *s);

/* Folds a span's frees into its bitmaps (the caller owns it); returns the
 * objects freed. */
unsigned spanheap_span_fold(struct spanheap *sh, struct mspan *s);

/* Frees an empty span the caller owns, or puts it on its class's swept
 * list: a non-empty one, or an empty one that is queued (whoever takes it
 * off the fold queue frees it); a listed span with a pending bit and no
 * queue entry is queued for a fold. Any context but NMI, no lock held. */
void spanheap_span_place(struct spanheap *sh, struct mspan *s);
void spanheap_span_free(struct spanheap *sh, struct mspan *s);

/* True if a free set one of s's pending bits since its last fold (relaxed
 * loads: a bit set meanwhile may be missed). Any context. */
static inline bool spanheap_span_has_pending(struct mspan *s)
{
	uint64_t any = 0;
	for (unsigned w = 0; w < SC_BITMAP_WORDS && w * 64 < s->nelems; w++)
		any |= atomic_load_explicit(&s->pending[w],
		                            memory_order_relaxed);
	return any != 0;
}

/* Large objects (spanheap_large.c): a span of their own, allocated, freed (a
 * second free panics) and resized in place (thread context; flags: enum
 * mm_alloc_flags, of which MM_NO_GROW counts). */
void *spanheap_large_alloc(struct spanheap *sh, size_t npages, size_t align,
                           unsigned flags);
/* False if spanheap_large_alloc refuses npages aligned to align with flags
 * whatever the heap holds: more than SPANHEAP_LARGE_MAX_PAGES, the
 * alignment's pages past the arena, an atomic one over
 * MHEAP_ATOMIC_MAX_PAGES (failure injection counts no such call). */
bool spanheap_large_possible(const struct spanheap *sh, size_t npages,
                             size_t align, unsigned flags);
void spanheap_large_free(struct spanheap *sh, struct mspan *s, void *p);
bool spanheap_large_resize(struct spanheap *sh, struct mspan *s, size_t npages,
                           unsigned flags);

/*
 * Takes the first free object of alloc_cache ac (s->alloc_cache, not 0)
 * for size bytes (poison mode's red zone: spanheap_redzone.c).
 * spanheap_span_fill_cache leaves no bit at or beyond nelems in it. Raises
 * marked past the object if it is the first one handed out at its index:
 * free objects are handed out lowest first, so those never handed out are
 * exactly the ones at or past marked, and every free one below it was
 * freed (so it carries its marker; a poison span is made with all marked).
 * Clears the object's marker word: it may hold a stale marker, a previous
 * span's at the same address. Owner, pinned.
 */
static inline __attribute__((always_inline)) void *
span_take(struct spanheap *sh, struct mspan *s, uint64_t ac, size_t size)
{
	unsigned bit = (unsigned)__builtin_ctzll(ac);
	uint32_t idx =
	        atomic_load_explicit(&s->freeindex, memory_order_relaxed) + bit;
	s->alloc_cache = (ac >> bit) >> 1;
	atomic_store_explicit(&s->freeindex, idx + 1, memory_order_relaxed);
	uintptr_t *o = (uintptr_t *)(s->base + (uintptr_t)idx * s->elemsize);
	if (idx >= atomic_load_explicit(&s->marked, memory_order_relaxed))
		atomic_store_explicit(&s->marked, idx + 1,
		                      memory_order_release);
	else if (__builtin_expect(s->poison, 0))
		return spanheap_poison_taken(sh, s, (uintptr_t)o, size);
	o[1] = 0; /* the free marker (free_small) */
	return o;
}

/* The next free object of the cached span s for size bytes, or NULL. */
static inline void *span_next_fast(struct spanheap *sh, struct mspan *s,
                                   size_t size)
{
	uint64_t ac = s->alloc_cache;
	return ac ? span_take(sh, s, ac, size) : NULL;
}

#endif

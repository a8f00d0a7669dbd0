/*
 * mm/palloc_internal.h: what palloc.c, palloc_grow.c, palloc_check.c and
 * pagecache.c share about struct palloc's representation. Not for owners:
 * they use palloc.h; tests use palloc_testing.h.
 *
 * Page indices ("pi") count pages from the arena's base; chunk c holds the
 * pages [c * 512, c * 512 + 512). Summary level l has root_entries << 3l
 * entries (whole blocks of 8 under every parent, so a merge never checks
 * bounds); an entry at level l covers 2^level_log_pages(l) pages.
 */
#ifndef MM_PALLOC_INTERNAL_H
#define MM_PALLOC_INTERNAL_H

#include "palloc.h"

#define PALLOC_NONE ((size_t)-1) /* "no page" as a page index */

/* A page index's position inside its chunk. */
#define PALLOC_CHUNK_MASK ((size_t)PALLOC_CHUNK_PAGES - 1)

/* One chunk's part of a page range: chunk c, bits [i, i + n). */
struct palloc_piece {
	size_t c;
	unsigned i, n;
};

/*
 * Cuts the next piece off the range [*pi, *pi + *left) at a chunk edge:
 * returns false when nothing is left. The loop over a range's chunks:
 *
 *	for (struct palloc_piece pc; palloc_next_piece(&pi, &left, &pc);)
 */
static inline bool palloc_next_piece(size_t *pi, size_t *left,
                                     struct palloc_piece *pc)
{
	if (*left == 0)
		return false;
	pc->c = *pi / PALLOC_CHUNK_PAGES;
	pc->i = (unsigned)(*pi & PALLOC_CHUNK_MASK);
	size_t room = PALLOC_CHUNK_PAGES - pc->i;
	pc->n = (unsigned)(room < *left ? room : *left);
	*pi += pc->n;
	*left -= pc->n;
	return true;
}

/* How palloc_update_locked may shortcut (flags). */
enum palloc_update {
	PALLOC_UPDATE_ALLOC = 1u
	                      << 0, /* the range was allocated (else freed) */
	PALLOC_UPDATE_CONTIG = 1u << 1, /* ... all of it: inner chunks whole */
};

static inline void palloc_assert_locked(const struct palloc *p, const char *fn)
{
	if (p->owner_lock && !mm_lock_held(p->owner_lock))
		mm_panic("palloc: %s called without the owner's lock", fn);
}

/*
 * Adds delta (wrapping: a negative delta as its two's complement) to the
 * free-page count. Under the owner's lock, the only writer; the store is
 * atomic because palloc_free_pages_hint reads the count without the lock.
 */
static inline void palloc_free_pages_add(struct palloc *p, size_t delta)
{
	size_t n = __atomic_load_n(&p->stats.free_pages, __ATOMIC_RELAXED);
	__atomic_store_n(&p->stats.free_pages, n + delta, __ATOMIC_RELAXED);
}

/* log2 of the chunks an entry of level l covers. */
static inline unsigned palloc_level_shift(const struct palloc *p, unsigned l)
{
	return PALLOC_LEVEL_BITS * (p->levels - 1 - l);
}

/* log2 of the pages an entry of level l covers. */
static inline unsigned palloc_level_log_pages(const struct palloc *p,
                                              unsigned l)
{
	return PALLOC_CHUNK_PAGES_LOG + palloc_level_shift(p, l);
}

static inline size_t palloc_level_entries(const struct palloc *p, unsigned l)
{
	return p->root_entries << (PALLOC_LEVEL_BITS * l);
}

static inline palloc_sum_t *palloc_leaf(const struct palloc *p)
{
	return p->summary[p->levels - 1];
}

static inline bool palloc_chunk_grown(const struct palloc *p, size_t c)
{
	return (p->grown[c / 64] >> (c % 64)) & 1;
}

static inline uintptr_t palloc_page_addr(const struct palloc *p, size_t pi)
{
	return p->arena_base + ((uintptr_t)pi << MM_PAGE_SHIFT);
}

/* The end of [base, base + npages pages), saturated (for messages). */
static inline uintptr_t palloc_range_limit(uintptr_t base, size_t npages)
{
	if (npages > (UINTPTR_MAX - base) >> MM_PAGE_SHIFT)
		return UINTPTR_MAX;
	return base + ((uintptr_t)npages << MM_PAGE_SHIFT);
}

/* True if the metadata bytes [addr, addr + nbytes) are mapped. */
bool palloc_meta_mapped(const struct palloc *p, const void *addr,
                        size_t nbytes);

/* True if all of chunk c's metadata beyond init's is mapped: its bitmaps
 * and its summary at every level below the root (palloc_grow.c's
 * invariant for a grown chunk). */
bool palloc_chunk_meta_mapped(const struct palloc *p, size_t c);

/*
 * Re-summarises the chunks holding the pages [pi, pi + npages) from their
 * bitmaps, then each level above from its children, stopping at the first
 * level where no summary changed. how: enum palloc_update.
 * Locking: the owner's lock must be held.
 */
void palloc_update_locked(struct palloc *p, size_t pi, size_t npages,
                          unsigned how);

/*
 * The first fit for npages by walking the summaries from the root, or
 * PALLOC_NONE. *hint receives a page index at or below the first free page
 * (Go's firstFree), for the caller to raise search_pi to.
 * Locking: the owner's lock must be held.
 */
size_t palloc_find_locked(const struct palloc *p, size_t npages, size_t *hint);

/*
 * Why [base, base + npages pages) is not a page-aligned range of grown
 * chunks inside the arena, with *bad the first offending page; NULL if it
 * is one.
 */
const char *palloc_range_problem(const struct palloc *p, uintptr_t base,
                                 size_t npages, uintptr_t *bad);

/* The runs of [pi, pi + npages) whose scavenged bits are clear (all of
 * it with PALLOC_NO_SCAV), into *b (palloc_alloc_backed_locked); the scan
 * stops when b is full. Locking: the owner's lock must be held. */
void palloc_note_backed(const struct palloc *p, size_t pi, size_t npages,
                        struct palloc_backed *b);

/* Records a refusal for the owner to log after unlocking. */
void palloc_refuse(struct palloc *p, const char *op, const char *reason,
                   uintptr_t base, uintptr_t limit, size_t npages);

/*
 * A corrupting call: mm_panic naming op, the range and the page at fault,
 * with the bitmaps and summary of that page's chunk and the search hint.
 */
__attribute__((noreturn)) void palloc_bad_free(const struct palloc *p,
                                               const char *op, uintptr_t base,
                                               size_t npages, uintptr_t bad,
                                               const char *why);

#endif

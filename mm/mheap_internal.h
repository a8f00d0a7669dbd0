/*
 * mm/mheap_internal.h: what the page heap's files (mheap.c,
 * mheap_alloc.c, mheap_grow.c, mheap_heads.c, mheap_scav.c) share. Not
 * for the heap's users (mheap.h) or tests (mheap_testing.h).
 */
#ifndef MM_MHEAP_INTERNAL_H
#define MM_MHEAP_INTERNAL_H

#include "mheap.h"
#include "mheap_testing.h"

/* mm/ includes no libc header; the compiler provides these (and may call
 * memset/memcpy, which every freestanding environment has). */
#define mm_memset __builtin_memset
#define mm_memcpy __builtin_memcpy

#define MHEAP_CHUNK_PAGES ((size_t)PALLOC_CHUNK_PAGES)

/* The background scavenger's batch: 64 KiB to 1 MiB, one TLB shootdown
 * each, at most MHEAP_SCAV_RUNS runs. */
#define MHEAP_SCAV_BATCH_PAGES MM_UNUSED_BATCH_PAGES
#define MHEAP_SCAV_MIN_PAGES   16
#define MHEAP_SCAV_RUNS        16
/* The most chunks one hold of the heap lock searches for pages to scavenge:
 * a search over a large arena drops the lock between such stretches. */
#define MHEAP_SCAV_SEARCH_CHUNKS 64
/* A free of at least this many pages may wake the idle scavenger. */
#define MHEAP_WAKE_PAGES 16
#define MHEAP_IDLE_NS    ((uint64_t)10 * 1000 * 1000 * 1000) /* at goal */
/* The "at goal" report: at most one line this often. */
#define MHEAP_REPORT_NS ((uint64_t)5 * 1000 * 1000 * 1000)
/* A sleep on someone else's growth; the grower wakes it sooner. */
#define MHEAP_GROW_WAIT_NS ((uint64_t)1000 * 1000 * 1000)

_Static_assert(MHEAP_SCAV_BATCH_PAGES <= MM_UNUSED_BATCH_PAGES &&
                       MHEAP_SCAV_BATCH_PAGES >= MHEAP_SCAV_MIN_PAGES &&
                       MHEAP_SCAV_MIN_PAGES * MM_PAGE_SIZE >= 64 * 1024,
               "background batches are at least 64 KiB");

/* A scavenge batch's runs while they are out of the free set, on h->taken
 * from the take to the return (the batch's own stack frame). palloc holds
 * them allocated, so only this list tells a free of one of their pages
 * (a double free: they were free when the batch took them) from a good
 * one. */
struct mheap_taken {
	struct palloc_run runs[MHEAP_SCAV_RUNS];
	size_t nruns;
	uint64_t seq; /* h->scav_takes when it took them: 1, 2, ... */
	struct mheap_taken *next;
};

/* The first run a scavenge batch has taken that holds a page of [base,
 * base + npages pages), or NULL. Locking: h->lock must be held. */
const struct palloc_run *mheap_taken_run_locked(const struct mheap *h,
                                                uintptr_t base, size_t npages);

/* mm_panics, naming the run, if any page of [base, base + npages pages)
 * is in a run a scavenge batch has taken: the caller is freeing pages
 * that were free already. Locking: h->lock must be held. */
void mheap_check_not_taken_locked(const struct mheap *h, uintptr_t base,
                                  size_t npages);

/* The free pages the reserve counts: palloc's, and those a scavenge batch
 * holds (they come back free within the batch; counting them as gone grew
 * a chunk for them). Locking: h->lock must be held. */
static inline size_t mheap_reserve_free_locked(const struct mheap *h)
{
	return h->pages.stats.free_pages + h->taken_pages;
}

/* Which counters a scavenge books its pages to. */
enum mheap_scav_kind {
	MHEAP_SCAV_BG,      /* the background thread */
	MHEAP_SCAV_FRAMES,  /* allocation while frames are short */
	MHEAP_SCAV_RELEASE, /* mheap_release_all */
};

/* mm_panics unless the caller may sleep: fn is a thread-only entry. */
static inline void mheap_assert_can_sleep(const char *fn)
{
	if (!mm_port_can_sleep())
		mm_panic("%s: thread-only call from an atomic context "
		         "(interrupt handler, interrupts off, or a lock held)",
		         fn);
}

/*
 * Gives back up to max free backed pages in one batch (at most
 * MHEAP_SCAV_BATCH_PAGES pages, MHEAP_SCAV_RUNS runs): takes them out of
 * the free set under the lock, clears their PTEs and shoots them down
 * without it, then returns them free and scavenged. With max == 0 the
 * background goal decides how many. Returns the pages released; 0 when
 * there is nothing (more) to do. Thread context, no mm lock held.
 */
size_t mheap_scavenge_batch(struct mheap *h, size_t max, unsigned palloc_flags,
                            enum mheap_scav_kind kind);

/* Unmaps a run the caller owns (allocated), in batches with a shootdown
 * each (_run), and frees it scavenged (_and_return). Thread context, no
 * mm lock held. */
void mheap_unmap_run(uintptr_t base, size_t npages);
void mheap_unmap_and_return(struct mheap *h, uintptr_t base, size_t npages);

/* After a free of npages pages (backed or not: either way the pages in
 * use, and with them the goal, fell): true, with idle cleared, if the
 * scavenger is idle, the run has MHEAP_WAKE_PAGES or more and the heap's
 * free backed pages are now over its goal; the caller then wakes
 * mheap_scav_wake_of(h) once it has let go of the lock. Locking: h->lock must
 * be held. */
bool mheap_free_wakes_locked(struct mheap *h, size_t npages);

/* The event that wakes the background thread scavenging h: its own, or
 * that of the heap whose thread serves h too (scav_by). Any context. */
static inline mm_event_t *mheap_scav_wake_of(struct mheap *h)
{
	return h->scav_by ? &h->scav_by->scav.wake : &h->scav.wake;
}

/* The event that ends the paced sleep of the thread scavenging h, which
 * an atomic caller's refill request wakes too (mheap_scav_thread.c,
 * bg_pace). Any context. */
static inline mm_event_t *mheap_scav_pace_of(struct mheap *h)
{
	return h->scav_by ? &h->scav_by->scav.pace : &h->scav.pace;
}

/* mheap_free_pages's first check, before its lock: panics, naming p, if
 * p is outside the arena, or if its first or last page is a span's of the
 * span heap (the entries of a span's pages are cleared before they are
 * freed: spanheap_span.c), an object freed as pages. Any context. */
void mheap_free_check_entries(struct mheap *h, const void *p, size_t npages);

/* The heads bitmap (mheap_heads.c): one bit per arena page, set on the
 * first page of each allocation of mheap_alloc_pages; it sits in the span
 * table's reservation, after its entries and its skew page. */
static inline _Atomic uint64_t *mheap_heads(const struct mheap *h)
{
	return (_Atomic uint64_t *)((char *)(h->spanmap - MHEAP_SPANMAP_SKEW) +
	                            h->arena_pages * sizeof(void *) +
	                            MM_PAGE_SIZE);
}

/* The heads bitmap's share of the span table's reservation: whole pages,
 * one per 64 chunks. */
size_t mheap_heads_bytes(size_t arena_pages);

/* Maps the heads bitmap's pages for chunks [0, upto) that are not mapped
 * yet; false if memory ran out (nothing more mapped). Only the grower
 * calls it. */
bool mheap_heads_grow(struct mheap *h, size_t upto);

/* Marks base as the first page of a run just allocated (_set), or clears
 * its bit as the page is freed or an allocation undone (_clear). Every
 * change is made under the lock, so neither needs an atomic
 * read-modify-write (a lock-prefixed one cost a free of one page 6 ns
 * of 52). Locking: h->lock must be held. */
void mheap_head_set_locked(struct mheap *h, uintptr_t base);
void mheap_head_clear_locked(struct mheap *h, uintptr_t base);

/* Whether page pi (an index into the arena) starts an allocation. */
bool mheap_head_is_set(const struct mheap *h, size_t pi);

/* mheap_free_pages's second check, before its lock: panics, naming p,
 * npages, the page and what starts there, if a page of the run after its
 * first starts another allocation (a span, another caller's run). A word
 * of the bitmap per 64 pages. Any context. */
void mheap_free_check_heads(struct mheap *h, const void *p, size_t npages);

/* mheap_free_pages in the debug mode (MHEAP_DEBUG_SCAV_ON_FREE): checked,
 * listed as a batch while it is unmapped, freed scavenged (mheap_scav.c).
 * Thread context, no mm lock held. */
void mheap_free_unmapping(struct mheap *h, uintptr_t base, size_t npages);

enum mheap_grow_result { MHEAP_GROW_OK, MHEAP_GROW_FAILED, MHEAP_GROW_BUSY };

/* What a growth is for: a run of npages pages, or npages more free
 * pages anywhere (the reserve). */
enum mheap_grow_for { MHEAP_GROW_FOR_RUN, MHEAP_GROW_FOR_RESERVE };

/* Grows the heap by enough whole chunks for npages (why: a run of them,
 * or that many more free pages), unless another caller is growing it
 * (MHEAP_GROW_BUSY). Wakes the waiters on `grown` either way it
 * ends, once it has claimed the growth; when the arena has no room for
 * it, it claims nothing and wakes no one (a thread waiting there for a
 * scavenge batch would wake the others, and they it, without end).
 * Thread context, or atomic with MHEAP_ATOMIC; no mm lock held. */
enum mheap_grow_result mheap_grow(struct mheap *h, size_t npages,
                                  enum mheap_grow_for why);

/* Sets stats for in-use and free pages from palloc. Locking: h->lock. */
void mheap_stats_locked(struct mheap *h, struct mheap_stats *st);

#endif

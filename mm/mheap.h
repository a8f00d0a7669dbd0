/*
 * mm/mheap.h: the page-level heap, the base the span heap builds on.
 *
 * A struct mheap owns a palloc over a reserved virtual arena and hands out
 * runs of pages, mapped and zeroed where they were scavenged. It grows
 * chunk by chunk and gives free memory back with a scavenger
 * (mheap_scav.c): a paced background thread keeping free backed pages near
 * a goal, a synchronous pass when frames are short,
 * mheap_release_all, and a debug mode that scavenges every page as it is
 * freed. Modelled on the Go runtime's mheap (mheap.go) and background
 * scavenger (mgcscavenge.go).
 *
 * Contexts. Allocation works from threads and, with MHEAP_ATOMIC, from
 * interrupt handlers or with interrupts disabled; freeing works from any
 * context but NMI. Everything else is thread context. A thread-only call
 * from an atomic context mm_panics naming the function.
 *
 * The layout (struct mheap, its configuration, counters and statistics)
 * is in mheap_types.h, included here.
 */
#ifndef MM_MHEAP_H
#define MM_MHEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mheap_scav.h"
#include "palloc.h"
#include "port.h"
#include "mheap_types.h"

#define MHEAP_DEFAULT_ARENA_BYTES   ((size_t)64 << 30) /* 64 GiB */
#define MHEAP_DEFAULT_GOAL_PERCENT  10
#define MHEAP_DEFAULT_CPU_PERMILLE  10  /* 1% of one CPU */
#define MHEAP_DEFAULT_RESERVE_PAGES 128 /* 512 KiB */

/* The largest MHEAP_ATOMIC request: an atomic caller must be able to undo
 * its allocation exactly (palloc_alloc_mask_locked) without a shootdown. */
#define MHEAP_ATOMIC_MAX_PAGES 64

/* Flags of mheap_alloc_pages. */
enum mheap_alloc_flags {
	/* The caller cannot sleep (an interrupt handler, interrupts off, a
	 * spinlock held): never sleep, never wait for another CPU. It may
	 * grow the heap itself when nobody else is growing; otherwise, or
	 * if memory is short, it gets NULL. At most MHEAP_ATOMIC_MAX_PAGES. */
	MHEAP_ATOMIC = 1u << 0,
	/* Fail rather than grow the heap. */
	MHEAP_NO_GROW = 1u << 1,
	/* Zeroed pages: only those that were not scavenged are written
	 * (scavenged ones read as zero), so a large zeroed allocation from
	 * fresh or given-back memory touches nothing. */
	MHEAP_ZERO = 1u << 2,
	/* Pages for a span, whose maker sets their span-table entries
	 * before it hands them out: left as they are, not marked
	 * MHEAP_SPAN_PAGES (which it overwrote at once: a large object's
	 * allocation and free wrote each page's entry three times). */
	MHEAP_SPAN_ENTRIES = 1u << 3,
};

/* Every flag: a call with any other bit set is refused (NULL, logged). */
#define MHEAP_ALLOC_FLAGS \
	(MHEAP_ATOMIC | MHEAP_NO_GROW | MHEAP_ZERO | MHEAP_SPAN_ENTRIES)

/* The defaults: 64 GiB arena, goal 10%, no low watermark, a 512 KiB
 * reserve, 1% CPU. */
void mheap_config_default(struct mheap_config *cfg);

/* Prepares h (nothing grown). Returns false, logging why, if cfg is
 * invalid or the arena cannot be reserved. Thread context. */
bool mheap_init(struct mheap *h, const struct mheap_config *cfg);

/* The address space mheap_init reserves for an arena of arena_bytes: the
 * arena, its span table and palloc's metadata (a caller that must fit
 * them under a limit, malloc/arena.c); 0 if the size is invalid. */
size_t mheap_reserved_bytes(size_t arena_bytes);

/* Of those, the span table's reservation, from h->spanmap less
 * MHEAP_SPANMAP_SKEW: an entry a page, one page more (the skew), and the
 * run-start bitmap (mheap_heads.c). */
size_t mheap_spanmap_bytes(size_t arena_pages);

/*
 * Returns npages contiguous pages, mapped and readable (zero where they
 * were scavenged), or NULL if npages is 0, too large (the arena, or
 * MHEAP_ATOMIC_MAX_PAGES for atomic calls), the arena is full, memory ran
 * out, or (MHEAP_ATOMIC) it would have to wait; nothing is leaked.
 * flags: enum mheap_alloc_flags. Thread context, or any context but NMI
 * with MHEAP_ATOMIC; no mm lock held.
 */
void *mheap_alloc_pages(struct mheap *h, size_t npages, unsigned flags);

/*
 * Grows the run of npages pages at p (from mheap_alloc_pages, the
 * caller's) by the extra pages right after it, if every one of them is a
 * free page of the grown heap; maps those the scavenger gave back. True
 * if the run is now npages + extra pages long; false, changing nothing,
 * if a page is in use or past the grown heap, or memory ran out (a page
 * the scavenger is unmapping is free: it waits for that). A "run" that
 * cannot be one (npages 0, p off a page or outside the arena, or npages
 * more than the arena has from p: a caller's bug) is refused the same
 * way, with an mm_log line saying which, and so are flags other than
 * MHEAP_NO_GROW and MHEAP_ZERO. With MHEAP_ZERO the extra pages read as
 * zero, and only those that held data are written (as an allocation's).
 * Sets no span table entry (the caller's to set). A
 * realloc's way to grow a large object without a copy. Pages taken below
 * the atomic reserve are made up by growing the heap, as an allocation's
 * are, unless flags hold MHEAP_NO_GROW. Thread context, no mm lock held.
 */
bool mheap_extend_pages(struct mheap *h, void *p, size_t npages, size_t extra,
                        unsigned flags);

/* True if an allocation of npages would probably grow h: its free pages
 * (backed or not) less the atomic callers' reserve are fewer than
 * npages. A hint, read without the lock (a run of npages may be missing
 * among more free pages): enough for a caller to do work first that may
 * free pages (spanheap_span_pages sweeps), never to rely on. Any context
 * but NMI. */
bool mheap_would_grow(struct mheap *h, size_t npages);

/* Grows h so that its free pages reach its reserve for atomic callers,
 * if they are short and nobody else is growing it: what an allocation
 * that leaves them short does, and an owner's set-up (spanheap_init), so
 * that the first atomic and MHEAP_NO_GROW allocations find pages. A heap
 * with no reserve is left as it is. False if its growth failed (no
 * memory for the chunk's metadata and page tables, or no arena left).
 * Thread context, no mm lock held. */
bool mheap_refill(struct mheap *h);

/* Frees pages from mheap_alloc_pages (a run, or any piece of one); a bad
 * free mm_panics, naming p: a pointer outside the arena, pages not
 * allocated, pages whose first or last one is a span's of the span heap
 * (an object freed as pages; the span, its pages and its class named),
 * and a count that reaches the first page of another allocation (a span
 * or another run: mheap_heads.c). Any context but NMI; no mm lock held. */
void mheap_free_pages(struct mheap *h, void *p, size_t npages);

/* Whether [p, p + n) lies on runs of mheap_alloc_pages and no page after
 * its first starts another allocation (mheap_heads.c): a copy inside one
 * run. A snapshot, without a lock; any context. A page of a run freed
 * since keeps the run's mark in the span table, so it may pass. */
bool mheap_run_holds(struct mheap *h, const void *p, size_t n);

/* Gives back every free backed page now (Go's debug.FreeOSMemory), and
 * waits for the scavenge batches other threads took before it to give
 * theirs back: on return no page freed before the call is backed.
 * Returns how many it gave back itself. Thread context, no mm lock. */
size_t mheap_release_all(struct mheap *h);

/* A consistent snapshot. Any context but NMI, no mm lock held. */
void mheap_stats(struct mheap *h, struct mheap_stats *st);

/*
 * The page states of chunk ci of the arena (chunk 0 starts at arena_base),
 * for heap maps: copies its allocation and scavenged bitmaps
 * (PALLOCBITS_WORDS words each; a set bit is an allocated or a scavenged
 * page) under h->lock. Pages the scavenger is unmapping show as allocated.
 * Returns false, copying nothing, when the chunk is not grown. Any context
 * but NMI, no mm lock held.
 */
bool mheap_chunk_bits(struct mheap *h, size_t ci, uint64_t *alloc,
                      uint64_t *scav);

/* mm_logs the memory info (never under the lock), each line headed
 * "mheap". Thread context. */
void mheap_dump(struct mheap *h);

/* mheap_dump with each line headed name instead: a span heap's metadata
 * heap's say "mheap meta" (spanheap_dump). Thread context. */
void mheap_dump_named(struct mheap *h, const char *name);

/* palloc_check_locked under h's lock, plus mheap.c's invariants 1, 3, 4
 * and 5. */
void mheap_check(struct mheap *h);

/* The span table (mheap_spanmap.h) is part of this interface. */
#include "mheap_spanmap.h"

#endif

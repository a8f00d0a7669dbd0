/*
 * mm/palloc.h: the page allocator, Go's pageAlloc for a kernel.
 *
 * A struct palloc hands out runs of 4 KiB pages from an arena, a chunk
 * aligned address range [arena_base, arena_limit) that grows 2 MiB chunk by
 * chunk, address-ordered first fit. It never touches the arena's memory
 * (only its own metadata), so the same code serves the kernel heap's
 * virtual arena and the physical frame pool. See palloc.c for the design.
 *
 * It has no lock of its own: its owner (the heap, the frame pool) holds an
 * mm lock around every _locked call, which asserts it when the owner gave
 * the lock to palloc_init. Growth maps metadata, which may allocate and take
 * other locks, so it is split: palloc_grow_prepare without the owner's lock,
 * then palloc_grow_commit_locked under it.
 *
 * Refused calls (a zero-page or larger-than-arena request, a grow outside
 * the arena or misaligned) change nothing and return 0 or false. mm_log
 * may not be called under the lock, so a _locked call records why in the
 * struct; the owner takes the record under the lock and logs it after
 * unlocking (palloc_take_refusal_locked, palloc_log_refusal; the plain
 * wrappers at the end do it all). A bad free (any page of the range not
 * allocated, or outside the grown heap) corrupts whoever owns those pages:
 * palloc dumps the bitmaps around it into mm_panic, which the kernel
 * obeys and the host test port records; nothing has been changed by then.
 *
 * The layout (struct palloc, its configuration, refusal record and
 * statistics, the chunk geometry) is in palloc_types.h, included here.
 */
#ifndef MM_PALLOC_H
#define MM_PALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pallocbits.h"
#include "palloc_sum.h"
#include "port.h"
#include "palloc_types.h"

/* Bytes of metadata an arena of arena_bytes needs when supplied by the
 * caller (struct palloc_config.metadata); 0 if the arena is invalid. */
size_t palloc_metadata_bytes(size_t arena_bytes, unsigned flags);
/* Bytes of address space palloc_init reserves for it in reserved mode (the
 * mapped bitmap too); 0 if the arena is invalid. */
size_t palloc_reserved_bytes(size_t arena_bytes, unsigned flags);

/*
 * Prepares p for an arena with nothing grown. Returns false (and logs why)
 * if cfg is invalid or metadata cannot be reserved.
 * Thread context, no mm lock held.
 */
bool palloc_init(struct palloc *p, const struct palloc_config *cfg);

/*
 * Maps the metadata that the chunks of [base, base + nbytes) need (nothing
 * in the supplied-metadata mode). Returns false, logging why, if the range
 * is not chunk aligned inside the arena or memory ran out. Chunks already
 * grown are allowed and cost nothing.
 * Locking: the owner's lock must NOT be held (mm_port_map may take locks);
 * callers serialise grow_prepare calls among themselves.
 */
bool palloc_grow_prepare(struct palloc *p, uintptr_t base, size_t nbytes);

/*
 * Adds the chunks of [base, base + nbytes) to the heap, free and scavenged;
 * chunks already grown keep their state. The range must have been
 * prepared. Returns false (a refusal) if it is invalid or not prepared.
 * Locking: the owner's lock must be held.
 */
bool palloc_grow_commit_locked(struct palloc *p, uintptr_t base, size_t nbytes);

/*
 * Allocates npages contiguous pages at the lowest address where they fit
 * and returns that address; *nscav (if nscav is not NULL) receives how many
 * of them were scavenged, which the caller must make usable (mm_port_used)
 * after unlocking. Returns 0 when no run of npages free pages exists in the
 * grown heap (the owner may grow and retry), or when the request is
 * refused (npages == 0 or larger than the arena; see the refusal record).
 * Page 0 of an arena based at address 0 is never handed out, so 0 is never
 * a valid result. Locking: the owner's lock must be held.
 */
uintptr_t palloc_alloc_locked(struct palloc *p, size_t npages, size_t *nscav);

/*
 * palloc_alloc_locked for npages <= 64 (else refused), reporting in
 * *scav_mask which pages were scavenged: bit k for the k-th page. With it
 * palloc_free_mask_locked can undo the allocation exactly, when making the
 * scavenged pages usable failed and nothing was touched.
 * Locking: the owner's lock must be held.
 */
uintptr_t palloc_alloc_mask_locked(struct palloc *p, size_t npages,
                                   uint64_t *scav_mask);

/*
 * Frees a run from palloc_alloc_mask_locked and marks the pages of
 * scav_mask scavenged again: the allocation is undone as if it never
 * happened (a bad free mm_panics as palloc_free_locked does).
 * Locking: the owner's lock must be held.
 */
void palloc_free_mask_locked(struct palloc *p, uintptr_t base, size_t npages,
                             uint64_t scav_mask);

/* A run of pages [base, base + npages * MM_PAGE_SIZE). */
struct palloc_run {
	uintptr_t base;
	size_t npages;
};

/* The pages of an allocation that were not scavenged, as runs, for an
 * owner that must zero those alone: n runs in runs[], or n ==
 * PALLOC_BACKED_RUNS + 1 if there were more; and scav, the stretch from
 * its first scavenged page to its last (npages 0: none), to map. */
#define PALLOC_BACKED_RUNS 8
struct palloc_backed {
	size_t n;
	struct palloc_run runs[PALLOC_BACKED_RUNS], scav;
};

/*
 * palloc_alloc_locked, also noting in *b the runs of the allocation's
 * pages that were not scavenged (their memory still holds what it held),
 * up to PALLOC_BACKED_RUNS of them: the rest read as zero once mapped.
 * Locking: the owner's lock must be held.
 */
uintptr_t palloc_alloc_backed_locked(struct palloc *p, size_t npages,
                                     size_t *nscav, struct palloc_backed *b);

/*
 * Allocates exactly the pages [base, base + npages * MM_PAGE_SIZE) (the
 * frame pool carves holes of the memory map out this way). Returns false,
 * changing nothing, if any of them is not a free page of the grown heap.
 * Locking: the owner's lock must be held.
 */
bool palloc_alloc_range_locked(struct palloc *p, uintptr_t base, size_t npages,
                               size_t *nscav);

/* palloc_alloc_range_locked, also noting in *b the runs of its pages that
 * were not scavenged, as palloc_alloc_backed_locked does. */
bool palloc_alloc_range_backed_locked(struct palloc *p, uintptr_t base,
                                      size_t npages, size_t *nscav,
                                      struct palloc_backed *b);

/*
 * Frees [base, base + npages * MM_PAGE_SIZE). Every page must be allocated;
 * otherwise this is a bad free: mm_panic with the bitmaps around the range,
 * before anything changed. Locking: the owner's lock must be held.
 */
void palloc_free_locked(struct palloc *p, uintptr_t base, size_t npages);

/* The free pages that end at addr (a chunk boundary), as one run: those
 * at the top of the chunks below it. A growth of the chunks at addr
 * extends that run. Locking: the owner's lock must be held. */
size_t palloc_free_below_locked(const struct palloc *p, uintptr_t addr);

/* The longest run of free pages anywhere in the arena (runs may cross
 * chunks), from the root summaries. Locking: the owner's lock. */
size_t palloc_longest_free_locked(const struct palloc *p);

/* palloc_free_locked's checks alone: mm_panic as it would, else change
 * nothing (a caller that must do something to the pages before it frees
 * them checks first). Locking: the owner's lock must be held. */
void palloc_free_check_locked(struct palloc *p, uintptr_t base, size_t npages);

/* Moves the refusal of the last alloc, alloc_range or grow_commit call
 * into *r and returns true, or returns false if that call was not refused
 * (each of those calls clears the record first). Locking: the owner's lock.
 */
bool palloc_take_refusal_locked(struct palloc *p, struct palloc_refusal *r);

/* mm_logs a refusal. Locking: the owner's lock must NOT be held. */
void palloc_log_refusal(const struct palloc_refusal *r);

void palloc_stats_locked(const struct palloc *p, struct palloc_stats *st);

/* Free pages, read without the owner's lock: a hint that may be stale by
 * the time it returns. Any context. */
size_t palloc_free_pages_hint(const struct palloc *p);

/*
 * Verifies every invariant (palloc.c lists them): each summary against its
 * bitmaps or children, scavenged pages free, the counters, the search hint
 * against the first free page. On a violation it dumps what it found into
 * mm_panic. O(grown metadata). Locking: the owner's lock must be held.
 */
void palloc_check_locked(const struct palloc *p);

/* The calls above wrapped in the owner's lock (if p has one), logging
 * refusals after unlocking: for owners with nothing else to do under it,
 * such as the frame pool at boot, and for tests. Thread context. */
bool palloc_grow(struct palloc *p, uintptr_t base, size_t nbytes);
uintptr_t palloc_alloc(struct palloc *p, size_t npages, size_t *nscav);
void palloc_free(struct palloc *p, uintptr_t base, size_t npages);
void palloc_check(struct palloc *p);

/* Scavenging (palloc_scav.h) is part of this interface. */
#include "palloc_scav.h"

#endif

/*
 * mm/spanheap_meta_blocks.h: blocks of the span heap's metadata heap for
 * its users' metadata (spanheap_meta_blocks.c): a named cache's struct
 * and the counters' area, a pool's reserve array. Included by
 * spanheap_types.h (the lists live in struct spanheap); internal.
 */
#ifndef MM_SPANHEAP_META_BLOCKS_H
#define MM_SPANHEAP_META_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

/* Block sizes of 64 << 0 to 64 << 4 bytes share pages; a larger request
 * is a run of pages of its own. */
#define SPANHEAP_META_CLASSES   5
#define SPANHEAP_META_BLOCK_MAX (64u << (SPANHEAP_META_CLASSES - 1))
/* A run's header, before its first block. */
#define SPANHEAP_META_RUN_HDR 64u

/* A run of pages of the metadata heap holding blocks of one size: one
 * page of blocks of a class, or one block of a larger request. Its
 * header's fields are under the object heap's lock (below). */
struct spanheap_meta_run {
	struct spanheap_meta_run *next, *prev; /* its list */
	void *free; /* free blocks, chained through their first words */
	uint32_t npages;
	uint32_t block;   /* a block's bytes (a large run: the request's) */
	uint32_t nblocks; /* at most 64 */
	uint32_t used;
};
_Static_assert(sizeof(struct spanheap_meta_run) <= SPANHEAP_META_RUN_HDR,
               "a run's header fits before its first block");

/* The runs, under the object heap's lock (heap->lock, MM_RANK_HEAP,
 * the leaf), never taken with the metadata heap's. */
struct spanheap_meta_blocks {
	/* Per class, the runs with a free block */
	struct spanheap_meta_run *partial[SPANHEAP_META_CLASSES];
	/* The runs with none, and every large run */
	struct spanheap_meta_run *full;
	size_t pages; /* every run's, for the statistics and the tests */
};

struct spanheap;

/*
 * nbytes (1 or more) of sh's metadata heap, zeroed, aligned to 64 bytes;
 * NULL if that heap has no page for it, or the span heap's failure
 * injection picked this call (counted as a small allocation,
 * spanheap_fail.h). Thread context, no mm lock held.
 */
void *spanheap_meta_alloc(struct spanheap *sh, size_t nbytes);

/* The pages n blocks of nbytes each take, packed in runs of their class
 * (or each a run of its own past SPANHEAP_META_BLOCK_MAX): the metadata
 * arena's sizing (spanheap_meta.c). Any context. */
size_t spanheap_meta_blocks_pages(size_t n, size_t nbytes);

/* Gives back p (NULL: nothing) of spanheap_meta_alloc(sh, nbytes). A
 * size of another class, a pointer not a block's start or not in a run,
 * or a block freed already mm_panics, saying which, before any run is
 * touched. The block keeps its bytes but its first word until it is
 * reused (objcache.c's destroyed marks). Thread context, no mm lock
 * held. */
void spanheap_meta_free(struct spanheap *sh, void *p, size_t nbytes);

/* Calls fn on each allocated block's bytes, [lo, hi): the leak scan's
 * reading of the pools' reserves (spanheap_leak.c). No lock: the caller
 * holds the heap still (the scan's stopped world). */
void spanheap_meta_blocks_each(struct spanheap *sh,
                               void (*fn)(uintptr_t lo, uintptr_t hi,
                                          void *arg),
                               void *arg);

/* mm_panics, naming the run, if a run's counts, free chain or list are
 * broken (spanheap_check). Takes heap->lock: no mm lock held. */
void spanheap_meta_blocks_check(struct spanheap *sh);

#endif

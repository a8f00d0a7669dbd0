/*
 * mm/palloc_types.h: the page allocator's layout: the chunk and summary
 * geometry, its flags and configuration, the refusal record, the
 * statistics and struct palloc itself, its fields grouped by who may
 * touch them. An owner reads it to embed a struct palloc (the heap, the
 * frame pool); the calls and their contracts are palloc.h, which includes
 * this, and the design is palloc.c's.
 */
#ifndef MM_PALLOC_TYPES_H
#define MM_PALLOC_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pallocbits.h"
#include "palloc_sum.h"
#include "port.h"

#define PALLOC_CHUNK_SHIFT     (MM_PAGE_SHIFT + PALLOC_CHUNK_PAGES_LOG)
#define PALLOC_CHUNK_BYTES     ((uintptr_t)1 << PALLOC_CHUNK_SHIFT) /* 2 MiB */
#define PALLOC_LEVEL_BITS      3 /* fan-out 8: a cache line of summaries */
#define PALLOC_MAX_LEVELS      5
#define PALLOC_MAX_ARENA_BYTES ((uintptr_t)1 << 47) /* 128 TiB */

_Static_assert(PALLOC_CHUNK_PAGES << (PALLOC_LEVEL_BITS *
                                      (PALLOC_MAX_LEVELS - 1)) ==
                       PALLOC_SUM_MAX,
               "a root summary covers exactly as many pages as it can count");
_Static_assert(sizeof(palloc_sum_t) << PALLOC_LEVEL_BITS == 64,
               "the children of a summary fill one cache line");

enum palloc_flags {
	/* Do not track scavenged pages (the frame pool: a free frame is
	 * always backed); allocations then report 0 scavenged pages. */
	PALLOC_NO_SCAV = 1u << 0,
};

struct palloc_config {
	uintptr_t arena_base; /* chunk aligned */
	size_t arena_bytes;   /* chunk multiple, <= PALLOC_MAX_ARENA_BYTES */
	unsigned flags;       /* enum palloc_flags */
	/* If not NULL, every _locked call asserts mm_lock_held(owner_lock). */
	mm_lock_t *owner_lock;
	/* NULL: reserve metadata address space with mm_port_reserve and map
	 * it as the heap grows. Else palloc_metadata_bytes() of mapped,
	 * page-aligned memory that palloc owns from now on (the frame pool,
	 * built before any other allocator exists). */
	void *metadata;
};

/* Why a _locked call refused; op is NULL when there is nothing to say. */
struct palloc_refusal {
	const char *op;       /* "alloc", "alloc_range", "grow" */
	const char *reason;   /* a string literal */
	uintptr_t base;       /* the range the call named, [base, limit), */
	uintptr_t limit;      /* or 0 and 0 for an alloc */
	size_t npages;        /* the request's size in pages */
	uintptr_t arena_base; /* the arena, for the message */
	uintptr_t arena_limit;
};

struct palloc_stats {
	size_t grown_pages; /* pages of grown chunks */
	/* Free in the heap (not counting page caches); written under the
	 * owner's lock with atomic stores, for palloc_free_pages_hint. */
	size_t free_pages;
	size_t scav_pages; /* free and scavenged */
};

struct palloc {
	/* Immutable after palloc_init: */
	uintptr_t arena_base, arena_limit;
	size_t arena_chunks, arena_pages;
	unsigned flags;
	unsigned levels;     /* summary levels; 0 is the root */
	size_t root_entries; /* entries of level 0 */
	mm_lock_t *owner_lock;
	palloc_sum_t *summary[PALLOC_MAX_LEVELS];
	struct pallocbits *alloc; /* per chunk: set = allocated */
	struct pallocbits *scav;  /* per chunk: set = scavenged; NULL if none */
	uint64_t *grown;          /* per chunk: set = grown */
	uintptr_t meta_base;      /* the metadata region */
	size_t meta_bytes;
	/* Mapped metadata pages, 1 bit each; NULL if supplied (all mapped).
	 * Set by grow_prepare (serialised by its callers), read by commit
	 * and check under the owner's lock: atomic. */
	_Atomic uint64_t *mapped;
	_Atomic int preparing; /* catches concurrent grow_prepare calls */

	/* Protected by the owner's lock: */
	size_t search_pi; /* page index; no free page lies below it */
	/* Scavenge cursor (palloc_scav.c): one past the highest chunk the
	 * next scavenge search starts from; 0 means "from the top". */
	size_t scav_top;
	struct palloc_stats stats;
	struct palloc_refusal refusal;
};

#endif

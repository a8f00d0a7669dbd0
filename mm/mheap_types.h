/*
 * mm/mheap_types.h: the page heap's layout: its configuration (with its
 * flags), its event counters and statistics snapshot, and struct mheap
 * itself, its fields grouped by who may touch them. An owner reads it to
 * embed a struct mheap (the kernel's heap, the hosted malloc's); the
 * calls are mheap.h, which includes this, and the design is mheap.c's.
 */
#ifndef MM_MHEAP_TYPES_H
#define MM_MHEAP_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mheap_scav.h"
#include "palloc.h"
#include "port.h"

enum mheap_flags {
	/* debug_pagealloc: scavenge every page as soon as it is freed, so a
	 * touch of freed memory faults at once. A free from a context that
	 * cannot sleep (an atomic allocation giving pages back, a large
	 * object freed in an interrupt) frees them the ordinary way: the
	 * unmap waits for other CPUs. */
	MHEAP_DEBUG_SCAV_ON_FREE = 1u << 0,
};

struct mheap_config {
	size_t arena_bytes;         /* chunk multiple, <= 128 TiB */
	unsigned goal_percent;      /* free backed kept: % of in use, <= max */
	size_t low_watermark_pages; /* frames kept: scavenge before mapping */
	size_t reserve_pages;       /* free pages kept for atomic callers */
	unsigned cpu_permille;      /* scavenger CPU budget, 1..1000 */
	unsigned flags;             /* enum mheap_flags */
};

/* Event counters, kept live under h->lock. */
struct mheap_counters {
	uint64_t grows;        /* growths committed */
	uint64_t grow_waits;   /* sleeps on someone's growth */
	uint64_t scav_waits;   /* waits for a scavenge batch: an allocation
	                        * with no growth left, a release-all */
	uint64_t atomic_fails; /* MHEAP_ATOMIC calls refused */
	uint64_t refills;      /* growths for the reserve */
	uint64_t bg_runs, bg_pages, bg_cpu_ns; /* background scavenger */
	uint64_t sync_runs, sync_pages;        /* scavenging for frames */
	uint64_t release_pages;                /* mheap_release_all */
	uint64_t debug_pages;                  /* scavenge-on-free */
	/* Nothing more here without a benchmark run: a 13th counter (the
	 * scavenger's searches in vain, now struct mheap_scav's) took the
	 * random workload from 13.4 to 18.3 ns an operation, a layout effect
	 * whose mechanism was not found (docs/DESIGN.md). */
};

/* A consistent snapshot (mheap_stats). */
struct mheap_stats {
	size_t grown_pages;
	size_t in_use_pages;      /* allocated by callers */
	size_t free_backed_pages; /* free, memory still there */
	size_t free_scav_pages;   /* free and scavenged */
	size_t scavenging_pages;  /* taken by the scavenger, being unmapped */
	size_t goal_pages;        /* free backed the scavenger keeps */
	size_t reserve_pages;     /* free pages kept for atomic callers */
	size_t frames_free;       /* mm_port_free_pages() */
	struct mheap_counters n;
};

struct mheap_taken;

struct mheap {
	/* Immutable after mheap_init: */
	struct mheap_config cfg;
	uintptr_t arena_base;
	size_t arena_pages;

	mm_lock_t lock; /* rank MM_RANK_HEAP, a leaf */

	/* Set by the owner before the heap is shared, else NULL: another
	 * heap over the same frame pool (a span heap's object and metadata
	 * heaps point at each other, spanheap_meta.c), whose free backed
	 * pages an allocation short of frames scavenges too once its own
	 * are gone. */
	struct mheap *frames_peer;

	/* Set by the owner before the heap is shared and before either
	 * heap's scavenger thread starts, else NULL. scav_also: a heap
	 * whose free backed pages this heap's background scavenger gives
	 * back too, by that heap's own goal, and whose reserve it refills;
	 * scav_by: the heap whose thread does that for this one, which this
	 * heap's frees and refill requests wake. A span heap's object heap
	 * serves its metadata heap so (spanheap_meta.c). */
	struct mheap *scav_also, *scav_by;

	/* Protected by h->lock: */
	struct palloc pages;
	size_t taken_pages;    /* out of the free set while being unmapped */
	uint64_t scav_takes;   /* batches that took pages */
	uint64_t scav_returns; /* batches that gave their pages back */
	size_t grown_chunks;   /* the arena grows upward from its base */
	/* The most chunks one hold searched for pages to scavenge (at most
	 * MHEAP_SCAV_SEARCH_CHUNKS, whatever the arena's size) */
	size_t scav_searched_max;
	/* The batches that hold taken pages, with their runs: */
	struct mheap_taken *taken;
	struct mheap_counters counters;

	/* The span table: one entry per arena page, for the span heap's
	 * pointer-to-span lookup (mheap_span_lookup). Its page for a chunk
	 * is mapped when the chunk grows; spanmap_chunks counts them (set by
	 * the grower, read lock-free), and spanmap_pages is the number of
	 * arena pages they cover (no more than arena_pages), which is all a
	 * lookup needs to check. */
	void *_Atomic *spanmap;
	_Atomic size_t spanmap_chunks;
	_Atomic size_t spanmap_pages;

	/* Growth: set by the one thread or CPU growing (atomic); the grower
	 * wakes `grown` when it commits or fails. */
	_Atomic bool growing;
	/* Pages of the heads bitmap mapped (mheap_heads.c), the grower's;
	 * in the padding before `grown`. */
	uint32_t heads_pages;
	mm_event_t grown;

	struct mheap_scav scav;
};

#endif

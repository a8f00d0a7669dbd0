/*
 * mm/mheap.h: the page-level heap, the base the span heap builds on.
 *
 * A struct mheap owns a palloc over a reserved virtual arena and hands out
 * runs of pages, mapped and zeroed when they were scavenged. Its lock (rank
 * MM_RANK_HEAP) is a leaf: under it only palloc and mm_port_unused_begin
 * are called. It grows chunk by chunk and gives free memory back with a
 * scavenger (mheap_scav.c): a paced background thread keeping free backed
 * pages near a goal, a synchronous pass with the lock held when the heap
 * grows while frames are short, mheap_release_all, and a debug mode that
 * scavenges every page as it is freed. Modelled on the Go runtime's mheap
 * (mheap.go) and background scavenger (mgcscavenge.go).
 */
#ifndef MM_MHEAP_H
#define MM_MHEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "palloc.h"
#include "port.h"

#define MHEAP_DEFAULT_ARENA_BYTES  ((size_t)64 << 30) /* 64 GiB */
#define MHEAP_DEFAULT_GOAL_PERCENT 10
#define MHEAP_DEFAULT_CPU_PERMILLE 10 /* 1% of one CPU */
/* The background scavenger's batch: 64 KiB to 1 MiB, lock released
 * between batches, one TLB shootdown each. At most MHEAP_SCAV_RUNS runs. */
#define MHEAP_SCAV_BATCH_PAGES MM_UNUSED_BATCH_PAGES
#define MHEAP_SCAV_MIN_PAGES   16
#define MHEAP_SCAV_RUNS        16
/* A free of at least this many pages may wake the idle scavenger. */
#define MHEAP_WAKE_PAGES 16
#define MHEAP_IDLE_NS    ((uint64_t)10 * 1000 * 1000 * 1000) /* at goal */

_Static_assert(MHEAP_SCAV_BATCH_PAGES <= MM_UNUSED_BATCH_PAGES &&
                       MHEAP_SCAV_BATCH_PAGES >= MHEAP_SCAV_MIN_PAGES &&
                       MHEAP_SCAV_MIN_PAGES * MM_PAGE_SIZE >= 64 * 1024,
               "background batches are at least 64 KiB");

enum mheap_flags {
	/* debug_pagealloc: scavenge every page as soon as it is freed, so a
	 * touch of freed memory faults at once. Frees must then come from
	 * thread context (mm_port_unused). */
	MHEAP_DEBUG_SCAV_ON_FREE = 1u << 0,
};

struct mheap_config {
	size_t arena_bytes;         /* chunk multiple */
	unsigned goal_percent;      /* free backed kept: % of in use */
	size_t low_watermark_pages; /* below: scavenge before growing */
	unsigned cpu_permille;      /* scavenger CPU budget, 1..1000 */
	unsigned flags;             /* enum mheap_flags */
};

struct mheap_stats {
	size_t grown_pages;
	size_t in_use_pages;      /* allocated by callers */
	size_t free_backed_pages; /* free, memory still there */
	size_t free_scav_pages;   /* free and scavenged */
	size_t scavenging_pages;  /* taken by the background scavenger */
	size_t goal_pages;        /* free backed the scavenger keeps */
	size_t frames_free;       /* mm_port_free_pages() */
	uint64_t bg_runs, bg_pages, bg_cpu_ns; /* background scavenger */
	uint64_t sync_runs, sync_pages;        /* locked mode at growth */
	uint64_t release_pages;                /* mheap_release_all */
	uint64_t debug_pages;                  /* scavenge-on-free */
	uint64_t grows;
};

struct mheap {
	/* Immutable after mheap_init: */
	struct mheap_config cfg;
	uintptr_t arena_base;
	size_t arena_pages;

	mm_lock_t lock; /* rank MM_RANK_HEAP, a leaf */

	/* Protected by h->lock: */
	struct palloc pages;
	size_t taken_pages;  /* out of the free set while being unmapped */
	size_t grown_chunks; /* the arena grows upward from its base */
	struct mheap_stats counters; /* the uint64_t fields */
	bool bg_idle;                /* the scavenger sleeps at its goal */

	/* Owned by whoever set `growing` (growth, mheap_release_all): */
	_Atomic bool growing;
	struct mm_unused_batch batch;
	mm_event_t backoff; /* never woken: release_all waits for growth */

	/* The background scavenger (mheap_scav.c): */
	struct mm_unused_batch bg_batch; /* the thread's own */
	mm_event_t wake;                 /* frees over the goal, stop */
	mm_event_t pace;                 /* never woken: a sleep */
	mm_event_t done;                 /* the thread has exited */
	_Atomic bool bg_running, bg_stop;
	uint64_t bg_reported_pages; /* the scavenger thread's own */
};

/* The defaults: 64 GiB arena, goal 10%, no low watermark, 1% CPU. */
void mheap_config_default(struct mheap_config *cfg);

/* Prepares h (nothing grown). Returns false, logging why, if cfg is
 * invalid or the arena cannot be reserved. Thread context. */
bool mheap_init(struct mheap *h, const struct mheap_config *cfg);

/*
 * Returns npages contiguous pages, mapped and readable (zero where they
 * were scavenged), or NULL if npages is 0, the arena is full or memory ran
 * out, with nothing leaked. Thread context, no mm lock held.
 */
void *mheap_alloc_pages(struct mheap *h, size_t npages);

/* Frees pages from mheap_alloc_pages; a bad free mm_panics. Any context
 * but NMI (thread context in debug mode); no mm lock held. */
void mheap_free_pages(struct mheap *h, void *p, size_t npages);

/* Gives back every free backed page now (Go's debug.FreeOSMemory);
 * returns how many. Thread context, no mm lock held. */
size_t mheap_release_all(struct mheap *h);

/* Starts the background scavenger; false if it cannot. Thread context. */
bool mheap_scavenger_start(struct mheap *h);

/* Stops it and waits for it to exit (tests; the kernel never stops it). */
void mheap_scavenger_stop(struct mheap *h);

/* Free backed pages the scavenger keeps for in_use pages in use. */
size_t mheap_goal_pages(size_t in_use, unsigned goal_percent);

/* How long to sleep after work_ns of CPU so that the scavenger's share
 * stays within permille thousandths of one CPU: work * (1000 - b) / b. */
uint64_t mheap_pace_sleep_ns(uint64_t work_ns, unsigned permille);

/* A consistent copy of the counters. Thread or IRQ context, no mm lock. */
void mheap_stats(struct mheap *h, struct mheap_stats *st);

/* mm_logs the memory info (never under the lock). Thread context. */
void mheap_dump(struct mheap *h);

/* palloc_check_locked under h's lock, plus the heap's own counts. */
void mheap_check(struct mheap *h);

/* ---- Between mheap.c and mheap_scav.c ---------------------------------- */

/* Locked mode: marks up to npages free backed pages scavenged and clears
 * their mappings into h->batch (the caller owns `growing`); returns how
 * many. The caller calls mm_port_unused_finish after unlocking.
 * Locking: h->lock must be held. */
size_t mheap_scavenge_locked(struct mheap *h, size_t npages, unsigned flags);

/* Sets stats for in-use and free pages from palloc. Locking: h->lock. */
void mheap_stats_locked(struct mheap *h, struct mheap_stats *st);

#endif

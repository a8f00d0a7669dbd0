/*
 * mm/spanheap_stats.h: the span heap's statistics (spanheap.h): per size
 * class and in all, the sweeper's and the flushes' counters, failure
 * injection's, the stack depot's and the guarded pool's, with the page
 * heap's and the metadata heap's beside them; and the slabinfo-style dump.
 * Written by spanheap_stats.c.
 */
#ifndef MM_SPANHEAP_STATS_H
#define MM_SPANHEAP_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mheap.h"
#include "sizeclasses.h"
#include "spanheap_types.h"

/* Per size class and in all (spanheap_stats). */
struct spanheap_class_stats {
	uint32_t size;
	size_t spans, objects_in_use, objects_free, bytes_in_use, bytes_spans;
	/* Free objects waiting in the CPUs' magazines of the class (counted
	 * in objects_free), and what those magazines may hold now: their
	 * sizes summed, which shrink on a CPU that only frees the class
	 * (spanheap_cache.c, "Sizes") */
	size_t mag_objects, mag_room;
};

struct spanheap_stats {
	struct spanheap_class_stats cls[SC_NCLASSES]; /* [0]: large */
	size_t spans, bytes_in_use, bytes_spans, large_pages;
	/* Objects given back to their spans from the magazines, by the
	 * span's owner (local bits) or by other CPUs (pending bits): the
	 * frees, and the objects a refill put into a magazine that went back
	 * unused (mag_fill). Cache refills (span changes). */
	uint64_t local_frees, remote_frees, refills;
	/* Free objects waiting in the magazines: freed, or put there by a
	 * refill */
	size_t mag_objects;
	uint32_t sweepgen;
	/* Failure injection (spanheap_fail.h): armed; since it was armed */
	bool fail_armed;
	uint64_t fail_calls, fail_injected;
	/* Poison mode's stack depot (spanheap_depot.c): stacks kept (a few
	 * may be claims two CPUs raced for, left unused), its pages, and
	 * records made with no stack for want of room */
	size_t depot_stacks, depot_pages;
	uint64_t depot_lost;
	/* The guarded pool (spanheap_guard.c): its slots (0: none), its
	 * objects live, handed out and freed ever, and the samples it
	 * turned away: no slot free, no memory for the page */
	unsigned guard_slots, guard_live;
	uint64_t guard_allocs, guard_frees, guard_full, guard_nomem;
	struct spanheap_counters n;
	struct mheap_stats heap;
	/* The metadata heap's (spanheap_meta.c): the pages of span structs,
	 * all-spans arrays, magazine slabs, side tables and the depot, and
	 * its arena's size */
	struct mheap_stats meta;
	size_t meta_arena_bytes;
};

/* A snapshot of the statistics (approximate while CPUs allocate).
 * Thread context: it takes the heap's lock, which the CPU an interrupt
 * handler interrupted may hold. */
void spanheap_stats(struct spanheap *sh, struct spanheap_stats *st);

/* mm_logs a slabinfo-style table, the totals, failure injection's state,
 * a line of the metadata heap's pages, then both page heaps' reports
 * (mheap_dump: the object heap's lines say "mheap", the metadata heap's
 * "mheap meta"). Thread context. */
void spanheap_dump(struct spanheap *sh);

#endif

/*
 * mm/mcache.h: a CPU's cache of the span heap (Go's mcache): its
 * magazines of free objects, one current span per class, and its
 * counters; and the magazines' sizes. Included by spanheap_types.h; a
 * port never needs it directly. The algorithm is in spanheap_cache.c.
 */
#ifndef MM_MCACHE_H
#define MM_MCACHE_H

#include <stdatomic.h>
#include <stdint.h>

#include "mspan.h"
#include "sizeclasses.h"

/* Per-CPU counters, written by their CPU while pinned (relaxed atomics:
 * statistics read them from other CPUs). */
struct mcache_counters {
	_Atomic uint64_t pending_bytes; /* remote frees, ever (bytes) */
	_Atomic uint64_t refills;       /* slow-path span changes */
};

/*
 * A magazine: free objects of one class, those this CPU freed and those
 * an empty magazine's refill moved there from the cached span
 * (mag_fill), handed out by its next allocations of the class, last in
 * first out (tcmalloc's per-CPU free lists). An array of slots in the
 * CPU's slab, not a list through the objects: popping one reads nothing
 * of the object, and a write after free cannot redirect an allocation.
 * Each object's second word holds the free marker, cookie ^ its address.
 * Past its size, the older half goes back to the spans.
 *
 * Two pointers, so that a pop and a push each compare one: the slot
 * below a magazine's first holds 0, so a pop that reads 0 below top
 * found it empty; a push at limit finds it full. Until the CPU's slab is
 * made, top and limit both point just past a shared zero word: empty and
 * full at once, so the first free or refill makes the slab.
 */
struct mmag {
	uintptr_t *top; /* past the newest object; __atomic relaxed (stats) */
	/* Past the last slot of its size now: moved by its CPU pinned
	 * (mag_set_limit, __atomic relaxed), read by its pushes (restarted
	 * if a handler moves it), the checker (the CPU pinned or held) and
	 * the statistics (a magazine's room, from other CPUs). */
	uintptr_t *limit;
};

_Static_assert(SC_NCLASSES <= 64, "struct mcache's cached: a bit a class");

/* One CPU's cache: touched only by that CPU, pinned. All zero, and never
 * written, until the CPU's first use of the heap sets it up
 * (spanheap_cache_set_up); sh->mags[cpu] says which. */
struct mcache {
	struct mmag mag[SC_NCLASSES];
	/* the magazines' slots, or NULL until made; __atomic: the statistics
	 * read it from other CPUs */
	uintptr_t *slab;
	struct mspan *alloc[SC_NCLASSES]; /* the current span, or the empty
	                                     placeholder */
	uint32_t flushgen; /* the sweepgen it was last prepared for */
	/* Bit cls set while alloc[cls] may hold a span (set as one is
	 * cached, all cleared by a flush): a flush, which visits every
	 * CPU's cache at a malloc_trim, reads those classes alone */
	uint64_t cached;
	struct mcache_counters n;
	/* Per class: full magazines spilled since its last empty one was
	 * refilled (mag_spilled, mag_refilled) */
	uint8_t mag_spills[SC_NCLASSES];
	/* Refills and out-of-line allocations before the next one the
	 * guarded pool takes (spanheap_guard.c); 0 for good if it has none */
	uint32_t guard_left;
} __attribute__((aligned(2048))); /* a power of two: caches[cpu] is a shift */

/* A magazine holds at most SPANHEAP_MAG_BYTES of objects, and between
 * SPANHEAP_MAG_MIN and SPANHEAP_MAG_MAX of them: its class's most
 * (mag_max). What it holds now, its size, adapts to how its CPU uses the
 * class (spanheap_cache.c, "Sizes"): from SPANHEAP_MAG_FLOOR objects (or
 * the most, if less) up to the most. */
#define SPANHEAP_MAG_BYTES (64u << 10)
#define SPANHEAP_MAG_MIN   2u
#define SPANHEAP_MAG_MAX   128u
#define SPANHEAP_MAG_FLOOR 16u
#ifndef SPANHEAP_MAG_FLOOR_BYTES
#define SPANHEAP_MAG_FLOOR_BYTES (4u << 10)
#endif

#endif

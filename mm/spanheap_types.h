/*
 * mm/spanheap_types.h: the span heap's own layout: the all-spans array,
 * the sweeper's state and struct spanheap itself (the per-CPU caches are
 * in mcache.h, its configuration in spanheap_config.h, poison mode's
 * records in spanheap_track.h). A port reads it only to reserve a struct
 * spanheap (172 KiB, static; a CPU's 2 KiB unwritten until it uses the
 * heap) and for the fast paths (spanheap_fast.h); the API is spanheap.h.
 */
#ifndef MM_SPANHEAP_TYPES_H
#define MM_SPANHEAP_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcache.h"
#include "mheap.h"
#include "mspan.h"
#include "port.h"
#include "sizeclasses.h"
#include "spanheap_config.h"
#include "spanheap_track.h"
#include "failpoint.h"
#include "spanheap_guard.h"
#include "spanheap_meta_blocks.h"

/* The most entries the all-spans array's growth copies with the heap lock
 * held (with interrupts off): the rest, the bulk, it copies without the
 * lock (spanheap_structs.c). */
#define SPANHEAP_SPANS_COPY_LOCKED 256

/* The array of every span struct ever made (Go's h.allspans), under the
 * heap lock; a snapshot holds a reference to the array it walks. */

struct spanheap_spans {
	struct mspan **v;
	size_t len, cap;
	_Atomic size_t refs;            /* snapshots walking v, + 1 if live */
	struct spanheap_spans *retired; /* older arrays still referenced */
	size_t npages;                  /* pages of v */
};

/* Counters under the heap lock or atomic (the sweeper's). */
struct spanheap_counters {
	uint64_t cycles;         /* sweep cycles finished */
	uint64_t swept_spans;    /* small spans, by cycles (any caller's) */
	uint64_t demand_swept;   /* by cache refills (stats only) */
	uint64_t queue_folded;   /* from fold queues (stats only) */
	uint64_t quiet_cycles;   /* cycles a quiet heap brought forward */
	uint64_t freed_spans;    /* empty spans given back */
	uint64_t sweeper_cpu_ns; /* CPU time of the sweeper's cycles */
	uint64_t large_allocs, large_frees;
	uint64_t atomic_fails; /* MM_ATOMIC calls that got NULL */
	/* Cycles run because the page heap refused a thread allocation
	 * (spanheap_reclaim) */
	uint64_t reclaims;
	/* spanheap_flush_all calls that reached every CPU, and those whose
	 * port could not reach the others (stats only) */
	uint64_t flush_alls, flush_alls_failed;
	/* Caches idle CPUs handed back after a flip (spanheap_cpu_idle;
	 * stats only); the sweeper's visits of stale caches, and the caches
	 * holding objects or spans they handed back (config
	 * flush_quiet_cpus) */
	uint64_t idle_flushes, quiet_visits, quiet_flushes;
};

/* The sweeper thread's state. */
struct spanheap_sweeper {
	struct mm_thread *thread;
	_Atomic bool stop;
	mm_event_t wake; /* pending frees passed the threshold, or stop */
	mm_event_t pace; /* a paced sleep: woken only by stop */
	_Atomic uint32_t cycle_next, cycle_turn; /* invariant 5's, FIFO */
	_Atomic bool parked; /* a growth's folds may have left a backlog */
	mm_event_t cycle_done;
	_Atomic uint64_t last_cycle_ns; /* any cycle's end; relaxed */
	/* Idle CPUs hand their caches back (spanheap_cpu_idle) only while
	 * the sweeper runs: set after its start, cleared at its stop, which
	 * then waits until no idle flush is in flight (seq_cst, both). */
	_Atomic bool idle_flush;
	_Atomic unsigned idle_inflight;
	/* The sweeper thread's own (config flush_quiet_cpus, quiet_visit):
	 * the cycle whose stale caches it last handed back every one of, and
	 * the cycle marked to visit and when (ns; 0: none marked). */
	uint32_t visited_gen, mark_gen;
	uint64_t mark_since;
	uint8_t visit_fails; /* visits in a row that missed a CPU */
};

/* The named caches' slots and their names' room (objcache.h's
 * OBJCACHE_MAX and OBJCACHE_NAME_MAX + 1). */
#define SPANHEAP_OBJCACHE_SLOTS 64
#define SPANHEAP_OBJCACHE_NAME  32

struct spanheap {
	/* First, so that the fields every free reads (below) are not at a
	 * page's first bytes: the struct is 2 KiB aligned, and objects at a
	 * page's start, the commonest, would alias them (see
	 * MHEAP_SPANMAP_SKEW). */
	struct spanheap_config cfg;
	_Atomic uint32_t sweepgen; /* advances by 2 per cycle */
	bool set_up; /* fixed: init succeeded (on heap's line: _init.c) */
	struct mheap *heap;   /* the page heap; its lock guards spans below */
	uintptr_t mag_cookie; /* fixed: the free markers' key */
	uintptr_t arena_base, arena_bytes; /* fixed: the page heap's arena */
	/* The page heap's span table (fixed), and how many of its entries
	 * the free's fast path reads: heap->spanmap_pages as it was at the
	 * last spanheap_span_new, so at least the entries of every span made
	 * (written under heap->lock; the table grows without it, so the
	 * copy is read acquire and written release, which orders the new
	 * entries' "none" before it). A free beyond it takes the slow path,
	 * which reads heap->spanmap_pages itself. A copy here saves the free
	 * a load and a step of its chain. */
	void *_Atomic *spanmap;
	_Atomic size_t spanmap_pages;
	/* &caches[cpu].mag[0] (one load where the address took four
	 * instructions) once the CPU's cache is set up (its first use,
	 * release); until then, and at [MM_PIN_NONE] for good (a fast pin
	 * that pinned nothing), magazines empty and full at once */
	struct mmag *mags[MM_MAX_CPUS + 1];
	/* fixed: sizeclass_by16[i] * sizeof(struct mmag), the byte offset of
	 * the magazine of size 16 * i in every CPU's; spanheap_alloc's class
	 * lookup (in the heap, the offset of its base is a displacement of
	 * the heap's own register, with no scaling: two instructions fewer
	 * than the global table's class) */
	uint16_t mag_by16[SC_MAX_SIZE / 16 + 1];
	struct mcache caches[MM_MAX_CPUS];
	/* First the fields a process may never write, then those that init
	 * and a first allocation write (central locks, scalars, meta), packed
	 * last: 4 pages resident, not 6 (docs/DESIGN.md, "The resident
	 * baseline"). Each slot's last cache's name, written under heap->lock
	 * and read without it a byte at a time by the reports that name an
	 * object's owner (objcache_owner_name): no lock in a report. Its
	 * sequence is odd while a create writes it over, so no mix of two. */
	char objcache_names[SPANHEAP_OBJCACHE_SLOTS][SPANHEAP_OBJCACHE_NAME];
	_Atomic uint32_t objcache_name_seq[SPANHEAP_OBJCACHE_SLOTS];
	/* The last large frees (spanheap_freed.c), next under heap->lock */
	struct spanheap_freed_large freed_large[SPANHEAP_FREED_LARGE_RING];
	unsigned freed_large_next;
	/* Poison mode's stacks (spanheap_depot.c), if it records callers. */
	struct spanheap_depot depot;
	/* The guarded pool (spanheap_guard.c), if cfg asks for one. */
	struct spanheap_guard guard;
	struct mcentral central[SC_NCLASSES];
	/* Under heap->lock: */
	struct spanheap_spans *spans; /* the live all-spans array */
	struct mspan *free_structs;   /* the span-struct allocator */
	size_t nstructs, nstructs_free;
	/* The most all-spans entries one hold copied while the array grew
	 * (at most SPANHEAP_SPANS_COPY_LOCKED: the rest is copied unlocked) */
	size_t spans_copied_locked_max;
	size_t large_in_use_pages;
	struct spanheap_counters n;
	_Atomic uint64_t demand_swept; /* spans swept by cache refills */
	_Atomic uint64_t queue_folded; /* spans folded from fold queues */
	_Atomic uint64_t flush_alls, flush_alls_failed; /* spanheap_flush_all */
	_Atomic uint64_t idle_flushes; /* spanheap_cpu_idle's flushes */
	_Atomic uint64_t
	        quiet_flushes;         /* caches the sweeper's visits emptied */
	_Atomic uint64_t quiet_visits; /* the sweeper's visits (quiet_visit) */
	_Atomic uint64_t pending_base; /* pending bytes at the last flip */
	_Atomic uint64_t quiet_cycles; /* paces cut short: the heap was quiet */
	struct spanheap_sweeper sweeper;
	/* The magazines' slots: a slab of mag_slab_pages per CPU, made at
	 * the CPU's first free or refill and kept (like span structs);
	 * class c's are [mag_off[c], + mag_max[c]), below them a 0, its size
	 * (limit) at least mag_floor(c); an empty one's refill adds
	 * mag_fill[c] objects (0: none). Fixed after init but mag_slabs. */
	uint32_t mag_max[SC_NCLASSES], mag_off[SC_NCLASSES];
	uint8_t mag_fill[SC_NCLASSES];
	size_t mag_slab_pages;
	_Atomic size_t mag_slabs; /* slabs made */
	struct failpoint fail;    /* failure injection (spanheap_fail.h) */
	/* fixed: poison mode records callers (spanheap_track.c) */
	bool track;
	/* Named caches (objcache.c), under heap->lock: the list in creation
	 * order, the counter slots in use (a bit each), and the counters,
	 * OBJCACHE_MAX of them per CPU (a row each; made with the first
	 * cache, freed with the last). */
	struct objcache *objcaches;
	uint64_t objcache_slots;
	int64_t *objcache_counts;
	struct spanheap_meta_blocks meta_blocks; /* users' (heap->lock) */
	/* Fixed: sh itself once spanheap_init succeeded, which refuses a
	 * heap in use (garbage matches a self-pointer only by chance). */
	const struct spanheap *live;
	/* The metadata heap (spanheap_meta.c): a page heap over an arena of
	 * its own, apart from heap's, whose runs are the span heap's own
	 * structures (SPANHEAP_META_WHAT), out of an overrun's reach. Its
	 * lock (MM_RANK_HEAP, a leaf) is never taken with heap's. meta_kept:
	 * &meta while meta is the one a failed spanheap_init kept, with its
	 * reservations (spanheap_meta.c, "Limits"), for a retry; else NULL.
	 * These two come last: a retry's zeroing stops before them. */
	const struct mheap *meta_kept;
	struct mheap meta;
};

#endif

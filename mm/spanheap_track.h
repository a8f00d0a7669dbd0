/*
 * mm/spanheap_track.h: poison mode's record of who allocated and who freed
 * each small object (Linux's slub_debug=U), for the heap's users: the
 * record's shape and the call that reads it; and the heap's own stores
 * of them (the ring of large frees, the stack depot). Included by
 * spanheap.h and spanheap_types.h.
 */
#ifndef MM_SPANHEAP_TRACK_H
#define MM_SPANHEAP_TRACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spanheap;

/* Return addresses kept of each allocation's and each free's stack. */
#define SPANHEAP_TRACK_PCS 8

/* A record's ns while it is being written (a real time is odd, 0 is
 * "never"): a reader that meets it, or sees the record change under it,
 * gives it with this ns and says it could not be read, never its fields,
 * which are half of two records. */
#define SPANHEAP_TRACK_CHANGING 2

/* One allocation or free of an object, as poison mode recorded it. */
struct spanheap_track {
	uint64_t ns;   /* mm_port_now_ns() when it happened; 0: never */
	uint32_t cpu;  /* the CPU it ran on */
	uint32_t npcs; /* how many of pc[] hold return addresses */
	/* The stack of the call, innermost first (mm_port_callers): the
	 * first one or two are the heap's own functions, then its caller. */
	uintptr_t pc[SPANHEAP_TRACK_PCS];
};

/*
 * The last allocation and the last free of the small object that p points
 * into (its start or not), as poison mode recorded them, into *alloc and
 * *freed (ns 0: none since its span was made). False, with neither
 * written, if nothing is recorded for p: the heap is not in poison mode,
 * its port records no callers (mm_port_callers gave none at spanheap_init),
 * or p is not in a small span of the heap. An object of the guarded
 * pool (spanheap_guard.h) gives its slot's records; one of a cache with
 * slabs of its own (objcache_own.h), those its slab keeps (ns 0: none
 * since the slab was made). Any context but NMI; a
 * record that another CPU's allocation or free of the object changes
 * meanwhile, or of a span freed meanwhile, has ns SPANHEAP_TRACK_CHANGING
 * and nothing else (never half of two); a freed span's side table is
 * given back:
 * a port that unmaps freed pages at once reads under its fault hook, as
 * for spanheap_alloc_traces (PORTING).
 */
bool spanheap_object_tracks(struct spanheap *sh, const void *p,
                            struct spanheap_track *alloc,
                            struct spanheap_track *freed);

/* The live small objects one stack allocated (spanheap_alloc_traces). */
struct spanheap_trace {
	size_t objects;     /* live objects it allocated */
	size_t bytes;       /* the bytes asked for them */
	uint64_t oldest_ns; /* the earliest of their allocations' times */
	uint32_t hash;      /* the stack's, for the grouping */
	uint32_t npcs;      /* the stack, as struct spanheap_track's */
	uintptr_t pc[SPANHEAP_TRACK_PCS];
};

/*
 * Groups the live small objects of size class cls (0: every class) by the
 * stack that allocated them (the guarded pool's included, and with cls
 * 0 the objects of caches with slabs of their own), from poison
 * mode's records (Linux's
 * alloc_traces: the stack whose count keeps growing is a leak's), into
 * t[0..max), most objects first. Returns the entries filled; objects of
 * stacks found after the max-th go into *rest. 0, *rest 0, if the heap
 * keeps no records. Thread context, no mm lock held: the spans are walked
 * without locks, so what is allocated or freed meanwhile may be counted
 * or not, and a span freed meanwhile gives its table's pages back while
 * they are read. A kernel that unmaps them at once reads under its fault
 * hook, as this kernel's shell does: the walk holds no lock and no
 * reference while it reads a table, so a read ended by the hook leaves
 * nothing behind.
 */
size_t spanheap_alloc_traces(struct spanheap *sh, unsigned cls,
                             struct spanheap_trace *t, size_t max,
                             size_t *rest);
/* As spanheap_alloc_traces, of the objects of owner owner alone: a named
 * cache's (objcache_info's owner), 0 for those of no cache, or
 * SPANHEAP_OWNER_ANY. */
#define SPANHEAP_OWNER_ANY UINT32_MAX
size_t spanheap_alloc_traces_owned(struct spanheap *sh, unsigned cls,
                                   uint32_t owner, struct spanheap_trace *t,
                                   size_t max, size_t *rest);

/* The large frees a heap remembers, for spanheap_where (spanheap_freed.c):
 * the last SPANHEAP_FREED_LARGE_RING, in a ring written under heap->lock
 * and read without it (seq odd while an entry is written). */
#define SPANHEAP_FREED_LARGE_RING 32
struct spanheap_freed_large {
	_Atomic uint32_t seq;
	uint32_t objpages, npages; /* the object's pages; pages given back */
	uintptr_t obj, from;     /* its first byte; the first page given back */
	struct spanheap_track t; /* when, where, and (poison) the stack */
};

/* Poison mode's stack depot (spanheap_depot.c): every stack its records
 * name, kept once, found by a 32-bit handle (from 1; 0: no stack;
 * SPANHEAP_DEPOT_LOST: one not kept). Entries in chunks made as needed,
 * a hash table of chains through them; nothing is freed while the heap
 * lives, and nothing locks. */
#define SPANHEAP_DEPOT_BUCKETS     4096
#define SPANHEAP_DEPOT_CHUNKS      64
#define SPANHEAP_DEPOT_CHUNK_PAGES 16
#define SPANHEAP_DEPOT_LOST        UINT32_MAX
struct spanheap_depot_stack {
	uint32_t next; /* the next handle in its bucket's chain; 0: none */
	uint32_t hash, npcs, unused;
	uintptr_t pc[SPANHEAP_TRACK_PCS];
};
struct spanheap_depot {
	_Atomic uint32_t *buckets; /* chains' heads; NULL: no records */
	_Atomic(struct spanheap_depot_stack *) chunks[SPANHEAP_DEPOT_CHUNKS];
	_Atomic uint32_t next; /* handles claimed */
	_Atomic size_t pages;  /* the page heap's pages it holds */
	_Atomic uint64_t lost; /* stacks not kept: full, or no memory */
	_Atomic unsigned said; /* the reasons for it said (a line each) */
};

#endif

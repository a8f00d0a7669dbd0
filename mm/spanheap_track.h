/*
 * mm/spanheap_track.h: poison mode's record of who allocated and who freed
 * each small object (Linux's slub_debug=U), for the heap's users: the
 * record's shape and the call that reads it. Included by spanheap.h.
 */
#ifndef MM_SPANHEAP_TRACK_H
#define MM_SPANHEAP_TRACK_H

#include <stdbool.h>
#include <stdint.h>

struct spanheap;

/* Return addresses kept of each allocation's and each free's stack. */
#define SPANHEAP_TRACK_PCS 8

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
 * or p is not in a small span of the heap. Any context but NMI; the
 * records of an object another CPU allocates or frees meanwhile may be
 * half of each.
 */
bool spanheap_object_tracks(struct spanheap *sh, const void *p,
                            struct spanheap_track *alloc,
                            struct spanheap_track *freed);

#endif

/*
 * mm/palloc_scav.h: the page allocator's scavenging calls (palloc_scav.c).
 * Included by palloc.h; not included on its own.
 */
#ifndef MM_PALLOC_SCAV_H
#define MM_PALLOC_SCAV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct palloc;
struct palloc_run;

/* Free pages are "backed" (their memory is still there) or scavenged
 * (given back with mm_port_unused*). These calls find backed free pages,
 * highest address first, for the owner to give back. None of them is
 * available with PALLOC_NO_SCAV (they find nothing). */

/* A chunk with at least this many allocated pages is skipped unless the
 * caller forces (Go: scavenging a nearly full chunk is not worth it). */
#define PALLOC_SCAV_DENSE_PAGES 496

enum palloc_scav_flags {
	PALLOC_SCAV_FORCE = 1u << 0, /* also search nearly full chunks */
};

/* A scavenge search that may span several holds of the owner's lock (the
 * owner keeps it between them): zeroed, it starts at the next call. */
struct palloc_scav_search {
	bool started;
	size_t top; /* its circle: [0, top) from the top down, then the rest */
	size_t walked;   /* chunks of its circle searched so far */
	size_t searched; /* chunks the last call looked at */
};

enum palloc_scav_found {
	PALLOC_SCAV_NONE,  /* no run (the cursor goes back to the top) */
	PALLOC_SCAV_TAKEN, /* a run taken (the next call searches anew) */
	PALLOC_SCAV_MORE,  /* budget spent: call again to search on */
};

/*
 * palloc_scav_take_locked's search in stretches of at most budget chunks,
 * so that its owner can let its lock go between them: the arena may hold
 * many chunks with free pages and none backed, or only dense ones.
 * Locking: the owner's lock must be held.
 */
enum palloc_scav_found palloc_scav_search_locked(struct palloc *p,
                                                 struct palloc_scav_search *s,
                                                 size_t max, unsigned flags,
                                                 size_t budget,
                                                 struct palloc_run *r);

/*
 * Background mode: finds a run of free backed pages (at most max pages):
 * the highest in the first chunk below the scavenge cursor that has one
 * and is not dense (palloc_scav.c; then from the top down to the cursor),
 * takes it out of the free set (marks it allocated) and returns
 * true with it in *r; false if there is none. The owner releases the lock,
 * gives the memory back (mm_port_unused) and calls palloc_scav_return_locked.
 * Locking: the owner's lock must be held.
 */
bool palloc_scav_take_locked(struct palloc *p, size_t max, unsigned flags,
                             struct palloc_run *r);

/*
 * Frees an allocated run as scavenged (its memory was given back). A page
 * that is not allocated is a bad free (mm_panic). Locking: owner's lock.
 */
void palloc_scav_return_locked(struct palloc *p, uintptr_t base, size_t npages);

#endif

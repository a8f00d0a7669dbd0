/*
 * mm/spanheap_meta.h: the span heap's metadata heap (spanheap_meta.c), a
 * page heap of its own for the span heap's own structures, apart from
 * the object pages. Internal: included by spanheap_internal.h.
 */
#ifndef MM_SPANHEAP_META_H
#define MM_SPANHEAP_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap_types.h"

/* The smallest metadata arena spanheap_meta_init settles for when address
 * space is short (4 MiB: the first CPUs' slabs, the first span structs). */
#define SPANHEAP_META_MIN_BYTES ((size_t)2 * PALLOC_CHUNK_BYTES)

/* What the metadata heap holds, for the reports that name an address in
 * it (a bad free, spanheap_where_log, the kernel's addrinfo). */
#define SPANHEAP_META_WHAT                                                   \
	"span structs, span arrays, magazine slabs, side tables, the stack " \
	"depot, named caches' structs and counters, pools' reserves"

/* The metadata arena's size before spanheap_meta_arena_bytes rounds it
 * up to chunks and clamps it (spanheap_meta.c, "Algorithm"): its terms'
 * sum, exact, which the tests compare with what each term stands for
 * (the rounding hid a lost term of up to a chunk). Any context. */
uint64_t spanheap_meta_need_bytes(const struct spanheap_config *cfg,
                                  size_t heap_arena_bytes);

/* Sets up sh->meta (sh->heap, mag_layout and track already set), or
 * takes the one a failed init kept (spanheap_meta_kept): false, having
 * logged why, if no arena can be reserved for it. Thread context. */
bool spanheap_meta_init(struct spanheap *sh);

/* For a spanheap_init that failed after spanheap_meta_init, every
 * metadata page already freed: gives the frames back, keeps the
 * reservations (spanheap_meta.c, "Limits") for a retry, says so. Thread
 * context. */
void spanheap_meta_undo(struct spanheap *sh);

/* True if sh holds the metadata heap a failed spanheap_init kept
 * (spanheap_meta_undo), which the next spanheap_init of sh keeps and
 * uses again; false for a zeroed sh, or one whose owner gave that heap's
 * reservations back and zeroed sh->meta (the host tests). Thread
 * context. */
static inline bool spanheap_meta_kept(const struct spanheap *sh)
{
	return sh->meta_kept == &sh->meta && sh->meta.arena_pages != 0;
}

/* True if a lies in the metadata heap's arena (false for a heap whose
 * set-up never reached it: arena_pages 0). Any context. */
static inline bool spanheap_meta_holds(const struct spanheap *sh, uintptr_t a)
{
	return a - sh->meta.arena_base <
	       (uintptr_t)sh->meta.arena_pages * MM_PAGE_SIZE;
}

/* The pages of the side table of a poison span of class cls
 * (spanheap_redzone.c): sh's, and with or without callers' records. */
size_t spanheap_redzone_table_pages(const struct spanheap *sh, unsigned cls);
size_t spanheap_redzone_pages_of(unsigned cls, bool track);

/* The pages of a CPU's magazine slab (spanheap_init.c). */
size_t spanheap_mag_slab_pages(void);

/* The most pages the stack depot ever takes (spanheap_depot.c). */
size_t spanheap_depot_max_pages(void);

#endif

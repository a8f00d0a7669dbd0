/*
 * mm/spanheap_redzone.h: poison mode's calls (spanheap_config.h): the
 * poison checks (spanheap_poison.c) and the red zones' side tables
 * (spanheap_redzone.c), shared by the span heap's files; its records of
 * callers are spanheap_records.h's. Included by spanheap_internal.h; not
 * for the heap's users.
 */
#ifndef MM_SPANHEAP_REDZONE_H
#define MM_SPANHEAP_REDZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap_types.h"

/* Poison (spanheap_poison.c): object a of size bytes, freed, gets the
 * poison; every object of an empty span s going back to the page heap is
 * checked, and a change panics. Any context but NMI. */
void spanheap_poison_fill(uintptr_t a, uint32_t size);
void spanheap_poison_check_span(struct spanheap *sh, const struct mspan *s);
/* Object a of s, handed out again (span_take): panics if its poison or
 * marker changed since its free. */
void spanheap_poison_check_taken(struct spanheap *sh, const struct mspan *s,
                                 uintptr_t a);
/* The byte offset of the first damage to free object a of s (poisoned or
 * not): SPANHEAP_DAMAGE_MARKER (its marker's word, which the poison never
 * covers) if the marker is gone, else, in poison mode, the first byte
 * that is not the poison; -1 if none. */
#define SPANHEAP_DAMAGE_MARKER 8
long spanheap_free_damage(const struct spanheap *sh, const struct mspan *s,
                          uintptr_t a);

/* One object's entry in a poison span's side table (s->redzone): the
 * bytes asked for while it is allocated, SPANHEAP_REDZONE_FREE while it is
 * free; and while it is allocated, its owner: 0 for the heap's own
 * callers (kmalloc's), a named cache's slot + 1 for its objects
 * (objcache.c tags them after the allocation and clears the tag before
 * the free). */
struct spanheap_redzone {
	uint32_t asked;
	uint32_t owner;
};
#define SPANHEAP_REDZONE_FREE UINT32_MAX

/*
 * A new small span of class cls at base, in poison mode: its side table
 * into *rz (from the metadata heap, flags the span's), every object poisoned
 * and marked as a freed one. True, with *rz NULL, outside poison mode;
 * false, base given back, if the table cannot be had. Inline: normal mode
 * pays one test per span made.
 */
bool spanheap_redzone_span_make(struct spanheap *sh, unsigned cls,
                                uintptr_t base, unsigned flags, void **rz);
static inline bool spanheap_redzone_make(struct spanheap *sh, unsigned cls,
                                         uintptr_t base, unsigned flags,
                                         void **rz)
{
	*rz = NULL;
	return !sh->cfg.poison ||
	       spanheap_redzone_span_make(sh, cls, base, flags, rz);
}
/* Gives side table rz (NULL: nothing) of a span of class cls back. */
void spanheap_redzone_put(struct spanheap *sh, void *rz, unsigned cls);
/* Poison span s, empty, its poison checked (spanheap_poison_check_span)
 * and its state DEAD, goes back: its table given back. */
void spanheap_poison_span_gone(struct spanheap *sh, struct mspan *s);

/* Object a of poison span s handed out (span_take) for size bytes: the
 * poison checked, the marker cleared, the size recorded and the red zone
 * [size, elemsize) filled. Returns a. */
void *spanheap_poison_taken(struct spanheap *sh, struct mspan *s, uintptr_t a,
                            size_t size);
/* Object a of class cls freed in poison mode (spanheap_mag_full): its red
 * zone checked, then the poison. */
void spanheap_poison_freed(struct spanheap *sh, uintptr_t a, unsigned cls);
/* Poison mode's owners (objcache.c): the owner field of allocated object
 * idx of small poison span s (0: the heap's own callers', n: named cache
 * slot n - 1's), or NULL if the object is free, or s large or not a
 * poison span. The object's caller's alone to write; any context. */
uint32_t *spanheap_redzone_owner_at(const struct mspan *s, uint32_t idx);
/* Panics if allocated object idx of poison span s at a is a named
 * cache's: the heap's own free or realloc (op) of it. */
void spanheap_redzone_not_owned(struct spanheap *sh, const struct mspan *s,
                                uint32_t idx, uintptr_t a, const char *op);
/* The bytes asked for object idx of poison span s (allocated). */
size_t spanheap_redzone_asked(const struct mspan *s, uint32_t idx);
/* A realloc keeps object idx of poison span s at a for size bytes: the
 * old red zone checked, the new one filled. */
void spanheap_redzone_resize(struct spanheap *sh, struct mspan *s, uint32_t idx,
                             uintptr_t a, size_t size);

#endif

/*
 * mm/objcache_leak.h: what the leak scan (spanheap_leak.c) asks of a
 * cache with slabs of its own (objcache_own.h): which large spans are
 * slabs, where their objects lie, which of them are out, and who
 * allocated them (poison mode's records, objcache_track.c). Not for
 * the heap's users.
 *
 * Contexts, unless said: the leak scan's: every other allocator and
 * freer of the heap held still (a kernel's world stopped), the span in
 * the scan's snapshot and seen in state MSPAN_LARGE.
 */
#ifndef MM_OBJCACHE_LEAK_H
#define MM_OBJCACHE_LEAK_H

#include <stdbool.h>
#include <stdint.h>

#include "objcache_own.h"
#include "spanheap_track.h"

struct mspan;
struct spanheap;

/* A slab as the scan sees it: objects [first, first + nobjs * objsize),
 * each of size bytes asked, of the cache whose owner number is owner;
 * their records from slab + recs (0: none), read once with the rest, so
 * that a lock-free reader follows no pointer of a slab freed meanwhile
 * (objcache_track.c). */
struct objcache_leak_slab {
	const void *slab; /* its header (struct objslab) */
	uintptr_t first;  /* object 0's first byte */
	uint32_t nobjs, objsize, size, owner, recs;
};

/* Whether large span s is a built slab of a cache with slabs of its own
 * (its objslab set, its header naming a cache that still has its slabs'
 * geometry); then the slab into *out. False for any other large span. */
bool objcache_leak_slab(const struct mspan *s, struct objcache_leak_slab *out);

/* Whether object idx of slab (an objcache_leak_slab's) is out: its free
 * bit clear and its stashed byte clear. */
bool objcache_leak_out(const void *slab, uint32_t idx);

/* Object idx of slab's allocation record into *t; false (t untouched)
 * if its cache keeps none (not poison mode, or a port with no stacks). */
bool objcache_leak_tracks(struct spanheap *sh, const void *slab, uint32_t idx,
                          struct spanheap_track *t);

#endif

/*
 * mm/spanheap_leak.h: the leak scan (spanheap_leak.c), Linux's kmemleak
 * for the span heap: the live small objects (the guarded pool's among
 * them) and the live objects of the caches with slabs of their own
 * (objcache_own.h) that nothing reachable points to, each with the stack
 * that allocated it.
 *
 * An object is reachable if a word of the caller's roots (a kernel's
 * data, bss and thread stacks) points into it, or a word of a reachable
 * object does; a large object counts as reachable whatever points to it
 * (it is read, not judged: it keeps no records; a slab's header is
 * neither, its objects are judged as small ones). A word counts if it
 * points anywhere inside an object (its element; a guarded object's
 * bytes asked, its start if it asked none), as kmemleak's do: a pointer to a
 * member keeps its struct. What is left is a leak, reported with its address,
 * its bytes asked, its class, its owner (a named cache) and its allocation's
 * record.
 *
 * Conservative as every such scan: a word that happens to look like a
 * pointer keeps an object (a leak missed), and a pointer the roots do
 * not cover (a register of a CPU not stopped, memory of the caller's
 * that it did not name) reports an object that is not one; min_age_ns
 * leaves out the youngest objects, whose pointers are likeliest to be in
 * flight (kmemleak's is 5 s).
 *
 * Needs the heap's records (poison mode with a port that gives stacks:
 * spanheap_track_probe), for which objects are live, exactly, and who
 * made them.
 */
#ifndef MM_SPANHEAP_LEAK_H
#define MM_SPANHEAP_LEAK_H

#include <stddef.h>
#include <stdint.h>

#include "spanheap_track.h"

struct spanheap;

/* A range of roots: [lo, hi), read a word at a time (8-byte aligned
 * words inside it). */
struct spanheap_leak_range {
	uintptr_t lo, hi;
};

/* One leak. */
struct spanheap_leak {
	uintptr_t addr;              /* the object's first byte */
	uint32_t asked;              /* the bytes asked for it */
	uint32_t sizeclass;          /* its span's class; 0: a slab's */
	uint32_t owner;              /* 0, or a named cache's slot + 1 */
	struct spanheap_track alloc; /* its allocation's record */
};

/* What a scan saw. */
struct spanheap_leak_result {
	size_t leaks;     /* leaks found; the first max of them in out */
	size_t objects;   /* small and slabs' objects live, judged */
	size_t reachable; /* of them, reached from the roots */
	size_t young;     /* of them, unreached but under min_age_ns */
	size_t words;     /* words read: roots and reachable objects */
};

/* Why a scan did nothing (spanheap_leak_scan's negative returns). */
#define SPANHEAP_LEAK_NO_RECORDS (-1) /* no poison mode, or no stacks */
#define SPANHEAP_LEAK_RETRY      (-2) /* work too small: the heap grew */

/* The bytes of work memory a scan of sh as it is now needs, with some
 * room for growth and for max leaks. Thread context, no mm lock held. */
size_t spanheap_leak_work_bytes(struct spanheap *sh, size_t max);

/*
 * Scans sh for leaks from roots[0..nroots), using work (bytes of it,
 * 8-byte aligned; an object of sh's own is fine: it is neither scanned
 * nor judged), and keeps the first max leaks found in work
 * (spanheap_leak_list). Returns the leaks found (result->leaks) with
 * result filled, or SPANHEAP_LEAK_NO_RECORDS, or SPANHEAP_LEAK_RETRY
 * (nothing reported: ask spanheap_leak_work_bytes again). Wipe work
 * before it is freed or reused: a copy of a leak's address where the
 * next scan reads (an object, a stack) would keep that leak.
 *
 * The caller keeps every other allocator and freer of sh still (a
 * kernel: the world stopped, interrupts off on this CPU; a test: one
 * thread), and gives every range that may hold the only pointer to an
 * object, each mapped and readable. Takes the heap's lock for the span
 * snapshot, and no other; allocates nothing.
 */
long spanheap_leak_scan(struct spanheap *sh, void *work, size_t bytes,
                        const struct spanheap_leak_range *roots, size_t nroots,
                        uint64_t min_age_ns, size_t max,
                        struct spanheap_leak_result *result);

/* The leaks the last scan of work kept: min(result->leaks, max) of
 * them: the spans' objects in address order, then the guarded pool's
 * in slot order (a slab's objects among the spans', by address). */
const struct spanheap_leak *spanheap_leak_list(const void *work);

#endif

/*
 * mm/objcache.h: named caches of objects of one size over the span heap,
 * Linux's kmem_cache (kmem_cache_create, _alloc, _free, _destroy) for
 * the objects a kernel makes by the thousand: threads, queue nodes,
 * inodes. Included by mm.h.
 *
 * A cache is a name, a size and an alignment, served by the span heap's
 * size class for them (as Linux merges a cache into a kmalloc cache of
 * the same size): its objects share that class's spans, magazines and
 * sweeper with kmalloc's, by the same paths. What the cache
 * adds is accounting, per cache:
 *   - the objects it has out, counted per CPU, which the listing gives
 *     (the kernel's slabinfo) and objcache_destroy checks: a cache
 *     destroyed with objects out is a leak, refused and named (Linux
 *     warns only when the cache was not merged, and keeps the cache);
 *   - a free to the wrong cache: an object whose span is of another size
 *     class than the cache's panics, naming both (Linux's "Wrong slab
 *     cache"). An object of kmalloc's, or of another cache, of the same
 *     class is told apart in poison mode alone, where each small object's
 *     side table entry names its owner (spanheap_redzone.h): a free to
 *     the wrong cache, a cache's object given to kfree or krealloc, and
 *     kmalloc's given to a cache each panic naming both owners; and the
 *     records list a cache's own live objects by the stack that
 *     allocated them (spanheap_alloc_traces_owned, with the owner
 *     objcache_info gives), for the leak a refused destroy reports.
 * A constructor or OBJCACHE_TYPESAFE_BY_RCU gives a cache slabs of its
 * own instead, not merged (objcache_own.h: objcache_create_flags).
 *
 * Contexts: objcache_alloc and objcache_free as spanheap_alloc and
 * spanheap_free (any context but NMI; thread context without MM_ATOMIC);
 * the rest, thread context. No call may use a cache while it is
 * destroyed, nor after (one after, until the heap reuses the cache's
 * struct, mm_panics saying the cache was destroyed).
 */
#ifndef MM_OBJCACHE_H
#define MM_OBJCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap.h"

#define OBJCACHE_MAX      64 /* caches per heap */
#define OBJCACHE_NAME_MAX 31 /* a name's longest (without its NUL) */

/* A cache, here for the inline paths below (callers: objcache_info).
 * Fixed from creation to destruction but next (heap->lock's list). */
struct objcache {
	/* its counter in CPU 0's row of the area; the first word, which a
	 * freed block's chain takes, not sh (objcache_destroy) */
	int64_t *counts;
	struct spanheap *sh;
	size_t size, align, objsize;
	unsigned sizeclass, slot;
	/* sizeclass_of(size) if allocations may take the class's magazine
	 * inline (spanheap_alloc_class): alignment 16, a small size; else 0 */
	unsigned fast_class;
	/* What objcache_free tells spanheap_free_class: sizeclass; in poison
	 * mode, for a small cache, OBJCACHE_NO_CLASS, which sends every free
	 * to objcache_free_slow for its owner's check */
	unsigned free_class;
	/* slot + 1 for a small cache in poison mode (its objects' owner in
	 * their side table, spanheap_redzone.h) and a cache with slabs of
	 * its own (what its slabs' spans carry, mspan.objslab); else 0 */
	uint32_t owner;
	struct objcache_own *own; /* its slabs (objcache_own.c), or NULL */
	struct objcache *next;
	char name[OBJCACHE_NAME_MAX + 1];
};

/* A cache named name (copied; 1 to OBJCACHE_NAME_MAX characters, unique
 * in the heap) of objects of size bytes aligned to align (0 or up to 16:
 * 16; else as spanheap_alloc_aligned's). NULL, with a line naming what
 * was wrong, for a bad name, size or alignment, a name in use, a heap
 * with OBJCACHE_MAX caches, or no memory. Thread context. */
struct objcache *objcache_create(struct spanheap *sh, const char *name,
                                 size_t size, size_t align);

/* The inline paths' out-of-line parts (objcache.c): an allocation the
 * magazine path does not take, counted (in poison mode, its owner set);
 * a free spanheap_free_class refused for its class: an object of another
 * class panics; in poison mode, one of the cache's class has its owner
 * checked and cleared, then is freed. */
void *objcache_alloc_slow(struct objcache *c, unsigned flags);
void objcache_free_slow(struct objcache *c, void *p);
#define OBJCACHE_NO_CLASS 0xffffu

_Static_assert(OBJCACHE_MAX * sizeof(int64_t) == 1u << 9,
               "a CPU's row of counters is 512 bytes");
_Static_assert(OBJCACHE_MAX == SPANHEAP_OBJCACHE_SLOTS &&
                       OBJCACHE_NAME_MAX + 1 == SPANHEAP_OBJCACHE_NAME,
               "struct spanheap's names have a cache's room");

/* Adds d to this CPU's counter of c: no other CPU writes the row, and
 * nothing else on this CPU counts in the middle. Any context but NMI.
 * With MM_PORT_RSEQ, a restartable sequence (mm/rseq.h) whose commit is
 * one add to memory, which an interrupt cannot cut in two; else a load
 * and a store, pinned. */
static inline __attribute__((always_inline)) void
objcache_count(struct objcache *c, int64_t d)
{
#ifdef MM_PORT_RSEQ
	unsigned long cpu;
	__asm__ volatile("1:\n\t" MM_PORT_RSEQ_CPU "\n\t"
	                 "shlq $9, %[cpu]\n\t"
	                 "addq %[counts], %[cpu]\n\t"
	                 "addq %[d], (%[cpu])\n" /* the commit */
	                 "2:\n\t" MM_RSEQ_RECORD("1b", "2b")
	                 : [cpu] "=&r"(cpu)
	                 : [counts] "r"(c->counts), [d] "er"(d),
	                   MM_PORT_RSEQ_CPU_ARGS
	                 : "memory", "cc");
#else
	struct mm_pin pin = mm_port_pin();
	int64_t *n = &c->counts[(size_t)pin.cpu * OBJCACHE_MAX];
	__atomic_store_n(n, __atomic_load_n(n, __ATOMIC_RELAXED) + d,
	                 __ATOMIC_RELAXED);
	mm_port_unpin(pin);
#endif
}

/* An object of the cache, or NULL (as spanheap_alloc's; flags are its
 * own). A small size with no more than 16 bytes of alignment and no
 * flag but MM_ATOMIC and MM_NO_GROW takes the class's magazine inline
 * (spanheap_alloc_class, as kmalloc of a constant size); the rest, the
 * call. Contexts as spanheap_alloc's with those flags. */
static inline void *objcache_alloc(struct objcache *c, unsigned flags)
{
	/* No class (0, or garbage in a destroyed cache's struct: until a
	 * review, taken for one) goes out of line, to its panic. */
	if (__builtin_expect(
	            c->fast_class - 1u >= SC_NCLASSES - 1u ||
	                    (flags & ~(unsigned)(MM_ATOMIC | MM_NO_GROW)),
	            0))
		return objcache_alloc_slow(c, flags);
	void *p = spanheap_alloc_class(c->sh, c->fast_class, c->size, flags);
	if (__builtin_expect(p != NULL, 1))
		objcache_count(c, 1);
	return p;
}

/* Frees p, an object of c (NULL: nothing): spanheap_free with the
 * span's class tested on the way (spanheap_free_class). An object of a
 * span of another size class mm_panics naming the cache and both
 * classes; in poison mode, so does one of another owner; other misuse (a
 * double free, an interior or foreign pointer) as spanheap_free's.
 * Contexts as spanheap_free's. */
static inline void objcache_free(struct objcache *c, void *p)
{
	if (!p)
		return;
	/* NO_CLASS or past it (garbage, as above): spanheap_free_class
	 * would refuse it, through c->sh, which may be garbage too. */
	if (__builtin_expect(
	            c->free_class >= OBJCACHE_NO_CLASS ||
	                    !spanheap_free_class(c->sh, p, c->free_class),
	            0))
		objcache_free_slow(c, p);
	objcache_count(c, -1);
}

/* Destroys c (NULL: nothing) and returns true; or, with objects of it
 * out, keeps it, says how many on one line and returns false (the caller
 * may free them and try again; with more frees than allocations, other
 * objects of its class freed to it, kept for good, as Linux does).
 * Thread context; nothing may use c meanwhile. A c that is no cache of
 * the heap (destroyed already, or at once by another call) mm_panics
 * saying so: with _in, given the heap, always; without, which reads c
 * for its heap, while its struct's page lives (objcache.c, "Limits"). */
bool objcache_destroy(struct objcache *c);
bool objcache_destroy_in(struct spanheap *sh, struct objcache *c);

struct objcache_info { /* what the listing gives of a cache */
	char name[OBJCACHE_NAME_MAX + 1];
	size_t size, align, objsize; /* objsize: the bytes an object takes */
	unsigned sizeclass; /* the class; 0: large spans, or slabs of its own */
	int64_t live;       /* objects out (approximate while CPUs work) */
	/* Slabs of its own (objcache_own.h): listed, the pages of each,
	 * emptied but waiting for a grace period, objects stashed; else 0 */
	size_t slabs, slab_pages, pending, stashed;
	uint32_t owner; /* struct objcache's owner */
};

/* The name of the cache whose objects have owner owner (objcache_info's;
 * 1 to OBJCACHE_MAX) into name (OBJCACHE_NAME_MAX + 1 bytes): the last
 * cache of that slot's, for the reports; "?" if a create rewrote it all
 * the while. No lock: any context. */
void objcache_owner_name(struct spanheap *sh, uint32_t owner, char *name);

/* c's line of the listing. Any context but NMI. */
void objcache_info(const struct objcache *c, struct objcache_info *out);

/* Copies up to max caches' lines of sh into out, in creation order;
 * returns how many caches sh has. Thread context. */
size_t objcache_list(struct spanheap *sh, struct objcache_info *out,
                     size_t max);

#endif

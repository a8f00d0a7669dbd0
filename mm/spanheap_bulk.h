/*
 * mm/spanheap_bulk.h: bulk allocation and free on the span heap, Linux's
 * kmem_cache_alloc_bulk, kmem_cache_free_bulk and kfree_bulk for the span
 * heap's callers (the kernel's wrappers: kernel/heap_copy.h). Included by
 * mm.h.
 *
 * A batch takes the CPU's magazine of its class in one pin and moves its
 * objects in a loop, one read of the top and one store of it per run,
 * instead of a pin, a pop and an unpin per object; a magazine that runs
 * dry is refilled by the single path's refill (which fills it with up to
 * 1 KiB of the span's next objects), one that fills is spilled by the
 * single free's spill (its older half, in one prefetched batch), and the
 * run goes on. What the fast paths do not take goes by the single calls,
 * one object at a time: large sizes, poison mode (mm.debug_poison: the
 * records, red zones and KASAN shadow), the guarded pool's sampling, an
 * armed failure injection; so every debug mode sees each object as it
 * sees a single call's.
 */
#ifndef MM_SPANHEAP_BULK_H
#define MM_SPANHEAP_BULK_H

#include <stdbool.h>
#include <stddef.h>

#include "spanheap.h"

/*
 * Fills out[0..n) with n objects of size bytes, as n calls of
 * spanheap_alloc(sh, size, flags) would, and returns n; or returns 0 with
 * nothing allocated (all or nothing, as Linux's kmem_cache_alloc_bulk):
 * when memory runs out part way (the objects had are freed again), for
 * unknown flags, for out NULL, or for n objects of size bytes that could
 * not fit the arena (n * size over it), each refused with a line naming
 * the call, n and the size. n 0 returns 0 and touches nothing. out's
 * entries past a failure are left as they were. Flags and contexts as
 * spanheap_alloc's: thread context, or any but NMI with MM_ATOMIC.
 */
size_t spanheap_alloc_bulk(struct spanheap *sh, size_t size, unsigned flags,
                           size_t n, void **out);

/*
 * Frees the n objects p[0..n) (NULL entries: nothing), as n calls of
 * spanheap_free would, in order. Each pointer is checked as
 * spanheap_free checks it; a misused one (a double free, the same object
 * twice in the batch included, an interior or foreign pointer, a freed
 * large object) mm_panics with spanheap_free's message, after a line that
 * names its index in the batch and the pointer; the entries before it
 * were freed. p NULL with n > 0: a line, nothing freed. Any context but
 * NMI (the free's).
 */
void spanheap_free_bulk(struct spanheap *sh, size_t n, void **p);

/*
 * As spanheap_free_bulk for objects of spans of size class cls (0: large
 * objects), named caches' bulk free (objcache_bulk.h): frees p[0..) in
 * order up to the first non-NULL entry of another class, which is left
 * as it was, and returns its index (n if none). Contexts as
 * spanheap_free_bulk's.
 */
size_t spanheap_free_bulk_class(struct spanheap *sh, size_t n, void **p,
                                unsigned cls);

/* True if spanheap_where (into *w) says q is the start of an allocated
 * object, as a free wants: only for the line that names a misused
 * entry's index (the single free, after it, decides and says what is
 * wrong; unlocked, so in a race the line may be missing or wrong). Any
 * context but NMI. */
bool spanheap_bulk_live_start(struct spanheap *sh, const void *q,
                              struct spanheap_where *w);

#endif

/*
 * mm/mm.h: the allocator's one header for the kernel (or any port's OS).
 *
 * What mm/ offers, by layer:
 *   palloc.h   the page allocator: runs of pages from an arena, Go's
 *              pageAlloc; also usable on its own (the kernel's frame pool)
 *   pagecache.h  a per-CPU cache of pages in front of a palloc
 *   mheap.h    the page heap: a palloc over a reserved virtual arena with
 *              growth, any-context allocation and the scavenger
 *   sizeclasses.h  the span heap's size classes
 *   spanheap.h the span heap: objects of any size on top of mheap, with
 *              per-CPU caches and the sweeper (the kernel's kmalloc wraps
 *              it)
 *   spanheap_copy.h  arrays with checked sizes, copies of memory and
 *              strings, the size a request gets, the wiping free (the
 *              kernel's kmalloc_array, kstrdup, kfree_sensitive... wrap
 *              them)
 *   spanheap_usercopy.h  the hardened copy check: does a copy stay
 *              inside one live object (the kernel's check_object_size)
 *   objcache.h named caches of objects of one size over the span heap,
 *              counted per cache (the kernel's kmem_cache wraps it)
 *   pcpu.h     dynamic per-CPU memory: a zeroed copy of an object for
 *              every CPU, one stride apart (the kernel's alloc_percpu
 *              wraps it)
 *   mempool.h  reserved elements for allocations that must make progress
 *              when memory runs out (Linux's mempool_t)
 * port.h is the contract the OS implements; docs/PORTING.md explains it.
 *
 * Limits: an arena of at most PALLOC_MAX_ARENA_BYTES (128 TiB); one
 * object of the span heap of at most SPANHEAP_LARGE_MAX_PAGES pages (16
 * TiB less a page), so on an arena above that a larger request gets NULL
 * and a line naming the limit, however many pages are free.
 */
#ifndef MM_MM_H
#define MM_MM_H

/* C linkage from C++ (clang++ only: docs/PORTING.md): a C++ caller
 * includes mm/ through this header. */
#ifdef __cplusplus
extern "C" {
#endif

#include "mempool.h"
#include "mheap.h"
#include "objcache.h"
#include "objcache_bulk.h"
#include "objcache_own.h"
#include "pagecache.h"
#include "pcpu.h"
#include "spanheap.h"
#include "spanheap_bulk.h"
#include "spanheap_copy.h"
#include "spanheap_usercopy.h"
#include "palloc.h"
#include "port.h"

#ifdef __cplusplus
}
#endif

#endif

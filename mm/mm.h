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
 * port.h is the contract the OS implements; docs/PORTING.md explains it.
 */
#ifndef MM_MM_H
#define MM_MM_H

#include "mheap.h"
#include "pagecache.h"
#include "spanheap.h"
#include "palloc.h"
#include "port.h"

#endif

/*
 * The kernel's page heap: one mm/ mheap over a 64 GiB arena of the mm
 * region, its background scavenger, and the memory-info dump. The span
 * heap (kmalloc) will build on it.
 */
#ifndef KERNEL_HEAP_H
#define KERNEL_HEAP_H

#include <stddef.h>

#include "mm/mheap.h"

extern struct mheap kheap;

/* Sets the heap up and starts its scavenger; "mm.debug_pagealloc" on the
 * command line makes every free unmap its pages at once. Boot CPU, thread
 * context, after the scheduler. */
void heap_init(void);

/* Gives every free backed heap page back to the frame pool now (Go's
 * debug.FreeOSMemory). Returns how many pages. Thread context. */
size_t mm_release_all(void);

/* Prints the frame pool and heap accounting. Thread context. */
void mm_meminfo(void);

#endif

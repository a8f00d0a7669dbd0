/*
 * The kernel's page heap: one mm/ mheap over a 64 GiB arena of the mm
 * region, its background scavenger, and the memory-info dump. The span
 * heap (kmalloc) will build on it.
 */
#ifndef KERNEL_HEAP_H
#define KERNEL_HEAP_H

#include <stddef.h>

#include "mm/mm.h"

extern struct mheap kheap;

/* Sets the heap up and starts its scavenger. Command line:
 * "mm.debug_pagealloc" makes every free unmap its pages at once;
 * "mm.scav_goal=<percent>" sets how much free backed memory the scavenger
 * keeps (default 10% of the heap in use); "mm.scav_budget=<per mille>"
 * its CPU budget (default 10 = 1% of one CPU). Boot CPU, thread context,
 * after the scheduler. */
void heap_init(void);

/* Gives every free backed heap page back to the frame pool now (Go's
 * debug.FreeOSMemory). Returns how many pages. Thread context. */
size_t heap_release_all(void);

/* Prints the frame pool and heap accounting. Thread context. */
void heap_meminfo(void);

#endif

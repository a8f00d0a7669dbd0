/*
 * kernel/heap_debug.h: the kernel heap's diagnostics, for the shell and
 * the fault hook: recorded stacks printed and named, the live objects by
 * the stack that allocated them (alloctraces), the guarded pool's live
 * objects, and the leak scan (heap_traces.c, heap_leaks.c). Split from
 * heap.h, which keeps the allocation API.
 */
#ifndef KERNEL_HEAP_DEBUG_H
#define KERNEL_HEAP_DEBUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/mm.h"

/* Says that who's lock-free read of the heap, under the fault hook,
 * faulted at cr2 (a span freed meanwhile): try again. */
void heap_read_fault_print(const char *who, uint64_t cr2);
/* Prints a recorded stack's npcs return addresses, one a line, named. */
void heap_stack_print(const uintptr_t *pc, uint32_t npcs);
/* Prints the live objects of size class cls (0: all) of owner owner
 * (objcache_info's; SPANHEAP_OWNER_ANY: every object) by the stack that
 * allocated them, most first, at most max stacks (t: the room for them);
 * false if a fault ended the walk (said, with who). Thread context. */
bool heap_traces_print(const char *who, unsigned cls, uint32_t owner,
                       struct spanheap_trace *t, size_t max);
/* Prints the guarded pool's live objects (mm.guard), each with its slot,
 * size, class, age and the stack that allocated it; false, said, if the
 * heap has no pool. Read with no lock: a slot freed or reused while read
 * is left out (spanheap_guard_live), never shown with two objects'
 * fields. Thread context. */
bool heap_guard_print(void);

/* A leak scan's answer (heap_leaks.c; mm/spanheap_leak.h, Linux's
 * kmemleak): its work memory, which holds the leaks kept, until
 * heap_leaks_done. */
struct heap_leaks {
	void *work;
	size_t bytes, max;
	long n; /* heap_leaks_scan's return */
	struct spanheap_leak_result r;
	uint64_t stopped_ns; /* the last scan's stop of the world */
};
#define HEAP_LEAKS_NOMEM (-3) /* no memory for the scan's work */

/*
 * Scans the heap for live small objects nothing reaches from the
 * kernel's data, bss and stacks, older than min_age_ns, keeping the
 * first max (in address order): returns how many were found, or
 * SPANHEAP_LEAK_NO_RECORDS (no mm.debug_poison), HEAP_LEAKS_NOMEM, or
 * SPANHEAP_LEAK_RETRY (the heap kept outgrowing the scan's memory).
 * Stops the world for the scan. Thread context, no lock held. Every
 * return leaves hl for heap_leaks_done.
 */
long heap_leaks_scan(struct heap_leaks *hl, uint64_t min_age_ns, size_t max);
/* The leaks hl kept, *n of them (none after a failed scan, and none
 * after heap_leaks_done). */
const struct spanheap_leak *heap_leaks_list(const struct heap_leaks *hl,
                                            size_t *n);
/* Prints the kept leaks, each with its allocating stack named, then the
 * counts. Thread context. */
void heap_leaks_print(const struct heap_leaks *hl);
/* Wipes and frees hl's work memory (a copy of a leak's address read by
 * the next scan would keep that leak). As kfree: any context but NMI,
 * no spinlock of rank WAITQ or above held. */
void heap_leaks_done(struct heap_leaks *hl);
/* The shell's leaks: a scan of objects older than min_age_ns, printed
 * (at most 64, then the count of the rest), or why it could not be made
 * (said; false). Thread context, no lock held. */
bool heap_leaks_report(uint64_t min_age_ns);

#endif

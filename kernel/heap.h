/*
 * The kernel's heaps: one mm/ page heap (kheap) over a 64 GiB arena of the
 * mm region with its background scavenger, the span heap on top of it
 * (kspanheap, with its sweeper), kmalloc and friends, and the memory-info
 * dump. kmalloc_array, krealloc_array, kmemdup, kstrdup, kstrndup,
 * kmalloc_size_roundup and kfree_sensitive are in heap_copy.h.
 *
 * kmalloc hands out objects of any size from any CPU (mm/spanheap.h):
 * small ones from per-CPU caches of size-class spans, large ones (over
 * 32 KiB) as spans of their own. Objects are 16-byte aligned, and
 * naturally aligned for powers of two up to 4 KiB. They are virtually
 * contiguous only (the arena is mapped page by page from single frames)
 * and not in the direct map: never give one to a device (kernel/dma.h).
 *
 * Contexts:
 *   kmalloc, kzalloc, kcalloc, krealloc, kmalloc_aligned
 *           without KM_ATOMIC: thread context only (it may sleep while
 *           another CPU grows the heap, or scavenge for frames): no
 *           spinlock held, interrupts and preemption on. A call from an
 *           atomic context mm_panics naming the function, unless its
 *           CPU's magazine serves it (a small plain kmalloc or
 *           kmem_cache_alloc: the fast path tests nothing); with
 *           mm.debug_poison, every call.
 *           with KM_ATOMIC: any context but NMI (interrupt handlers,
 *           interrupts off, a spinlock ranked below waitq held). It never
 *           sleeps and never waits for another CPU: NULL when memory
 *           cannot be had at once. Large requests are limited to
 *           MHEAP_ATOMIC_MAX_PAGES pages.
 *   kfree, ksize
 *           any context but NMI, with no spinlock ranked waitq or above
 *           held (a free may wake the sweeper or the scavenger). With
 *           mm.debug_pagealloc a free that gives pages back unmaps them
 *           at once, in thread context (elsewhere the unmap, which
 *           waits for other CPUs, is left out).
 * Misuse (a double free, an interior, foreign or page-heap pointer, a
 * large object freed twice) panics naming the pointer, its span and its
 * size class.
 */
#ifndef KERNEL_HEAP_H
#define KERNEL_HEAP_H

#include <stdbool.h>
#include <stddef.h>

#include "mm/mm.h"

extern struct mheap kheap;
extern struct spanheap kspanheap;

/* kmalloc's flags: the span heap's own, under the kernel's names. */
enum kmalloc_flags {
	KM_ZERO = MM_ZERO,      /* zeroed memory */
	KM_ATOMIC = MM_ATOMIC,  /* the caller cannot sleep: see above */
	KM_NOGROW = MM_NO_GROW, /* fail rather than grow the page heap */
};

/*
 * Sorts the table of the heap's restartable sequences (mm/rseq.h: every
 * kmalloc and kfree fast path is one), which irq_dispatch searches. Boot
 * CPU, before interrupts are enabled anywhere.
 */
void heap_rseq_init(void);

/*
 * Whether a #PF at rip, reading cr2, is a span heap's magazine sequence
 * reading through a CPU's magazines with mags[cpu] NULL: rip one of the
 * loads mm/rseq.h's MM_RSEQ_MAGS_RECORD lists, cr2 in page 0 (the
 * magazine's offset). That is a heap used before spanheap_init (a
 * zeroed struct), whose fast path has no test of its own. Any context;
 * reads only the image's table (a linear search: fault reports only).
 */
bool heap_fault_unset_mags(uint64_t rip, uint64_t cr2);

/*
 * Sets the page heap and the span heap up and starts the scavenger and
 * the sweeper. Command line: "mm.debug_pagealloc" makes every free of
 * heap pages unmap them at once; "mm.scav_goal=<percent>" sets how much
 * free backed memory the scavenger keeps (default 10% of the heap in
 * use); "mm.scav_budget=<per mille>" its CPU budget (default 10 = 1% of
 * one CPU); "mm.guard=N" (a bare "mm.guard": N = 64) turns the span
 * heap's guarded pool on, 64 slots, one allocation in N refills and
 * out-of-line allocations of each CPU served there (mm/spanheap_guard.c).
 * Boot CPU, thread context, after the scheduler and SMP: no thread may be
 * created before it (thread structs come from its "thread" cache).
 */
void heap_init(void);

/* Allocation-failure injection: the command line's "mm.fail=..."
 * (spanheap_fail_parse's syntax, mm/spanheap_fail.h) arms it at the end
 * of heap_init; the shell's mmfail at any time. */

/*
 * size bytes, or NULL if memory ran out (or, with KM_ATOMIC, cannot be had
 * without waiting). size 0 gets a unique minimal object. flags: enum
 * kmalloc_flags.
 */
static inline void *kmalloc(size_t size, unsigned flags)
{
	/* A size fixed at compile time (a struct's, mostly), small enough
	 * that its class is a formula (SC_LINEAR_MAX): the class folds to a
	 * constant and the magazine's pop is inline, no call (Linux's
	 * kmalloc picks its cache at compile time the same way). KM_ZERO,
	 * and any bit that is no flag (spanheap_alloc refuses it, naming
	 * it), take the call. */
	bool plain = __builtin_constant_p(flags) &&
	             !(flags & ~(unsigned)(KM_ATOMIC | KM_NOGROW));
	if (plain && __builtin_constant_p(size) && size <= SC_LINEAR_MAX)
		return spanheap_alloc_class(
		        &kspanheap, spanheap_class_linear(size), size, flags);
	/* Flags fixed at compile time are checked here, at compile time:
	 * the call tests the size alone. */
	if (plain)
		return spanheap_alloc_sized(&kspanheap, size, flags);
	return spanheap_alloc(&kspanheap, size, flags);
}

static inline void *kzalloc(size_t size, unsigned flags)
{
	return spanheap_alloc(&kspanheap, size, flags | KM_ZERO);
}

/* n * size zeroed bytes; NULL if the product overflows. */
static inline void *kcalloc(size_t n, size_t size, unsigned flags)
{
	return spanheap_calloc(&kspanheap, n, size, flags);
}

/* Resizes p (NULL: allocates); size 0 frees p and returns NULL. On
 * failure p is untouched and NULL is returned. KM_ZERO zeroes the growth
 * when p was allocated and resized with KM_ZERO throughout (as Linux's
 * __GFP_ZERO: spanheap_realloc). The result is 16-byte aligned; a
 * kmalloc_aligned object keeps more only if it stays in place. */
static inline void *krealloc(void *p, size_t size, unsigned flags)
{
	return spanheap_realloc(&kspanheap, p, size, flags);
}

/* size bytes aligned to align: a power of two up to 4 KiB, or a multiple
 * of 4 KiB. NULL for any other align, with a line naming it. */
static inline void *kmalloc_aligned(size_t size, size_t align, unsigned flags)
{
	return spanheap_alloc_aligned(&kspanheap, size, align, flags);
}

/* Frees p from kmalloc and friends (NULL: nothing). */
static inline void kfree(void *p)
{
	spanheap_free(&kspanheap, p);
}

/* The bytes usable at p, at least what was asked for; 0 for NULL (as
 * Linux's). */
static inline size_t ksize(const void *p)
{
	return p ? spanheap_usable_size(&kspanheap, p) : 0;
}

/*
 * Hands every online CPU's span cache back to the central lists
 * (spanheap_flush_all): this CPU's pinned, then every other CPU's while
 * the world is stopped (mm_port_each_other_cpu in mm_port.c), so nothing
 * is allocated for it and no CPU is passed by. Thread context.
 */
void heap_flush_caches(void);

/*
 * The idle loop's part (sched_idle_loop, on every pass): once a sweep
 * cycle began since this CPU last handed its span cache back, hands it
 * back (spanheap_cpu_idle), so that a CPU with nothing to run keeps no
 * freed objects and spans from the sweeper; nothing while the sweeper is
 * stopped. Its idle thread, no lock held; interrupts on or off (after a
 * switch back, the idle loop runs with them off: pins nest).
 */
void heap_cpu_idle(void);

/*
 * Gives back everything the heaps can (Go's debug.FreeOSMemory): the
 * per-CPU allocator's empty chunks (pcpu_trim), then flushes every CPU's
 * span cache, sweeps, frees the empty spans, then scavenges
 * every free backed page to the frame pool. Returns how many pages were
 * scavenged. Span-struct pages stay: the span heap keeps its span structs.
 * Thread context.
 */
size_t heap_release_all(void);

/* Frames the kernel's mm/ port mapped for the heaps' metadata (palloc's
 * bitmaps and summaries, the span table: mm_port_map), held for good. Any
 * context. */
size_t heap_meta_frames(void);

/* Prints the frame pool, the span heap's slabinfo table and totals, and
 * the page heap's accounting. Thread context. */
void heap_meminfo(void);

#endif

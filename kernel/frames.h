/*
 * The physical frame pool: 4 KiB frames of RAM from the UEFI memory map,
 * managed by a second instance of mm/'s page allocator (see frames.c).
 * Frames below 1 MiB are never handed out (kept for the SMP trampoline
 * and firmware quirks). Locking: every call takes the pool lock (irqsave,
 * rank FRAMES) itself; any context but NMI, except init and reclaim, which
 * run on the boot CPU alone.
 */
#ifndef KERNEL_FRAMES_H
#define KERNEL_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/layout.h"

#define FRAMES_LOW_LIMIT (1ull << 20)

/* What frames.debug_fill leaves in a free frame: as a page-table entry,
 * present, writable, huge and more, so a table made of one uncleared
 * maps garbage at once. */
#define FRAMES_DEBUG_FILL 0xf7

/* Builds the pool from the conventional memory in boot_state. */
void frames_init(void);

/* Adds loader and boot-services memory once nothing uses it anymore
 * (after the kernel runs on its own page tables). */
void frames_reclaim_boot_memory(void);

/* True once frames_reclaim_boot_memory has run: from then on loader and
 * boot-services memory is the pool's, and nothing else may read it as
 * the firmware left it (ACPI tables, acpi_mem.h). Any context. */
bool frames_boot_memory_reclaimed(void);

/* The frames frames_reclaim_boot_memory added: its regions less the
 * first MiB and the kernel image, which it keeps out. Any context. */
size_t frames_reclaimed_count(void);

/* Returns a free frame's physical address, or 0 if none is free. The
 * frame's contents are undefined. Never reclaims (shrinker.h): a caller
 * that may sleep reclaims and retries its whole request itself. */
paddr_t frame_alloc(void);

/*
 * frame_alloc for a frame kept for good (a page table, the heap's mapped
 * metadata): taken from the highest wholly free 2 MiB block below 4 GiB,
 * the same block until it is used up, so that such frames gather there
 * instead of among the heap's, where they would cut what the heap gives
 * back into runs shorter than 2 MiB (tests frames_frag.*). With no such
 * block, the lowest free frame. One eligible call of frames_fail_arm.
 */
paddr_t frame_alloc_lasting(void);

/* Returns the lowest run of npages free contiguous frames, or 0. */
paddr_t frames_alloc_contig(size_t npages);

/*
 * frames_alloc_contig with constraints, for DMA (kernel/dma.h): a run of
 * npages frames whose base is a multiple of align_pages frames (a power
 * of two; 1 for none) and which lies wholly below limit: [base, base +
 * npages * PAGE_SIZE) within [0, limit). Returns 0, taking nothing, if
 * there is none or the arguments are bad (npages 0, align_pages not a
 * power of two, npages + align_pages - 1 overflowing). Basic algorithm:
 * take the lowest run of npages + align_pages - 1 frames under the pool
 * lock, keep its aligned part and free the rest; the run being the
 * lowest, a limit its aligned part crosses cannot be met by any other
 * run of that length. So an aligned run is only found with align_pages
 * - 1 free frames of slack about it: a fragmented pool may refuse a
 * request that an exact search would meet. One eligible call of
 * frames_fail_arm, like frames_alloc_contig; *injected says whether a 0
 * was the injection's (the caller's line then says so, not "no run").
 */
paddr_t frames_alloc_contig_within(size_t npages, size_t align_pages,
                                   paddr_t limit, bool *injected);

/* Returns frames to the pool. A frame the pool never hands out panics,
 * saying why (frames_not_managed), before anything changes; one that is
 * not allocated (a double free) panics with the pool's bitmaps around it. */
void frame_free(paddr_t pa);
void frames_free_contig(paddr_t pa, size_t npages);

/* Why pa is not a frame the pool hands out (the first MiB, the kernel
 * image, the pool's metadata, firmware or device memory, loader memory
 * before frames_reclaim_boot_memory, an address outside the memory map),
 * or NULL when it is one. The pool holds those holes allocated, so its
 * own double-free check cannot refuse a free of one. Any context. */
const char *frames_not_managed(paddr_t pa);

/* The longest run of free frames now, from the pool's summaries (no
 * frame taken). Any context but NMI (the pool lock). */
size_t frames_longest_free_run(void);
/* Free frames now, counted under the pool lock. */
size_t frames_free_count(void);

/* frames_free_count without the lock: a hint, callable under any lock. */
size_t frames_free_hint(void);
size_t frames_managed_count(void);
size_t frames_metadata_bytes(void);

/* Verifies the pool's allocator (palloc_check); panics on corruption. */
void frames_check(void);

/*
 * Frame failure injection (Linux's fail_page_alloc beside the heap's
 * failslab, mm/spanheap_fail.h): armed, the chosen calls of frame_alloc
 * and frames_alloc_contig (one call, whatever its npages, is one eligible
 * call) return 0 as if the pool were empty, taking nothing. Same attribute,
 * parser (spanheap_fail_parse) and decision (mm/failpoint.h) as the heap's:
 * the n-th call since the arming fails if n is a multiple of interval,
 * its draw is below probability, and fewer than times failed. what must
 * be 0 (the parser's default) or all: a frame has no size class and no
 * MM_ATOMIC flag, so small, large or atomic would filter on nothing and
 * are refused. Every caller counts: the kernel's page tables, stacks, the
 * heap's mapping (kernel/mm_port.c) and thread structs; a test targeting
 * one stops the heap's threads first. Returns false, logging why, for a
 * bad attr (nothing changes). Disarm keeps the counters. Thread context;
 * not at boot (it needs its frames: the kernel's mm.fail is the heap's).
 */
struct spanheap_fail_attr;
struct failpoint_counts;
bool frames_fail_arm(const struct spanheap_fail_attr *a);
void frames_fail_disarm(void);

/* The attribute last armed (times: the failures left), the counts since
 * the arming into *n, and whether it is armed now. Any context. */
bool frames_fail_get(struct spanheap_fail_attr *a, struct failpoint_counts *n);

#endif

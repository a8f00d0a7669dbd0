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

/* Builds the pool from the conventional memory in boot_state. */
void frames_init(void);

/* Adds loader and boot-services memory once nothing uses it anymore
 * (after the kernel runs on its own page tables). */
void frames_reclaim_boot_memory(void);

/* True once frames_reclaim_boot_memory has run: from then on loader and
 * boot-services memory is the pool's, and nothing else may read it as
 * the firmware left it (ACPI tables, acpi_mem.h). Any context. */
bool frames_boot_memory_reclaimed(void);

/* Returns a free frame's physical address, or 0 if none is free. The
 * frame's contents are undefined. */
paddr_t frame_alloc(void);

/* Returns the lowest run of npages free contiguous frames, or 0. */
paddr_t frames_alloc_contig(size_t npages);

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

size_t frames_free_count(void);

/* frames_free_count without the lock: a hint, callable under any lock. */
size_t frames_free_hint(void);
size_t frames_managed_count(void);
size_t frames_metadata_bytes(void);

/* Verifies the pool's allocator (palloc_check); panics on corruption. */
void frames_check(void);

#endif

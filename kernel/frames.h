/*
 * The physical frame source: 4 KiB frames of RAM from the UEFI memory map.
 *
 * A deliberately simple bitmap allocator that the page-allocator issue
 * replaces with a second instance of mm/'s page allocator. Frames below
 * 1 MiB are never handed out (kept for the SMP trampoline and firmware
 * quirks). Locking: frame_alloc/frame_free take the frames lock (irqsave),
 * any context but NMI; init and reclaim run on the boot CPU alone.
 */
#ifndef KERNEL_FRAMES_H
#define KERNEL_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/layout.h"

#define FRAMES_LOW_LIMIT (1ull << 20)

/* Builds the pool from the conventional memory in boot_state. */
void frames_init(void);

/* Adds loader and boot-services memory once nothing uses it anymore
 * (after the kernel runs on its own page tables). */
void frames_reclaim_boot_memory(void);

/* Returns a free frame's physical address, or 0 if none is free. The
 * frame's contents are undefined. */
paddr_t frame_alloc(void);

/* Returns a frame to the pool; panics on a double free or an address the
 * pool does not manage. */
void frame_free(paddr_t pa);

size_t frames_free_count(void);
size_t frames_managed_count(void);

#endif

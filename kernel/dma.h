/*
 * Memory for devices: physically contiguous buffers, and the physical
 * address behind any kernel address.
 *
 * kmalloc's memory is virtually contiguous only (like Linux's vmalloc):
 * the heap's arena is mapped page by page from frames of the pool, so a
 * buffer of two pages, or a small object that straddles a page boundary,
 * may lie in frames far apart, and its address is not a direct-map one
 * (virt_to_phys arithmetic on it is wrong). A device that reads memory by
 * physical address (DMA) needs dma_alloc's buffers: whole frames from the
 * pool (frames_alloc_contig_within), handed out through the direct map,
 * with their physical address.
 *
 * Contexts: dma_alloc, dma_free, dma_free_check: any context but NMI
 * (interrupt handlers, interrupts off, spinlocks ranked below DMA held,
 * lockrank.h): they take the DMA table's lock and the frame pool's, both
 * irqsave, one after the other, and never sleep. DMA_ZERO clears the
 * buffer in the caller's context: a large one takes long in a handler.
 * kvirt_to_phys, kvirt_range_to_phys, dma_find and dma_copy_refused
 * take no lock: any context.
 * A dma_alloc that finds no run of frames, called where it may sleep
 * (thread context, interrupts on, no spinlock held), first has the
 * shrinkers and the heap give frames back (reclaim_frames, shrinker.h)
 * and tries once more (not for a run longer than the whole pool);
 * elsewhere it returns NULL at once.
 *
 * Limits: at most DMA_MAX_BUFFERS buffers live at once (the table of
 * live buffers is static so that a free can check its argument in any
 * context); a request beyond that returns NULL, saying so. Buffers are
 * page-aligned and whole pages, mapped write-back in the direct map: x86
 * keeps caches coherent with device DMA, so there is no sync call.
 */
#ifndef KERNEL_DMA_H
#define KERNEL_DMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/layout.h"

/* dma_alloc's limit for a device with 32-bit addresses, and for none. */
#define DMA_LIMIT_32BIT (1ull << 32)
#define DMA_LIMIT_ANY   UINT64_MAX

#define DMA_MAX_BUFFERS 256

enum dma_flags {
	DMA_ZERO = 1u << 0, /* zeroed memory */
};

/*
 * Returns a buffer of nbytes (rounded up to whole pages) in physically
 * consecutive frames, as a direct-map pointer, and its physical address in
 * *phys: [*phys, *phys + nbytes) lies below limit, and *phys is a multiple
 * of align (a power of two; below PAGE_SIZE it means PAGE_SIZE). An align
 * at least nbytes keeps the buffer from crossing an align boundary.
 * Returns NULL, *phys untouched and nothing taken, logging a line that
 * names what was wrong: nbytes 0 or too large to round up, align not a
 * power of two, a limit no frame of the pool lies below (it hands out
 * none under FRAMES_LOW_LIMIT), unknown flags, a full table; or no run of
 * free frames that fits (see frames_alloc_contig_within for the slack an
 * alignment needs). Contexts above.
 */
void *dma_alloc(size_t nbytes, size_t align, paddr_t limit, unsigned flags,
                paddr_t *phys);

/*
 * Gives back a buffer dma_alloc returned, with the nbytes it was asked
 * for; NULL does nothing. Anything else (a pointer dma_alloc did not
 * return or one inside a buffer, a size it was not allocated with, a
 * buffer freed already) panics naming the pointer and dma_free_check's
 * reason, before anything changes. Contexts above.
 */
void dma_free(void *p, size_t nbytes);

/* Why dma_free(p, nbytes) would panic, or NULL if it would not: checks
 * only, changing nothing. Contexts above. */
const char *dma_free_check(const void *p, size_t nbytes);

/* A buffer found by dma_find: its direct-map address, the nbytes it was
 * asked for, its whole pages' bytes, and whether it is one of the last
 * 16 freed rather than live. */
struct dma_extent {
	uintptr_t va;
	size_t nbytes, bytes;
	bool freed;
};

/* The live buffer whose pages meet [p, p + n), else one of the last 16
 * freed whose pages did: true, *out filled. Reads the table with no lock
 * (a buffer allocated or freed meanwhile may be missed): any context, a
 * fault report's and the usercopy check's. */
bool dma_find(const void *p, size_t n, struct dma_extent *out);

/*
 * check_object_size's part for DMA buffers: NULL if [p, p + n) meets no
 * live buffer or lies inside one's whole pages; else, after a line naming
 * the buffer and the copy's direction (to_user: it reads p), why the copy
 * is refused: it runs past the buffer's last page, starts before its
 * first, or spans two buffers. No lock: any context.
 */
const char *dma_copy_refused(const void *p, size_t n, bool to_user);

/* Buffers live now. Any context (a racy read: exact when quiet). */
size_t dma_live_count(void);

/*
 * The physical address behind kernel address p, through the page tables
 * (direct map, kernel image, heap, stacks, MMIO): false if p is not
 * mapped. Any context.
 */
bool kvirt_to_phys(const void *p, paddr_t *pa);

/*
 * The physical start of [p, p + nbytes) if those bytes lie in consecutive
 * physical memory (then a device may be given *pa and nbytes): returns
 * NULL, else why not, *pa untouched: "empty or wrapping range", "not
 * mapped" (a page of it), "not physically contiguous" (a heap object
 * that straddles two pages mapped from frames apart, most multi-page
 * kmalloc buffers). Any context.
 */
const char *kvirt_range_to_phys(const void *p, size_t nbytes, paddr_t *pa);

#endif

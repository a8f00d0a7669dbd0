/*
 * The kernel's virtual address space (4-level paging, 48-bit addresses).
 *
 *   0x0000000000000000 .. 0x00007fffffffffff  user half: unused, page 0
 *                                            unmapped so NULL faults
 *   0xffff800000000000 .. +RAM                direct map of RAM, holes and
 *                                            device memory left out
 *                                            (PML4 slot 256), RW, NX
 *   0xffffa00000000000 .. +2 TiB              mm/ reservations: the heap arena
 *                                            and its metadata (slots 320-323),
 *                                            backed only where mapped
 *   0xfffffe0000000000 .. +512 GiB            device MMIO (LAPIC, ...), mapped
 *                                            uncached (PML4 slot 508)
 *   0xfffffe8000000000 .. +512 GiB            free for tests (slot 509)
 *   0xffffff0000000000 .. +512 GiB            kernel stacks with guard pages
 *                                            (PML4 slot 510)
 *   0xffffffff80000000 .. +1 GiB              kernel image (PML4 slot 511),
 *                                            per-section permissions (W^X)
 */
#ifndef ARCH_X86_64_LAYOUT_H
#define ARCH_X86_64_LAYOUT_H

#include <stdint.h>

#include "boot/boot_info.h"

#define PAGE_SIZE       4096ull
#define PAGE_SHIFT      12
#define LARGE_PAGE_SIZE (2ull << 20)
#define HUGE_PAGE_SIZE  (1ull << 30)

#define DIRECT_MAP_BASE    BOOT_DIRECT_MAP_BASE
#define DIRECT_MAP_SIZE    (MM_REGION_BASE - DIRECT_MAP_BASE) /* to mm's */
#define MM_REGION_BASE     0xffffa00000000000ull
#define MM_REGION_SIZE     (2ull << 40)
#define MMIO_REGION_BASE   0xfffffe0000000000ull
#define MMIO_REGION_SIZE   (512ull << 30)
#define KSTACK_REGION_BASE 0xffffff0000000000ull
#define KSTACK_REGION_SIZE (512ull << 30)
#define KERNEL_VIRT_BASE   BOOT_KERNEL_WINDOW_BASE

typedef uint64_t paddr_t;

static inline void *phys_to_virt(paddr_t pa)
{
	return (void *)(uintptr_t)(pa + DIRECT_MAP_BASE);
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static inline uint64_t align_down(uint64_t v, uint64_t a)
{
	return v & ~(a - 1);
}

/* Section bounds from linker.ld. */
extern char __text_start[], __text_end[], __rodata_start[], __rodata_end[];
extern char __data_start[], __bss_end[];
extern char __boot_stack_guard[], __boot_stack_bottom[], __boot_stack_top[];

#endif

/*
 * A sound handoff for the tests of bootinfo_handoff_problem, in the
 * kernel (tests/kernel/bootinfo_test.c) and on the host
 * (tests/host/bootinfo_edges_test.c): each test spoils one field of it.
 */
#ifndef TESTS_KERNEL_BOOTINFO_HANDOFF_UTIL_H
#define TESTS_KERNEL_BOOTINFO_HANDOFF_UTIL_H

#include "arch/x86_64/layout.h"
#include "boot/boot_info.h"
#include "kernel/bootinfo_testing.h"

#define MIB (1ull << 20)

/* The bytes paging_init maps from the image (on the host, the stub
 * sections'): its sections, whole pages. */
static inline uint64_t image_bytes(void)
{
	return align_up((uintptr_t)__bss_end - (uintptr_t)__text_start,
	                PAGE_SIZE);
}

/* A handoff whose memory map (4 descriptors) and command line sit in the
 * first MiB of a 4 GiB direct map, the kernel image at 16 MiB. */
static inline struct boot_info handoff(void)
{
	return (struct boot_info){
	        .mmap_phys = 0x10000,
	        .mmap_size = 4 * sizeof(struct efi_memory_descriptor),
	        .mmap_desc_size = sizeof(struct efi_memory_descriptor),
	        .cmdline_phys = 0x20000,
	        .cmdline_len = 100,
	        .direct_map_limit = 4096 * MIB,
	        .kernel_phys_base = 16 * MIB,
	        .kernel_phys_size = image_bytes(),
	        .kernel_virt_base = (uintptr_t)__text_start,
	};
}

#endif

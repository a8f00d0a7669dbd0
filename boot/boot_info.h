/*
 * The handoff from the UEFI loader (boot/) to the kernel: the only thing the
 * two share. The loader fills one struct boot_info, exits boot services and
 * jumps to the kernel's ELF entry point with:
 *
 *   RDI = physical address of struct boot_info
 *   CR3 = loader page tables mapping
 *         - the memory map's RAM below direct_map_limit identity (so the
 *           loader keeps running): every range the kernel reads before
 *           its own tables, and no hole or device memory,
 *         - the same again at BOOT_DIRECT_MAP_BASE,
 *         - the kernel's PT_LOAD segments at their link addresses (RWX),
 *   interrupts disabled, the stack undefined (the kernel sets its own).
 *
 * Every address in boot_info is physical. Everything the loader allocated
 * (the kernel image, this struct, the memory map, the command line, the page
 * tables) is EfiLoaderData in the memory map; only the kernel image
 * ([kernel_phys_base, +kernel_phys_size)) stays in use once the kernel has
 * copied what it needs and switched to its own page tables.
 */
#ifndef BOOT_BOOT_INFO_H
#define BOOT_BOOT_INFO_H

#include <stdbool.h>
#include <stdint.h>

#define BOOT_INFO_MAGIC   0x4f464e49544f4f42ull /* "BOOTINFO" little-endian */
#define BOOT_INFO_VERSION 1

/* Where the kernel image must be linked: every PT_LOAD segment lies in
 * [BOOT_KERNEL_WINDOW_BASE, BOOT_KERNEL_WINDOW_LIMIT). */
#define BOOT_KERNEL_WINDOW_BASE  0xffffffff80000000ull
#define BOOT_KERNEL_WINDOW_LIMIT 0xffffffffc0000000ull

/* The loader's direct map of physical memory, reused by the kernel's own. */
#define BOOT_DIRECT_MAP_BASE 0xffff800000000000ull

/* x86_64's architectural limit of physical addresses: memory-map entries
 * that end past it are left out, by the loader and the kernel alike. */
#define BOOT_MAX_PHYS (1ull << 52)

/* True when npages 4 KiB pages from start end at or below BOOT_MAX_PHYS.
 * One test for the loader and the kernel, so that they leave out the same
 * entries; computed without the multiplication, which a bogus page count
 * could wrap to a small end that looks sound (an end past 2^64 is past
 * 2^52 too). */
static inline bool boot_ends_by_max_phys(uint64_t start, uint64_t npages)
{
	return start < BOOT_MAX_PHYS &&
	       npages <= (BOOT_MAX_PHYS - start) / 4096;
}

/* UEFI memory types (UEFI spec 2.x, EFI_MEMORY_TYPE). */
enum efi_memory_type {
	EFI_RESERVED_MEMORY = 0,
	EFI_LOADER_CODE = 1,
	EFI_LOADER_DATA = 2,
	EFI_BOOT_SERVICES_CODE = 3,
	EFI_BOOT_SERVICES_DATA = 4,
	EFI_RUNTIME_SERVICES_CODE = 5,
	EFI_RUNTIME_SERVICES_DATA = 6,
	EFI_CONVENTIONAL_MEMORY = 7,
	EFI_UNUSABLE_MEMORY = 8,
	EFI_ACPI_RECLAIM_MEMORY = 9,
	EFI_ACPI_MEMORY_NVS = 10,
	EFI_MEMORY_MAPPED_IO = 11,
	EFI_MEMORY_MAPPED_IO_PORT_SPACE = 12,
	EFI_PAL_CODE = 13,
	EFI_PERSISTENT_MEMORY = 14,
	/* Memory a confidential guest (TDX, SEV-SNP) has not accepted yet;
	 * the firmware may accept it, as conventional memory, after the
	 * loader's first look at the map (UEFI 2.9). */
	EFI_UNACCEPTED_MEMORY = 15,
};

/* One UEFI memory descriptor as the firmware lays it out. Descriptors are
 * mmap_desc_size bytes apart, which may be more than sizeof this struct. */
struct efi_memory_descriptor {
	uint32_t type;
	uint32_t pad;
	uint64_t physical_start;
	uint64_t virtual_start;
	uint64_t number_of_pages; /* 4 KiB pages */
	uint64_t attribute;
};

struct boot_info {
	uint64_t magic;   /* BOOT_INFO_MAGIC */
	uint32_t version; /* BOOT_INFO_VERSION */
	uint32_t size;    /* sizeof(struct boot_info) as the loader built it */

	/* The final UEFI memory map, as returned before ExitBootServices. */
	uint64_t mmap_phys;
	uint64_t mmap_size;      /* bytes */
	uint64_t mmap_desc_size; /* bytes between descriptors */
	uint32_t mmap_desc_version;
	uint32_t pad0;

	uint64_t rsdp_phys; /* ACPI 2.0+ RSDP, or 0 if the firmware has none */

	/* The kernel image: loaded contiguously, segment at vaddr v lies at
	 * kernel_phys_base + (v - kernel_virt_base). */
	uint64_t kernel_phys_base;
	uint64_t kernel_phys_size; /* bytes, page multiple */
	uint64_t kernel_virt_base; /* lowest PT_LOAD vaddr, page aligned */

	/* Contents of cmdline.txt, NUL-terminated, trailing newlines removed;
	 * cmdline_phys == 0 when the volume has none. */
	uint64_t cmdline_phys;
	uint64_t cmdline_len; /* bytes, without the NUL */

	/* The loader's identity and direct maps hold the map's RAM in
	 * [0, direct_map_limit). */
	uint64_t direct_map_limit;
};

_Static_assert(sizeof(struct efi_memory_descriptor) == 40,
               "UEFI descriptor layout");
_Static_assert(sizeof(struct boot_info) == 104,
               "boot_info layout is versioned");

#endif

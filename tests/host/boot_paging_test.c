/*
 * Host tests of the loader's sizing of its direct map from the UEFI
 * memory map (boot/paging.c, paging_direct_map_limit): the map the
 * firmware hands over, crafted here, decides how many page-table pages
 * the loader builds, or whether it can boot at all.
 */
#include "../../boot/boot_info.h"
#include "../../boot/paging.h"
#include "../../kernel/ktest.h"

#include <stdlib.h>
#include <string.h>

#define GIB (1ull << 30)

static unsigned char map[4 * 48];

/* Writes descriptor i of a map whose stride is 48 bytes. */
static void put(int i, uint32_t type, uint64_t base, uint64_t npages)
{
	struct efi_memory_descriptor d = {.type = type,
	                                  .physical_start = base,
	                                  .number_of_pages = npages};
	memcpy(map + 48 * i, &d, sizeof(d));
}

/* RAM to 6 GiB, then MMIO high up: the map covers 8 GiB, the RAM's end
 * rounded up to 1 GiB; device memory does not count. */
KTEST(boot_paging, limit_covers_ram_not_devices)
{
	memset(map, 0, sizeof(map));
	put(0, EFI_CONVENTIONAL_MEMORY, 0x100000, (6 * GIB - 0x100000) >> 12);
	put(1, EFI_ACPI_RECLAIM_MEMORY, 6 * GIB, 16);
	put(2, EFI_MEMORY_MAPPED_IO, 1ull << 40, 1);
	put(3, EFI_RESERVED_MEMORY, 1ull << 41, 1);
	KEXPECT_EQ(paging_direct_map_limit(map, sizeof(map), 48, NULL, NULL),
	           7 * GIB);
	/* Below 4 GiB of RAM, the map still covers 4 GiB. */
	memset(map, 0, sizeof(map));
	put(0, EFI_CONVENTIONAL_MEMORY, 0x100000, 256);
	KEXPECT_EQ(paging_direct_map_limit(map, 48, 48, NULL, NULL), 4 * GIB);
}

/*
 * Memory the kernel never reads through the direct map does not size it:
 * unusable memory, persistent memory (an NVDIMM's window) and types this
 * loader does not know (OEM and OS types, 0x70000000 up). They counted
 * as RAM: one ending at 64 TiB asked for 65536 page-directory pages and
 * the boot stopped, out of memory for page tables (review). ACPI tables
 * outside the direct map are mapped by the kernel's window (acpi.c).
 */
KTEST(boot_paging, limit_ignores_memory_the_kernel_does_not_map)
{
	memset(map, 0, sizeof(map));
	put(0, EFI_CONVENTIONAL_MEMORY, 0x100000, (6 * GIB - 0x100000) >> 12);
	put(1, EFI_PERSISTENT_MEMORY, 64ull << 40, 1 << 20);
	put(2, EFI_UNUSABLE_MEMORY, 1ull << 40, 1);
	put(3, 0x80000001u, 1ull << 44, 1);
	KEXPECT_EQ(paging_direct_map_limit(map, sizeof(map), 48, NULL, NULL),
	           6 * GIB);
	/* The firmware's own memory still counts: its runtime code and
	 * data, ACPI NVS and PAL code may hold what the kernel reads. */
	put(1, EFI_RUNTIME_SERVICES_DATA, 7 * GIB, 1);
	put(2, EFI_ACPI_MEMORY_NVS, 8 * GIB, 1);
	put(3, EFI_PAL_CODE, 9 * GIB, 1);
	KEXPECT_EQ(paging_direct_map_limit(map, sizeof(map), 48, NULL, NULL),
	           10 * GIB);
	/* So does memory a confidential guest has not accepted yet: the
	 * firmware accepts it as conventional memory by the exit. */
	put(3, EFI_UNACCEPTED_MEMORY, 11 * GIB, 1);
	KEXPECT_EQ(paging_direct_map_limit(map, sizeof(map), 48, NULL, NULL),
	           12 * GIB);
}

/*
 * A descriptor with no pages describes no memory; the kernel skips it
 * (bootinfo_read_mmap). The loader took its start as the end of RAM: one
 * at 1 PiB made the direct map 1 PiB, more than the loader's tables can
 * map, and the boot stopped ("memory reaches 0x4000000000000, more than
 * the loader's page tables can map"); one at 64 GiB cost 60 pages of
 * page tables for nothing.
 */
KTEST(boot_paging, zero_length_entries_do_not_extend_the_map)
{
	memset(map, 0, sizeof(map));
	put(0, EFI_CONVENTIONAL_MEMORY, 0x100000, 256);
	put(1, EFI_CONVENTIONAL_MEMORY, 1ull << 50, 0);
	put(2, EFI_BOOT_SERVICES_DATA, 64 * GIB, 0);
	put(3, EFI_LOADER_DATA, 5 * GIB, 1);
	KEXPECT_EQ(paging_direct_map_limit(map, sizeof(map), 48, NULL, NULL),
	           6 * GIB);
}

/*
 * No x86_64 CPU addresses past 2^52: an entry that ends there is firmware
 * reporting a window or a range it cannot mean, and the loader ignores it
 * whatever its type (device memory never counted). One of memory that
 * is not free (ACPI NVS, persistent) counted as reaching 2^52, and the
 * boot stopped ("memory reaches 0x10000000000000, more than the loader's
 * page tables can map"); so did free memory, which is ignored too.
 */
/* The entries paging_direct_map_limit reports ignoring, by start. */
static uint64_t ignored_starts[4];
static unsigned nignored;

static void note_ignored(void *ctx, const struct efi_memory_descriptor *d)
{
	if (nignored < 4)
		ignored_starts[nignored] = d->physical_start;
	nignored++;
}

KTEST(boot_paging, entries_past_2_to_the_52_are_ignored)
{
	static const uint32_t types[] = {
	        EFI_ACPI_MEMORY_NVS, EFI_PERSISTENT_MEMORY,
	        EFI_CONVENTIONAL_MEMORY, EFI_UNUSABLE_MEMORY,
	        EFI_MEMORY_MAPPED_IO};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		memset(map, 0, sizeof(map));
		put(0, EFI_CONVENTIONAL_MEMORY, 0x100000, 256);
		put(1, types[i], (1ull << 52) - 4096, 2); /* across it */
		put(2, types[i], 1ull << 60, 16);         /* wholly past */
		put(3, EFI_LOADER_DATA, 5 * GIB, 1);
		nignored = 0;
		KEXPECT_EQ(paging_direct_map_limit(map, sizeof(map), 48,
		                                   note_ignored, NULL),
		           6 * GIB);
		/* Each is named for the boot log; the rest are not. */
		KEXPECT_EQ(nignored, 2);
		KEXPECT_EQ(ignored_starts[0], (1ull << 52) - 4096);
		KEXPECT_EQ(ignored_starts[1], 1ull << 60);
	}
	/* One that ends at 2^52 exactly is memory like any other. */
	memset(map, 0, sizeof(map));
	put(0, EFI_CONVENTIONAL_MEMORY, 0x100000, 256);
	put(1, EFI_ACPI_MEMORY_NVS, (1ull << 52) - 4096, 1);
	nignored = 0;
	KEXPECT_EQ(paging_direct_map_limit(map, 2 * 48, 48, note_ignored, NULL),
	           1ull << 52);
	KEXPECT_EQ(nignored, 0);
}

/*
 * A map whose size is not a whole number of descriptors ends in a part
 * of one: it is not read (the loader's buffer ends there). With the loop
 * bound at off < size, the 20 bytes after the last descriptor were read
 * as the start of another, 40 bytes long (ASan: heap-buffer-overflow in
 * paging_direct_map_limit).
 */
KTEST(boot_paging, partial_descriptor_at_the_end_is_not_read)
{
	unsigned char *buf = malloc(48 + 20);
	KASSERT(buf != NULL);
	struct efi_memory_descriptor d = {.type = EFI_CONVENTIONAL_MEMORY,
	                                  .physical_start = 0x100000,
	                                  .number_of_pages = 256};
	memset(buf, 0xff, 48 + 20);
	memcpy(buf, &d, sizeof(d));
	KEXPECT_EQ(paging_direct_map_limit(buf, 48 + 20, 48, NULL, NULL),
	           4 * GIB);
	free(buf);
}

/*
 * Host tests of kernel/bootinfo.c's reading of the UEFI memory map, under
 * ASan and UBSan (tests/kernel/bootinfo_test.c has the rest, in the
 * kernel): descriptors as the firmware lays them out, whatever their size,
 * and regions of a type that touch joined into one.
 */
#include "../../boot/paging.h"
#include "../../kernel/bootinfo_testing.h"
#include "../../kernel/ktest.h"
#include "kernel_stubs.h"

#include <stdlib.h>
#include <string.h>

#define MIB (1ull << 20)

/* Writes a descriptor at p, which need not be aligned. */
static void put(unsigned char *p, uint32_t type, uint64_t base, uint64_t npages)
{
	struct efi_memory_descriptor d = {.type = type,
	                                  .physical_start = base,
	                                  .number_of_pages = npages};
	memcpy(p, &d, sizeof(d));
}

/* An empty boot state whose kernel image lies at 16-18 MiB. */
static void fresh_state(struct boot_state *bs)
{
	memset(bs, 0, sizeof(*bs));
	bs->kernel_phys_base = 16 * MIB;
	bs->kernel_phys_limit = 18 * MIB;
}

/*
 * UEFI gives the descriptors' stride (DescriptorSize) and promises only
 * that it is at least the 40 bytes of one: at 44 every other descriptor
 * sits off an 8-byte boundary, and reading it through a struct pointer
 * is undefined (UBSan: a misaligned member access in
 * bootinfo_read_mmap; found by tests/host/fuzz/bootinfo_fuzz.c). Each
 * stride from 40 to 71 must read the same three regions.
 */
KTEST(bootinfo_mmap, descriptors_of_any_stride_are_read)
{
	static struct boot_state bs;
	for (uint64_t stride = 40; stride < 72; stride++) {
		unsigned char *map = aligned_alloc(8, 3 * 72);
		memset(map, 0xa5, 3 * 72);
		put(map, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 256);
		put(map + stride, EFI_RESERVED_MEMORY, 0, 1);
		put(map + 2 * stride, EFI_LOADER_DATA, 16 * MIB, 512);
		fresh_state(&bs);
		struct mmap_diag d = {0};
		KEXPECT(bootinfo_read_mmap(map, 3 * stride, stride, &bs, &d));
		KEXPECT_EQ(bs.nregions, 3);
		KEXPECT_EQ(bs.regions[0].base, 0);
		KEXPECT_EQ(bs.regions[1].base, 16 * MIB);
		KEXPECT_EQ(bs.regions[1].limit, 18 * MIB);
		KEXPECT_EQ(bs.regions[2].limit, 33 * MIB);
		KEXPECT_EQ(bs.ram_top, 33 * MIB);
		free(map);
	}
}

/*
 * A map with no free (conventional) memory leaves the frame pool nothing:
 * frames_init sized its arena from it as 0 bytes and panicked that "RAM
 * top 0 is beyond what palloc can manage". The map itself is refused,
 * saying what it lacks, whether it is empty or holds only memory the
 * kernel may not take at boot.
 */
KTEST(bootinfo_mmap, map_without_free_memory_is_refused)
{
	static struct boot_state bs;
	unsigned char map[3 * 40] = {0};
	struct mmap_diag d = {0};
	fresh_state(&bs);
	KEXPECT(!bootinfo_read_mmap(map, 0, 40, &bs, &d));
	KEXPECT(d.whole_map);
	KEXPECT_STREQ(d.why ? d.why : "", "lists no free (conventional) "
	                                  "memory at all");

	put(map, EFI_RESERVED_MEMORY, 0, 256);
	put(map + 40, EFI_LOADER_DATA, 16 * MIB, 512);
	put(map + 80, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 0); /* no pages */
	fresh_state(&bs);
	d = (struct mmap_diag){0};
	KEXPECT(!bootinfo_read_mmap(map, sizeof(map), 40, &bs, &d));
	KEXPECT(d.whole_map);
	KEXPECT_STREQ(d.why ? d.why : "", "lists no free (conventional) "
	                                  "memory at all");

	/* One free page is enough for the map to be taken. */
	put(map + 80, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 1);
	fresh_state(&bs);
	KEXPECT(bootinfo_read_mmap(map, sizeof(map), 40, &bs, &d));
	KEXPECT_EQ(bs.nregions, 3);
}

/* Reads n descriptors of stride 40 from map into bs, with the kernel image
 * at [16, 18) MiB; returns bootinfo_read_mmap's verdict. */
static bool read_map(const unsigned char *map, size_t n, struct boot_state *bs,
                     struct mmap_diag *d)
{
	fresh_state(bs);
	*d = (struct mmap_diag){0};
	return bootinfo_read_mmap(map, n * 40, 40, bs, d);
}

/*
 * Firmware may split a type's memory by attributes the kernel does not
 * keep: a map of 1000 one-page entries
 * of free memory was refused as "more than 512 entries", whatever their
 * order. Touching regions of one type are one region now, a region that
 * fills the gap between two joins all three, and regions of different
 * types stay apart.
 */
KTEST(bootinfo_mmap, touching_regions_of_a_type_are_joined)
{
	enum { N = 1000 };
	static struct boot_state bs;
	static unsigned char map[(N + 1) * 40];
	struct mmap_diag d;
	for (int order = 0; order < 3; order++) {
		for (size_t i = 0; i < N; i++) {
			/* ascending, descending, and odd pages first */
			size_t k = order == 0   ? i
			           : order == 1 ? N - 1 - i
			           : i < N / 2  ? 2 * i + 1
			                        : 2 * (i - N / 2);
			put(map + i * 40, EFI_CONVENTIONAL_MEMORY,
			    32 * MIB + k * 4096, 1);
		}
		put(map + N * 40, EFI_LOADER_DATA, 16 * MIB, 512);
		KEXPECT(read_map(map, N + 1, &bs, &d));
		KASSERT_EQ(bs.nregions, 2);
		KEXPECT_EQ(bs.regions[1].base, 32 * MIB);
		KEXPECT_EQ(bs.regions[1].limit, 32 * MIB + N * 4096);
		KEXPECT_EQ(bs.ram_top, 32 * MIB + N * 4096);
	}
	/* Touching, but of different types: three regions. */
	put(map, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 1);
	put(map + 40, EFI_ACPI_RECLAIM_MEMORY, 32 * MIB + 4096, 1);
	put(map + 80, EFI_CONVENTIONAL_MEMORY, 32 * MIB + 8192, 1);
	KEXPECT(read_map(map, 3, &bs, &d));
	KEXPECT_EQ(bs.nregions, 3);
}

/* More than 512 regions that do not touch one of their type are still
 * refused, naming the entry that did not fit; overlapping ones of a type
 * are not joined but refused as an overlap. */
KTEST(bootinfo_mmap, too_many_regions_are_refused)
{
	enum { N = BOOT_MMAP_MAX + 1 };
	static struct boot_state bs;
	static unsigned char map[N * 40];
	struct mmap_diag d;
	for (size_t i = 0; i < N; i++)
		put(map + i * 40,
		    i % 2 ? EFI_ACPI_RECLAIM_MEMORY : EFI_CONVENTIONAL_MEMORY,
		    32 * MIB + i * 4096, 1);
	KEXPECT(!read_map(map, N, &bs, &d));
	KEXPECT_STREQ(d.why ? d.why : "",
	              "the map has more than 512 regions, touching ones of a "
	              "type joined");
	KEXPECT_EQ(d.base, 32 * MIB + BOOT_MMAP_MAX * 4096);

	put(map, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 2);
	put(map + 40, EFI_CONVENTIONAL_MEMORY, 32 * MIB + 4096, 2);
	KEXPECT(!read_map(map, 2, &bs, &d));
	KEXPECT_STREQ(d.why ? d.why : "", "overlaps the entry at");
}

/*
 * No x86_64 CPU addresses past 2^52: an entry that ends there is left
 * out, whatever its type, and printed, naming it. Free memory up there
 * was refused as lying past the direct map, and boot stopped there (the
 * loader let it through); a reserved window was kept as a region.
 */
KTEST(bootinfo_mmap, entries_past_2_to_the_52_are_ignored)
{
	static struct boot_state bs;
	static const uint32_t types[] = {EFI_CONVENTIONAL_MEMORY,
	                                 EFI_RESERVED_MEMORY,
	                                 EFI_MEMORY_MAPPED_IO};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		unsigned char map[3 * 40] = {0};
		put(map, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 256);
		put(map + 40, types[i], (1ull << 52) - 4096, 2);
		put(map + 80, types[i], 1ull << 60, 16);
		fresh_state(&bs);
		struct mmap_diag d = {0};
		unsigned long lines = kstub_lines;
		KEXPECT(bootinfo_read_mmap(map, sizeof(map), 40, &bs, &d));
		KEXPECT_EQ(bs.nregions, 1);
		KEXPECT_EQ(bs.ram_top, 33 * MIB);
		KEXPECT_EQ(kstub_lines - lines, 2);
		KEXPECT(strstr(kstub_last_line, "0x1000000000000000 + 16 "
		                                "pages"));
		KEXPECT(strstr(kstub_last_line, "ends past 2^52"));
	}
}

/*
 * The kernel reaches RAM only through its direct map, 32 TiB long: usable
 * memory past it is left out, and printed, naming the entry and how much
 * of it; an entry across the end keeps its part below. Until this
 * version such a map was refused and the boot stopped, as if the machine
 * had no usable memory at all, where Linux boots and ignores what it
 * cannot map. MMIO and reserved windows up there need no map: kept.
 */
KTEST(bootinfo_mmap, usable_memory_past_the_direct_map_is_left_out)
{
	static struct boot_state bs;
	static const uint32_t types[] = {EFI_CONVENTIONAL_MEMORY,
	                                 EFI_BOOT_SERVICES_DATA,
	                                 EFI_LOADER_CODE};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		unsigned char map[4 * 40] = {0};
		put(map, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 256);
		put(map + 40, types[i], DIRECT_MAP_SIZE - 4096, 3);
		put(map + 80, EFI_MEMORY_MAPPED_IO, 2 * DIRECT_MAP_SIZE, 4);
		put(map + 120, types[i], 64 * DIRECT_MAP_SIZE, 16);
		fresh_state(&bs);
		struct mmap_diag d = {0};
		unsigned long lines = kstub_lines;
		KEXPECT(bootinfo_read_mmap(map, sizeof(map), 40, &bs, &d));
		KEXPECT_STREQ(d.why ? d.why : "(taken)", "(taken)");
		KEXPECT_EQ(bs.nregions, 3);
		KEXPECT_EQ(bs.regions[1].base, DIRECT_MAP_SIZE - 4096);
		KEXPECT_EQ(bs.regions[1].limit, DIRECT_MAP_SIZE);
		KEXPECT_EQ(bs.regions[1].type, types[i]);
		KEXPECT_EQ(bs.regions[2].type, EFI_MEMORY_MAPPED_IO);
		KEXPECT_EQ(bs.ram_top, DIRECT_MAP_SIZE);
		KEXPECT_EQ(kstub_lines - lines, 2);
		KEXPECT(strstr(kstub_last_line, "0x8000000000000 + 16 pages"));
		KEXPECT(strstr(kstub_last_line,
		               "0x8000000000000-0x8000000010000 lies past the "
		               "kernel's direct map (32 TiB), left out"));
	}
}

static unsigned loader_ignored;

static void count_ignored(void *ctx, const struct efi_memory_descriptor *e)
{
	loader_ignored++;
}

/*
 * The loader (paging_direct_map_limit) and the kernel read the same map:
 * what one leaves out as ending past 2^52 the other must too, or the boot
 * stops on an entry the loader let through. An entry whose end wraps past
 * 2^64 ends past 2^52 as well: the loader ignored it, but the kernel
 * refused the whole map ("runs past the end of the address space") and
 * panicked.
 */
KTEST(bootinfo_mmap, kernel_leaves_out_what_the_loader_ignores)
{
	static struct boot_state bs;
	static const struct {
		uint64_t base, npages;
	} odd[] = {
	        {0xfffffffffffff000ull, 2}, /* wraps to 0x1000 */
	        {1ull << 63, 1ull << 51},   /* wraps to exactly 0 */
	        {0x100000, UINT64_MAX},     /* the count alone wraps */
	        {(1ull << 52) - 4096, 2},   /* across 2^52 */
	        {(1ull << 52) - 4096, 1},   /* up to 2^52: kept */
	        {1ull << 60, 16},           /* wholly past */
	        {(1ull << 60) + 8, 16},     /* unaligned, wholly past */
	        {(1ull << 52) - 8, 2},      /* unaligned, across 2^52 */
	};
	static const uint32_t types[] = {EFI_RESERVED_MEMORY,
	                                 EFI_ACPI_MEMORY_NVS};
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
			unsigned char map[2 * 40] = {0};
			put(map, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 256);
			put(map + 40, types[t], odd[i].base, odd[i].npages);
			loader_ignored = 0;
			paging_direct_map_limit(map, sizeof(map), 40,
			                        count_ignored, NULL);
			fresh_state(&bs);
			struct mmap_diag d = {0};
			unsigned long lines = kstub_lines;
			KEXPECT(bootinfo_read_mmap(map, sizeof(map), 40, &bs,
			                           &d));
			KEXPECT_STREQ(d.why ? d.why : "(taken)", "(taken)");
			KEXPECT_EQ(bs.nregions, 2 - loader_ignored);
			KEXPECT_EQ(kstub_lines - lines, loader_ignored);
			if (loader_ignored)
				KEXPECT(strstr(kstub_last_line,
				               "ends past 2^52"));
		}
	}
}

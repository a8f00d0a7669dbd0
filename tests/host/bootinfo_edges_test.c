/*
 * Host tests of kernel/bootinfo.c at the edges of what it refuses, each
 * written against a mutant of the code that the other tests let through
 * (a bound moved by one page, a guard dropped): the memory map's overlaps
 * and alignment, the kernel image's first page, and a handoff that lies
 * wholly past, or exactly up to, the loader's direct map.
 */
#include "../../kernel/bootinfo_testing.h"
#include "../../kernel/ktest.h"
#include "../kernel/bootinfo_handoff_util.h"
#include "kernel_stubs.h"

#include <string.h>

/* Too big for a test's stack. */
static struct boot_state bs;

/* Reads the n descriptors of map into bs, with the kernel image at
 * [16, 18) MiB; returns the refusal, or NULL. */
static const char *read_descs(const struct efi_memory_descriptor *map, size_t n,
                              struct mmap_diag *d)
{
	memset(&bs, 0, sizeof(bs));
	bs.kernel_phys_base = 16 * MIB;
	bs.kernel_phys_limit = 18 * MIB;
	*d = (struct mmap_diag){0};
	if (bootinfo_read_mmap(map, n * sizeof(*map), sizeof(*map), &bs, d))
		return NULL;
	return d->why ? d->why : "(no reason)";
}

static struct efi_memory_descriptor desc(uint32_t type, uint64_t base,
                                         uint64_t npages)
{
	return (struct efi_memory_descriptor){.type = type,
	                                      .physical_start = base,
	                                      .number_of_pages = npages};
}

/*
 * An entry that starts before one of its type and ends inside it, or
 * past it, is an overlap, not a join: with join_region's test of the next
 * region made too eager (next->base <= limit), [32, 40) MiB then
 * [24, 36) MiB became one region [24, 40) MiB and the map was taken, and
 * [24, 48) MiB lost [40, 48) MiB the same way.
 */
KTEST(bootinfo_edges, overlap_with_the_next_region_of_a_type_is_refused)
{
	static const uint64_t limits[] = {36 * MIB, 48 * MIB};
	for (size_t i = 0; i < 2; i++) {
		struct efi_memory_descriptor map[2] = {
		        desc(EFI_CONVENTIONAL_MEMORY, 32 * MIB, 2048),
		        desc(EFI_CONVENTIONAL_MEMORY, 24 * MIB,
		             (limits[i] - 24 * MIB) / PAGE_SIZE),
		};
		struct mmap_diag d;
		const char *why = read_descs(map, 2, &d);
		KEXPECT_STREQ(why ? why : "(taken)", "overlaps the entry at");
	}
}

/*
 * Free memory that covers only the kernel image's first page is over the
 * image: it was taken when the test of the region's limit against the
 * image's base was one page short.
 */
KTEST(bootinfo_edges, free_memory_over_the_image_first_page_is_refused)
{
	struct efi_memory_descriptor map[2] = {
	        desc(EFI_CONVENTIONAL_MEMORY, 8 * MIB, 2048 + 1),
	        desc(EFI_LOADER_DATA, 16 * MIB + PAGE_SIZE, 511),
	};
	struct mmap_diag d;
	const char *why = read_descs(map, 2, &d);
	KEXPECT_STREQ(why ? why : "(taken)",
	              "lists free memory over the kernel image at");
	KEXPECT_EQ(d.base, 8 * MIB);
	KEXPECT_EQ(d.other_base, 16 * MIB);
	/* Ending at the image is fine. */
	map[0].number_of_pages = 2048;
	map[1] = desc(EFI_LOADER_DATA, 16 * MIB, 512);
	KEXPECT(read_descs(map, 2, &d) == NULL);
}

/*
 * The frame pool counts whole pages from a region's base: an entry that
 * starts inside a page is refused, naming it, whatever the offset (with
 * the test weakened to 8-byte alignment, 0x2000800 was taken).
 */
KTEST(bootinfo_edges, entry_not_on_a_page_boundary_is_refused)
{
	static const uint64_t offsets[] = {1, 8, 0x800, PAGE_SIZE - 8};
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		struct efi_memory_descriptor map[1] = {
		        desc(EFI_CONVENTIONAL_MEMORY, 32 * MIB + offsets[i],
		             16),
		};
		struct mmap_diag d;
		const char *why = read_descs(map, 1, &d);
		KEXPECT_STREQ(why ? why : "(taken)",
		              "start is not page-aligned");
		KEXPECT_EQ(d.base, 32 * MIB + offsets[i]);
	}
}

static const char *problem(const struct boot_info *bi)
{
	const char *why = bootinfo_handoff_problem(bi);
	return why ? why : "(none)";
}

/*
 * A map, command line or image that starts past the end of the direct
 * map is refused: with the start's own test dropped from below(), the
 * end's test (size <= limit - start) wrapped and let each through.
 */
KTEST(bootinfo_edges, handoff_wholly_past_the_direct_map_is_refused)
{
	struct boot_info bi = handoff();
	KEXPECT_STREQ(problem(&bi), "(none)");
	bi.mmap_phys = 8192 * MIB;
	KEXPECT_STREQ(problem(&bi),
	              "memory map runs past the loader's direct map");
	bi = handoff();
	bi.cmdline_phys = 8192 * MIB;
	KEXPECT_STREQ(problem(&bi),
	              "command line runs past the loader's direct map");
	bi = handoff();
	bi.kernel_phys_base = 8192 * MIB;
	KEXPECT_STREQ(problem(&bi),
	              "kernel image runs past the loader's direct map");
}

/* Ending exactly at the direct map's end is inside it: the limit is
 * half-open, and refusing there refused a sound handoff. */
KTEST(bootinfo_edges, handoff_up_to_the_direct_map_end_is_taken)
{
	struct boot_info bi = handoff();
	bi.mmap_phys = bi.direct_map_limit - bi.mmap_size;
	KEXPECT_STREQ(problem(&bi), "(none)");
	bi = handoff();
	bi.cmdline_phys = bi.direct_map_limit - bi.cmdline_len;
	KEXPECT_STREQ(problem(&bi), "(none)");
	/* Of a command line of BOOT_CMDLINE_MAX bytes or more the kernel
	 * copies BOOT_CMDLINE_MAX - 1 and ends them with its own NUL: only
	 * those need the map (mutant: cmdline_copied kept BOOT_CMDLINE_MAX,
	 * its NUL then written past boot_state.cmdline). */
	bi.cmdline_len = BOOT_CMDLINE_MAX;
	bi.cmdline_phys = bi.direct_map_limit - (BOOT_CMDLINE_MAX - 1);
	KEXPECT_STREQ(problem(&bi), "(none)");
	bi = handoff();
	bi.kernel_phys_base = bi.direct_map_limit - bi.kernel_phys_size;
	KEXPECT_STREQ(problem(&bi), "(none)");
}

/* A map size that is not a whole number of descriptors: the last one
 * would be read past the map's end. Refused, saying so; with the test
 * dropped, 4 descriptors and 20 bytes were taken. */
KTEST(bootinfo_edges, map_of_part_of_a_descriptor_is_refused)
{
	struct boot_info bi = handoff();
	bi.mmap_size += 20;
	KEXPECT_STREQ(problem(&bi), "memory map size is not a multiple of its "
	                            "descriptor size");
}

/*
 * The pool takes the memory of the five types boot is done with, and only
 * those; every other type, and one past the table of names, has a name. With
 * boot-services code left out of mem_type_usable, firmware's code was never
 * reclaimed nor refused past the direct map; with the names' bound at <=, type
 * 15 was read past the table (ASan: global-buffer-overflow).
 */
KTEST(bootinfo_edges, memory_types_are_classed_and_named)
{
	for (uint32_t t = 0; t < 20; t++) {
		bool usable = t == EFI_CONVENTIONAL_MEMORY ||
		              t == EFI_LOADER_CODE || t == EFI_LOADER_DATA ||
		              t == EFI_BOOT_SERVICES_CODE ||
		              t == EFI_BOOT_SERVICES_DATA;
		KEXPECT_EQ(mem_type_usable(t), usable);
		KEXPECT(mem_type_name(t) != NULL);
	}
	KEXPECT_STREQ(mem_type_name(EFI_PERSISTENT_MEMORY), "persistent");
	KEXPECT_STREQ(mem_type_name(EFI_UNACCEPTED_MEMORY), "unaccepted");
	KEXPECT_STREQ(mem_type_name(EFI_UNACCEPTED_MEMORY + 1), "other");
	KEXPECT_STREQ(mem_type_name(UINT32_MAX), "other");
}

/*
 * Memory a confidential guest's firmware left unaccepted (UEFI 2.9's type
 * 15) is never the pool's (a touch before TDX or SEV-SNP accepts it
 * faults), but it is counted for the boot's memory line, as are the ACPI
 * tables the kernel keeps; until a review type 15 was named "other" and
 * counted nowhere: a guest that lost most of its RAM so said nothing.
 */
KTEST(bootinfo_edges, unaccepted_memory_is_counted_never_usable)
{
	struct efi_memory_descriptor map[] = {
	        desc(EFI_CONVENTIONAL_MEMORY, 1 * MIB, 3 * 256),
	        desc(EFI_ACPI_RECLAIM_MEMORY, 4 * MIB, 4),
	        desc(EFI_UNACCEPTED_MEMORY, 32 * MIB, 64 * 256),
	        desc(EFI_BOOT_SERVICES_DATA, 96 * MIB, 256),
	        desc(EFI_UNACCEPTED_MEMORY, 97 * MIB, 256),
	};
	struct mmap_diag d;
	const char *why = read_descs(map, 5, &d);
	KEXPECT(why == NULL);
	KEXPECT(!mem_type_usable(EFI_UNACCEPTED_MEMORY));
	struct mem_totals t = mem_totals(&bs);
	KEXPECT_EQ(t.unaccepted, 65 * MIB);
	KEXPECT_EQ(t.acpi_reclaim, 4 * PAGE_SIZE);
	KEXPECT_EQ(t.conventional, 3 * MIB);
	KEXPECT_EQ(t.usable, 4 * MIB);
	KEXPECT_EQ(bs.ram_top, 97 * MIB);
}

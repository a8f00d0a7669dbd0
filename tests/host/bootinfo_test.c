/*
 * Host tests of kernel/bootinfo.c's reading of the UEFI memory map, under
 * ASan and UBSan (tests/kernel/bootinfo_test.c has the rest, in the
 * kernel): descriptors as the firmware lays them out, whatever their size.
 */
#include "../../kernel/bootinfo_testing.h"
#include "../../kernel/ktest.h"

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
		memset(&bs, 0, sizeof(bs));
		bs.kernel_phys_base = 16 * MIB;
		bs.kernel_phys_limit = 18 * MIB;
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
	memset(&bs, 0, sizeof(bs));
	bs.kernel_phys_base = 16 * MIB;
	bs.kernel_phys_limit = 18 * MIB;
	KEXPECT(!bootinfo_read_mmap(map, 0, 40, &bs, &d));
	KEXPECT(d.whole_map);
	KEXPECT_STREQ(d.why ? d.why : "", "lists no free (conventional) "
	                                  "memory at all");

	put(map, EFI_RESERVED_MEMORY, 0, 256);
	put(map + 40, EFI_LOADER_DATA, 16 * MIB, 512);
	put(map + 80, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 0); /* no pages */
	memset(&bs, 0, sizeof(bs));
	bs.kernel_phys_base = 16 * MIB;
	bs.kernel_phys_limit = 18 * MIB;
	d = (struct mmap_diag){0};
	KEXPECT(!bootinfo_read_mmap(map, sizeof(map), 40, &bs, &d));
	KEXPECT(d.whole_map);
	KEXPECT_STREQ(d.why ? d.why : "", "lists no free (conventional) "
	                                  "memory at all");

	/* One free page is enough for the map to be taken. */
	put(map + 80, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 1);
	memset(&bs, 0, sizeof(bs));
	bs.kernel_phys_base = 16 * MIB;
	bs.kernel_phys_limit = 18 * MIB;
	KEXPECT(bootinfo_read_mmap(map, sizeof(map), 40, &bs, &d));
	KEXPECT_EQ(bs.nregions, 3);
}

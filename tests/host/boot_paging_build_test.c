/*
 * Host tests of the loader's page tables (boot/paging.c,
 * paging_tables_needed and paging_build): which layouts it refuses, how
 * many table pages it asks for, and what the tables it builds translate,
 * walked here as the CPU would. The pool's pointers stand for physical
 * addresses, as under UEFI's identity map.
 */
#include "../../boot/boot_info.h"
#include "../../boot/paging.h"
#include "../../kernel/ktest.h"

#include <stdlib.h>
#include <string.h>

#define GIB         (1ull << 30)
#define MIB         (1ull << 20)
#define DIRECT_BASE 0xffff800000000000ull
#define KERNEL_VIRT 0xffffffff80000000ull

/* The loader's own layout: 4 GiB of direct map, a kernel of 2 MiB and
 * two pages at 16 MiB. */
static struct paging_layout layout(void)
{
	return (struct paging_layout){
	        .direct_map_limit = 4 * GIB,
	        .direct_map_base = DIRECT_BASE,
	        .kernel_virt = KERNEL_VIRT,
	        .kernel_phys = 16 * MIB,
	        .kernel_size = 2 * MIB + 8192,
	};
}

/*
 * The count is exact: a PML4, one identity PDPT and a PD per GiB (shared
 * by the direct map), and the kernel's PDPT, PD and a PT per 2 MiB it
 * touches. A kernel of exactly 2 MiB touches one PT, and 512 GiB of
 * direct map one PDPT: regions() counting an aligned end as the start
 * of one more asked 10 and 1 + 2 + 512 + 3.
 */
KTEST(boot_paging_build, tables_needed_is_exact)
{
	struct paging_layout l = layout();
	KEXPECT_EQ(paging_tables_needed(&l), 1 + 1 + 4 + 1 + 1 + 2);
	l.kernel_size = 2 * MIB;
	KEXPECT_EQ(paging_tables_needed(&l), 1 + 1 + 4 + 1 + 1 + 1);
	l.direct_map_limit = 512 * GIB;
	KEXPECT_EQ(paging_tables_needed(&l), 1 + 1 + 512 + 1 + 1 + 1);
}

/*
 * A layout the tables cannot hold is refused (0), each for its own
 * reason; every one of these was accepted by a mutant of slots_fit or
 * paging_tables_needed that dropped or loosened its test.
 */
KTEST(boot_paging_build, impossible_layouts_are_refused)
{
	struct paging_layout l = layout();
	/* The direct map over the identity map's PML4 slot. */
	l.direct_map_base = 0;
	KEXPECT_EQ(paging_tables_needed(&l), 0);
	/* The kernel in the direct map's first slot. */
	l = layout();
	l.kernel_virt = DIRECT_BASE + (1ull << 39) - 2 * MIB;
	KEXPECT_EQ(paging_tables_needed(&l), 0);
	l.kernel_virt = DIRECT_BASE;
	KEXPECT_EQ(paging_tables_needed(&l), 0);
	/* The kernel among the identity map's slots. */
	l = layout();
	l.kernel_virt = 2 * MIB;
	KEXPECT_EQ(paging_tables_needed(&l), 0);
	/* A direct map that ends inside a GiB: its PDs would be partial. */
	l = layout();
	l.direct_map_limit = 4 * GIB + 2 * MIB;
	KEXPECT_EQ(paging_tables_needed(&l), 0);
}

/* The pool the tables were built in: a table outside it is a bug. */
static const unsigned char *pool_base;
static size_t pool_bytes;

/* What the tables at pml4 map virt to, or 1 (no page is at an odd
 * address) when nothing maps it or an entry points outside the pool. */
static uint64_t translate(const uint64_t *pml4, uint64_t virt)
{
	static const unsigned shifts[] = {39, 30, 21, 12};
	const uint64_t *table = pml4;
	for (unsigned level = 0; level < 4; level++) {
		uint64_t e = table[(virt >> shifts[level]) & 511];
		uint64_t addr = e & 0x000ffffffffff000ull;
		if (!(e & 1))
			return 1;
		if (level == 3 || (level == 2 && (e & 0x80)))
			return addr + (virt & ((1ull << shifts[level]) - 1));
		if ((e & 0x80) || addr < (uintptr_t)pool_base ||
		    addr - (uintptr_t)pool_base >= pool_bytes)
			return 1;
		table = (const uint64_t *)(uintptr_t)addr;
	}
	return 1;
}

/*
 * Every byte of [0, limit) maps to itself and at the direct map, the
 * kernel's pages each to their frame, and nothing past either: the last
 * 2 MiB of the direct map, the last page of the kernel and a direct map
 * that shares the identity map's tables slot by slot were each lost to a
 * mutant of the loops that build them, and 2 MiB entries without their
 * size bit pointed the walk at the frame as a table. A pool one page
 * short is refused.
 */
KTEST(boot_paging_build, tables_translate_as_laid_out)
{
	struct paging_layout l = layout();
	l.direct_map_limit = 1024 * GIB; /* two PML4 slots */
	size_t need = paging_tables_needed(&l);
	KASSERT(need > 0);
	void *pool = aligned_alloc(4096, need * 4096);
	KASSERT(pool != NULL);
	pool_base = pool;
	pool_bytes = need * 4096;
	KEXPECT_EQ(paging_build(pool, need - 1, &l), 0);
	const uint64_t *pml4 =
	        (const uint64_t *)(uintptr_t)paging_build(pool, need, &l);
	KASSERT(pml4 != NULL);
	static const uint64_t phys[] = {0, 0x1234567, 4 * GIB + 5,
	                                512 * GIB + 0x3000, 1024 * GIB - 8};
	for (size_t i = 0; i < sizeof(phys) / sizeof(phys[0]); i++) {
		KEXPECT_EQ(translate(pml4, phys[i]), phys[i]);
		KEXPECT_EQ(translate(pml4, DIRECT_BASE + phys[i]), phys[i]);
	}
	KEXPECT_EQ(translate(pml4, 1024 * GIB), 1);
	KEXPECT_EQ(translate(pml4, DIRECT_BASE + 1024 * GIB), 1);
	for (uint64_t off = 0; off < l.kernel_size; off += 4096)
		KEXPECT_EQ(translate(pml4, KERNEL_VIRT + off + 8),
		           l.kernel_phys + off + 8);
	KEXPECT_EQ(translate(pml4, KERNEL_VIRT + l.kernel_size), 1);
	free(pool);
}

/* ---- The map's RAM and nothing else
 * ------------------------------------------------------------ */

#define KIB (1ull << 10)
enum { NDESC = 9, STRIDE = 48 };
static unsigned char ram_map[NDESC * STRIDE];

/* Descriptor i of ram_map, STRIDE bytes apart (more than the struct, as
 * firmware's are). */
static void put(int i, uint32_t type, uint64_t base, uint64_t bytes)
{
	struct efi_memory_descriptor d = {.type = type,
	                                  .physical_start = base,
	                                  .number_of_pages = bytes / 4096};
	memcpy(ram_map + STRIDE * i, &d, sizeof(d));
}

/* A PC's map: low RAM with the VGA and BIOS hole, RAM to 3 GiB less
 * 5 MiB plus a page (an end inside a 2 MiB page), loader data right after
 * it (adjacent ranges sharing a 2 MiB page), ACPI tables, then the PCI
 * window and the APICs as device and reserved memory, RAM above 4 GiB
 * ending 12 KiB into a 2 MiB page, and a range listed twice. */
static void pc_map(bool reversed)
{
	memset(ram_map, 0, sizeof(ram_map));
	int i = reversed ? NDESC - 1 : 0, step = reversed ? -1 : 1;
	put(i, EFI_CONVENTIONAL_MEMORY, 0, 640 * KIB);
	put(i += step, EFI_RESERVED_MEMORY, 640 * KIB, 384 * KIB);
	put(i += step, EFI_CONVENTIONAL_MEMORY, MIB,
	    3 * GIB - 5 * MIB + 4096 - MIB);
	put(i += step, EFI_LOADER_DATA, 3 * GIB - 5 * MIB + 4096, 64 * KIB);
	put(i += step, EFI_ACPI_RECLAIM_MEMORY, 3 * GIB - 4 * MIB, 128 * KIB);
	put(i += step, EFI_MEMORY_MAPPED_IO, 3 * GIB, GIB - 32 * MIB);
	put(i += step, EFI_RESERVED_MEMORY, 4 * GIB - 32 * MIB, 32 * MIB);
	put(i += step, EFI_CONVENTIONAL_MEMORY, 4 * GIB, GIB + 12 * KIB);
	put(i += step, EFI_CONVENTIONAL_MEMORY, 4 * GIB + 2 * MIB, 4 * MIB);
}

/* True if phys is in a RAM descriptor of pc_map. */
static bool in_ram(uint64_t phys)
{
	for (int i = 0; i < NDESC; i++) {
		struct efi_memory_descriptor d;
		memcpy(&d, ram_map + STRIDE * i, sizeof(d));
		bool ram = d.type == EFI_CONVENTIONAL_MEMORY ||
		           d.type == EFI_LOADER_DATA ||
		           d.type == EFI_ACPI_RECLAIM_MEMORY;
		if (ram && phys >= d.physical_start &&
		    phys < d.physical_start + d.number_of_pages * 4096)
			return true;
	}
	return false;
}

/* Builds the tables for ram_map as it stands (limit found from it);
 * returns the PML4, the pool in *pool, or NULL. */
static const uint64_t *build_for_map(struct paging_layout *l, void **pool)
{
	*l = layout();
	l->direct_map_limit = paging_direct_map_limit(ram_map, sizeof(ram_map),
	                                              STRIDE, NULL, NULL);
	l->map = ram_map;
	l->map_size = sizeof(ram_map);
	l->desc_size = STRIDE;
	size_t need = paging_tables_needed(l);
	*pool = need ? aligned_alloc(4096, need * 4096) : NULL;
	if (!*pool)
		return NULL;
	pool_base = *pool;
	pool_bytes = need * 4096;
	return (const uint64_t *)(uintptr_t)paging_build(*pool, need, l);
}

/*
 * With the map, the identity and direct maps hold its RAM and nothing
 * else: every descriptor's first and last page and the pages either side
 * of it are mapped exactly when they are RAM (both maps alike), a 2 MiB
 * page of RAM is one entry, and the tables fit the count asked for. Until
 * this version the loader mapped [0, limit) whole: the VGA hole, the PCI
 * window and the APICs were write-back memory until the kernel's own
 * tables replaced these.
 */
static void check_pc_map(bool reversed);

KTEST(boot_paging_build, tables_hold_the_maps_ram_and_nothing_else)
{
	for (int reversed = 0; reversed < 2; reversed++)
		check_pc_map(reversed);
}

/*
 * Four ranges of 16 KiB, one in each GiB, each across a 2 MiB line: each
 * takes two page tables, and every PD the count allows is used, so a
 * count of one table a range leaves the pool short. Each range's pages
 * are mapped and the pages either side of it are not.
 */
KTEST(boot_paging_build, small_ranges_across_2_mib_lines_fit_the_count)
{
	memset(ram_map, 0, sizeof(ram_map));
	for (int i = 0; i < 4; i++)
		put(i, EFI_CONVENTIONAL_MEMORY, i * GIB + 64 * MIB - 8 * KIB,
		    16 * KIB);
	struct paging_layout l;
	void *pool = NULL;
	const uint64_t *pml4 = build_for_map(&l, &pool);
	KASSERT(pml4 != NULL);
	KEXPECT_EQ(l.direct_map_limit, 4 * GIB);
	for (uint64_t i = 0; i < 4; i++) {
		uint64_t a = i * GIB + 64 * MIB - 8 * KIB;
		KEXPECT_EQ(translate(pml4, a - 4096), 1);
		for (uint64_t off = 0; off < 16 * KIB; off += 4096)
			KEXPECT_EQ(translate(pml4, DIRECT_BASE + a + off),
			           a + off);
		KEXPECT_EQ(translate(pml4, a + 16 * KIB), 1);
	}
	free(pool);
}

static void check_pc_map(bool reversed)
{
	pc_map(reversed);
	struct paging_layout l = layout();
	void *pool = NULL;
	const uint64_t *pml4 = build_for_map(&l, &pool);
	KASSERT(pml4 != NULL);
	KEXPECT_EQ(l.direct_map_limit, 6 * GIB);
	unsigned wrong = 0;
	for (int i = 0; i < NDESC; i++) {
		struct efi_memory_descriptor d;
		memcpy(&d, ram_map + STRIDE * i, sizeof(d));
		uint64_t end = d.physical_start + d.number_of_pages * 4096;
		uint64_t probe[] = {d.physical_start, d.physical_start - 4096,
		                    end - 4096, end,
		                    (d.physical_start + end) / 2};
		for (size_t j = 0; j < sizeof(probe) / sizeof(probe[0]); j++) {
			uint64_t a = probe[j] & ~4095ull;
			if (a >= l.direct_map_limit)
				continue;
			uint64_t want = in_ram(a) ? a + 8 : 1;
			if (translate(pml4, a + 8) != want ||
			    translate(pml4, DIRECT_BASE + a + 8) != want) {
				ktest_diag(
				        "%#lx: %#lx, direct %#lx, want %#lx",
				        (unsigned long)a,
				        (unsigned long)translate(pml4, a + 8),
				        (unsigned long)translate(
				                pml4, DIRECT_BASE + a + 8),
				        (unsigned long)want);
				wrong++;
			}
		}
	}
	KEXPECT_EQ(wrong, 0u);
	/* 2 MiB pages inside a range: the PD entry has its size bit. */
	const uint64_t *pdpt =
	        (const uint64_t *)(uintptr_t)(pml4[0] & ~4095ull);
	const uint64_t *pd = (const uint64_t *)(uintptr_t)(pdpt[1] & ~4095ull);
	KEXPECT(pd[0] & 0x80);
	/* Nothing in the PCI window's GiB but the RAM below 3 GiB + 5 MiB */
	KEXPECT_EQ(translate(pml4, 3 * GIB + 512 * MIB), 1);
	/* The kernel's pages, as without a map */
	for (uint64_t off = 0; off < l.kernel_size; off += 4096)
		KEXPECT_EQ(translate(pml4, KERNEL_VIRT + off + 8),
		           l.kernel_phys + off + 8);
	free(pool);
}

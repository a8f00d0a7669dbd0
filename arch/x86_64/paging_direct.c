/*
 * The direct map (paging_init): each frame of RAM at DIRECT_MAP_BASE plus
 * its physical address, and nothing else.
 *
 * What it holds: the memory map's regions of RAM the kernel reads, which
 * are the memory the frame pool owns or will own (mem_type_usable: loader,
 * boot-services and conventional memory) and ACPI reclaim and NVS memory
 * (the firmware's tables). Left out, unmapped: the holes between regions,
 * device memory (MMIO), and reserved, unusable, runtime and persistent
 * memory. Until this version the map covered [0, RAM top) rounded up to
 * a large page, holes and all: on a machine with more than 3 GiB that
 * took in the PCI window, the I/O APIC and the local APIC (which the
 * kernel maps uncached at the same time) as write-back memory. Two memory
 * types for one frame is what the manuals leave undefined, and the
 * alias let a stray or speculative read reach device registers. (Under
 * QEMU the legacy VGA hole and, with 512 MiB, the second half of the first
 * GiB were mapped too.) Linux's direct map holds RAM only for the same
 * reasons. ACPI tables outside it are mapped by acpi.c's window.
 *
 * Each page is as large as it can be: a 1 GiB (or 2 MiB) page where the
 * regions cover all of it and it holds no frame of the image's text or
 * rodata; else its 2 MiB (4 KiB) pages one by one. A page no region
 * touches is left out whole. The image's text and rodata frames are r--
 * (W^X for their alias), the rest rw-, all NX and global.
 *
 * Runs once, on the boot CPU, from paging_init; its tables come from the
 * frame source like every other page-table page.
 */
#include "paging.h"
#include "paging_internal.h"

#include "boot/boot_info.h"
#include "kernel/bootinfo.h"
#include "kernel/printk.h"

/* The physical frames of the image's text and rodata, [lo, hi): their
 * alias in the direct map is read-only too (W^X), so that no write
 * through phys_to_virt changes the kernel's code or constants. */
static paddr_t image_ro_lo, image_ro_hi;

/* What paging_map_direct made, for paging_print_direct_map. */
static paddr_t direct_top;
static size_t direct_ranges, direct_leaves[3];
static uint64_t direct_bytes;

static bool image_ro_overlaps(paddr_t pa, uint64_t size)
{
	return pa < image_ro_hi && image_ro_lo < pa + size;
}

/* Whether the direct map holds a region of this type (see above). */
static bool direct_type(uint32_t type)
{
	return mem_type_usable(type) || type == EFI_ACPI_RECLAIM_MEMORY ||
	       type == EFI_ACPI_MEMORY_NVS;
}

/* How much of [pa, pa + size) the direct map's regions cover. */
enum cover { COVER_NONE, COVER_PART, COVER_ALL };

static enum cover direct_cover(paddr_t pa, uint64_t size)
{
	uint64_t got = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (r->base >= pa + size)
			break; /* sorted by base, and disjoint */
		if (r->limit <= pa || !direct_type(r->type))
			continue;
		paddr_t lo = r->base > pa ? r->base : pa;
		paddr_t hi = r->limit < pa + size ? r->limit : pa + size;
		got += hi - lo;
	}
	return got == 0 ? COVER_NONE : got == size ? COVER_ALL : COVER_PART;
}

/* Maps the direct map's page of level (2: 1 GiB, 1: 2 MiB, 0: 4 KiB) at
 * physical pa: one large page, rw- nx, where the regions cover all of it
 * and it holds no read-only frame of the image; else its smaller pages
 * one by one. A 4 KiB page is mapped if a region covers it. */
static void map_direct_page(paddr_t pa, int level)
{
	uint64_t size = PAGE_SIZE << (9 * level);
	enum cover c = direct_cover(pa, size);
	if (c == COVER_NONE)
		return;
	bool ro = image_ro_overlaps(pa, size);
	if (level > 0 && (ro || c == COVER_PART)) {
		for (paddr_t p = pa; p < pa + size; p += size >> 9)
			map_direct_page(p, level - 1);
		return;
	}
	if (c != COVER_ALL)
		return; /* a region not in whole pages (bootinfo refuses) */
	bool large;
	uintptr_t va = DIRECT_MAP_BASE + pa;
	uint64_t *t = paging_walk(va, level, true, &large);
	if (!t)
		panic("paging: no memory for the direct map at %#llx",
		      (unsigned long long)pa);
	pte_store(&t[level_index(va, level)], pa | PTE_P | PTE_G | PTE_NX |
	                                              (ro ? 0 : PTE_W) |
	                                              (level ? PTE_PS : 0));
	direct_leaves[level]++;
	direct_bytes += size;
}

/* The end of the highest region the direct map holds, and how many
 * ranges (runs of touching regions) it holds. */
static void direct_extent(void)
{
	paddr_t prev = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (!direct_type(r->type) || r->base >= DIRECT_MAP_SIZE)
			continue;
		if (direct_ranges == 0 || r->base != prev)
			direct_ranges++;
		prev = r->limit < DIRECT_MAP_SIZE ? r->limit : DIRECT_MAP_SIZE;
		if (prev > direct_top)
			direct_top = prev;
	}
}

void paging_map_direct(uint64_t page_size)
{
	int level = page_size == HUGE_PAGE_SIZE ? 2 : 1;
	image_ro_lo = boot_state.kernel_phys_base +
	              ((uintptr_t)__text_start - boot_state.kernel_virt_base);
	image_ro_hi = boot_state.kernel_phys_base +
	              ((uintptr_t)__rodata_end - boot_state.kernel_virt_base);
	direct_extent();
	for (paddr_t pa = 0; pa < direct_top; pa += page_size)
		map_direct_page(pa, level);
}

void paging_print_direct_map(void)
{
	printk("paging: direct map  %#llx-%#llx (%llu MiB of RAM in %zu "
	       "ranges, %s pages, rw- nx: %zu of 1 GiB, %zu of 2 MiB, %zu of "
	       "4 KiB; holes and device memory unmapped)\n",
	       DIRECT_MAP_BASE, DIRECT_MAP_BASE + direct_top,
	       (unsigned long long)(direct_bytes >> 20), direct_ranges,
	       paging_direct_map_page_size() == HUGE_PAGE_SIZE ? "1 GiB"
	                                                       : "2 MiB",
	       direct_leaves[2], direct_leaves[1], direct_leaves[0]);
	printk("paging: its alias   %#llx-%#llx r-- nx (text and rodata, 4 "
	       "KiB pages in the direct map)\n",
	       DIRECT_MAP_BASE + image_ro_lo, DIRECT_MAP_BASE + image_ro_hi);
}

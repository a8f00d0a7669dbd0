/*
 * The kernel's maps of ACPI tables (kernel/acpi.c): the read-only window
 * (not the direct map, never writable, across a page boundary too), maps
 * that stop where the memory map does, and no map of memory the frame pool
 * owns, on the real firmware's tables and memory map.
 */
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "boot/boot_info.h"
#include "kernel/acpi.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/fault_util.h"

KTEST(acpi, window_maps_read_only)
{
	if (!boot_state.rsdp)
		KTEST_SKIP("no RSDP");
	/* The RSDP through the window and through the direct map, and a
	 * range that straddles a page boundary. The direct map holds ACPI
	 * memory (OVMF's RSDP is there); a board's RSDP in the BIOS area,
	 * a hole of the map, is not in it. */
	paddr_t page = align_down(boot_state.rsdp, PAGE_SIZE);
	if (!vm_translate((uintptr_t)phys_to_virt(page), NULL, NULL) ||
	    !vm_translate((uintptr_t)phys_to_virt(page + PAGE_SIZE), NULL,
	                  NULL))
		KTEST_SKIP("the RSDP's pages lie outside the direct map");
	const uint8_t *w = acpi_map_window(boot_state.rsdp, 36);
	const uint8_t *d = phys_to_virt(boot_state.rsdp);
	KASSERT(w != NULL);
	/* Mapped again, or a part of it: the same pages of the window. */
	KEXPECT(acpi_map_window(boot_state.rsdp, 36) == w);
	KEXPECT(acpi_map_window(boot_state.rsdp + 8, 8) == w + 8);
	KEXPECT(w != d);
	KEXPECT(memcmp(w, "RSD PTR ", 8) == 0);
	KEXPECT(memcmp(w, d, 36) == 0);
	paddr_t pa;
	unsigned flags;
	KASSERT(vm_translate((uintptr_t)w, &pa, &flags));
	KEXPECT_EQ(pa, boot_state.rsdp);
	KEXPECT_EQ(flags & VM_WRITE, 0);
	uint64_t edge = align_down(boot_state.rsdp, PAGE_SIZE) + PAGE_SIZE - 8;
	const uint8_t *w2 = acpi_map_window(edge, 16);
	KASSERT(w2 != NULL);
	KEXPECT(memcmp(w2, phys_to_virt(edge), 16) == 0);
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		*(volatile uint8_t *)w = 'X';
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "the window is writable");
	} else {
		KEXPECT_EQ(fc.vector, VEC_PF);
		KEXPECT_EQ(fc.error & (PF_PRESENT | PF_WRITE),
		           PF_PRESENT | PF_WRITE);
	}
	KEXPECT(acpi_map_window(0, 0) == NULL);
}

/* True for a region firmware tables may be read from: not device memory
 * (MMIO, port space), not memory the firmware calls unusable, and not
 * memory the frame pool owns. */
static bool table_region(const struct mem_region *r)
{
	return r->type != EFI_MEMORY_MAPPED_IO &&
	       r->type != EFI_MEMORY_MAPPED_IO_PORT_SPACE &&
	       r->type != EFI_UNUSABLE_MEMORY && !mem_type_usable(r->type);
}

/*
 * A table that ends where the memory map does (a gap or a device region
 * follows) is read up to that end and no further: acpi.c's window maps
 * what the direct map does not hold, so a map that ran past the end
 * would read device registers. The first such boundary below
 * the top of RAM is taken, else the first at all.
 */
KTEST(acpi, map_stops_where_the_memory_map_does)
{
	paddr_t edge = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		const struct mem_region *next =
		        i + 1 < boot_state.nregions ? r + 1 : NULL;
		if (!table_region(r) ||
		    (next && next->base == r->limit && table_region(next)))
			continue;
		if (!edge || (edge >= boot_state.ram_top &&
		              r->limit < boot_state.ram_top))
			edge = r->limit;
	}
	if (!edge)
		KTEST_SKIP("the memory map has no hole");
	ktest_diag("the memory map ends at %#llx, RAM top %#llx",
	           (unsigned long long)edge,
	           (unsigned long long)boot_state.ram_top);
	KEXPECT(acpi_map_phys(edge - 64, 64) != NULL);
	KEXPECT(acpi_map_phys(edge - 64, 65) == NULL);
	KEXPECT(acpi_map_phys(edge - 16, 4096) == NULL);
	KEXPECT(acpi_map_phys(edge, 36) == NULL);
	KEXPECT(acpi_map_window(edge - 16, 32) == NULL);
}

/*
 * Free, loader and boot-services memory belong to the frame pool once
 * kmain has reclaimed them: a table pointer into them (here a frame the
 * pool handed out, holding what looks like an RSDP) must not be followed,
 * or the kernel would parse its own data as firmware tables. Mapped through
 * the direct map or the window, neither reads it.
 */
KTEST(acpi, table_in_memory_the_pool_owns_is_not_read)
{
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	uint8_t *p = phys_to_virt(pa);
	memset(p, 0, 36);
	memcpy(p, "RSD PTR ", 8);
	uint8_t sum = 0;
	for (unsigned i = 0; i < 20; i++)
		sum = (uint8_t)(sum + p[i]);
	p[8] = (uint8_t)-sum;
	KEXPECT(acpi_map_phys(pa, 36) == NULL);
	KEXPECT(acpi_map_window(pa, 36) == NULL);
	frame_free(pa);
}

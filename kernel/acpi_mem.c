/*
 * Where ACPI tables may be read from (see acpi_mem.h): the memory map's
 * word on a range, before acpi.c maps it.
 *
 * A range is read only when the map describes every byte of it as memory
 * that can hold tables. Device memory cannot: acpi.c maps what the direct
 * map does not hold (holes, reserved memory) into its window, so a table
 * next to a hole, its length running into it, would otherwise be
 * checksummed through device registers. Free and loader memory cannot
 * either: the frame pool owns free memory from frames_init, and the
 * loader puts no tables in its own, so a table pointer into them would
 * read whatever the kernel put there.
 *
 * Boot-services code and data are the firmware's until
 * frames_reclaim_boot_memory hands them to the pool. OVMF keeps its
 * tables in ACPI reclaim and NVS memory, but some boards leave them in
 * boot-services memory: so kmain reads the MADT (acpi_init) before that
 * reclaim, and such tables are read while the caller says the memory is
 * still kept, never after.
 */
#include "acpi_mem.h"

#include "boot/boot_info.h"
#include "kernel/printk.h"

/* False for memory that cannot hold firmware tables: a device's, memory
 * the firmware calls unusable, and memory the frame pool owns or will
 * own (mem_type_usable) unless bm keeps boot-services memory readable. */
static bool table_memory(uint32_t type, enum acpi_boot_memory bm)
{
	if (type == EFI_BOOT_SERVICES_CODE || type == EFI_BOOT_SERVICES_DATA)
		return bm == ACPI_BOOT_MEMORY_KEPT;
	return type != EFI_MEMORY_MAPPED_IO &&
	       type != EFI_MEMORY_MAPPED_IO_PORT_SPACE &&
	       type != EFI_UNUSABLE_MEMORY && !mem_type_usable(type) &&
	       type <= EFI_PERSISTENT_MEMORY;
}

/* Prints why [pa, limit) is not read: it runs into region r. */
static void print_refusal(uint64_t pa, uint64_t limit,
                          const struct mem_region *r)
{
	printk("acpi: [%#llx, %#llx) runs into %#llx-%#llx, %s memory in the "
	       "memory map%s; not read\n",
	       (unsigned long long)pa, (unsigned long long)limit,
	       (unsigned long long)r->base, (unsigned long long)r->limit - 1,
	       mem_type_name(r->type),
	       mem_type_usable(r->type) ? ", which the frame pool owns" : "");
}

bool acpi_mem_holds_tables(const struct boot_state *b, uint64_t pa,
                           uint64_t limit, enum acpi_boot_memory bm)
{
	uint64_t at = pa;
	for (size_t i = 0; i < b->nregions && at < limit; i++) {
		const struct mem_region *r = &b->regions[i];
		if (r->limit <= at)
			continue;
		if (r->base > at) {
			printk("acpi: [%#llx, %#llx) runs into %#llx-%#llx, "
			       "which the memory map does not describe; not "
			       "read\n",
			       (unsigned long long)pa,
			       (unsigned long long)limit,
			       (unsigned long long)at,
			       (unsigned long long)r->base - 1);
			return false;
		}
		if (!table_memory(r->type, bm)) {
			print_refusal(pa, limit, r);
			return false;
		}
		at = r->limit;
	}
	if (at < limit)
		printk("acpi: [%#llx, %#llx) runs past %#llx, the end of the "
		       "memory map; not read\n",
		       (unsigned long long)pa, (unsigned long long)limit,
		       (unsigned long long)at);
	return at >= limit;
}

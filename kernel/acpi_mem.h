/*
 * Which physical memory the kernel may read ACPI tables from, judged by
 * the firmware's memory map (boot_state). acpi.c's mapper asks before it
 * maps a byte; the file is portable (it prints through printk only), so
 * the host tests run it over crafted maps and tables.
 */
#ifndef KERNEL_ACPI_MEM_H
#define KERNEL_ACPI_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/bootinfo.h"

/* Whether the frame pool has taken boot-services code and data yet
 * (frames_reclaim_boot_memory): until then tables there may be read. */
enum acpi_boot_memory {
	ACPI_BOOT_MEMORY_KEPT,   /* still the firmware's: readable */
	ACPI_BOOT_MEMORY_POOLED, /* the pool's: never read */
};

/*
 * True when b describes every byte of [pa, limit) as memory that can
 * hold tables: ACPI, runtime-services, reserved or persistent memory,
 * and boot-services code or data while bm is ACPI_BOOT_MEMORY_KEPT.
 * Otherwise prints the first part that is not (a gap in the map, a
 * region past its end, or a region of another type, saying when the
 * frame pool owns it) and returns false. Any context; b is not changed.
 */
bool acpi_mem_holds_tables(const struct boot_state *b, uint64_t pa,
                           uint64_t limit, enum acpi_boot_memory bm);

#endif

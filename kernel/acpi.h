/*
 * The kernel's view of the ACPI tables: where the firmware's MADT says the
 * CPUs are. The checking is done by the portable parser (acpi_parse.h,
 * madt_parse.h); this layer maps physical memory for it and keeps the result.
 */
#ifndef KERNEL_ACPI_H
#define KERNEL_ACPI_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/madt_parse.h"

/*
 * Finds and parses the MADT from the loader's RSDP and prints what it says
 * (or why there is none). "acpi.no_madt" on the command line makes it
 * pretend the root table lists no MADT. Boot CPU, once, after paging_init
 * and before frames_reclaim_boot_memory: some boards keep the tables in
 * boot-services memory, which is read only until the pool takes it.
 */
void acpi_init(void);

/*
 * Returns len readable bytes of firmware memory at physical pa: through
 * the direct map when it covers them, else mapped read-only into the ACPI
 * window (which only grows, 256 pages in all). NULL when it cannot, and
 * when the memory map does not describe every byte as memory that can
 * hold tables (a gap, MMIO, port space, unusable memory, or free, loader
 * or reclaimed boot-services memory, which the frame pool owns: printed;
 * see acpi_mem.h).
 * acpi_map_window takes the window path whatever the direct map covers
 * (tests use it). Boot CPU or tests: the window is not locked.
 */
const void *acpi_map_phys(uint64_t pa, uint32_t len);
const void *acpi_map_window(uint64_t pa, uint32_t len);

/* The MADT's CPUs, or NULL when there is no usable MADT; immutable after
 * acpi_init(). */
const struct madt_info *acpi_madt(void);
const struct madt_cpu *acpi_madt_cpus(void);

/* When acpi_madt() is NULL: "no MADT", "malformed MADT", "malformed ACPI
 * tables" or "unreadable ACPI tables" (the window ran out of room), and
 * why. */
const char *acpi_madt_problem(void);
const char *acpi_madt_problem_detail(void);

#endif

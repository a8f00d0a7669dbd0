/* acpi.c's internals for tests only. */
#ifndef KERNEL_ACPI_TESTING_H
#define KERNEL_ACPI_TESTING_H

#include "kernel/acpi_mem.h"
#include "kernel/madt_parse.h"

/* Prints the lines of print_madt (acpi_init) about what m's MADT had
 * that the kernel left out: entries skipped, CPUs past MAX_CPUS, bad and
 * duplicate APIC ids; nothing if it left out nothing. */
void acpi_print_madt_skipped(const struct madt_info *m);

/* Whether the frame pool had taken boot-services memory when acpi_init
 * ran: ACPI_BOOT_MEMORY_KEPT unless kmain reads the tables too late for
 * the boards that keep them there. */
enum acpi_boot_memory acpi_boot_memory_at_init(void);

#endif

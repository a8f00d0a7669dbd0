/*
 * What acpi_init prints about the MADT entries the kernel left out
 * (acpi_print_madt_skipped), captured from the console: counts of one
 * read in the singular ("1 more CPU ignored", not "1 more CPUs"), an
 * override refused for its GSI naming the IRQ that keeps it; and when
 * kmain lets it read the tables.
 */
#include <stdatomic.h>

#include "kernel/acpi_testing.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "tests/kernel/capture_util.h"
#include "kernel/string.h"

#if KTEST_HOOKS
/* Prints m's skipped lines with the console captured into seen. */
static void print_captured(const struct madt_info *m)
{
	capture_start();
	acpi_print_madt_skipped(m);
	capture_stop();
}

KTEST(acpi, skipped_counts_of_one_are_singular)
{
	static struct madt_info m; /* too big for the stack */
	m = (struct madt_info){.nignored = 1, .nskipped = 1};
	print_captured(&m);
	KEXPECT(seen_has("acpi: 1 more CPU ignored: the kernel supports "));
	KEXPECT(seen_has("acpi: 1 I/O APIC or override entry skipped"));
	m = (struct madt_info){.nignored = 2, .nskipped = 3};
	print_captured(&m);
	KEXPECT(seen_has("acpi: 2 more CPUs ignored: the kernel supports "));
	KEXPECT(seen_has("acpi: 3 I/O APIC or override entries skipped"));
	m = (struct madt_info){0};
	print_captured(&m);
	KEXPECT_EQ(seen[0], '\0');
}

/* An override left out because an earlier one took its GSI names the
 * IRQ that keeps the pin, besides its own IRQ and GSI. */
KTEST(acpi, an_override_onto_a_taken_gsi_names_the_irq_kept)
{
	static struct madt_info m;
	m = (struct madt_info){.nskipped = 1, .nbad_overrides = 1};
	m.bad_overrides[0] = (struct madt_bad_override){
	        .off = 0x50,
	        .source = 3,
	        .clash = 0,
	        .gsi = 2,
	        .why = "override GSI is an earlier override's"};
	print_captured(&m);
	KEXPECT(seen_has("acpi: MADT entry at offset 0x50, override of ISA "
	                 "IRQ 3 -> GSI 2, flags 0: override GSI is an "
	                 "earlier override's (ISA IRQ 0's, kept); skipped"));
}
#endif

/*
 * Some boards keep their ACPI tables in boot-services memory, which the
 * kernel reads only until frames_reclaim_boot_memory hands it to the
 * frame pool (acpi_mem.h). kmain called acpi_init after that reclaim, so
 * on such a board the MADT was refused and only the boot CPU ran.
 */
KTEST(acpi, tables_read_before_the_pool_takes_boot_memory)
{
	KEXPECT(frames_boot_memory_reclaimed());
	KEXPECT_EQ(acpi_boot_memory_at_init(), ACPI_BOOT_MEMORY_KEPT);
}

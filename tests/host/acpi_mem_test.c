/*
 * Host tests of kernel/acpi_mem.c, the memory map's word on where ACPI
 * tables may be read: the fake tables of acpi_fake_tables.h, read
 * through a mapper that asks acpi_mem_holds_tables first, as the
 * kernel's does (kernel/acpi.c), over a crafted memory map.
 */
#include "../../kernel/acpi_mem.h"
#include "../../boot/boot_info.h"
#include "kernel_stubs.h"
#include "madt_test_util.h"

/* The map the mapper judges by, and whether boot-services memory is
 * still the firmware's. */
static struct boot_state bs;
static enum acpi_boot_memory bm;

static const void *judged_map(void *ctx, uint64_t pa, uint32_t len,
                              const char **why)
{
	if (!acpi_mem_holds_tables(&bs, pa, pa + len, bm))
		return NULL;
	return fake_map(ctx, pa, len, why);
}

static void region(uint64_t base, uint64_t limit, uint32_t type)
{
	bs.regions[bs.nregions++] = (struct mem_region){base, limit, type};
}

/* A sound system whose MADT lists two CPUs (APIC ids 0 and 1). */
static void two_cpu_system(void)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	add_lapic(1, 1, MADT_CPU_ENABLED);
	madt_end();
}

/* Finds the MADT through judged_map and parses it. */
static enum acpi_status judged_find_and_parse(void)
{
	struct acpi_reader r = {judged_map, NULL};
	struct acpi_table t;
	diag = (struct acpi_diag){NULL, 0};
	enum acpi_status st = acpi_find_table(&r, RSDP_PA, "APIC", &t, &diag);
	if (st != ACPI_OK)
		return st;
	return madt_parse(t.data, t.length, cpus, 80, &info, &diag);
}

/*
 * Some boards leave their ACPI tables in boot-services code or data
 * (OVMF uses ACPI reclaim and NVS). The kernel refused them as memory
 * the frame pool owns, though acpi_init could read them before the pool
 * takes that memory: such a machine ran on its boot CPU alone. Until the
 * pool has it, the tables there are read and the CPUs found; after,
 * they are refused, saying the pool owns the memory.
 */
KTEST(acpi_mem, tables_in_boot_services_memory_read_until_pooled)
{
	two_cpu_system();
	memset(&bs, 0, sizeof(bs));
	region(0, 0x1000, EFI_BOOT_SERVICES_CODE);      /* RSDP, XSDT, RSDT */
	region(0x1000, 0x2000, EFI_BOOT_SERVICES_DATA); /* MADT */
	region(0x2000, MEM_SIZE, EFI_CONVENTIONAL_MEMORY);
	bm = ACPI_BOOT_MEMORY_KEPT;
	KASSERT_EQ(judged_find_and_parse(), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 2);
	KEXPECT_EQ(cpus[1].apic_id, 1);

	bm = ACPI_BOOT_MEMORY_POOLED;
	KEXPECT(judged_find_and_parse() != ACPI_OK);
	KEXPECT(strstr(kstub_last_line, "boot code memory in the memory map, "
	                                "which the frame pool owns") != NULL);
}

/* Keeping boot-services memory readable makes no other memory readable:
 * free and loader memory are the pool's from the start, device memory
 * is never read, and ACPI memory is read either way. */
KTEST(acpi_mem, only_boot_services_memory_depends_on_the_pool)
{
	static const uint32_t refused[] = {
	        EFI_CONVENTIONAL_MEMORY, EFI_LOADER_DATA,     EFI_LOADER_CODE,
	        EFI_MEMORY_MAPPED_IO,    EFI_UNUSABLE_MEMORY,
	};
	two_cpu_system();
	bm = ACPI_BOOT_MEMORY_KEPT;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		memset(&bs, 0, sizeof(bs));
		region(0, 0x1000, EFI_ACPI_RECLAIM_MEMORY);
		region(0x1000, 0x2000, refused[i]);
		KEXPECT(judged_find_and_parse() != ACPI_OK);
	}
	memset(&bs, 0, sizeof(bs));
	region(0, 0x1000, EFI_ACPI_RECLAIM_MEMORY);
	region(0x1000, 0x2000, EFI_ACPI_MEMORY_NVS);
	bm = ACPI_BOOT_MEMORY_POOLED;
	KEXPECT_EQ(judged_find_and_parse(), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 2);
}

/* A table that runs past boot-services memory into a gap is refused as
 * any other (the gap named), kept memory or not. */
KTEST(acpi_mem, kept_boot_memory_does_not_cover_a_gap)
{
	two_cpu_system();
	memset(&bs, 0, sizeof(bs));
	region(0, 0x1000, EFI_BOOT_SERVICES_DATA);
	region(0x1000, MADT_PA + 0x20, EFI_BOOT_SERVICES_DATA);
	region(MADT_PA + 0x40, MEM_SIZE, EFI_BOOT_SERVICES_DATA);
	bm = ACPI_BOOT_MEMORY_KEPT;
	KEXPECT(judged_find_and_parse() != ACPI_OK);
	KEXPECT(strstr(kstub_last_line, "which the memory map does not "
	                                "describe") != NULL);
}

/* Every type the map may give, judged alone: device memory (either
 * kind) and types past the UEFI table (OS and OEM types, whose meaning
 * the kernel cannot know) are refused; firmware and reserved types are
 * read. The MADT's region is the one of the type under test. */
KTEST(acpi_mem, each_memory_type_read_or_refused)
{
	static const struct {
		uint32_t type;
		bool read;
	} cases[] = {
	        {EFI_RESERVED_MEMORY, true},
	        {EFI_RUNTIME_SERVICES_CODE, true},
	        {EFI_RUNTIME_SERVICES_DATA, true},
	        {EFI_ACPI_RECLAIM_MEMORY, true},
	        {EFI_ACPI_MEMORY_NVS, true},
	        {EFI_PAL_CODE, true},
	        {EFI_PERSISTENT_MEMORY, true},
	        {EFI_MEMORY_MAPPED_IO, false},
	        {EFI_MEMORY_MAPPED_IO_PORT_SPACE, false},
	        {EFI_PERSISTENT_MEMORY + 1, false},
	        {0x70000000u, false},
	        {0x80000000u, false},
	};
	two_cpu_system();
	bm = ACPI_BOOT_MEMORY_POOLED;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&bs, 0, sizeof(bs));
		region(0, 0x1000, EFI_ACPI_RECLAIM_MEMORY);
		region(0x1000, 0x2000, cases[i].type);
		enum acpi_status st = judged_find_and_parse();
		if ((st == ACPI_OK) != cases[i].read)
			ktest_diag("type %#x: status %d", cases[i].type,
			           (int)st);
		KEXPECT_EQ(st == ACPI_OK, cases[i].read);
	}
}

/* The map's edges that meet a table's: a table starting exactly where a
 * device region ends, spanning two adjacent table regions, and ending
 * exactly where the map ends, is read; one byte more is not. */
KTEST(acpi_mem, tables_at_region_edges)
{
	two_cpu_system();
	bm = ACPI_BOOT_MEMORY_POOLED;
	memset(&bs, 0, sizeof(bs));
	region(0, 0xc00, EFI_ACPI_RECLAIM_MEMORY);
	region(0xc00, MADT_PA, EFI_MEMORY_MAPPED_IO);
	region(MADT_PA, MADT_PA + 0x10, EFI_ACPI_RECLAIM_MEMORY);
	region(MADT_PA + 0x10, MADT_PA + madt_len, EFI_ACPI_MEMORY_NVS);
	KEXPECT_EQ(judged_find_and_parse(), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 2);

	bs.regions[bs.nregions - 1].limit--;
	KEXPECT(judged_find_and_parse() != ACPI_OK);
	KEXPECT(strstr(kstub_last_line, "the end of the memory map") != NULL);
}

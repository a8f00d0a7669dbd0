/*
 * The kernel's intake of the UEFI memory map (bootinfo_read_mmap) fed
 * crafted descriptors: what it keeps, and what it refuses and why.
 */
#include "boot/boot_info.h"
#include "kernel/bootinfo_testing.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/bootinfo_handoff_util.h"

/* Too big for a test's stack. */
static struct boot_state bs;
static struct efi_memory_descriptor map[8];

/* A boot_state whose kernel image is [16 MiB, 18 MiB). */
static void reset(void)
{
	memset(&bs, 0, sizeof(bs));
	memset(map, 0, sizeof(map));
	bs.kernel_phys_base = 16 * MIB;
	bs.kernel_phys_limit = 18 * MIB;
}

static void set(unsigned i, uint32_t type, uint64_t base, uint64_t npages)
{
	map[i] = (struct efi_memory_descriptor){.type = type,
	                                        .physical_start = base,
	                                        .number_of_pages = npages};
}

/* Reads map[0, n); returns the refusal, or NULL. */
static const char *read(unsigned n, struct mmap_diag *d)
{
	*d = (struct mmap_diag){0};
	if (bootinfo_read_mmap(map, n * sizeof(map[0]), sizeof(map[0]), &bs, d))
		return NULL;
	return d->why ? d->why : "(no reason)";
}

KTEST(bootinfo, sound_map_is_kept_sorted)
{
	struct mmap_diag d;
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 256);
	set(1, EFI_LOADER_DATA, 16 * MIB, 512); /* the kernel image */
	set(2, EFI_RESERVED_MEMORY, 0, 0);      /* empty: skipped */
	set(3, EFI_CONVENTIONAL_MEMORY, 1 * MIB, 15 * MIB / PAGE_SIZE);
	KEXPECT(read(4, &d) == NULL);
	KASSERT(bs.nregions == 3);
	KEXPECT_EQ(bs.regions[0].base, 1 * MIB);
	KEXPECT_EQ(bs.regions[0].limit, 16 * MIB);
	KEXPECT_EQ(bs.regions[1].base, 16 * MIB);
	KEXPECT_EQ(bs.regions[2].limit, 33 * MIB);
	KEXPECT_EQ(bs.ram_top, 33 * MIB);
}

/* An entry whose end wraps past 2^64 ends past 2^52: it is left out,
 * as the loader leaves it out, not refused (the boot stopped on a map
 * the loader had taken), and its byte count wrapped small is no region.
 * An unaligned entry below 2^52 is still refused. */
KTEST(bootinfo, entry_whose_size_wraps_is_left_out)
{
	struct mmap_diag d;
	/* 2^52 + 1 pages: the byte count wraps to one page. */
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, 32 * MIB, (1ull << 52) + 1);
	set(1, EFI_CONVENTIONAL_MEMORY, 64 * MIB, 1);
	KEXPECT(read(2, &d) == NULL);
	KEXPECT_EQ(bs.nregions, 1);
	KEXPECT_EQ(bs.regions[0].base, 64 * MIB);
	/* The last page below 2^64 wraps to 0. */
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, 0ull - PAGE_SIZE, 1);
	set(1, EFI_CONVENTIONAL_MEMORY, 64 * MIB, 1);
	KEXPECT(read(2, &d) == NULL);
	KEXPECT_EQ(bs.nregions, 1);
	/* Unaligned. */
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, 32 * MIB + 1, 1);
	KEXPECT(read(1, &d) != NULL);
}

KTEST(bootinfo, overlapping_entries_are_refused)
{
	struct mmap_diag d;
	/* Free memory over a reserved range would hand the range out. */
	reset();
	set(0, EFI_RESERVED_MEMORY, 40 * MIB, 16);
	set(1, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 4096);
	KEXPECT(read(2, &d) != NULL);
	KEXPECT_EQ(d.other_limit - d.other_base, 16 * PAGE_SIZE);
	KEXPECT_EQ(d.base, 32 * MIB);
	/* One page in common, in either order. */
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 2);
	set(1, EFI_LOADER_DATA, 32 * MIB + PAGE_SIZE, 2);
	KEXPECT(read(2, &d) != NULL);
	/* Adjacent is fine. */
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 1);
	set(1, EFI_LOADER_DATA, 32 * MIB + PAGE_SIZE, 2);
	KEXPECT(read(2, &d) == NULL);
}

KTEST(bootinfo, free_memory_over_the_kernel_image_is_refused)
{
	struct mmap_diag d;
	/* Only the image's last page is listed as conventional. */
	reset();
	set(0, EFI_LOADER_DATA, 16 * MIB, 511);
	set(1, EFI_CONVENTIONAL_MEMORY, 18 * MIB - PAGE_SIZE, 256);
	KEXPECT(read(2, &d) != NULL);
	KEXPECT_EQ(d.base, 18 * MIB - PAGE_SIZE);
	KEXPECT_EQ(d.other_base, 16 * MIB);
	KEXPECT_EQ(d.other_limit, 18 * MIB);
}

/* bootinfo_handoff_problem refuses *bi, saying why_. */
#define EXPECT_PROBLEM(bi, why_)                                \
	do {                                                    \
		const char *why = bootinfo_handoff_problem(bi); \
		KEXPECT(why != NULL);                           \
		if (why)                                        \
			KEXPECT_STREQ(why, why_);               \
	} while (0)

KTEST(bootinfo, handoff_beyond_the_direct_map_is_refused)
{
	struct boot_info bi = handoff();
	KEXPECT(bootinfo_handoff_problem(&bi) == NULL);
	/* Descriptors too short to hold one: the sizes do divide. */
	bi.mmap_desc_size = 24;
	bi.mmap_size = 48;
	EXPECT_PROBLEM(&bi, "memory map descriptors are smaller than the 40 "
	                    "bytes of one");
	/* A map that ends past the direct map: reading it would fault. */
	bi = handoff();
	bi.mmap_phys = 4096 * MIB - sizeof(struct efi_memory_descriptor);
	EXPECT_PROBLEM(&bi, "memory map runs past the loader's direct map");
	/* A huge descriptor size: one "descriptor" of 2^63 bytes. */
	bi = handoff();
	bi.mmap_desc_size = bi.mmap_size = 1ull << 63;
	EXPECT_PROBLEM(&bi, "memory map runs past the loader's direct map");
	/* A command line past the direct map. */
	bi = handoff();
	bi.cmdline_phys = 4096 * MIB - 50;
	EXPECT_PROBLEM(&bi, "command line runs past the loader's direct map");
	/* Only the bytes the kernel copies count. */
	bi.cmdline_phys = 4096 * MIB - BOOT_CMDLINE_MAX;
	bi.cmdline_len = 1ull << 40;
	KEXPECT(bootinfo_handoff_problem(&bi) == NULL);
}

/* The direct map has 32 TiB before the mm region: usable memory past it
 * cannot be reached, and mapping it would run into the heap's space. It
 * is left out (the host's bootinfo_mmap tests check the line it gets). */
KTEST(bootinfo, usable_memory_past_the_direct_map_is_left_out)
{
	struct mmap_diag d;
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, 32 * MIB, 256);
	set(1, EFI_CONVENTIONAL_MEMORY, DIRECT_MAP_SIZE - PAGE_SIZE, 2);
	KEXPECT(read(2, &d) == NULL);
	KEXPECT_EQ(bs.nregions, 2);
	KEXPECT_EQ(bs.regions[1].limit, DIRECT_MAP_SIZE);
	KEXPECT_EQ(bs.ram_top, DIRECT_MAP_SIZE);
	/* Boot-services memory is reclaimed into the pool: the same. Wholly
	 * past, it leaves a map with no free memory. */
	reset();
	set(0, EFI_BOOT_SERVICES_DATA, 64 * DIRECT_MAP_SIZE, 1);
	const char *why = read(1, &d);
	KEXPECT(why != NULL);
	if (why)
		KEXPECT_STREQ(why,
		              "lists no free (conventional) memory at all");
	/* Up to the end is kept whole; MMIO and reserved ranges need no
	 * map. */
	reset();
	set(0, EFI_CONVENTIONAL_MEMORY, DIRECT_MAP_SIZE - PAGE_SIZE, 1);
	set(1, EFI_MEMORY_MAPPED_IO, DIRECT_MAP_SIZE, 1024);
	set(2, EFI_RESERVED_MEMORY, 2 * DIRECT_MAP_SIZE, 1);
	KEXPECT(read(3, &d) == NULL);
	KEXPECT_EQ(bs.nregions, 3);
	KEXPECT_EQ(bs.ram_top, DIRECT_MAP_SIZE);
}

/* cmdline.txt is a text file: one option per line is as good as one
 * line of options (the loader trims only the trailing line end). */
KTEST(bootinfo, command_line_options_on_separate_lines)
{
	static const char text[] =
	        "ktest=smp.*\nsmp.expect=4\r\nacpi.no_madt\r\tshell.notty";
	char buf[16];
	KEXPECT(cmdline_find(text, "ktest", buf, sizeof(buf)));
	KEXPECT_STREQ(buf, "smp.*");
	KEXPECT(cmdline_find(text, "smp.expect", buf, sizeof(buf)));
	KEXPECT_STREQ(buf, "4");
	KEXPECT(cmdline_find(text, "acpi.no_madt", NULL, 0));
	KEXPECT(cmdline_find(text, "shell.notty", NULL, 0));
	KEXPECT(!cmdline_find(text, "smp", buf, sizeof(buf)));
}

/* An on/off option is on only when written bare: "mm.debug_pagealloc=0"
 * and "acpi.no_madt=no" (which took the machine's other CPUs away) were
 * read as the option given. */
KTEST(bootinfo, on_off_option_given_a_value_is_refused)
{
	static const char text[] = "mm.debug_pagealloc=0 acpi.no_madt=no "
	                           "shell.notty= demo.early_fault "
	                           "ktest=x";
	KEXPECT(!cmdline_find_flag(text, "mm.debug_pagealloc"));
	KEXPECT(!cmdline_find_flag(text, "acpi.no_madt"));
	KEXPECT(!cmdline_find_flag(text, "shell.notty"));
	KEXPECT(cmdline_find_flag(text, "demo.early_fault"));
	KEXPECT(!cmdline_find_flag(text, "demo"));
	KEXPECT(!cmdline_find_flag(text, "time.stall_windows"));
	/* A valued option is still found by cmdline_find. */
	KEXPECT(cmdline_find(text, "ktest", NULL, 0));
}

/* Every word names an option the kernel reads, or is reported: a
 * misspelt "mm.scav_gaol=50" kept the default goal without a word. */
KTEST(bootinfo, unknown_command_line_options_are_named)
{
	KEXPECT_EQ(cmdline_find_unknown(""), 0u);
	KEXPECT_EQ(cmdline_find_unknown(" \t\r\n"), 0u);
	KEXPECT_EQ(cmdline_find_unknown("ktest=bootinfo.* smp.expect=4\n"
	                                "mm.debug_pagealloc mm.scav_goal=0 "
	                                "mm.scav_budget=1000 acpi.no_madt "
	                                "smp.skip_sipi=2 smp.late_ap=3 "
	                                "time.stall_windows=3 shell.notty "
	                                "shell.heapmap=200 demo.early_fault"),
	           0u);
	/* Judged by the key alone: a bad value is its option's to refuse. */
	KEXPECT_EQ(cmdline_find_unknown("mm.scav_goal= mm.scav_budget=x"), 0u);
	KEXPECT_EQ(cmdline_find_unknown("mm.scav_gaol=50"), 1u);
	KEXPECT_EQ(cmdline_find_unknown("mm.scav_goalx=1 mm.scav=1 mm. ="), 4u);
	KEXPECT_EQ(cmdline_find_unknown("=5 quiet shell.notty ktest"), 2u);
}

/* An option given twice is read from its first word (cmdline_find); the
 * second, which a user may well expect to win, was dropped unsaid. */
KTEST(bootinfo, repeated_command_line_option_is_named)
{
	static const char text[] =
	        "mm.scav_goal=5 shell.notty "
	        "mm.scav_goal=50 shell.notty mm.scav_goalx=1";
	KEXPECT_EQ(cmdline_find_unknown(text), 3u); /* 2 repeats, 1 unknown */
	uint64_t v = 0;
	KEXPECT(cmdline_find_uint(text, "mm.scav_goal", 0, 1000, &v));
	KEXPECT_EQ(v, 5u);
	KEXPECT_EQ(cmdline_find_unknown("mm.scav_goal=5 mm.scav_goal"), 1u);
	KEXPECT_EQ(cmdline_find_unknown("mm.scav_goal=5 mm.scav_budget=5"), 0u);
}

/* A value longer than the caller's buffer is refused, never cut short:
 * cut, "0000000000000250" would be 25 and "smp.*,console.*,bootinfo.*"
 * a different glob. */
KTEST(bootinfo, over_long_command_line_value_is_refused)
{
	static const char text[] = "shell.heapmap=0000000000000250 "
	                           "mm.scav_goal=123456789012345 "
	                           "ktest=smp.*,console.*,bootinfo.*";
	char buf[16];
	memcpy(buf, "untouched", 10);
	KEXPECT(!cmdline_find(text, "shell.heapmap", buf, sizeof(buf)));
	KEXPECT(!cmdline_find(text, "ktest", buf, sizeof(buf)));
	/* Present all the same, for a caller that wants no value. */
	KEXPECT(cmdline_find(text, "shell.heapmap", NULL, 0));
	/* 15 characters and the NUL fit. */
	KEXPECT(cmdline_find(text, "mm.scav_goal", buf, sizeof(buf)));
	KEXPECT_STREQ(buf, "123456789012345");
	char big[40];
	KEXPECT(cmdline_find(text, "ktest", big, sizeof(big)));
	KEXPECT_STREQ(big, "smp.*,console.*,bootinfo.*");
}

/* smp.skip_sipi and smp.late_ap name an APIC id: "x" is not APIC id 0,
 * and 2^32 + 1 is not 1. */
KTEST(bootinfo, command_line_number_is_parsed_strictly)
{
	static const char text[] =
	        "a=x b= c=12x d=4294967297 e=99999999999999999999 f=7 "
	        "g=4294967294 h=18446744073709551615 i=-1 j";
	static const char *const bad[] = {"a", "b", "c", "d", "e", "i", "j"};
	const uint64_t max_id = 0xfffffffeu;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 77;
		bool got = cmdline_find_uint(text, bad[i], 0, max_id, &v);
		if (got || v != 77)
			ktest_diag("%s: accepted as %llu", bad[i],
			           (unsigned long long)v);
		KEXPECT(!got);
		KEXPECT_EQ(v, 77);
	}
	uint64_t v = 0;
	KEXPECT(cmdline_find_uint(text, "f", 0, max_id, &v));
	KEXPECT_EQ(v, 7);
	KEXPECT(!cmdline_find_uint(text, "f", 8, max_id, &v));
	KEXPECT(!cmdline_find_uint(text, "f", 0, 5, &v));
	KEXPECT(!cmdline_find_uint(text, "c", 0, 12, &v));
	KEXPECT(cmdline_find_uint(text, "g", 0, 4294967294, &v));
	KEXPECT(cmdline_find_uint(text, "g", 0, max_id, &v));
	KEXPECT_EQ(v, max_id);
	KEXPECT(cmdline_find_uint(text, "h", 0, UINT64_MAX, &v));
	KEXPECT_EQ(v, UINT64_MAX);
	KEXPECT(!cmdline_find_uint(text, "absent", 0, max_id, &v));
}

/* paging_init maps the kernel's sections from the image the handoff
 * describes, page by page from kernel_phys_base: an image placed or sized
 * unlike the kernel's own link would map other memory as its text and
 * data. */
KTEST(bootinfo, handoff_with_an_image_unlike_the_kernel_is_refused)
{
	struct boot_info bi = handoff();
	KEXPECT(bootinfo_handoff_problem(&bi) == NULL);
	bi.kernel_virt_base += PAGE_SIZE;
	EXPECT_PROBLEM(&bi, "kernel image's virtual base is not the kernel's "
	                    "link address");
	bi = handoff();
	bi.kernel_phys_base += 0x800;
	EXPECT_PROBLEM(&bi, "kernel image is not page-aligned");
	bi = handoff();
	bi.kernel_phys_size -= PAGE_SIZE;
	EXPECT_PROBLEM(&bi, "kernel image is smaller than the kernel's "
	                    "sections");
	bi = handoff();
	bi.kernel_phys_base = 4096 * MIB - PAGE_SIZE;
	EXPECT_PROBLEM(&bi, "kernel image runs past the loader's direct map");
	bi = handoff();
	bi.kernel_phys_size = 0ull - PAGE_SIZE; /* wraps past 2^64 */
	EXPECT_PROBLEM(&bi, "kernel image runs past the loader's direct map");
	/* Larger than the sections is fine: the loader rounds up. */
	bi = handoff();
	bi.kernel_phys_size += PAGE_SIZE;
	KEXPECT(bootinfo_handoff_problem(&bi) == NULL);
}

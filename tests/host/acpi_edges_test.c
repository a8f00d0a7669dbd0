/*
 * Host tests of kernel/acpi_parse.c at the edges of its checks: each
 * length one byte under (or over) what the parser accepts, next to the
 * length it must accept; the walk of the root table (a partial entry, a
 * zero entry, which unreachable entry is named, signatures compared
 * whole); the lists of left-out entries when more are left out than
 * they hold; interrupt flags other than the default. Found by a
 * mutation review: each mutant these tests fail passed the other ACPI
 * tests. The shared builders are in madt_test_util.h.
 */
#include "madt_test_util.h"

/* Each entry type the parser reads, its least length and its refusal. */
static const struct {
	uint8_t type, len;
	const char *why;
} entry_sizes[] = {
        {MADT_LOCAL_APIC, 8, "local APIC entry shorter than 8 bytes"},
        {MADT_IO_APIC, 12, "I/O APIC entry shorter than 12 bytes"},
        {MADT_IRQ_OVERRIDE, 10,
         "interrupt source override shorter than 10 bytes"},
        {MADT_LOCAL_APIC_OVERRIDE, 12,
         "local APIC address override shorter than 12 bytes"},
        {MADT_LOCAL_X2APIC, 16, "local x2APIC entry shorter than 16 bytes"},
};

/* One byte short, an entry's last field would be read from the next
 * entry (or past the table): refused. At its size it is read. */
KTEST(madt, every_entry_type_one_byte_short_is_refused)
{
	for (unsigned i = 0; i < sizeof(entry_sizes) / sizeof(entry_sizes[0]);
	     i++) {
		good_system();
		madt_begin();
		madt_entry(entry_sizes[i].type, entry_sizes[i].len - 1);
		add_lapic(0, 0, MADT_CPU_ENABLED);
		madt_end();
		EXPECT_REFUSED(ACPI_MALFORMED, entry_sizes[i].why);
		KEXPECT_EQ(diag.at, ACPI_MADT_FIXED);

		good_system();
		madt_begin();
		madt_entry(entry_sizes[i].type, entry_sizes[i].len);
		madt_end();
		KEXPECT_EQ(find_and_parse(80), ACPI_OK);
	}
}

/* The MADT's own lengths, each one byte past its bound. */
KTEST(madt, table_lengths_one_byte_past_their_bounds_are_refused)
{
	good_system();
	madt_begin();
	madt_end();
	/* 43 bytes mapped: the flags' last byte is not there. */
	KEXPECT_EQ(madt_parse(mem + MADT_PA, ACPI_MADT_FIXED - 1, cpus, 80,
	                      &info, &diag),
	           ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why, "MADT is shorter than its 44-byte fixed part");
	KEXPECT_EQ(madt_parse(mem + MADT_PA, ACPI_MADT_FIXED, cpus, 80, &info,
	                      &diag),
	           ACPI_OK);

	/* A length field of 43, with more mapped. */
	put32(mem + MADT_PA + 4, ACPI_MADT_FIXED - 1);
	seal(MADT_PA);
	KEXPECT_EQ(madt_parse(mem + MADT_PA, 64, cpus, 80, &info, &diag),
	           ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why,
	              "MADT length is shorter than its 44-byte fixed part");

	/* A length one byte over what was mapped. */
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	madt_end();
	KEXPECT_EQ(
	        madt_parse(mem + MADT_PA, madt_len - 1, cpus, 80, &info, &diag),
	        ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why, "MADT length runs past the table's mapped end");

	/* The last entry runs one byte past the table's end. */
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	add_lapic(1, 1, MADT_CPU_ENABLED);
	madt_len -= 1;
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "MADT entry runs past the end of the table");
	KEXPECT_EQ(diag.at, ACPI_MADT_FIXED + 8);
}

/* The last byte counts in the sum like any other. */
KTEST(madt, last_byte_of_a_table_is_summed)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	madt_end();
	mem[MADT_PA + madt_len - 1] ^= 1;
	EXPECT_REFUSED(ACPI_MALFORMED, "table checksum is wrong");
	KEXPECT_EQ(madt_parse(mem + MADT_PA, madt_len, cpus, 80, &info, &diag),
	           ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why, "MADT checksum is wrong");
}

/* A table's length covers at least its 36-byte header; an RSDP of
 * revision 2 at least its 36 bytes. One byte less is refused. */
KTEST(madt, header_and_rsdp_one_byte_short_are_refused)
{
	good_system();
	put32(mem + XSDT_PA + 4, ACPI_HEADER_SIZE - 1);
	seal(XSDT_PA);
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "table length is shorter than its header");
	KEXPECT_EQ(diag.at, XSDT_PA);

	good_system();
	put32(mem + RSDP_PA + 20, ACPI_RSDP_V2_SIZE - 1);
	fix_sum(mem + RSDP_PA, ACPI_RSDP_V2_SIZE, 32);
	EXPECT_REFUSED(ACPI_MALFORMED, "RSDP length is shorter than 36 bytes");

	/* A root table of the header alone lists nothing. */
	good_system();
	put32(mem + XSDT_PA + 4, ACPI_HEADER_SIZE);
	seal(XSDT_PA);
	EXPECT_REFUSED(ACPI_NOT_FOUND, "no such table in the root table");
}

/* The bytes of a partial trailing entry, with the ones after the table,
 * would make the MADT's address: the walk must not read them. */
KTEST(madt, partial_trailing_root_entry_is_not_read)
{
	for (int via_xsdt = 1; via_xsdt >= 0; via_xsdt--) {
		good_system();
		uint32_t esize = via_xsdt ? 8 : 4;
		uint32_t root_pa = via_xsdt ? XSDT_PA : RSDT_PA;
		uint8_t *x = put_header(root_pa, via_xsdt ? "XSDT" : "RSDT",
		                        ACPI_HEADER_SIZE + esize + esize / 2);
		if (via_xsdt) {
			put64(x + 36, FACP_PA);
			put64(x + 44, MADT_PA);
		} else {
			put32(x + 36, FACP_PA);
			put32(x + 40, MADT_PA);
		}
		seal(root_pa);
		if (!via_xsdt)
			put_rsdp(0, RSDT_PA, 0);
		EXPECT_REFUSED(ACPI_NOT_FOUND,
		               "no such table in the root table");
	}
}

/* A zero entry is an empty slot, not a table at physical address 0,
 * even when the bytes there look like the table asked for. */
KTEST(madt, zero_root_entry_is_an_empty_slot)
{
	good_system();
	put_header(0, "APIC", ACPI_MADT_FIXED);
	seal(0);
	put_roots(0);
	EXPECT_REFUSED(ACPI_NOT_FOUND, "no such table in the root table");
}

/* Of two entries pointing outside memory, the first is named. */
KTEST(madt, first_unreachable_root_entry_is_named)
{
	good_system();
	uint8_t *x = put_header(XSDT_PA, "XSDT", ACPI_HEADER_SIZE + 24);
	put64(x + 36, (uint64_t)MEM_SIZE + 0x1000);
	put64(x + 44, FACP_PA);
	put64(x + 52, (uint64_t)MEM_SIZE + 0x2000);
	seal(XSDT_PA);
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "not among the reachable entries; a root table "
	               "entry points outside reachable memory");
	KEXPECT_EQ(diag.at, (uint64_t)MEM_SIZE + 0x1000);
}

/* A table whose signature shares three letters with the one asked for
 * is another table: the MADT after it is found. */
KTEST(madt, signature_is_compared_whole)
{
	good_system();
	put_header(FACP_PA, "APIX", ACPI_HEADER_SIZE);
	seal(FACP_PA);
	struct acpi_table t;
	KASSERT_EQ(acpi_find_table(&reader, RSDP_PA, "APIC", &t, &diag),
	           ACPI_OK);
	KEXPECT_EQ(t.pa, MADT_PA);
}

/* 0xff is reserved only in a local APIC entry (the xAPIC broadcast); an
 * x2APIC id may be 0xff. The header's flags are kept whole. */
KTEST(madt, x2apic_id_0xff_is_a_cpu)
{
	good_system();
	madt_begin();
	put32(mem + MADT_PA + 40, 0x00010001u);
	add_x2apic(0xff, MADT_CPU_ENABLED, 7);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 1);
	KEXPECT_EQ(cpus[0].apic_id, 0xff);
	KEXPECT_EQ(info.ninvalid, 0);
	KEXPECT_EQ(info.flags, 0x00010001u);
}

/* More left-out entries than the lists hold: each list keeps its first
 * ones and the counts go on, and nothing past a list is written over
 * (the field after it is its own count). */
KTEST(madt, left_out_lists_stop_at_their_capacity)
{
	enum { EXTRA = 3 };
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	for (unsigned i = 0; i < MADT_MAX_BAD_CPUS + EXTRA; i++)
		add_lapic((uint8_t)(i + 1), 0, MADT_CPU_ENABLED);
	for (unsigned i = 0; i < MADT_MAX_IOAPICS + EXTRA; i++)
		add_ioapic((uint8_t)i, 0, i * 24);
	for (unsigned i = 0; i < MADT_MAX_OVERRIDES + EXTRA; i++)
		add_override(1, (uint8_t)(i % 16), i, 0);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 1);
	KEXPECT_EQ(info.nduplicate, MADT_MAX_BAD_CPUS + EXTRA);
	KEXPECT_EQ(info.nbad_cpus, MADT_MAX_BAD_CPUS);
	KEXPECT_EQ(info.bad_cpus[MADT_MAX_BAD_CPUS - 1].uid, MADT_MAX_BAD_CPUS);
	KEXPECT_EQ(info.nioapics, 0);
	KEXPECT_EQ(info.nbad_ioapics, MADT_MAX_IOAPICS);
	KEXPECT_EQ(info.bad_ioapics[MADT_MAX_IOAPICS - 1].gsi_base,
	           (MADT_MAX_IOAPICS - 1) * 24);
	KEXPECT_EQ(info.noverrides, 0);
	KEXPECT_EQ(info.nbad_overrides, MADT_MAX_OVERRIDES);
	KEXPECT_EQ(info.bad_overrides[MADT_MAX_OVERRIDES - 1].gsi,
	           MADT_MAX_OVERRIDES - 1);
	KEXPECT_EQ(info.nskipped,
	           MADT_MAX_IOAPICS + MADT_MAX_OVERRIDES + 2 * EXTRA);
}

/* IOREGSEL and IOWIN at the last 32 bytes of a page are in that page. */
KTEST(madt, ioapic_registers_ending_at_a_page_end_are_used)
{
	good_system();
	madt_begin();
	add_ioapic(1, 0xfec00fe0u, 0);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.nioapics, 1);
	KEXPECT_EQ(info.ioapics[0].addr, 0xfec00fe0u);
	KEXPECT_EQ(info.nskipped, 0);
}

/* Trigger mode 1 is edge, said explicitly; only 3 is level. Polarity 1
 * is active high; only 3 is low. */
KTEST(madt, explicit_edge_and_high_are_not_level_or_low)
{
	static const struct {
		uint16_t flags;
		bool active_low, level;
	} cases[] = {
	        {0x5, false, false}, {0x7, true, false},  {0xd, false, true},
	        {0xf, true, true},   {0x4, false, false}, {0x1, false, false},
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		good_system();
		madt_begin();
		add_override(0, 4, 20, cases[i].flags);
		madt_end();
		KASSERT_EQ(find_and_parse(80), ACPI_OK);
		struct madt_irq_route r = madt_isa_route(&info, 4);
		if (r.active_low != cases[i].active_low ||
		    r.level != cases[i].level)
			ktest_diag("flags %#x: low %d level %d", cases[i].flags,
			           r.active_low, r.level);
		KEXPECT_EQ(r.gsi, 20);
		KEXPECT_EQ(r.active_low, cases[i].active_low);
		KEXPECT_EQ(r.level, cases[i].level);
	}
}

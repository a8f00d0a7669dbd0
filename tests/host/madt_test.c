/*
 * Host tests of kernel/acpi_parse.c: crafted RSDP, XSDT/RSDT and MADT
 * images in a fake physical memory, one good system and then one defect
 * per rule the parser must enforce, each refused with its reason.
 */
#include "madt_test_util.h"

KTEST(madt, four_cpus_one_disabled)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	add_lapic(1, 1, MADT_CPU_ENABLED);
	add_lapic(2, 2, 0);
	add_lapic(3, 3, MADT_CPU_ENABLED);
	add_lapic(4, 4, MADT_CPU_ONLINE_CAPABLE); /* a hot-plug slot */
	/* An I/O APIC (id 0, GSI base 0) at the usual address. */
	put32(madt_entry(MADT_IO_APIC, 12) + 4, 0xfec00000u);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 3);
	KEXPECT_EQ(cpus[0].apic_id, 0);
	KEXPECT_EQ(cpus[1].apic_id, 1);
	KEXPECT_EQ(cpus[2].apic_id, 3);
	KEXPECT_EQ(cpus[2].uid, 3);
	KEXPECT_EQ(cpus[2].type, MADT_LOCAL_APIC);
	KEXPECT_EQ(info.ndisabled, 2);
	KEXPECT_EQ(info.nignored, 0);
	KEXPECT_EQ(info.lapic_pa, 0xfee00000u);
	KEXPECT_EQ(info.flags, 1);
	KEXPECT_EQ(info.nioapics, 1);
}

/* QEMU's q35 table: one I/O APIC, the timer on GSI 2, and the PCI-style
 * level-triggered active-high SCI on 9; a second APIC above it. */
KTEST(madt, ioapics_and_overrides)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	add_ioapic(0, 0xfec00000u, 0);
	add_override(0, 0, 2, 0);
	add_override(0, 9, 9, 0x000d);  /* active high, level */
	add_override(0, 4, 20, 0x000f); /* COM1 moved: active low, level */
	add_ioapic(1, 0xfec01000u, 24);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.nioapics, 2);
	KEXPECT_EQ(info.ioapics[0].addr, 0xfec00000u);
	KEXPECT_EQ(info.ioapics[1].id, 1);
	KEXPECT_EQ(info.ioapics[1].gsi_base, 24);
	KEXPECT_EQ(info.noverrides, 3);
	KEXPECT_EQ(info.nskipped, 0);

	struct madt_irq_route r = madt_isa_route(&info, 0);
	KEXPECT_EQ(r.gsi, 2);
	KEXPECT(!r.active_low && !r.level); /* "conforms": ISA defaults */
	r = madt_isa_route(&info, 9);
	KEXPECT_EQ(r.gsi, 9);
	KEXPECT(!r.active_low && r.level);
	r = madt_isa_route(&info, 4);
	KEXPECT_EQ(r.gsi, 20);
	KEXPECT(r.active_low && r.level);
	r = madt_isa_route(&info, 3); /* no override: identity, edge, high */
	KEXPECT_EQ(r.gsi, 3);
	KEXPECT(!r.active_low && !r.level);

	KEXPECT_EQ(madt_ioapic_for(&info, 0)->id, 0);
	KEXPECT_EQ(madt_ioapic_for(&info, 23)->id, 0);
	KEXPECT_EQ(madt_ioapic_for(&info, 24)->id, 1);
	KEXPECT_EQ(madt_ioapic_for(&info, 100)->id, 1);
}

KTEST(madt, overrides_skipped)
{
	good_system();
	madt_begin();
	add_ioapic(0, 0xfec00000u, 8);
	add_override(1, 4, 4, 0); /* not ISA */
	add_override(0, 4, 5, 0);
	add_override(0, 4, 6, 0); /* a second override of IRQ 4 */
	for (unsigned i = 0; i < MADT_MAX_IOAPICS; i++)
		add_ioapic((uint8_t)(i + 1), 0xfec10000u + 0x1000u * i,
		           100 + i);
	/* Every other ISA IRQ: the arrays hold them all. */
	for (unsigned i = 0; i < 16; i++)
		if (i != 4)
			add_override(0, (uint8_t)i, 40 + i, 0);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.nioapics, MADT_MAX_IOAPICS);
	KEXPECT_EQ(info.noverrides, MADT_MAX_OVERRIDES);
	/* bus 1, the duplicate, one APIC over capacity */
	KEXPECT_EQ(info.nskipped, 3);
	KEXPECT_EQ(info.nbad_overrides, 2);
	KEXPECT_EQ(madt_isa_route(&info, 4).gsi, 5);
	/* Below every APIC's base: no APIC serves it. */
	KEXPECT(madt_ioapic_for(&info, 7) == NULL);
	KEXPECT_EQ(madt_ioapic_for(&info, 8)->id, 0);
}

/* An override that cannot be what the board does is left out, named, and
 * its IRQ keeps the ISA default: polarity or trigger mode 2 (reserved:
 * read as "not active low" and "not level", it would program the pin
 * against whatever the board meant), an IRQ past ISA's 15, another bus
 * than ISA, an IRQ overridden before. */
KTEST(madt, bad_overrides_are_left_out_and_named)
{
	good_system();
	madt_begin();
	add_ioapic(0, 0xfec00000u, 0);
	add_override(0, 9, 9, 0x000d);  /* sound: active high, level */
	add_override(0, 5, 20, 0x000e); /* polarity 2 */
	add_override(0, 7, 21, 0x0009); /* trigger mode 2 */
	add_override(0, 16, 22, 0);     /* not an ISA IRQ */
	add_override(2, 3, 23, 0);      /* not the ISA bus */
	add_override(0, 9, 2, 0);       /* IRQ 9 again */
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.noverrides, 1);
	KEXPECT_EQ(info.overrides[0].source, 9);
	struct madt_irq_route r = madt_isa_route(&info, 5);
	KEXPECT_EQ(r.gsi, 5);
	KEXPECT(!r.active_low && !r.level);
	KEXPECT_EQ(madt_isa_route(&info, 7).gsi, 7);
	KEXPECT_EQ(madt_isa_route(&info, 9).gsi, 9);
	KEXPECT_EQ(info.nskipped, 5);
	KEXPECT_EQ(info.nbad_overrides, 5);
	uint32_t off = ACPI_MADT_FIXED + 12 + 10;
	expect_bad_override(0, off, 5,
	                    "override polarity is 2, a reserved value");
	expect_bad_override(1, off + 10, 7,
	                    "override trigger mode is 2, a reserved value");
	expect_bad_override(2, off + 20, 16,
	                    "override source is not an ISA IRQ (0 to 15)");
	expect_bad_override(3, off + 30, 3, "override bus is not ISA (bus 0)");
	expect_bad_override(4, off + 40, 9,
	                    "override of an IRQ an earlier entry overrides");
	KEXPECT_EQ(info.bad_overrides[0].gsi, 20);
	KEXPECT_EQ(info.bad_overrides[0].flags, 0x000e);
	KEXPECT_EQ(info.bad_overrides[3].bus, 2);
	/* None is left out for a GSI another took (the boot would name an
	 * IRQ that "keeps" it). */
	for (unsigned i = 0; i < 5; i++)
		KEXPECT_EQ(info.bad_overrides[i].clash, MADT_NO_IRQ);
}

KTEST(madt, x2apic_entries)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	add_x2apic(0x100, MADT_CPU_ENABLED, 7);
	add_x2apic(0x101, 0, 8);
	add_x2apic(0xffffffffu, MADT_CPU_ENABLED, 9); /* reserved id */
	add_lapic(5, 0xff, MADT_CPU_ENABLED);         /* reserved id */
	add_x2apic(0x100, MADT_CPU_ENABLED, 10);      /* listed twice */
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 2);
	KEXPECT_EQ(cpus[1].apic_id, 0x100);
	KEXPECT_EQ(cpus[1].uid, 7);
	KEXPECT_EQ(cpus[1].type, MADT_LOCAL_X2APIC);
	KEXPECT_EQ(info.ndisabled, 1);
	KEXPECT_EQ(info.ninvalid, 2);
	KEXPECT_EQ(info.nduplicate, 1);
}

/* A CPU entry left out for its id is named, not only counted: the
 * reserved ids and an id an earlier entry lists (of either type). */
KTEST(madt, cpu_entries_left_out_are_named)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	add_x2apic(0x100, MADT_CPU_ENABLED, 7);
	add_x2apic(0xffffffffu, MADT_CPU_ENABLED, 9);
	add_lapic(5, 0xff, MADT_CPU_ENABLED);
	add_x2apic(0x100, MADT_CPU_ENABLED, 10);
	add_x2apic(0, MADT_CPU_ENABLED, 11); /* the local APIC's id 0 */
	add_lapic(6, 0x100 & 0xff, 0);       /* disabled: not a problem */
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 2);
	KASSERT_EQ(info.nbad_cpus, 4);
	static const struct {
		uint32_t off, apic_id, uid;
		uint8_t type;
		const char *why;
	} want[] = {
	        {ACPI_MADT_FIXED + 24, 0xffffffffu, 9, MADT_LOCAL_X2APIC,
	         "APIC id 0xffffffff is reserved (the broadcast id)"},
	        {ACPI_MADT_FIXED + 40, 0xff, 5, MADT_LOCAL_APIC,
	         "APIC id 0xff is reserved in a local APIC entry (the xAPIC "
	         "broadcast id)"},
	        {ACPI_MADT_FIXED + 48, 0x100, 10, MADT_LOCAL_X2APIC,
	         "APIC id is an earlier entry's"},
	        {ACPI_MADT_FIXED + 64, 0, 11, MADT_LOCAL_X2APIC,
	         "APIC id is an earlier entry's"},
	};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct madt_bad_cpu *b = &info.bad_cpus[i];
		KEXPECT_EQ(b->off, want[i].off);
		KEXPECT_EQ(b->apic_id, want[i].apic_id);
		KEXPECT_EQ(b->uid, want[i].uid);
		KEXPECT_EQ(b->type, want[i].type);
		KEXPECT(b->why != NULL);
		if (b->why)
			KEXPECT_STREQ(b->why, want[i].why);
	}
	KEXPECT_EQ(info.ninvalid, 2);
	KEXPECT_EQ(info.nduplicate, 2);
}

KTEST(madt, address_override)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	put64(madt_entry(MADT_LOCAL_APIC_OVERRIDE, 12) + 4, 0x123456789000ull);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.lapic_pa, 0x123456789000ull);
}

KTEST(madt, bad_checksum)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	madt_end();
	mem[MADT_PA + 47] ^= 1; /* a bit of the entry's APIC id */
	EXPECT_REFUSED(ACPI_MALFORMED, "table checksum is wrong");
	KEXPECT_EQ(diag.at, MADT_PA);
	/* The parser checks on its own too. */
	KEXPECT_EQ(madt_parse(mem + MADT_PA, madt_len, cpus, 80, &info, &diag),
	           ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why, "MADT checksum is wrong");
}

KTEST(madt, truncated)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	madt_end();
	/* Less mapped than the length field says. */
	KEXPECT_EQ(
	        madt_parse(mem + MADT_PA, madt_len - 4, cpus, 80, &info, &diag),
	        ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why, "MADT length runs past the table's mapped end");
	KEXPECT_EQ(madt_parse(mem + MADT_PA, 40, cpus, 80, &info, &diag),
	           ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why, "MADT is shorter than its 44-byte fixed part");
	/* A length field below the fixed part. */
	put32(mem + MADT_PA + 4, 40);
	seal(MADT_PA);
	KEXPECT_EQ(madt_parse(mem + MADT_PA, 64, cpus, 80, &info, &diag),
	           ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why,
	              "MADT length is shorter than its 44-byte fixed part");
	/* A table whose length runs past the end of memory. */
	put32(mem + MADT_PA + 4, MEM_SIZE);
	EXPECT_REFUSED(ACPI_MALFORMED, "table runs past reachable memory");
}

KTEST(madt, zero_length_entry)
{
	for (uint8_t len = 0; len < 2; len++) {
		good_system();
		madt_begin();
		add_lapic(0, 0, MADT_CPU_ENABLED);
		madt_entry(MADT_LOCAL_APIC, len);
		madt_len += 8; /* bytes after it, so the loop would go on */
		madt_end();
		EXPECT_REFUSED(ACPI_MALFORMED,
		               "MADT entry length is below 2 (a zero length "
		               "would never advance)");
		KEXPECT_EQ(diag.at, ACPI_MADT_FIXED + 8);
	}
}

KTEST(madt, entry_past_end)
{
	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	madt_entry(MADT_LOCAL_APIC, 8);
	madt_len -= 4; /* the table ends in the middle of the entry */
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "MADT entry runs past the end of the table");
	KEXPECT_EQ(diag.at, ACPI_MADT_FIXED + 8);

	good_system();
	madt_begin();
	add_lapic(0, 0, MADT_CPU_ENABLED);
	madt_len += 1; /* one stray byte: not even a type and a length */
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED, "MADT entry header runs past the end");
}

KTEST(madt, entry_shorter_than_its_type)
{
	good_system();
	madt_begin();
	madt_entry(MADT_LOCAL_APIC, 6);
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED, "local APIC entry shorter than 8 bytes");

	good_system();
	madt_begin();
	madt_entry(MADT_LOCAL_X2APIC, 12);
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "local x2APIC entry shorter than 16 bytes");

	good_system();
	madt_begin();
	madt_entry(MADT_LOCAL_APIC_OVERRIDE, 8);
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "local APIC address override shorter than 12 bytes");

	good_system();
	madt_begin();
	madt_entry(MADT_IO_APIC, 8);
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED, "I/O APIC entry shorter than 12 bytes");

	good_system();
	madt_begin();
	madt_entry(MADT_IRQ_OVERRIDE, 8);
	madt_end();
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "interrupt source override shorter than 10 bytes");
}

KTEST(madt, too_many_cpus)
{
	good_system();
	madt_begin();
	for (unsigned i = 0; i < 70; i++)
		add_lapic((uint8_t)i, (uint8_t)i, MADT_CPU_ENABLED);
	madt_end();
	KASSERT_EQ(find_and_parse(64), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 64);
	KEXPECT_EQ(info.nignored, 6);
	KEXPECT_EQ(cpus[63].apic_id, 63);
	/* A duplicate of a kept CPU is a duplicate, not an extra. */
	madt_begin();
	for (unsigned i = 0; i < 3; i++)
		add_lapic((uint8_t)i, (uint8_t)i, MADT_CPU_ENABLED);
	add_lapic(9, 1, MADT_CPU_ENABLED);
	add_lapic(9, 9, MADT_CPU_ENABLED);
	madt_end();
	KASSERT_EQ(find_and_parse(2), ACPI_OK);
	KEXPECT_EQ(info.ncpus, 2);
	KEXPECT_EQ(info.nduplicate, 1);
	KEXPECT_EQ(info.nignored, 2);
}

KTEST(madt, no_madt_in_xsdt)
{
	good_system();
	put_roots(0); /* FACP only; a zero entry is skipped */
	EXPECT_REFUSED(ACPI_NOT_FOUND, "no such table in the root table");
	KEXPECT_EQ(diag.at, XSDT_PA);
}

KTEST(madt, rsdt_fallback)
{
	struct acpi_table t;
	good_system();
	put_rsdp(0, RSDT_PA, 0); /* ACPI 1.0: no XSDT fields at all */
	KASSERT_EQ(acpi_find_table(&reader, RSDP_PA, "APIC", &t, &diag),
	           ACPI_OK);
	KEXPECT(!t.via_xsdt);
	KEXPECT_EQ(t.root_pa, RSDT_PA);
	KEXPECT_EQ(t.pa, MADT_PA);

	put_rsdp(2, RSDT_PA, 0); /* ACPI 2.0 with a zero XSDT address */
	KASSERT_EQ(acpi_find_table(&reader, RSDP_PA, "APIC", &t, &diag),
	           ACPI_OK);
	KEXPECT(!t.via_xsdt);
	KEXPECT_EQ(t.rsdp_revision, 2);

	put_rsdp(2, RSDT_PA, XSDT_PA);
	KASSERT_EQ(acpi_find_table(&reader, RSDP_PA, "APIC", &t, &diag),
	           ACPI_OK);
	KEXPECT(t.via_xsdt);
	KEXPECT_EQ(t.root_pa, XSDT_PA);
}

KTEST(madt, bad_rsdp)
{
	good_system();
	mem[RSDP_PA] = 'X';
	EXPECT_REFUSED(ACPI_MALFORMED, "RSDP signature is wrong");

	good_system();
	mem[RSDP_PA + 9] ^= 1; /* OEM id: both checksums go wrong */
	EXPECT_REFUSED(ACPI_MALFORMED, "RSDP checksum is wrong");

	good_system();
	mem[RSDP_PA + 33] ^= 1; /* reserved: only the extended sum */
	EXPECT_REFUSED(ACPI_MALFORMED, "RSDP extended checksum is wrong");

	good_system();
	put32(mem + RSDP_PA + 20, 20);
	fix_sum(mem + RSDP_PA, ACPI_RSDP_V2_SIZE, 32);
	EXPECT_REFUSED(ACPI_MALFORMED, "RSDP length is shorter than 36 bytes");

	/* A length that runs past memory is not a checksum error. */
	good_system();
	put32(mem + RSDP_PA + 20, MEM_SIZE);
	fix_sum(mem + RSDP_PA, ACPI_RSDP_V2_SIZE, 32);
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "RSDP length runs past reachable memory");
	KEXPECT_EQ(diag.at, RSDP_PA);

	good_system();
	put_rsdp(0, 0, 0);
	EXPECT_REFUSED(ACPI_MALFORMED, "RSDP names no root table");

	struct acpi_table t;
	KEXPECT_EQ(acpi_find_table(&reader, MEM_SIZE - 8, "APIC", &t, &diag),
	           ACPI_MALFORMED);
	KEXPECT_STREQ(diag.why, "RSDP lies outside reachable memory");
}

KTEST(madt, bad_root_table)
{
	good_system();
	memcpy(mem + XSDT_PA, "RSDT", 4);
	seal(XSDT_PA);
	EXPECT_REFUSED(ACPI_MALFORMED, "root table has the wrong signature");

	good_system();
	mem[XSDT_PA + 40] ^= 1;
	EXPECT_REFUSED(ACPI_MALFORMED, "table checksum is wrong");
	KEXPECT_EQ(diag.at, XSDT_PA);

	good_system();
	put_rsdp(2, RSDT_PA, 0x100000000ull); /* beyond memory */
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "table header lies outside reachable memory");

	good_system();
	put_roots(MEM_SIZE + 0x1000); /* an entry beyond memory */
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "not among the reachable entries; a root table "
	               "entry points outside reachable memory");
	KEXPECT_EQ(diag.at, (uint64_t)MEM_SIZE + 0x1000);

	good_system();
	put32(mem + XSDT_PA + 4, 20);
	seal(XSDT_PA);
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "table length is shorter than its header");
}

/* A root table entry that points where nothing can be read is passed
 * over: the MADT listed after it is still found (XSDT and RSDT alike). */
KTEST(madt, unreachable_root_entry_does_not_hide_later_tables)
{
	for (int via_xsdt = 1; via_xsdt >= 0; via_xsdt--) {
		good_system();
		uint32_t esize = via_xsdt ? 8 : 4;
		uint64_t root_pa = via_xsdt ? XSDT_PA : RSDT_PA;
		uint8_t *x = put_header(root_pa, via_xsdt ? "XSDT" : "RSDT",
		                        ACPI_HEADER_SIZE + 3 * esize);
		uint64_t entries[3] = {FACP_PA, (uint64_t)MEM_SIZE + 0x1000,
		                       MADT_PA};
		for (int i = 0; i < 3; i++) {
			if (via_xsdt)
				put64(x + 36 + 8 * i, entries[i]);
			else
				put32(x + 36 + 4 * i, (uint32_t)entries[i]);
		}
		seal(root_pa);
		if (!via_xsdt)
			put_rsdp(0, RSDT_PA, 0);
		KEXPECT_EQ(find_and_parse(80), ACPI_OK);
		KEXPECT(diag.why == NULL);
	}
}

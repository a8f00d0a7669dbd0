/*
 * Host tests of kernel/acpi_parse.c, the I/O APIC entries and the limits
 * of what the parser maps: registers that cannot be reached, an entry
 * listed twice or at address 0, a bogus table length, a mapper that runs
 * out of room; and two ISA IRQs routed to one pin. The shared builders are in
 * madt_test_util.h.
 */
#include "madt_test_util.h"

/* Expects the MADT's bad I/O APIC i to be the one at offset off, left out
 * because of why. */
static void expect_bad_ioapic(unsigned i, uint32_t off, uint32_t addr,
                              const char *why)
{
	KASSERT(info.nbad_ioapics > i);
	KEXPECT_EQ(info.bad_ioapics[i].off, off);
	KEXPECT_EQ(info.bad_ioapics[i].addr, addr);
	KEXPECT(info.bad_ioapics[i].why != NULL);
	if (info.bad_ioapics[i].why)
		KEXPECT_STREQ(info.bad_ioapics[i].why, why);
}

/* The registers are 16 bytes apart (IOREGSEL, IOWIN) on 16-byte
 * boundaries; an I/O APIC may sit anywhere in its page on those terms
 * (the 82093AA's base is FEC0_xy00h). */
KTEST(madt, ioapic_address_must_hold_its_registers)
{
	good_system();
	madt_begin();
	add_ioapic(0, 0xfec00008u, 0);  /* not on a 16-byte boundary */
	add_ioapic(1, 0xfec00ff0u, 24); /* IOWIN in the next page */
	add_ioapic(2, 0xfec01100u, 48); /* sound, inside its page */
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.nioapics, 1);
	KEXPECT_EQ(info.ioapics[0].id, 2);
	KEXPECT_EQ(info.ioapics[0].addr, 0xfec01100u);
	KEXPECT_EQ(info.nbad_ioapics, 2);
	expect_bad_ioapic(0, ACPI_MADT_FIXED, 0xfec00008u,
	                  "I/O APIC address is not 16-byte aligned");
	expect_bad_ioapic(1, ACPI_MADT_FIXED + 12, 0xfec00ff0u,
	                  "I/O APIC registers cross a page boundary");
	KEXPECT_EQ(info.nskipped, 2);
	/* No APIC serves the bad ones' GSIs. */
	KEXPECT(madt_ioapic_for(&info, 0) == NULL);
}

/* Two I/O APICs cannot serve one GSI, nor one chip be listed twice: the
 * first entry wins, as in Linux, and the later one is left out. */
KTEST(madt, ioapic_listed_twice_is_left_out)
{
	good_system();
	madt_begin();
	add_ioapic(0, 0xfec00000u, 0);
	add_ioapic(1, 0xfec01000u, 0);  /* GSI 0 up again */
	add_ioapic(2, 0xfec00000u, 24); /* the first one's registers */
	add_ioapic(3, 0xfec02000u, 24); /* sound */
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.nioapics, 2);
	KEXPECT_EQ(info.ioapics[0].id, 0);
	KEXPECT_EQ(info.ioapics[1].id, 3);
	KEXPECT_EQ(info.nbad_ioapics, 2);
	expect_bad_ioapic(0, ACPI_MADT_FIXED + 12, 0xfec01000u,
	                  "I/O APIC GSI base is an earlier I/O APIC's");
	expect_bad_ioapic(1, ACPI_MADT_FIXED + 24, 0xfec00000u,
	                  "I/O APIC address is an earlier I/O APIC's");
	KEXPECT_EQ(madt_ioapic_for(&info, 5)->id, 0);
	KEXPECT_EQ(madt_ioapic_for(&info, 30)->id, 3);
}

/* Physical address 0 is RAM (the real-mode IVT), never an I/O APIC: an
 * entry saying so is a firmware placeholder. Linux refuses it too
 * (mp_register_ioapic: "Bogus (zero) I/O APIC address found"). */
KTEST(madt, ioapic_at_address_zero_is_left_out)
{
	good_system();
	madt_begin();
	add_ioapic(0, 0, 0);           /* the placeholder */
	add_ioapic(1, 0xfec00000u, 0); /* the real chip, serving GSI 0 */
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.nioapics, 1);
	KEXPECT_EQ(info.ioapics[0].id, 1);
	KEXPECT_EQ(info.nbad_ioapics, 1);
	expect_bad_ioapic(0, ACPI_MADT_FIXED, 0, "I/O APIC address is 0");
	KEXPECT_EQ(madt_ioapic_for(&info, 4)->id, 1);
}

/* The MADT gives an I/O APIC's first GSI only; its version register gives
 * how many it serves, so a clash of ranges that do not start alike shows
 * only then (ioapic.c asks this, and leaves the later chip out). */
KTEST(madt, ioapic_gsi_ranges_overlap)
{
	static const struct {
		uint32_t a, na, b, nb;
		bool overlap;
	} cases[] = {
	        {0, 24, 16, 24, true},  /* partial, later above */
	        {16, 24, 0, 24, true},  /* partial, later below */
	        {0, 24, 23, 1, true},   /* the last GSI */
	        {0, 240, 24, 24, true}, /* inside */
	        {0, 24, 0, 24, true},   /* identical */
	        {0, 24, 24, 24, false}, /* adjacent */
	        {24, 24, 0, 24, false},
	        {0, 24, 100, 24, false},
	        /* Past GSI 2^32 - 1: no wrap to GSI 0. */
	        {0xfffffff0u, 240, 0, 24, false},
	        {0xfffffff0u, 240, 0xffffffffu, 1, true},
	        {0, 0, 0, 24, false}, /* an empty range */
	        {5, 0, 0, 24, false}, /* empty, inside the other */
	        {0, 24, 5, 0, false},
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = madt_gsi_ranges_overlap(cases[i].a, cases[i].na,
		                                   cases[i].b, cases[i].nb);
		if (got != cases[i].overlap)
			ktest_diag("[%u, +%u) and [%u, +%u): %s", cases[i].a,
			           cases[i].na, cases[i].b, cases[i].nb,
			           got ? "overlap" : "apart");
		KEXPECT_EQ(got, cases[i].overlap);
	}
}

/* A bogus length is refused before the parser maps it: in the kernel the
 * checksum would read that much of the direct map, device memory too.
 * (The checksums need no fixing: the length is checked first.) */
KTEST(madt, table_length_over_the_maximum_is_refused)
{
	static const struct {
		uint32_t pa, at; /* where the length field is */
		const char *why;
	} cases[] = {
	        {XSDT_PA, 4,
	         "table length is over 1 MiB (a bogus length field)"},
	        {MADT_PA, 4,
	         "table length is over 1 MiB (a bogus length field)"},
	        {RSDP_PA, 20,
	         "RSDP length is over 1 MiB (a bogus length field)"},
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		good_system();
		put32(mem + cases[i].pa + cases[i].at, ACPI_TABLE_MAX + 1);
		longest_map = 0;
		EXPECT_REFUSED(ACPI_MALFORMED, cases[i].why);
		KEXPECT_EQ(diag.at, cases[i].pa);
		KEXPECT(longest_map <= ACPI_TABLE_MAX);
	}
	/* Exactly the maximum is a length like any other (here, too long
	 * for the fake memory). */
	good_system();
	put32(mem + MADT_PA + 4, ACPI_TABLE_MAX);
	EXPECT_REFUSED(ACPI_MALFORMED, "table runs past reachable memory");
}

/* A mapper with room for max_bytes in all (as the kernel's ACPI window
 * has 256 pages), which says so when they are used up. */
struct room {
	uint32_t used, max_bytes;
};

static const void *roomy_map(void *ctx, uint64_t pa, uint32_t len,
                             const char **why)
{
	struct room *r = ctx;
	if (len > r->max_bytes - r->used) {
		*why = "no room left in the test's window";
		return NULL;
	}
	r->used += len;
	return fake_map(NULL, pa, len, why);
}

/* Memory the mapper had no room for is not "outside reachable memory":
 * the tables may be sound. Its own reason comes back, with its status. */
KTEST(madt, mapper_out_of_room_says_so)
{
	good_system();
	/* Each case runs out at a later map: the RSDP's first 20 bytes,
	 * its 36, its length, the XSDT's header, the whole XSDT, the FACP's
	 * header (a root entry), the MADT's (a root entry, then the table's
	 * own), the whole MADT. */
	static const uint32_t budgets[] = {0,   20,  56,  92, 128,
	                                   180, 216, 252, 288};
	for (unsigned i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
		struct room room = {0, budgets[i]};
		const struct acpi_reader r = {roomy_map, &room};
		struct acpi_table t;
		enum acpi_status st =
		        acpi_find_table(&r, RSDP_PA, "APIC", &t, &diag);
		if (st != ACPI_UNMAPPED)
			ktest_diag("room for %u bytes: status %d, '%s'",
			           budgets[i], (int)st, diag.why);
		KEXPECT_EQ(st, ACPI_UNMAPPED);
		KEXPECT_STREQ(diag.why, "no room left in the test's window");
	}
	struct room room = {0, 1u << 20};
	const struct acpi_reader r = {roomy_map, &room};
	struct acpi_table t;
	KEXPECT_EQ(acpi_find_table(&r, RSDP_PA, "APIC", &t, &diag), ACPI_OK);
}

/* Two ISA IRQs must never land on one I/O APIC pin: programming the
 * second's route would overwrite the first's. An override onto a GSI an
 * earlier override took is left out, naming the IRQ that keeps it; an IRQ
 * without an override whose identity GSI an override took (IRQ 2 on a
 * PC, whose GSI 2 carries the timer) has no pin, and its route says
 * whose pin that is. Both were routed to the shared pin until a review. */
KTEST(madt, two_irqs_on_one_gsi_the_first_keeps_it)
{
	good_system();
	madt_begin();
	add_ioapic(0, 0xfec00000u, 0);
	add_override(0, 0, 2, 0);      /* the timer on GSI 2, as q35's */
	add_override(0, 3, 2, 0x000f); /* IRQ 3 onto the timer's GSI */
	add_override(0, 5, 20, 0);
	add_override(0, 6, 20, 0); /* IRQ 6 onto IRQ 5's GSI */
	add_override(0, 7, 5, 0);  /* GSI 5 is free: IRQ 5 moved */
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.noverrides, 3);
	KEXPECT_EQ(info.nskipped, 2);
	KASSERT_EQ(info.nbad_overrides, 2);
	uint32_t off = ACPI_MADT_FIXED + 12 + 10;
	expect_bad_override(0, off, 3, "override GSI is an earlier override's");
	KEXPECT_EQ(info.bad_overrides[0].clash, 0);
	expect_bad_override(1, off + 20, 6,
	                    "override GSI is an earlier override's");
	KEXPECT_EQ(info.bad_overrides[1].clash, 5);

	struct madt_irq_route r = madt_isa_route(&info, 3);
	KEXPECT_EQ(r.gsi, 3); /* the override left out: ISA default */
	KEXPECT(r.owner == MADT_NO_IRQ && !r.active_low && !r.level);
	KEXPECT_EQ(madt_isa_route(&info, 6).gsi, 6);
	KEXPECT_EQ(madt_isa_route(&info, 7).gsi, 5);
	KEXPECT_EQ(madt_isa_route(&info, 7).owner, MADT_NO_IRQ);
	/* IRQ 2 has no override, and its GSI carries IRQ 0: no pin. */
	KEXPECT_EQ(madt_isa_route(&info, 2).owner, 0);
	KEXPECT_EQ(madt_isa_route(&info, 0).owner, MADT_NO_IRQ);
	KEXPECT_EQ(madt_isa_route(&info, 5).owner, MADT_NO_IRQ);
	KEXPECT_EQ(madt_isa_route(&info, 4).owner, MADT_NO_IRQ);
}

/* An IRQ with an override of its own keeps its route whatever override
 * of another IRQ listed its number as a GSI before it: IRQ 7's onto GSI
 * 5 comes first, then IRQ 5's onto GSI 20 (both kept: no GSI shared).
 * IRQ 5 goes to GSI 20, active low and level, with a pin; IRQ 7 to GSI
 * 5. A route that noted GSI 5's owner on the way and kept it after
 * finding IRQ 5's own override said IRQ 5 had no pin. */
KTEST(madt, an_irq_with_its_own_override_keeps_it_whoever_took_its_number)
{
	good_system();
	madt_begin();
	add_ioapic(0, 0xfec00000u, 0);
	add_override(0, 7, 5, 0);
	add_override(0, 5, 20, 0x000f);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.noverrides, 2);
	KEXPECT_EQ(info.nbad_overrides, 0);
	struct madt_irq_route r = madt_isa_route(&info, 5);
	KEXPECT_EQ(r.gsi, 20);
	KEXPECT_EQ(r.owner, MADT_NO_IRQ);
	KEXPECT(r.active_low && r.level);
	r = madt_isa_route(&info, 7);
	KEXPECT_EQ(r.gsi, 5);
	KEXPECT_EQ(r.owner, MADT_NO_IRQ);
	KEXPECT(!r.active_low && !r.level);
}

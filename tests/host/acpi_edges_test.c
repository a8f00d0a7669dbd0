/*
 * Host tests of kernel/acpi_parse.c at the edges of its checks: each
 * length one byte under (or over) what the parser accepts, next to the
 * length it must accept. Found by a mutation review: each bound here
 * moved by one passed the other ACPI tests. The shared builders are in
 * madt_test_util.h.
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

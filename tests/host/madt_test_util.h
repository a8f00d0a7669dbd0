/*
 * The MADT builders and the parse the MADT host tests share (madt_test.c,
 * madt_ioapic_test.c), over the fake memory and root tables of
 * acpi_fake_tables.h: crafted MADT entries, and a parse through the
 * RSDP. Each test file has its own copy of the memory and the results.
 */
#ifndef TESTS_HOST_MADT_TEST_UTIL_H
#define TESTS_HOST_MADT_TEST_UTIL_H

#include "../../kernel/madt_parse.h"
#include "../../kernel/ktest.h"
#include "acpi_fake_tables.h"

#include <string.h>

/* The MADT under construction. */
static __attribute__((unused)) uint32_t madt_len;

static inline void madt_begin(void)
{
	memset(mem + MADT_PA, 0, MADT_ROOM);
	put_header(MADT_PA, "APIC", 0);
	put32(mem + MADT_PA + 36, 0xfee00000u);
	put32(mem + MADT_PA + 40, 1);
	madt_len = ACPI_MADT_FIXED;
}

static inline uint8_t *madt_entry(uint8_t type, uint8_t len)
{
	uint8_t *e = mem + MADT_PA + madt_len;
	e[0] = type;
	e[1] = len;
	madt_len += len;
	return e;
}

static inline void add_lapic(uint8_t uid, uint8_t id, uint32_t flags)
{
	uint8_t *e = madt_entry(MADT_LOCAL_APIC, 8);
	e[2] = uid;
	e[3] = id;
	put32(e + 4, flags);
}

static inline void add_x2apic(uint32_t id, uint32_t flags, uint32_t uid)
{
	uint8_t *e = madt_entry(MADT_LOCAL_X2APIC, 16);
	put32(e + 4, id);
	put32(e + 8, flags);
	put32(e + 12, uid);
}

static inline void madt_end(void)
{
	put32(mem + MADT_PA + 4, madt_len);
	seal(MADT_PA);
}

/* A sound system: RSDP rev 2, XSDT and RSDT, FACP, and an empty MADT. */
static inline void good_system(void)
{
	memset(mem, 0, sizeof(mem));
	put_rsdp(2, RSDT_PA, XSDT_PA);
	put_roots(MADT_PA);
	madt_begin();
	madt_end();
}

static __attribute__((unused)) struct madt_cpu cpus[80];
static __attribute__((unused)) struct madt_info info;
static __attribute__((unused)) struct acpi_diag diag;

/* Finds the MADT through the RSDP and parses it with room for cap CPUs. */
static inline enum acpi_status find_and_parse(unsigned cap)
{
	struct acpi_table t;
	diag = (struct acpi_diag){NULL, 0};
	enum acpi_status st =
	        acpi_find_table(&reader, RSDP_PA, "APIC", &t, &diag);
	if (st != ACPI_OK)
		return st;
	KEXPECT_EQ(t.pa, MADT_PA);
	return madt_parse(t.data, t.length, cpus, cap, &info, &diag);
}

/* Expects find_and_parse to refuse with status st because of why. */
#define EXPECT_REFUSED(st, why_)                       \
	do {                                           \
		KEXPECT_EQ(find_and_parse(80), st);    \
		KEXPECT(diag.why != NULL);             \
		if (diag.why)                          \
			KEXPECT_STREQ(diag.why, why_); \
	} while (0)

static inline void add_ioapic(uint8_t id, uint32_t addr, uint32_t gsi_base)
{
	uint8_t *e = madt_entry(MADT_IO_APIC, 12);
	e[2] = id;
	put32(e + 4, addr);
	put32(e + 8, gsi_base);
}

static inline void add_override(uint8_t bus, uint8_t source, uint32_t gsi,
                                uint16_t flags)
{
	uint8_t *e = madt_entry(MADT_IRQ_OVERRIDE, 10);
	e[2] = bus;
	e[3] = source;
	put32(e + 4, gsi);
	e[8] = (uint8_t)flags;
	e[9] = (uint8_t)(flags >> 8);
}

/* Expects the MADT's bad override i to be the one at offset off, left out
 * because of why. */
static inline void expect_bad_override(unsigned i, uint32_t off, uint8_t source,
                                       const char *why)
{
	KASSERT(info.nbad_overrides > i);
	KEXPECT_EQ(info.bad_overrides[i].off, off);
	KEXPECT_EQ(info.bad_overrides[i].source, source);
	KEXPECT(info.bad_overrides[i].why != NULL);
	if (info.bad_overrides[i].why)
		KEXPECT_STREQ(info.bad_overrides[i].why, why);
}

#endif

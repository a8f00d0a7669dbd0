/*
 * The fake physical memory and the table builders the MADT host tests
 * share (madt_test.c, madt_ioapic_test.c): crafted RSDP, XSDT/RSDT and
 * MADT images, and a parse through the RSDP. Each test file has its own
 * copy of the memory and the results.
 */
#ifndef TESTS_HOST_MADT_TEST_UTIL_H
#define TESTS_HOST_MADT_TEST_UTIL_H

#include "../../kernel/madt_parse.h"
#include "../../kernel/ktest.h"

#include <string.h>

/* Fake physical memory: the map callback hands out pointers into it and
 * refuses anything that runs past its end. */
#define MEM_SIZE  0x4000u
#define RSDP_PA   0x40u
#define XSDT_PA   0x100u
#define RSDT_PA   0x200u
#define FACP_PA   0x800u
#define MADT_PA   0x1000u
#define MADT_ROOM 0x1000u

static __attribute__((unused)) uint8_t mem[MEM_SIZE];
static __attribute__((unused))
uint32_t longest_map; /* the most bytes asked for in one map */

static inline const void *fake_map(void *ctx, uint64_t pa, uint32_t len,
                                   const char **why)
{
	(void)ctx;
	(void)why;
	if (len > longest_map)
		longest_map = len;
	if (pa > MEM_SIZE || len > MEM_SIZE - pa)
		return NULL;
	return mem + pa;
}

static __attribute__((unused))
const struct acpi_reader reader = {fake_map, NULL};

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* Sets byte at so that [p, p + n) sums to zero. */
static inline void fix_sum(uint8_t *p, uint32_t n, uint32_t at)
{
	uint8_t s = 0;
	p[at] = 0;
	for (uint32_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	p[at] = (uint8_t)-s;
}

static inline void put_rsdp(uint8_t rev, uint32_t rsdt, uint64_t xsdt)
{
	uint8_t *p = mem + RSDP_PA;
	memset(p, 0, ACPI_RSDP_V2_SIZE);
	memcpy(p, "RSD PTR ", 8);
	memcpy(p + 9, "GANTRY", 6);
	p[15] = rev;
	put32(p + 16, rsdt);
	put32(p + 20, ACPI_RSDP_V2_SIZE);
	put64(p + 24, xsdt);
	fix_sum(p, ACPI_RSDP_V1_SIZE, 8);
	fix_sum(p, ACPI_RSDP_V2_SIZE, 32);
}

/* A table header of len bytes at pa; the caller fills the body, then
 * seals it with seal(). */
static inline uint8_t *put_header(uint32_t pa, const char *sig, uint32_t len)
{
	uint8_t *t = mem + pa;
	memset(t, 0, ACPI_HEADER_SIZE);
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = 1;
	memcpy(t + 10, "GANTRY", 6);
	return t;
}

static inline void seal(uint32_t pa)
{
	uint8_t *t = mem + pa;
	uint32_t len = t[4] | t[5] << 8 | t[6] << 16 | (uint32_t)t[7] << 24;
	fix_sum(t, len, 9);
}

/* Root tables listing FACP then MADT, in both widths. */
static inline void put_roots(uint64_t second)
{
	uint8_t *x = put_header(XSDT_PA, "XSDT", ACPI_HEADER_SIZE + 16);
	put64(x + 36, FACP_PA);
	put64(x + 44, second);
	seal(XSDT_PA);
	uint8_t *r = put_header(RSDT_PA, "RSDT", ACPI_HEADER_SIZE + 8);
	put32(r + 36, FACP_PA);
	put32(r + 40, (uint32_t)second);
	seal(RSDT_PA);
	put_header(FACP_PA, "FACP", ACPI_HEADER_SIZE);
	seal(FACP_PA);
}

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

#endif

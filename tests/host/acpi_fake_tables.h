/*
 * The fake physical memory and the ACPI table builders the MADT host
 * tests share (madt_test_util.h): a map callback over it, byte writers,
 * checksums, a crafted RSDP, table headers and the root tables (XSDT and
 * RSDT) listing the FACP and one more table. Each test file has its own
 * copy of the memory.
 */
#ifndef TESTS_HOST_ACPI_FAKE_TABLES_H
#define TESTS_HOST_ACPI_FAKE_TABLES_H

#include "../../kernel/madt_parse.h"

#include <stdint.h>
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

#endif

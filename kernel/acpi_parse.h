/*
 * Portable ACPI table parsing: the RSDP, the root table (XSDT or RSDT) and
 * the MADT, checked field by field before anything in them is trusted.
 *
 * This file, madt_parse.h and acpi_parse.c include only <stdint.h>, <stddef.h>
 * and <stdbool.h>, so that the host build can feed them crafted tables under
 * ASan/UBSan (tests/host/madt_test.c). Physical memory is reached through
 * the caller's acpi_map_fn: the kernel's maps through the direct map or a
 * window (kernel/acpi.c), the tests' into a byte array.
 *
 * Every refusal comes back as a status and a struct acpi_diag: a fixed
 * sentence saying what is wrong and the address or offset it is about.
 * The MADT's part is declared in madt_parse.h.
 * Layouts follow the ACPI 6.5 specification, sections 5.2.5 (RSDP),
 * 5.2.6 (table header), 5.2.7/5.2.8 (RSDT/XSDT) and 5.2.12 (MADT).
 */
#ifndef KERNEL_ACPI_PARSE_H
#define KERNEL_ACPI_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACPI_RSDP_V1_SIZE 20u
#define ACPI_RSDP_V2_SIZE 36u
#define ACPI_HEADER_SIZE  36u
/* The longest table (or RSDP) the parser maps and checksums, against a
 * bogus length field. Tables are far smaller (a MADT for 4096 x2APICs is
 * 64 KiB, large DSDTs a few hundred); the kernel's ACPI window is 1 MiB. */
#define ACPI_TABLE_MAX (1u << 20)

enum acpi_status {
	ACPI_OK = 0,
	ACPI_NOT_FOUND, /* the tables are sound; the one asked for is absent */
	ACPI_MALFORMED, /* a signature, checksum, length or entry is wrong */
	ACPI_UNMAPPED,  /* the mapper could not map memory for a reason of
	                 * its own (room), which the diag gives */
};

/* Why a status is not ACPI_OK: `why` is a complete phrase; `at` is the
 * physical address of the table or the offset of the entry it names. */
struct acpi_diag {
	const char *why;
	uint64_t at;
};

/* Returns a pointer to len readable bytes at physical address pa, or NULL
 * when that memory cannot be reached. A mapper that could reach it but
 * cannot map it (out of room) sets *why to a phrase saying so; the parser
 * then refuses with ACPI_UNMAPPED and that phrase instead of blaming the
 * tables. */
typedef const void *(*acpi_map_fn)(void *ctx, uint64_t pa, uint32_t len,
                                   const char **why);

struct acpi_reader {
	acpi_map_fn map;
	void *ctx;
};

/* A table found through the root table. */
struct acpi_table {
	const uint8_t *data; /* mapped, length bytes, checksum verified */
	uint32_t length;
	uint64_t pa;
	/* How it was found: */
	uint8_t rsdp_revision;
	bool via_xsdt; /* else the RSDT */
	uint64_t root_pa;
};

/*
 * Validates the RSDP at rsdp_pa (checksum; for revision >= 2 also the
 * length and extended checksum), then the root table (the XSDT if the RSDP
 * has one, else the RSDT), and returns in *out the first table whose
 * signature is sig (4 characters) with a valid length and checksum. A
 * length over ACPI_TABLE_MAX is refused before anything is mapped.
 */
enum acpi_status acpi_find_table(const struct acpi_reader *r, uint64_t rsdp_pa,
                                 const char *sig, struct acpi_table *out,
                                 struct acpi_diag *diag);

#endif

/*
 * Portable ACPI table parsing: the RSDP, the root table (XSDT or RSDT) and
 * the MADT, checked field by field before anything in them is trusted.
 *
 * This file and acpi_parse.c include only <stdint.h>, <stddef.h> and
 * <stdbool.h>, so that the host build can feed them crafted tables under
 * ASan/UBSan (tests/host/madt_test.c). Physical memory is reached through
 * the caller's acpi_map_fn: the kernel's maps through the direct map or a
 * window (kernel/acpi.c), the tests' into a byte array.
 *
 * Every refusal comes back as a status and a struct acpi_diag: a fixed
 * sentence saying what is wrong and the address or offset it is about.
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
#define ACPI_MADT_FIXED   44u /* header + local APIC address + flags */
/* The longest table (or RSDP) the parser maps and checksums, against a
 * bogus length field. Tables are far smaller (a MADT for 4096 x2APICs is
 * 64 KiB, large DSDTs a few hundred); the kernel's ACPI window is 1 MiB. */
#define ACPI_TABLE_MAX (1u << 20)

/* MADT entry types the parser reads. */
#define MADT_LOCAL_APIC          0
#define MADT_IO_APIC             1
#define MADT_IRQ_OVERRIDE        2 /* interrupt source override */
#define MADT_LOCAL_APIC_OVERRIDE 5
#define MADT_LOCAL_X2APIC        9

/* Interrupt source override flags (MPS INTI flags): polarity in bits 0-1,
 * trigger mode in bits 2-3; 0 means "conforms to the bus" (ISA: active
 * high, edge), 1 active high / edge, 3 active low / level. */
#define MADT_POLARITY_MASK 0x3u
#define MADT_POLARITY_LOW  0x3u
#define MADT_TRIGGER_MASK  0xcu
#define MADT_TRIGGER_LEVEL 0xcu

#define MADT_MAX_IOAPICS 8

/* An I/O APIC's registers: IOREGSEL and IOWIN, 16 bytes apart on 16-byte
 * boundaries, within one 4 KiB page (the kernel maps that page). */
#define MADT_IOAPIC_ALIGN  16u
#define MADT_IOAPIC_BYTES  32u
#define MADT_IOAPIC_PAGE   4096u
#define MADT_MAX_OVERRIDES 16

/* Local APIC / x2APIC flags. */
#define MADT_CPU_ENABLED        (1u << 0)
#define MADT_CPU_ONLINE_CAPABLE (1u << 1)

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

/* One usable CPU from the MADT. */
struct madt_cpu {
	uint32_t apic_id;
	uint32_t uid; /* ACPI processor UID */
	uint8_t type; /* MADT_LOCAL_APIC or MADT_LOCAL_X2APIC */
};

/* An I/O APIC: its registers at addr serve GSIs from gsi_base up (how
 * many, its version register says). */
struct madt_ioapic {
	uint8_t id;
	uint32_t addr;
	uint32_t gsi_base;
};

/* An ISA IRQ that the board wires to another GSI or with other
 * polarity or trigger than the ISA default. */
struct madt_override {
	uint8_t source; /* the ISA IRQ (bus 0 only: others are skipped) */
	uint32_t gsi;
	uint16_t flags; /* MADT_POLARITY_*, MADT_TRIGGER_* */
};

/* An I/O APIC entry the parser would not use (address 0, registers it
 * cannot reach, or the GSI base or address of an I/O APIC listed before
 * it): where it is in the MADT, what it says, and why it was left out. */
struct madt_bad_ioapic {
	uint32_t off; /* the entry's offset in the MADT */
	uint8_t id;
	uint32_t addr;
	uint32_t gsi_base;
	const char *why;
};

struct madt_info {
	uint64_t lapic_pa;   /* the header's, or a type 5 override's */
	uint32_t flags;      /* bit 0: the system also has 8259 PICs */
	unsigned ncpus;      /* CPUs stored, in MADT order */
	unsigned nignored;   /* usable CPUs past the caller's capacity */
	unsigned ndisabled;  /* entries without the Enabled flag */
	unsigned ninvalid;   /* the reserved ids 0xff / 0xffffffff */
	unsigned nduplicate; /* APIC ids listed before */
	/* I/O APICs and ISA overrides in table order; entries past the
	 * arrays' capacity (or overrides of a bus other than ISA, or of an
	 * IRQ already overridden, or I/O APICs in bad_ioapics) are counted
	 * in nskipped. */
	struct madt_ioapic ioapics[MADT_MAX_IOAPICS];
	unsigned nioapics;
	/* I/O APIC entries left out because of what they say (the first
	 * MADT_MAX_IOAPICS; the rest are only counted in nskipped). */
	struct madt_bad_ioapic bad_ioapics[MADT_MAX_IOAPICS];
	unsigned nbad_ioapics;
	struct madt_override overrides[MADT_MAX_OVERRIDES];
	unsigned noverrides;
	unsigned nskipped;
};

/* Where an ISA IRQ arrives: its GSI and how it signals. */
struct madt_irq_route {
	uint32_t gsi;
	bool active_low;
	bool level;
};

/*
 * Parses the MADT in [table, table + avail): signature, length (at least
 * the fixed part, at most avail), checksum, then every entry: an entry
 * shorter than 2 bytes, running past the end, or shorter than its type
 * requires is malformed. Enabled CPUs go to cpus[0..cap) in table order;
 * I/O APICs and interrupt source overrides to info.
 */
enum acpi_status madt_parse(const void *table, uint32_t avail,
                            struct madt_cpu *cpus, unsigned cap,
                            struct madt_info *info, struct acpi_diag *diag);

/* The route of ISA IRQ irq: the override for it if the MADT has one
 * (fields that "conform to the bus" take the ISA default), else GSI irq,
 * active high, edge triggered. */
struct madt_irq_route madt_isa_route(const struct madt_info *info, uint8_t irq);

/* The I/O APIC whose range starts at or below gsi, the closest one (the
 * caller checks the APIC's size), or NULL when none does. */
const struct madt_ioapic *madt_ioapic_for(const struct madt_info *info,
                                          uint32_t gsi);

/* True when GSIs [a, a + na) and [b, b + nb) share one: I/O APICs whose
 * sizes (from their version registers) make their ranges overlap. */
bool madt_gsi_ranges_overlap(uint32_t a, uint32_t na, uint32_t b, uint32_t nb);

#endif

/*
 * The MADT (ACPI 6.5, 5.2.12), parsed by kernel/acpi_parse.c from a table
 * acpi_find_table found: the CPUs, the I/O APICs and the ISA interrupt
 * source overrides, every entry checked before it is used, and what was
 * left out said, entry by entry. Portable as acpi_parse.h is (the host
 * tests feed it crafted tables, tests/host/madt_test.c).
 */
#ifndef KERNEL_MADT_PARSE_H
#define KERNEL_MADT_PARSE_H

#include "acpi_parse.h"

#define ACPI_MADT_FIXED 44u /* header + local APIC address + flags */

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
	uint8_t source; /* the ISA IRQ, 0 to 15 (bus 0 only) */
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

/* An enabled CPU entry the parser would not use: a reserved APIC id, or
 * one an earlier entry lists. */
#define MADT_MAX_BAD_CPUS 8
struct madt_bad_cpu {
	uint32_t off; /* the entry's offset in the MADT */
	uint32_t apic_id, uid;
	uint8_t type; /* MADT_LOCAL_APIC or MADT_LOCAL_X2APIC */
	const char *why;
};

/* No ISA IRQ (madt_bad_override.clash, madt_irq_route.owner). */
#define MADT_NO_IRQ 0xffu

/* An interrupt source override the parser would not use (a reserved
 * polarity or trigger mode, a source past ISA's IRQ 15, another bus than
 * ISA, an IRQ overridden before, a GSI an earlier override took): where,
 * what it says, and why. */
struct madt_bad_override {
	uint32_t off; /* the entry's offset in the MADT */
	uint8_t bus, source;
	uint8_t clash; /* the IRQ whose override took gsi, or MADT_NO_IRQ */
	uint32_t gsi;
	uint16_t flags;
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
	/* The first MADT_MAX_BAD_CPUS of the invalid and duplicate ones. */
	struct madt_bad_cpu bad_cpus[MADT_MAX_BAD_CPUS];
	unsigned nbad_cpus;
	/* I/O APICs and ISA overrides in table order; entries past the
	 * arrays' capacity, or in bad_ioapics or bad_overrides, are counted
	 * in nskipped. */
	struct madt_ioapic ioapics[MADT_MAX_IOAPICS];
	unsigned nioapics;
	/* I/O APIC entries left out because of what they say (the first
	 * MADT_MAX_IOAPICS; the rest are only counted in nskipped). */
	struct madt_bad_ioapic bad_ioapics[MADT_MAX_IOAPICS];
	unsigned nbad_ioapics;
	struct madt_override overrides[MADT_MAX_OVERRIDES];
	unsigned noverrides;
	/* Overrides left out because of what they say (the first
	 * MADT_MAX_OVERRIDES; the rest are only counted in nskipped). */
	struct madt_bad_override bad_overrides[MADT_MAX_OVERRIDES];
	unsigned nbad_overrides;
	unsigned nskipped;
};

/* Where an ISA IRQ arrives: its GSI and how it signals. owner is
 * MADT_NO_IRQ, or the ISA IRQ whose override took this IRQ's identity GSI:
 * then the IRQ has no pin (routing it would take the owner's). */
struct madt_irq_route {
	uint32_t gsi;
	bool active_low;
	bool level;
	uint8_t owner;
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
 * active high, edge triggered, with owner set when an override of another
 * IRQ took that GSI (as Linux, the override wins: on a PC, IRQ 0's
 * override onto GSI 2 leaves IRQ 2, the cascade, without a pin). The
 * parser keeps no two overrides on one GSI, so each GSI has one IRQ. */
struct madt_irq_route madt_isa_route(const struct madt_info *info, uint8_t irq);

/* The I/O APIC whose range starts at or below gsi, the closest one (the
 * caller checks the APIC's size), or NULL when none does. */
const struct madt_ioapic *madt_ioapic_for(const struct madt_info *info,
                                          uint32_t gsi);

/* True when GSIs [a, a + na) and [b, b + nb) share one: I/O APICs whose
 * sizes (from their version registers) make their ranges overlap. */
bool madt_gsi_ranges_overlap(uint32_t a, uint32_t na, uint32_t b, uint32_t nb);

#endif

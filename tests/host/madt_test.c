/*
 * Host tests of kernel/acpi_parse.c: crafted RSDP, XSDT/RSDT and MADT
 * images in a fake physical memory, one good system and then one defect
 * per rule the parser must enforce, each refused with its reason.
 */
#include "../../kernel/acpi_parse.h"
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

static uint8_t mem[MEM_SIZE];
static uint32_t longest_map; /* the most bytes asked for in one map */

static const void *fake_map(void *ctx, uint64_t pa, uint32_t len,
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

static const struct acpi_reader reader = {fake_map, NULL};

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* Sets byte at so that [p, p + n) sums to zero. */
static void fix_sum(uint8_t *p, uint32_t n, uint32_t at)
{
	uint8_t s = 0;
	p[at] = 0;
	for (uint32_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	p[at] = (uint8_t)-s;
}

static void put_rsdp(uint8_t rev, uint32_t rsdt, uint64_t xsdt)
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
static uint8_t *put_header(uint32_t pa, const char *sig, uint32_t len)
{
	uint8_t *t = mem + pa;
	memset(t, 0, ACPI_HEADER_SIZE);
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = 1;
	memcpy(t + 10, "GANTRY", 6);
	return t;
}

static void seal(uint32_t pa)
{
	uint8_t *t = mem + pa;
	uint32_t len = t[4] | t[5] << 8 | t[6] << 16 | (uint32_t)t[7] << 24;
	fix_sum(t, len, 9);
}

/* Root tables listing FACP then MADT, in both widths. */
static void put_roots(uint64_t second)
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
static uint32_t madt_len;

static void madt_begin(void)
{
	memset(mem + MADT_PA, 0, MADT_ROOM);
	put_header(MADT_PA, "APIC", 0);
	put32(mem + MADT_PA + 36, 0xfee00000u);
	put32(mem + MADT_PA + 40, 1);
	madt_len = ACPI_MADT_FIXED;
}

static uint8_t *madt_entry(uint8_t type, uint8_t len)
{
	uint8_t *e = mem + MADT_PA + madt_len;
	e[0] = type;
	e[1] = len;
	madt_len += len;
	return e;
}

static void add_lapic(uint8_t uid, uint8_t id, uint32_t flags)
{
	uint8_t *e = madt_entry(MADT_LOCAL_APIC, 8);
	e[2] = uid;
	e[3] = id;
	put32(e + 4, flags);
}

static void add_x2apic(uint32_t id, uint32_t flags, uint32_t uid)
{
	uint8_t *e = madt_entry(MADT_LOCAL_X2APIC, 16);
	put32(e + 4, id);
	put32(e + 8, flags);
	put32(e + 12, uid);
}

static void madt_end(void)
{
	put32(mem + MADT_PA + 4, madt_len);
	seal(MADT_PA);
}

/* A sound system: RSDP rev 2, XSDT and RSDT, FACP, and an empty MADT. */
static void good_system(void)
{
	memset(mem, 0, sizeof(mem));
	put_rsdp(2, RSDT_PA, XSDT_PA);
	put_roots(MADT_PA);
	madt_begin();
	madt_end();
}

static struct madt_cpu cpus[80];
static struct madt_info info;
static struct acpi_diag diag;

/* Finds the MADT through the RSDP and parses it with room for cap CPUs. */
static enum acpi_status find_and_parse(unsigned cap)
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

static void add_ioapic(uint8_t id, uint32_t addr, uint32_t gsi_base)
{
	uint8_t *e = madt_entry(MADT_IO_APIC, 12);
	e[2] = id;
	put32(e + 4, addr);
	put32(e + 8, gsi_base);
}

static void add_override(uint8_t bus, uint8_t source, uint32_t gsi,
                         uint16_t flags)
{
	uint8_t *e = madt_entry(MADT_IRQ_OVERRIDE, 10);
	e[2] = bus;
	e[3] = source;
	put32(e + 4, gsi);
	e[8] = (uint8_t)flags;
	e[9] = (uint8_t)(flags >> 8);
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
	for (unsigned i = 0; i < MADT_MAX_OVERRIDES; i++)
		add_override(0, (uint8_t)(16 + i), 40 + i, 0);
	madt_end();
	KASSERT_EQ(find_and_parse(80), ACPI_OK);
	KEXPECT_EQ(info.nioapics, MADT_MAX_IOAPICS);
	KEXPECT_EQ(info.noverrides, MADT_MAX_OVERRIDES);
	/* bus 1, the duplicate, one APIC and one override over capacity */
	KEXPECT_EQ(info.nskipped, 4);
	KEXPECT_EQ(madt_isa_route(&info, 4).gsi, 5);
	/* Below every APIC's base: no APIC serves it. */
	KEXPECT(madt_ioapic_for(&info, 7) == NULL);
	KEXPECT_EQ(madt_ioapic_for(&info, 8)->id, 0);
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
	               "a root table entry points outside reachable memory");

	good_system();
	put32(mem + XSDT_PA + 4, 20);
	seal(XSDT_PA);
	EXPECT_REFUSED(ACPI_MALFORMED,
	               "table length is shorter than its header");
}

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

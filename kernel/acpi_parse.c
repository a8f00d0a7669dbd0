/*
 * Portable ACPI parsing (see acpi_parse.h and madt_parse.h): RSDP, root
 * table, MADT.
 *
 * Firmware tables are input, not truth: every length is checked against
 * what was mapped before a byte past the fixed part is read, every table's
 * checksum is verified, and a walk over variable-length entries advances
 * only by lengths it has checked (a zero-length MADT entry would otherwise
 * loop forever). Multi-byte fields are read a byte at a time: the tables
 * guarantee no alignment (XSDT entries sit at offset 36, 4 mod 8).
 */
#include "madt_parse.h"

_Static_assert(ACPI_TABLE_MAX == 1u << 20,
               "the refusals below say \"over 1 MiB\"");

static uint32_t rd16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t checksum(const uint8_t *p, uint32_t n)
{
	uint8_t s = 0;
	for (uint32_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static bool sig_is(const uint8_t *p, const char *sig, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (p[i] != (uint8_t)sig[i])
			return false;
	return true;
}

static enum acpi_status fail(struct acpi_diag *d, enum acpi_status st,
                             const char *why, uint64_t at)
{
	d->why = why;
	d->at = at;
	return st;
}

/* Maps [pa, pa + len) with r; NULL with *why set when the mapper gave a
 * reason of its own, NULL otherwise. */
static const uint8_t *map(const struct acpi_reader *r, uint64_t pa,
                          uint32_t len, const char **why)
{
	*why = NULL;
	return r->map(r->ctx, pa, len, why);
}

/* A map of pa failed: the mapper's reason if it gave one, else why. */
static enum acpi_status unmapped(struct acpi_diag *d, const char *map_why,
                                 const char *why, uint64_t pa)
{
	if (map_why)
		return fail(d, ACPI_UNMAPPED, map_why, pa);
	return fail(d, ACPI_MALFORMED, why, pa);
}

/*
 * Maps the table at pa whole, after checking that its header says sig (if
 * non-NULL), that its length covers the header, and that it sums to zero.
 */
static enum acpi_status map_table(const struct acpi_reader *r, uint64_t pa,
                                  const char *sig, const uint8_t **out,
                                  uint32_t *len, struct acpi_diag *d)
{
	const char *mw;
	const uint8_t *h = map(r, pa, ACPI_HEADER_SIZE, &mw);
	if (!h)
		return unmapped(d, mw,
		                "table header lies outside reachable memory",
		                pa);
	if (sig && !sig_is(h, sig, 4))
		return fail(d, ACPI_MALFORMED,
		            "root table has the wrong signature", pa);
	uint32_t n = rd32(h + 4);
	if (n < ACPI_HEADER_SIZE)
		return fail(d, ACPI_MALFORMED,
		            "table length is shorter than its header", pa);
	if (n > ACPI_TABLE_MAX)
		return fail(d, ACPI_MALFORMED,
		            "table length is over 1 MiB (a bogus length field)",
		            pa);
	const uint8_t *t = map(r, pa, n, &mw);
	if (!t)
		return unmapped(d, mw, "table runs past reachable memory", pa);
	if (checksum(t, n) != 0)
		return fail(d, ACPI_MALFORMED, "table checksum is wrong", pa);
	*out = t;
	*len = n;
	return ACPI_OK;
}

/* Validates the RSDP; fills the revision and root table fields of out. */
static enum acpi_status read_rsdp(const struct acpi_reader *r, uint64_t pa,
                                  struct acpi_table *out, struct acpi_diag *d)
{
	const char *mw;
	const uint8_t *p = map(r, pa, ACPI_RSDP_V1_SIZE, &mw);
	if (!p)
		return unmapped(d, mw, "RSDP lies outside reachable memory",
		                pa);
	if (!sig_is(p, "RSD PTR ", 8))
		return fail(d, ACPI_MALFORMED, "RSDP signature is wrong", pa);
	if (checksum(p, ACPI_RSDP_V1_SIZE) != 0)
		return fail(d, ACPI_MALFORMED, "RSDP checksum is wrong", pa);
	out->rsdp_revision = p[15];
	out->via_xsdt = false;
	out->root_pa = rd32(p + 16);
	if (p[15] >= 2) {
		p = map(r, pa, ACPI_RSDP_V2_SIZE, &mw);
		if (!p)
			return unmapped(d, mw,
			                "RSDP lies outside reachable memory",
			                pa);
		uint32_t n = rd32(p + 20);
		if (n < ACPI_RSDP_V2_SIZE)
			return fail(d, ACPI_MALFORMED,
			            "RSDP length is shorter than 36 bytes", pa);
		if (n > ACPI_TABLE_MAX)
			return fail(d, ACPI_MALFORMED,
			            "RSDP length is over 1 MiB (a bogus length "
			            "field)",
			            pa);
		p = map(r, pa, n, &mw);
		if (!p)
			return unmapped(
			        d, mw, "RSDP length runs past reachable memory",
			        pa);
		if (checksum(p, n) != 0)
			return fail(d, ACPI_MALFORMED,
			            "RSDP extended checksum is wrong", pa);
		/* An XSDT address of 0 leaves the RSDT, as ACPI 1.0. */
		if (rd64(p + 24)) {
			out->via_xsdt = true;
			out->root_pa = rd64(p + 24);
		}
	}
	if (!out->root_pa)
		return fail(d, ACPI_MALFORMED, "RSDP names no root table", pa);
	return ACPI_OK;
}

enum acpi_status acpi_find_table(const struct acpi_reader *r, uint64_t rsdp_pa,
                                 const char *sig, struct acpi_table *out,
                                 struct acpi_diag *d)
{
	enum acpi_status st = read_rsdp(r, rsdp_pa, out, d);
	if (st != ACPI_OK)
		return st;
	const uint8_t *root;
	uint32_t root_len;
	st = map_table(r, out->root_pa, out->via_xsdt ? "XSDT" : "RSDT", &root,
	               &root_len, d);
	if (st != ACPI_OK)
		return st;
	/* A partial trailing entry is ignored, as Linux does. */
	uint32_t esize = out->via_xsdt ? 8 : 4;
	uint32_t n = (root_len - ACPI_HEADER_SIZE) / esize;
	/* An entry pointing where nothing can be read is passed over, as
	 * Linux does: one broken entry must not hide the others' tables. It
	 * is named only if the table is not found after it. */
	uint64_t bad_pa = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = root + ACPI_HEADER_SIZE + i * esize;
		uint64_t pa = esize == 8 ? rd64(e) : rd32(e);
		if (!pa)
			continue;
		const char *mw = NULL;
		const uint8_t *h = map(r, pa, ACPI_HEADER_SIZE, &mw);
		if (!h && mw) /* the mapper ran out of room: not the table's */
			return unmapped(d, mw, NULL, pa);
		if (!h) {
			bad_pa = bad_pa ? bad_pa : pa;
			continue;
		}
		if (!sig_is(h, sig, 4))
			continue;
		st = map_table(r, pa, NULL, &out->data, &out->length, d);
		out->pa = pa;
		return st;
	}
	if (bad_pa)
		return fail(d, ACPI_MALFORMED,
		            "not among the reachable entries; a root table "
		            "entry points outside reachable memory",
		            bad_pa);
	return fail(d, ACPI_NOT_FOUND, "no such table in the root table",
	            out->root_pa);
}

/* Leaves the CPU entry c at off out of info, recording why. */
static void bad_cpu(struct madt_info *info, uint32_t off,
                    const struct madt_cpu *c, const char *why)
{
	if (info->nbad_cpus < MADT_MAX_BAD_CPUS)
		info->bad_cpus[info->nbad_cpus++] = (struct madt_bad_cpu){
		        off, c->apic_id, c->uid, c->type, why};
}

/* Records the processor entry c at off in info (and cpus when it is
 * usable). */
static void add_cpu(struct madt_cpu *cpus, unsigned cap, struct madt_info *info,
                    uint32_t off, struct madt_cpu c, uint32_t flags)
{
	if (!(flags & MADT_CPU_ENABLED)) {
		/* Online-capable CPUs are hot-plug slots, absent today. */
		info->ndisabled++;
		return;
	}
	if (c.apic_id == 0xffffffffu ||
	    (c.type == MADT_LOCAL_APIC && c.apic_id == 0xff)) {
		info->ninvalid++;
		bad_cpu(info, off, &c,
		        c.apic_id == 0xff
		                ? "APIC id 0xff is reserved in a local APIC "
		                  "entry (the xAPIC broadcast id)"
		                : "APIC id 0xffffffff is reserved (the "
		                  "broadcast id)");
		return;
	}
	unsigned kept = info->ncpus < cap ? info->ncpus : cap;
	for (unsigned i = 0; i < kept; i++) {
		if (cpus[i].apic_id == c.apic_id) {
			info->nduplicate++;
			bad_cpu(info, off, &c, "APIC id is an earlier entry's");
			return;
		}
	}
	if (info->ncpus >= cap) {
		info->nignored++;
		return;
	}
	cpus[info->ncpus++] = c;
}

/* Leaves the I/O APIC entry at off out of info, recording why. */
static void bad_ioapic(struct madt_info *info, uint32_t off, uint8_t id,
                       uint32_t addr, uint32_t gsi_base, const char *why)
{
	info->nskipped++;
	if (info->nbad_ioapics < MADT_MAX_IOAPICS)
		info->bad_ioapics[info->nbad_ioapics++] =
		        (struct madt_bad_ioapic){off, id, addr, gsi_base, why};
}

/* An I/O APIC's registers are IOREGSEL at +0x00 and IOWIN at +0x10, each
 * on a 16-byte boundary; the kernel maps the one page that holds both. */
static void add_ioapic(struct madt_info *info, uint32_t off, uint8_t id,
                       uint32_t addr, uint32_t gsi_base)
{
	/* RAM (the real-mode IVT), never a chip: a firmware placeholder.
	 * Linux refuses it too. */
	if (addr == 0) {
		bad_ioapic(info, off, id, addr, gsi_base,
		           "I/O APIC address is 0");
		return;
	}
	if (addr % MADT_IOAPIC_ALIGN) {
		bad_ioapic(info, off, id, addr, gsi_base,
		           "I/O APIC address is not 16-byte aligned");
		return;
	}
	if (addr % MADT_IOAPIC_PAGE > MADT_IOAPIC_PAGE - MADT_IOAPIC_BYTES) {
		bad_ioapic(info, off, id, addr, gsi_base,
		           "I/O APIC registers cross a page boundary");
		return;
	}
	/* Contradictions: the first entry wins, as in Linux. */
	for (unsigned i = 0; i < info->nioapics; i++) {
		const char *why = NULL;
		if (info->ioapics[i].gsi_base == gsi_base)
			why = "I/O APIC GSI base is an earlier I/O APIC's";
		else if (info->ioapics[i].addr == addr)
			why = "I/O APIC address is an earlier I/O APIC's";
		if (why) {
			bad_ioapic(info, off, id, addr, gsi_base, why);
			return;
		}
	}
	if (info->nioapics >= MADT_MAX_IOAPICS) {
		info->nskipped++;
		return;
	}
	info->ioapics[info->nioapics++] =
	        (struct madt_ioapic){id, addr, gsi_base};
}

/* Why an override cannot be used, or NULL; *clash gets the IRQ whose
 * override already took gsi when that is why. Only ISA (bus 0, IRQs 0
 * to 15) overrides mean anything on a PC; the first override of an IRQ
 * wins, and so does the first onto a GSI (one pin carries one IRQ's
 * signal, with one trigger mode: a second would reprogram it); polarity
 * and trigger mode 2 are reserved (neither "conforms" nor a level, they
 * would be read as active high or edge against what the board meant). */
static const char *override_problem(const struct madt_info *info, uint8_t bus,
                                    uint8_t source, uint32_t gsi,
                                    uint16_t flags, uint8_t *clash)
{
	*clash = MADT_NO_IRQ;
	if ((flags & MADT_POLARITY_MASK) == 2)
		return "override polarity is 2, a reserved value";
	if ((flags & MADT_TRIGGER_MASK) >> 2 == 2)
		return "override trigger mode is 2, a reserved value";
	if (source > 15)
		return "override source is not an ISA IRQ (0 to 15)";
	if (bus != 0)
		return "override bus is not ISA (bus 0)";
	for (unsigned i = 0; i < info->noverrides; i++)
		if (info->overrides[i].source == source)
			return "override of an IRQ an earlier entry overrides";
	for (unsigned i = 0; i < info->noverrides; i++)
		if (info->overrides[i].gsi == gsi) {
			*clash = info->overrides[i].source;
			return "override GSI is an earlier override's";
		}
	return NULL;
}

static void add_override(struct madt_info *info, uint32_t off, uint8_t bus,
                         uint8_t source, uint32_t gsi, uint16_t flags)
{
	uint8_t clash;
	const char *why =
	        override_problem(info, bus, source, gsi, flags, &clash);
	if (why || info->noverrides >= MADT_MAX_OVERRIDES) {
		info->nskipped++;
		if (why && info->nbad_overrides < MADT_MAX_OVERRIDES)
			info->bad_overrides[info->nbad_overrides++] =
			        (struct madt_bad_override){off,   bus, source,
			                                   clash, gsi, flags,
			                                   why};
		return;
	}
	info->overrides[info->noverrides++] =
	        (struct madt_override){source, gsi, flags};
}

/* Checks one entry's length for its type and records what it says. */
static enum acpi_status madt_entry(const uint8_t *e, uint32_t off,
                                   struct madt_cpu *cpus, unsigned cap,
                                   struct madt_info *info, struct acpi_diag *d)
{
	uint8_t type = e[0], len = e[1];
	switch (type) {
	case MADT_LOCAL_APIC:
		if (len < 8)
			return fail(d, ACPI_MALFORMED,
			            "local APIC entry shorter than 8 bytes",
			            off);
		add_cpu(cpus, cap, info, off,
		        (struct madt_cpu){e[3], e[2], type}, rd32(e + 4));
		break;
	case MADT_LOCAL_X2APIC:
		if (len < 16)
			return fail(d, ACPI_MALFORMED,
			            "local x2APIC entry shorter than 16 bytes",
			            off);
		add_cpu(cpus, cap, info, off,
		        (struct madt_cpu){rd32(e + 4), rd32(e + 12), type},
		        rd32(e + 8));
		break;
	case MADT_IO_APIC:
		if (len < 12)
			return fail(d, ACPI_MALFORMED,
			            "I/O APIC entry shorter than 12 bytes",
			            off);
		add_ioapic(info, off, e[2], rd32(e + 4), rd32(e + 8));
		break;
	case MADT_IRQ_OVERRIDE:
		if (len < 10)
			return fail(d, ACPI_MALFORMED,
			            "interrupt source override shorter than 10 "
			            "bytes",
			            off);
		add_override(info, off, e[2], e[3], rd32(e + 4),
		             (uint16_t)rd16(e + 8));
		break;
	case MADT_LOCAL_APIC_OVERRIDE:
		if (len < 12)
			return fail(d, ACPI_MALFORMED,
			            "local APIC address override shorter than "
			            "12 bytes",
			            off);
		info->lapic_pa = rd64(e + 4);
		break;
	default:
		break; /* NMI sources, ...: not ours to read */
	}
	return ACPI_OK;
}

enum acpi_status madt_parse(const void *table, uint32_t avail,
                            struct madt_cpu *cpus, unsigned cap,
                            struct madt_info *info, struct acpi_diag *d)
{
	const uint8_t *t = table;
	*info = (struct madt_info){0};
	if (avail < ACPI_MADT_FIXED)
		return fail(d, ACPI_MALFORMED,
		            "MADT is shorter than its 44-byte fixed part", 0);
	if (!sig_is(t, "APIC", 4))
		return fail(d, ACPI_MALFORMED, "MADT signature is not APIC", 0);
	uint32_t len = rd32(t + 4);
	if (len < ACPI_MADT_FIXED)
		return fail(
		        d, ACPI_MALFORMED,
		        "MADT length is shorter than its 44-byte fixed part",
		        len);
	if (len > avail)
		return fail(d, ACPI_MALFORMED,
		            "MADT length runs past the table's mapped end",
		            len);
	if (checksum(t, len) != 0)
		return fail(d, ACPI_MALFORMED, "MADT checksum is wrong", 0);
	info->lapic_pa = rd32(t + 36);
	info->flags = rd32(t + 40);
	for (uint32_t off = ACPI_MADT_FIXED; off < len;) {
		if (len - off < 2)
			return fail(d, ACPI_MALFORMED,
			            "MADT entry header runs past the end", off);
		uint8_t elen = t[off + 1];
		if (elen < 2)
			return fail(d, ACPI_MALFORMED,
			            "MADT entry length is below 2 (a zero "
			            "length would never advance)",
			            off);
		if (elen > len - off)
			return fail(d, ACPI_MALFORMED,
			            "MADT entry runs past the end of the table",
			            off);
		enum acpi_status st =
		        madt_entry(t + off, off, cpus, cap, info, d);
		if (st != ACPI_OK)
			return st;
		off += elen;
	}
	return ACPI_OK;
}

struct madt_irq_route madt_isa_route(const struct madt_info *info, uint8_t irq)
{
	struct madt_irq_route r = {irq, false, false, MADT_NO_IRQ};
	uint8_t owner = MADT_NO_IRQ;
	for (unsigned i = 0; i < info->noverrides; i++) {
		const struct madt_override *o = &info->overrides[i];
		if (o->source != irq) {
			if (o->gsi == irq)
				owner = o->source;
			continue;
		}
		r.gsi = o->gsi;
		r.active_low =
		        (o->flags & MADT_POLARITY_MASK) == MADT_POLARITY_LOW;
		r.level = (o->flags & MADT_TRIGGER_MASK) == MADT_TRIGGER_LEVEL;
		return r;
	}
	r.owner = owner;
	return r;
}

const struct madt_ioapic *madt_ioapic_for(const struct madt_info *info,
                                          uint32_t gsi)
{
	const struct madt_ioapic *best = NULL;
	for (unsigned i = 0; i < info->nioapics; i++) {
		const struct madt_ioapic *a = &info->ioapics[i];
		if (a->gsi_base <= gsi &&
		    (!best || a->gsi_base > best->gsi_base))
			best = a;
	}
	return best;
}

bool madt_gsi_ranges_overlap(uint32_t a, uint32_t na, uint32_t b, uint32_t nb)
{
	/* In 64 bits: a range may end past GSI 2^32 - 1. */
	return na && nb && (uint64_t)a < (uint64_t)b + nb &&
	       (uint64_t)b < (uint64_t)a + na;
}

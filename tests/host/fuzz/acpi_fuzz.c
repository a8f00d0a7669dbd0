/*
 * tests/host/fuzz/acpi_fuzz.c: libFuzzer target for the ACPI table walk
 * and the MADT parser (kernel/acpi_parse.c).
 *
 * Input: a control byte, then bytes. Bit 0 of the control byte picks the
 * mode; bit 1 asks the harness to mend the checksums first (else a
 * mutation almost never gets past them to what they guard):
 *   - MADT mode: the bytes are the table, parsed with room for
 *     (control >> 2) % 9 CPUs, as kernel/acpi.c does with the table
 *     acpi_find_table gave it.
 *   - walk mode: the first two bytes are the RSDP's address, the rest
 *     physical memory from address 0; the MADT found is parsed.
 * Every map hands out a fresh heap block of exactly the bytes asked for,
 * so ASan catches a read past what the parser mapped. Checked: a refusal
 * says why; a table found is the MADT at its address, with the length
 * and checksum its header says; a parsed MADT's CPUs, I/O APICs and
 * overrides are, in order, entries of the table that lie inside it, with
 * the properties madt_parse.h promises, and every CPU, I/O APIC and
 * override entry is counted once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../kernel/madt_parse.h"

#define MAX_MAPS 4096

/* Physical memory for the walk mode, and the blocks its maps handed out. */
static const uint8_t *mem;
static size_t mem_size;
static void *maps[MAX_MAPS];
static unsigned nmaps;

static const void *map_fn(void *ctx, uint64_t pa, uint32_t len,
                          const char **why)
{
	(void)ctx;
	(void)why;
	if (pa > mem_size || len > mem_size - pa || nmaps == MAX_MAPS)
		return NULL;
	uint8_t *p = malloc(len ? len : 1);
	memcpy(p, mem + pa, len);
	maps[nmaps++] = p;
	return p;
}

static void fail(const char *what, uint32_t off)
{
	fprintf(stderr, "acpi_fuzz: %s (offset %#x)\n", what, off);
	abort();
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Sets p[at] so that p[0, n) sums to zero. */
static void fix_sum(uint8_t *p, uint32_t n, uint32_t at)
{
	uint8_t s = 0;
	p[at] = 0;
	for (uint32_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	p[at] = (uint8_t)-s;
}

/* Mends the checksum of the table at pa of m[0, size), if its length fits. */
static void fix_table(uint8_t *m, size_t size, uint64_t pa)
{
	if (pa > size || size - pa < ACPI_HEADER_SIZE)
		return;
	uint32_t n = rd32(m + pa + 4);
	if (n >= ACPI_HEADER_SIZE && n <= size - pa)
		fix_sum(m + pa, n, 9);
}

/* Mends the RSDP at rsdp, its root table and the tables that names. */
static void fix_walk(uint8_t *m, size_t size, uint64_t rsdp)
{
	if (rsdp > size || size - rsdp < ACPI_RSDP_V2_SIZE)
		return;
	uint8_t *r = m + rsdp;
	uint64_t root = rd32(r + 16);
	bool x = r[15] >= 2 && rd64(r + 24);
	if (x)
		root = rd64(r + 24);
	if (root <= size && size - root >= ACPI_HEADER_SIZE) {
		uint32_t n = rd32(m + root + 4), es = x ? 8 : 4;
		for (uint32_t o = ACPI_HEADER_SIZE;
		     n <= size - root && o + es <= n; o += es) {
			uint64_t pa =
			        x ? rd64(m + root + o) : rd32(m + root + o);
			if (pa != root)
				fix_table(m, size, pa);
		}
		fix_table(m, size, root);
	}
	fix_sum(r, ACPI_RSDP_V1_SIZE, 8);
	uint32_t n = rd32(r + 20);
	if (r[15] >= 2 && n >= ACPI_RSDP_V2_SIZE && n <= size - rsdp)
		fix_sum(r, n, 32);
}

/* The entries of t[0, len) walked on their own: counts of each kind. */
struct walk {
	unsigned cpus, ioapics, overrides;
};

/* Does entry e (at off) say CPU c, enabled? */
static bool entry_is_cpu(const uint8_t *e, const struct madt_cpu *c)
{
	if (e[0] == MADT_LOCAL_APIC && e[1] >= 8)
		return c->type == e[0] && c->apic_id == e[3] &&
		       c->uid == e[2] && (rd32(e + 4) & MADT_CPU_ENABLED);
	if (e[0] == MADT_LOCAL_X2APIC && e[1] >= 16)
		return c->type == e[0] && c->apic_id == rd32(e + 4) &&
		       c->uid == rd32(e + 12) &&
		       (rd32(e + 8) & MADT_CPU_ENABLED);
	return false;
}

static bool entry_is_ioapic(const uint8_t *e, const struct madt_ioapic *a)
{
	return e[0] == MADT_IO_APIC && e[1] >= 12 && a->id == e[2] &&
	       a->addr == rd32(e + 4) && a->gsi_base == rd32(e + 8);
}

static bool entry_is_override(const uint8_t *e, const struct madt_override *o)
{
	return e[0] == MADT_IRQ_OVERRIDE && e[1] >= 10 && e[2] == 0 &&
	       o->source == e[3] && o->gsi == rd32(e + 4) &&
	       o->flags == (uint16_t)(e[8] | e[9] << 8);
}

/* Walks the parsed table's entries: what info kept must be, in order,
 * entries of the table, and every entry of a kind counted once. */
static void check_walk(const uint8_t *t, uint32_t len,
                       const struct madt_cpu *cpus, const struct madt_info *in)
{
	struct walk w = {0};
	unsigned kc = 0, ka = 0, ko = 0;
	for (uint32_t off = ACPI_MADT_FIXED; off < len; off += t[off + 1]) {
		const uint8_t *e = t + off;
		if (len - off < 2 || e[1] < 2 || e[1] > len - off)
			fail("accepted MADT has an entry outside it", off);
		w.cpus += e[0] == MADT_LOCAL_APIC || e[0] == MADT_LOCAL_X2APIC;
		w.ioapics += e[0] == MADT_IO_APIC;
		w.overrides += e[0] == MADT_IRQ_OVERRIDE;
		if (kc < in->ncpus && entry_is_cpu(e, &cpus[kc]))
			kc++;
		if (ka < in->nioapics && entry_is_ioapic(e, &in->ioapics[ka]))
			ka++;
		if (ko < in->noverrides &&
		    entry_is_override(e, &in->overrides[ko]))
			ko++;
	}
	if (kc != in->ncpus || ka != in->nioapics || ko != in->noverrides)
		fail("a CPU, I/O APIC or override kept is no entry, in order",
		     0);
	if (in->ncpus + in->nignored + in->ndisabled + in->ninvalid +
	            in->nduplicate !=
	    w.cpus)
		fail("CPU entries not each counted once", w.cpus);
	if (in->nioapics + in->noverrides + in->nskipped !=
	    w.ioapics + w.overrides)
		fail("I/O APIC and override entries not each counted once", 0);
}

/* The promises of madt_parse.h about what info kept. */
static void check_kept(const struct madt_cpu *cpus, unsigned cap,
                       const struct madt_info *in, uint32_t len)
{
	if (in->ncpus > cap || in->nioapics > MADT_MAX_IOAPICS ||
	    in->noverrides > MADT_MAX_OVERRIDES ||
	    in->nbad_cpus > MADT_MAX_BAD_CPUS ||
	    in->nbad_ioapics > MADT_MAX_IOAPICS ||
	    in->nbad_overrides > MADT_MAX_OVERRIDES)
		fail("a count past its array", 0);
	for (unsigned i = 0; i < in->ncpus; i++) {
		if (cpus[i].apic_id == 0xffffffffu ||
		    (cpus[i].type == MADT_LOCAL_APIC &&
		     cpus[i].apic_id == 0xff))
			fail("a CPU with a reserved APIC id kept", i);
		for (unsigned j = 0; j < i; j++)
			if (cpus[j].apic_id == cpus[i].apic_id)
				fail("two CPUs with one APIC id kept", i);
	}
	for (unsigned i = 0; i < in->nioapics; i++) {
		const struct madt_ioapic *a = &in->ioapics[i];
		if (!a->addr || a->addr % MADT_IOAPIC_ALIGN ||
		    a->addr % MADT_IOAPIC_PAGE >
		            MADT_IOAPIC_PAGE - MADT_IOAPIC_BYTES)
			fail("an I/O APIC kept at an address refused", i);
		for (unsigned j = 0; j < i; j++)
			if (in->ioapics[j].addr == a->addr ||
			    in->ioapics[j].gsi_base == a->gsi_base)
				fail("two I/O APICs with one address or base",
				     i);
	}
	for (unsigned i = 0; i < in->noverrides; i++) {
		const struct madt_override *o = &in->overrides[i];
		if (o->source > 15 || (o->flags & MADT_POLARITY_MASK) == 2 ||
		    (o->flags & MADT_TRIGGER_MASK) == 8)
			fail("an override kept that is refused", i);
		for (unsigned j = 0; j < i; j++)
			if (in->overrides[j].source == o->source)
				fail("two overrides of one IRQ kept", i);
			else if (in->overrides[j].gsi == o->gsi)
				fail("two overrides onto one GSI kept", i);
		struct madt_irq_route r = madt_isa_route(in, o->source);
		if (r.gsi != o->gsi || r.owner != MADT_NO_IRQ)
			fail("an IRQ not routed by its override", i);
	}
	for (unsigned i = 0; i < in->nbad_cpus; i++)
		if (in->bad_cpus[i].off < ACPI_MADT_FIXED ||
		    in->bad_cpus[i].off >= len || !in->bad_cpus[i].why)
			fail("a CPU left out names no entry or reason", i);
	for (unsigned i = 0; i < in->nbad_ioapics; i++)
		if (in->bad_ioapics[i].off < ACPI_MADT_FIXED ||
		    in->bad_ioapics[i].off >= len || !in->bad_ioapics[i].why)
			fail("an I/O APIC left out names no entry or reason",
			     i);
	for (unsigned i = 0; i < in->nbad_overrides; i++)
		if (in->bad_overrides[i].off < ACPI_MADT_FIXED ||
		    in->bad_overrides[i].off >= len ||
		    !in->bad_overrides[i].why)
			fail("an override left out names no entry or reason",
			     i);
}

/* Parses t[0, avail) as the kernel does and checks what it made of it. */
static void check_madt(const uint8_t *t, uint32_t avail, unsigned cap)
{
	struct madt_cpu cpus[8];
	struct madt_info in;
	struct acpi_diag d = {0};
	enum acpi_status st = madt_parse(t, avail, cpus, cap, &in, &d);
	if (st != ACPI_OK) {
		if (st != ACPI_MALFORMED || !d.why)
			fail("a MADT refused without a reason", 0);
		return;
	}
	uint32_t len = rd32(t + 4);
	if (len < ACPI_MADT_FIXED || len > avail)
		fail("a MADT accepted with a length outside what was given",
		     len);
	check_kept(cpus, cap, &in, len);
	check_walk(t, len, cpus, &in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	uint8_t ctl = data[0];
	/* The walk's memory starts past the RSDP's address. */
	size_t skip = ctl & 1 ? 3 : 1, n = size - skip;
	uint8_t *m = malloc(n ? n : 1);
	memcpy(m, data + skip, n);
	if (!(ctl & 1)) {
		if ((ctl & 2) && n >= ACPI_MADT_FIXED &&
		    rd32(m + 4) >= ACPI_MADT_FIXED && rd32(m + 4) <= n)
			fix_sum(m, rd32(m + 4), 9);
		check_madt(m, (uint32_t)n, (ctl >> 2) % 9);
		free(m);
		return 0;
	}
	uint64_t rsdp = data[1] | (uint64_t)data[2] << 8;
	if (ctl & 2)
		fix_walk(m, n, rsdp);
	mem = m;
	mem_size = n;
	struct acpi_reader rd = {map_fn, NULL};
	struct acpi_table t;
	struct acpi_diag d = {0};
	enum acpi_status st = acpi_find_table(&rd, rsdp, "APIC", &t, &d);
	if (st != ACPI_OK && (st > ACPI_UNMAPPED || !d.why))
		fail("a refusal without a reason", 0);
	if (st == ACPI_OK) {
		if (t.pa > n || t.length > n - t.pa ||
		    t.length < ACPI_HEADER_SIZE ||
		    memcmp(t.data, m + t.pa, t.length) != 0 ||
		    memcmp(t.data, "APIC", 4) != 0 ||
		    rd32(t.data + 4) != t.length)
			fail("the table found is not the MADT at its address",
			     (uint32_t)t.pa);
		uint8_t s = 0;
		for (uint32_t i = 0; i < t.length; i++)
			s = (uint8_t)(s + t.data[i]);
		if (s)
			fail("the table found does not sum to zero", 0);
		check_madt(t.data, t.length, (ctl >> 2) % 9);
	}
	while (nmaps)
		free(maps[--nmaps]);
	free(m);
	return 0;
}

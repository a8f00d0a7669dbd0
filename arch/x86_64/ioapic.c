/*
 * The I/O APIC driver (see ioapic.h). Registers are reached through an
 * index/data pair: write the register number to IOREGSEL (offset 0x00),
 * then read or write IOWIN (offset 0x10). Register 1 holds the version and
 * the highest redirection entry; entry i is registers 0x10 + 2i (low half:
 * vector, delivery, polarity, trigger, mask) and 0x11 + 2i (high half: the
 * destination APIC id in bits 24-31).
 *
 * Each I/O APIC's page is mapped at IOAPIC_MMIO_VA + i pages: 2 MiB into
 * the MMIO region, after the LAPIC page and the ACPI window (acpi.c). Its
 * registers may start anywhere in that page on a 16-byte boundary (the
 * 82093AA's base is FEC0_xy00h); the MADT parser leaves out an entry
 * whose registers do not fit in one page.
 */
#include "ioapic.h"

#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "kernel/acpi.h"
#include "kernel/printk.h"

#define IOAPIC_MMIO_VA (MMIO_REGION_BASE + (2ull << 20))
#define IOREGSEL       0x00
#define IOWIN          0x10
#define REG_VERSION    0x01
#define REG_REDIR(i)   (0x10 + 2 * (i))

#define REDIR_MASKED     (1u << 16)
#define REDIR_LEVEL      (1u << 15)
#define REDIR_ACTIVE_LOW (1u << 13)

struct ioapic {
	volatile uint32_t *regs;
	uint32_t gsi_base;
	unsigned nredir; /* redirection entries: GSIs [base, base + nredir) */
	uint32_t addr;
	uint8_t id;
};

/* Boot CPU, at init: */
static struct ioapic ioapics[MADT_MAX_IOAPICS];
static unsigned nioapics;

static uint32_t rd(const struct ioapic *a, uint32_t reg)
{
	a->regs[IOREGSEL / 4] = reg;
	return a->regs[IOWIN / 4];
}

static void wr(const struct ioapic *a, uint32_t reg, uint32_t v)
{
	a->regs[IOREGSEL / 4] = reg;
	a->regs[IOWIN / 4] = v;
}

/* The I/O APIC before a whose GSIs overlap a's, or NULL. */
static const struct ioapic *gsi_clash(const struct ioapic *a)
{
	for (const struct ioapic *o = ioapics; o < a; o++)
		if (madt_gsi_ranges_overlap(o->gsi_base, o->nredir, a->gsi_base,
		                            a->nredir))
			return o;
	return NULL;
}

/* Leaves the last I/O APIC set up out, printing why, when its GSIs
 * overlap an earlier one's: the first listed wins, as in the MADT
 * parser, whose check of the GSI base alone cannot see a partial
 * overlap. Returns true when it did. */
static bool drop_if_clashing(uintptr_t va)
{
	const struct ioapic *a = &ioapics[nioapics - 1];
	const struct ioapic *o = gsi_clash(a);
	if (!o)
		return false;
	printk("ioapic: id %u at %#x (GSIs %u-%u) overlaps id %u at %#x "
	       "(GSIs %u-%u), listed before it; left out\n",
	       a->id, a->addr, a->gsi_base, a->gsi_base + a->nredir - 1, o->id,
	       o->addr, o->gsi_base, o->gsi_base + o->nredir - 1);
	vm_unmap_page(va, NULL);
	nioapics--;
	return true;
}

unsigned ioapic_init(void)
{
	const struct madt_info *m = acpi_madt();
	if (!m) {
		printk("ioapic: none: %s\n", acpi_madt_problem());
		return 0;
	}
	for (unsigned i = 0; i < m->nioapics; i++) {
		const struct madt_ioapic *ma = &m->ioapics[i];
		uintptr_t va = IOAPIC_MMIO_VA + nioapics * PAGE_SIZE;
		/* The MADT parser checked that both registers lie in the
		 * page at align_down(addr); the address need not start it. */
		int err = vm_map_page(va, align_down(ma->addr, PAGE_SIZE),
		                      VM_WRITE | VM_NOCACHE);
		if (err) {
			printk("ioapic: cannot map id %u at %#x: error %d\n",
			       ma->id, ma->addr, -err);
			continue;
		}
		struct ioapic *a = &ioapics[nioapics++];
		a->regs = (volatile uint32_t *)(va + ma->addr % PAGE_SIZE);
		a->gsi_base = ma->gsi_base;
		a->addr = ma->addr;
		a->id = ma->id;
		a->nredir = ((rd(a, REG_VERSION) >> 16) & 0xff) + 1;
		if (drop_if_clashing(va))
			continue;
		for (unsigned e = 0; e < a->nredir; e++) {
			wr(a, REG_REDIR(e) + 1, 0);
			wr(a, REG_REDIR(e), REDIR_MASKED);
		}
		printk("ioapic: id %u at %#x: GSIs %u-%u, all masked\n", a->id,
		       ma->addr, a->gsi_base, a->gsi_base + a->nredir - 1);
	}
	return nioapics;
}

bool ioapic_route_isa(uint8_t irq, uint8_t vector, uint32_t apic_id)
{
	const struct madt_info *m = acpi_madt();
	if (!m || !nioapics) {
		printk("ioapic: cannot route ISA IRQ %u: no I/O APIC\n", irq);
		return false;
	}
	struct madt_irq_route r = madt_isa_route(m, irq);
	if (r.owner != MADT_NO_IRQ) {
		printk("ioapic: cannot route ISA IRQ %u: its GSI %u carries "
		       "ISA IRQ %u (MADT override)\n",
		       irq, r.gsi, r.owner);
		return false;
	}
	/* Ranges do not overlap: ioapic_init left out any that did. */
	const struct ioapic *a = NULL;
	for (unsigned i = 0; i < nioapics && !a; i++)
		if (r.gsi >= ioapics[i].gsi_base &&
		    r.gsi - ioapics[i].gsi_base < ioapics[i].nredir)
			a = &ioapics[i];
	if (!a || apic_id > 0xff) {
		printk("ioapic: cannot route ISA IRQ %u (GSI %u) to APIC %u\n",
		       irq, r.gsi, apic_id);
		return false;
	}
	unsigned e = r.gsi - a->gsi_base;
	uint32_t lo = vector | (r.level ? REDIR_LEVEL : 0) |
	              (r.active_low ? REDIR_ACTIVE_LOW : 0);
	wr(a, REG_REDIR(e) + 1, apic_id << 24);
	wr(a, REG_REDIR(e), lo);
	printk("ioapic: ISA IRQ %u -> GSI %u (%s, active %s) -> vector %#x on "
	       "APIC %u\n",
	       irq, r.gsi, r.level ? "level" : "edge",
	       r.active_low ? "low" : "high", vector, apic_id);
	return true;
}

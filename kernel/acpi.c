/*
 * Finds the MADT for SMP bring-up (see acpi.h): maps the firmware's tables
 * for the portable parser and keeps its verdict.
 *
 * Mapping: tables in memory the direct map holds (RAM and ACPI reclaim
 * and NVS memory: paging_direct.c) are read through it. Anything else (a
 * table in reserved or runtime memory, or above the direct map) is mapped
 * read-only, page by page, into the
 * ACPI window, which starts 1 MiB into the MMIO region (the first MiB is
 * the LAPIC's, see lapic.h). The window only grows: tables are read at
 * boot, a few times each, and a few pages are all it ever takes.
 *
 * Either way, a range is mapped only when the firmware's memory map
 * describes every byte of it as memory that can hold tables
 * (acpi_mem.c): never device memory, nor memory the frame pool owns.
 * Boot-services memory, where some boards keep their tables, is the
 * pool's only from frames_reclaim_boot_memory, which kmain calls after
 * acpi_init; everything acpi_init keeps is a copy, so nothing reads the
 * tables after that.
 */
#include "acpi.h"

#include "arch/x86_64/paging.h"
#include "boot/boot_info.h"
#include "kernel/acpi_testing.h"
#include "kernel/acpi_mem.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"

#define ACPI_WINDOW_BASE  (MMIO_REGION_BASE + (1ull << 20))
#define ACPI_WINDOW_PAGES 256            /* map_window's refusal says 256 */
#define DIRECT_MAP_SPAN   (512ull << 30) /* one PML4 slot */

/* Boot CPU only, during acpi_init(): */
static unsigned window_used; /* pages of the window mapped so far */

/* Immutable after acpi_init(). Static, not kmalloc'd copies: acpi_init
 * runs long before the heap exists (kmain's step 4, heap_init is step
 * 11), and MAX_CPUS entries are all the kernel can use. */
static struct madt_cpu madt_cpus[MAX_CPUS];
static struct madt_info madt_info;
static bool madt_ok;
static const char *problem = "ACPI not initialised";
static const char *problem_detail = "";
/* Whether boot-services memory was still readable when acpi_init ran:
 * tables there are read only then (acpi_boot_memory_at_init). */
static enum acpi_boot_memory boot_memory_at_init = ACPI_BOOT_MEMORY_POOLED;

/* True if [pa, pa + len) is reachable through the direct map. */
static bool direct_mapped(uint64_t pa, uint32_t len)
{
	uint64_t first = align_down(pa, PAGE_SIZE);
	uint64_t limit = align_up(pa + len, PAGE_SIZE);
	if (limit > DIRECT_MAP_SPAN)
		return false;
	for (uint64_t p = first; p < limit; p += PAGE_SIZE) {
		paddr_t got;
		if (!vm_translate((uintptr_t)phys_to_virt(p), &got, NULL) ||
		    got != p)
			return false;
	}
	return true;
}

/* acpi_mem_holds_tables for the kernel's own map: boot-services memory
 * is readable until the frame pool has taken it. */
static bool described(uint64_t pa, uint64_t limit)
{
	return acpi_mem_holds_tables(&boot_state, pa, limit,
	                             frames_boot_memory_reclaimed()
	                                     ? ACPI_BOOT_MEMORY_POOLED
	                                     : ACPI_BOOT_MEMORY_KEPT);
}

/* The window's pages already mapping [first, first + npages pages), in
 * order: their address, or 0. Tables the direct map does not hold (a
 * board's in reserved memory) are read several times each, and the
 * window never shrinks: without this, each read took new pages. */
static uintptr_t window_find(uint64_t first, uint64_t npages)
{
	for (unsigned i = 0; i + npages <= window_used; i++) {
		uintptr_t va = ACPI_WINDOW_BASE + (uintptr_t)i * PAGE_SIZE;
		uint64_t k = 0;
		paddr_t got;
		while (k < npages &&
		       vm_translate(va + k * PAGE_SIZE, &got, NULL) &&
		       got == first + k * PAGE_SIZE)
			k++;
		if (k == npages)
			return va;
	}
	return 0;
}

/* acpi_map_window; when the window has no room left, or no page table
 * for it can be had, *why says so (not a malformed table). */
static const void *map_window(uint64_t pa, uint32_t len, const char **why)
{
	if (len == 0 || pa + len < pa || !described(pa, pa + len))
		return NULL;
	uint64_t first = align_down(pa, PAGE_SIZE);
	uint64_t npages = (align_up(pa + len, PAGE_SIZE) - first) / PAGE_SIZE;
	uintptr_t found = window_find(first, npages);
	if (found)
		return (const void *)(found + (pa - first));
	if (npages > ACPI_WINDOW_PAGES - window_used) {
		*why = "no room left in the kernel's 256-page ACPI window";
		return NULL;
	}
	uintptr_t va = ACPI_WINDOW_BASE + window_used * PAGE_SIZE;
	for (uint64_t i = 0; i < npages; i++) {
		if (vm_map_page(va + i * PAGE_SIZE, first + i * PAGE_SIZE,
		                VM_READ) != 0) {
			while (i--)
				vm_unmap_page(va + i * PAGE_SIZE, NULL);
			*why = "no frame for a page table of the kernel's ACPI "
			       "window";
			return NULL;
		}
	}
	window_used += (unsigned)npages;
	return (const void *)(va + (pa - first));
}

const void *acpi_map_window(uint64_t pa, uint32_t len)
{
	const char *why;
	return map_window(pa, len, &why);
}

/* acpi_map_phys; an acpi_map_fn (acpi_parse.h). */
static const void *kernel_map(void *ctx, uint64_t pa, uint32_t len,
                              const char **why)
{
	if (len == 0 || pa + len < pa || pa + len > BOOT_MAX_PHYS ||
	    !described(pa, pa + len))
		return NULL;
	if (direct_mapped(pa, len))
		return phys_to_virt(pa);
	return map_window(pa, len, why);
}

const void *acpi_map_phys(uint64_t pa, uint32_t len)
{
	const char *why;
	return kernel_map(NULL, pa, len, &why);
}

static void print_madt(const struct acpi_table *t)
{
	const struct madt_info *m = &madt_info;
	printk("acpi: RSDP rev %u at %#llx, %s at %#llx, MADT at %#llx\n",
	       t->rsdp_revision, (unsigned long long)boot_state.rsdp,
	       t->via_xsdt ? "XSDT" : "RSDT", (unsigned long long)t->root_pa,
	       (unsigned long long)t->pa);
	printk("acpi: MADT lists %u CPU%s (APIC ids", m->ncpus,
	       m->ncpus == 1 ? "" : "s");
	for (unsigned i = 0; i < m->ncpus; i++)
		printk(" %u%s", madt_cpus[i].apic_id,
		       madt_cpus[i].type == MADT_LOCAL_X2APIC ? "(x2)" : "");
	printk("), %u disabled, local APIC at %#llx\n", m->ndisabled,
	       (unsigned long long)m->lapic_pa);
	for (unsigned i = 0; i < m->nioapics; i++)
		printk("acpi: I/O APIC id %u at %#x, GSI base %u\n",
		       m->ioapics[i].id, m->ioapics[i].addr,
		       m->ioapics[i].gsi_base);
	for (unsigned i = 0; i < m->noverrides; i++)
		printk("acpi: ISA IRQ %u -> GSI %u, flags %#x\n",
		       m->overrides[i].source, m->overrides[i].gsi,
		       m->overrides[i].flags);
	for (uint8_t irq = 0; irq < 16; irq++) {
		struct madt_irq_route r = madt_isa_route(m, irq);
		if (r.owner != MADT_NO_IRQ)
			printk("acpi: ISA IRQ %u has no pin: its GSI %u "
			       "carries ISA IRQ %u\n",
			       irq, r.gsi, r.owner);
	}
	acpi_print_madt_skipped(m);
}

void acpi_print_madt_skipped(const struct madt_info *m)
{
	for (unsigned i = 0; i < m->nbad_ioapics; i++) {
		const struct madt_bad_ioapic *b = &m->bad_ioapics[i];
		printk("acpi: MADT entry at offset %#x, I/O APIC id %u at %#x "
		       "(GSI base %u): %s; skipped\n",
		       b->off, b->id, b->addr, b->gsi_base, b->why);
	}
	for (unsigned i = 0; i < m->nbad_overrides; i++) {
		const struct madt_bad_override *b = &m->bad_overrides[i];
		if (b->clash != MADT_NO_IRQ)
			printk("acpi: MADT entry at offset %#x, override of "
			       "ISA IRQ %u -> GSI %u, flags %#x: %s (ISA IRQ "
			       "%u's, kept); skipped\n",
			       b->off, b->source, b->gsi, b->flags, b->why,
			       b->clash);
		else
			printk("acpi: MADT entry at offset %#x, override of "
			       "bus %u IRQ %u -> GSI %u, flags %#x: %s; "
			       "skipped\n",
			       b->off, b->bus, b->source, b->gsi, b->flags,
			       b->why);
	}
	if (m->nskipped)
		printk("acpi: %u I/O APIC or override entr%s skipped\n",
		       m->nskipped, m->nskipped == 1 ? "y" : "ies");
	if (m->nignored)
		printk("acpi: %u more CPU%s ignored: the kernel supports %d\n",
		       m->nignored, m->nignored == 1 ? "" : "s", MAX_CPUS);
	for (unsigned i = 0; i < m->nbad_cpus; i++) {
		const struct madt_bad_cpu *b = &m->bad_cpus[i];
		printk("acpi: MADT entry at offset %#x, %s APIC id %#x (UID "
		       "%u): %s; skipped\n",
		       b->off,
		       b->type == MADT_LOCAL_X2APIC ? "x2APIC" : "local",
		       b->apic_id, b->uid, b->why);
	}
	if (m->nduplicate || m->ninvalid)
		printk("acpi: skipped %u duplicate and %u invalid APIC ids\n",
		       m->nduplicate, m->ninvalid);
}

static void refuse(const char *what, const struct acpi_diag *d)
{
	problem = what;
	problem_detail = d->why;
	printk("acpi: %s: %s (at %#llx)\n", what, d->why,
	       (unsigned long long)d->at);
}

void acpi_init(void)
{
	struct acpi_reader r = {kernel_map, NULL};
	struct acpi_table t = {0};
	struct acpi_diag d = {"", 0};
	boot_memory_at_init = frames_boot_memory_reclaimed()
	                              ? ACPI_BOOT_MEMORY_POOLED
	                              : ACPI_BOOT_MEMORY_KEPT;
	if (cmdline_flag("acpi.no_madt")) {
		problem = "no MADT";
		problem_detail = "acpi.no_madt on the command line";
		printk("acpi: no MADT: acpi.no_madt on the command line\n");
		return;
	}
	if (!boot_state.rsdp) {
		problem = "no MADT";
		problem_detail = "the loader found no ACPI RSDP";
		printk("acpi: no MADT: the loader found no ACPI RSDP\n");
		return;
	}
	enum acpi_status st =
	        acpi_find_table(&r, boot_state.rsdp, "APIC", &t, &d);
	if (st == ACPI_NOT_FOUND) {
		refuse("no MADT", &d);
		return;
	}
	if (st == ACPI_UNMAPPED) {
		refuse("unreadable ACPI tables", &d);
		return;
	}
	if (st != ACPI_OK) {
		refuse(t.pa ? "malformed MADT" : "malformed ACPI tables", &d);
		return;
	}
	st = madt_parse(t.data, t.length, madt_cpus, MAX_CPUS, &madt_info, &d);
	if (st != ACPI_OK) {
		refuse("malformed MADT", &d);
		return;
	}
	madt_ok = true;
	print_madt(&t);
}

const struct madt_info *acpi_madt(void)
{
	return madt_ok ? &madt_info : NULL;
}

const struct madt_cpu *acpi_madt_cpus(void)
{
	return madt_ok ? madt_cpus : NULL;
}

enum acpi_boot_memory acpi_boot_memory_at_init(void)
{
	return boot_memory_at_init;
}

const char *acpi_madt_problem(void)
{
	return problem;
}

const char *acpi_madt_problem_detail(void)
{
	return problem_detail;
}

/*
 * What the direct map holds: exactly the memory map's RAM (the frame
 * pool's types, ACPI reclaim and NVS), nothing of its holes, device,
 * reserved, runtime or unusable memory. Read from the live page tables,
 * not from what paging_direct.c says it made. Until this version the map
 * was [0, RAM top) rounded up to a large page: under QEMU the VGA hole at
 * 0xa0000 was mapped, and with 5 GiB (the harness's direct_map_5g case)
 * the PCI window, the I/O APIC and the local APIC, write-back.
 */
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "boot/boot_info.h"
#include "kernel/acpi.h"
#include "kernel/bootinfo.h"
#include "kernel/ktest.h"

/* Runs of physical memory, [base, limit), in address order, touching
 * ones joined. */
#define MAX_RUNS 64

struct runs {
	paddr_t base[MAX_RUNS], limit[MAX_RUNS];
	size_t n;
	bool overflow;
	uintptr_t nonlinear; /* a leaf's va that maps another frame */
};

static void runs_add(struct runs *r, paddr_t base, paddr_t limit)
{
	if (r->n > 0 && r->limit[r->n - 1] == base) {
		r->limit[r->n - 1] = limit;
		return;
	}
	if (r->n == MAX_RUNS) {
		r->overflow = true;
		return;
	}
	r->base[r->n] = base;
	r->limit[r->n++] = limit;
}

/* The test's own word on what the direct map must hold: RAM the kernel
 * reads, the pool's and the ACPI tables'. */
static bool ram_type(uint32_t type)
{
	return mem_type_usable(type) || type == EFI_ACPI_RECLAIM_MEMORY ||
	       type == EFI_ACPI_MEMORY_NVS;
}

static void expected_runs(struct runs *r)
{
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *m = &boot_state.regions[i];
		if (ram_type(m->type) && m->base < DIRECT_MAP_SIZE)
			runs_add(r, m->base,
			         m->limit < DIRECT_MAP_SIZE ? m->limit
			                                    : DIRECT_MAP_SIZE);
	}
}

/* Adds the leaves of the table at pa (level 3 the PML4, 0 a page table)
 * mapping from va, in address order. */
static void mapped_runs_of(struct runs *r, paddr_t pa, int level, uintptr_t va)
{
	const volatile uint64_t *t = phys_to_virt(pa);
	uint64_t size = PAGE_SIZE << (9 * level);
	for (unsigned i = 0; i < 512; i++, va += size) {
		uint64_t e = t[i];
		if (!(e & PTE_P))
			continue;
		if (level > 0 && !(e & PTE_PS)) {
			mapped_runs_of(r, e & PTE_ADDR, level - 1, va);
			continue;
		}
		paddr_t frame = e & PTE_ADDR & ~(size - 1);
		if (frame != va - DIRECT_MAP_BASE && !r->nonlinear)
			r->nonlinear = va;
		runs_add(r, frame, frame + size);
	}
}

/* The direct map's PML4 entries: DIRECT_MAP_SIZE is whole 512 GiB slots. */
static void mapped_runs(struct runs *r)
{
	const volatile uint64_t *pml4 = phys_to_virt(read_cr3() & PTE_ADDR);
	uint64_t slot = 512ull << 30;
	unsigned first = (DIRECT_MAP_BASE >> 39) & 511;
	for (unsigned i = 0; i < DIRECT_MAP_SIZE / slot; i++) {
		uint64_t e = pml4[first + i];
		if (e & PTE_P)
			mapped_runs_of(r, e & PTE_ADDR, 2,
			               DIRECT_MAP_BASE + i * slot);
	}
}

static void print_runs(const char *what, const struct runs *r)
{
	for (size_t i = 0; i < r->n; i++)
		ktest_diag("%s %#llx-%#llx", what,
		           (unsigned long long)r->base[i],
		           (unsigned long long)r->limit[i]);
}

KTEST(direct_map, holds_the_ram_of_the_memory_map_and_nothing_else)
{
	static struct runs want, got; /* 2 KiB each: not on the stack */
	want = (struct runs){0};
	got = (struct runs){0};
	expected_runs(&want);
	mapped_runs(&got);
	KASSERT(!want.overflow && !got.overflow);
	KEXPECT_EQ(got.nonlinear, 0);
	bool same = want.n == got.n;
	for (size_t i = 0; same && i < want.n; i++)
		same = want.base[i] == got.base[i] &&
		       want.limit[i] == got.limit[i];
	if (!same) {
		print_runs("RAM", &want);
		print_runs("mapped", &got);
		ktest_fail_at(__FILE__, __LINE__,
		              "the direct map's %zu runs are not the memory "
		              "map's %zu runs of RAM",
		              got.n, want.n);
	}
}

static bool direct_mapped(paddr_t pa)
{
	return vm_translate((uintptr_t)phys_to_virt(pa), NULL, NULL);
}

/* The devices the kernel maps uncached elsewhere have no write-back
 * alias, and neither has the VGA hole; the RAM just below it has. */
KTEST(direct_map, device_registers_have_no_alias)
{
	const struct madt_info *m = acpi_madt();
	KASSERT(m != NULL);
	KEXPECT(!direct_mapped(m->lapic_pa));
	for (unsigned i = 0; i < m->nioapics; i++)
		KEXPECT(!direct_mapped(m->ioapics[i].addr));
	KEXPECT(!direct_mapped(0xa0000));
	KEXPECT(!direct_mapped(0xfffff));
	KEXPECT(direct_mapped(0x9f000));
}

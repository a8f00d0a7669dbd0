/*
 * The AP trampoline's page: which low page it goes to (the highest usable
 * page below 1 MiB outside the kernel image), and its installation: the
 * code copied through the direct map, the page identity-mapped r-x
 * (W^X: an AP stores to it only before it turns paging on), and the
 * parameters every AP shares. smp_ap.c then writes each AP's own (its
 * stack, cpus[] index and APIC id) before its SIPI.
 */
#include "smp.h"

#include <stddef.h>

#include "cpu.h"
#include "paging.h"
#include "smp_internal.h"
#include "smp_testing.h"

#include "kernel/bootinfo.h"
#include "kernel/printk.h"
#include "kernel/string.h"

#define LOW_LIMIT 0x100000ull /* a SIPI vector is a page below 1 MiB */
#define EFER_LME  (1ull << 8)

_Static_assert(offsetof(struct tramp_params, gdt_base) == TP_GDTR + 2, "");
_Static_assert(offsetof(struct tramp_params, far32_offset) == TP_FAR32, "");
_Static_assert(offsetof(struct tramp_params, far64_offset) == TP_FAR64, "");
_Static_assert(offsetof(struct tramp_params, cr0) == TP_CR0, "");
_Static_assert(offsetof(struct tramp_params, cr3) == TP_CR3, "");
_Static_assert(offsetof(struct tramp_params, efer) == TP_EFER, "");
_Static_assert(offsetof(struct tramp_params, started) == TP_STARTED, "");
_Static_assert(offsetof(struct tramp_params, cr4) == TP_CR4, "");
_Static_assert(offsetof(struct tramp_params, stack_top) == TP_STACK, "");
_Static_assert(offsetof(struct tramp_params, entry) == TP_ENTRY, "");
_Static_assert(offsetof(struct tramp_params, cpu_id) == TP_CPU_ID, "");
_Static_assert(offsetof(struct tramp_params, apic_id) == TP_APIC_ID, "");
_Static_assert(offsetof(struct tramp_params, stray) == TP_STRAY, "");
_Static_assert(sizeof(struct tramp_params) == TP_SIZE, "");
_Static_assert(TRAMP_SIZE <= PAGE_SIZE, "the trampoline is one page");

extern const char trampoline_start[], trampoline_32[], trampoline_64[],
        trampoline_end[];

paddr_t smp_tramp_pa;
volatile struct tramp_params *smp_params;

paddr_t smp_pick_trampoline_page(const struct boot_state *b)
{
	paddr_t best = 0;
	for (size_t i = 0; i < b->nregions; i++) {
		const struct mem_region *r = &b->regions[i];
		if (!mem_type_usable(r->type))
			continue;
		paddr_t base = align_up(r->base, PAGE_SIZE);
		paddr_t limit = align_down(r->limit, PAGE_SIZE);
		if (base < PAGE_SIZE)
			base = PAGE_SIZE;
		if (limit > LOW_LIMIT)
			limit = LOW_LIMIT;
		/* The image is loader data, usable like the rest: a top
		 * inside it moves down to below it (its ends are pages). */
		if (limit > b->kernel_phys_base &&
		    limit <= b->kernel_phys_limit)
			limit = b->kernel_phys_base;
		if (limit >= base + PAGE_SIZE && limit - PAGE_SIZE > best)
			best = limit - PAGE_SIZE;
	}
	return best;
}

bool smp_trampoline_install(paddr_t pa, unsigned *flags)
{
	if ((size_t)(trampoline_end - trampoline_start) != TRAMP_SIZE)
		panic("smp: trampoline is %zu bytes, smp.h says %u",
		      (size_t)(trampoline_end - trampoline_start), TRAMP_SIZE);
	memcpy(phys_to_virt(pa), trampoline_start, TRAMP_SIZE);
	/* r-x: the boot CPU writes the page through the direct map, and the
	 * AP stores to it only before it turns paging on (W^X). */
	int err = vm_map_page((uintptr_t)pa, pa, VM_EXEC);
	if (err) {
		printk("smp: cannot identity-map the trampoline page %#llx "
		       "(error %d)\n",
		       (unsigned long long)pa, -err);
		return false;
	}
	smp_tramp_pa = pa;
	vm_translate((uintptr_t)pa, NULL, flags);
	smp_params = phys_to_virt(pa + TRAMP_PARAMS);
	smp_params->gdt_limit = 4 * 8 - 1;
	smp_params->gdt_base = (uint32_t)(pa + TRAMP_GDT);
	smp_params->far32_offset =
	        (uint32_t)(pa + (uintptr_t)(trampoline_32 - trampoline_start));
	smp_params->far32_sel = TRAMP_SEL_CODE32;
	smp_params->far64_offset =
	        (uint32_t)(pa + (uintptr_t)(trampoline_64 - trampoline_start));
	smp_params->far64_sel = TRAMP_SEL_CODE64;
	smp_params->cr0 = (uint32_t)read_cr0();
	smp_params->cr3 = (uint32_t)(read_cr3() & PTE_ADDR);
	smp_params->efer = (uint32_t)(EFER_LME | (rdmsr(MSR_EFER) & EFER_NXE));
	smp_params->cr4 = read_cr4();
	smp_params->entry = (uintptr_t)smp_ap_entry;
	return true;
}

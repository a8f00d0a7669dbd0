/*
 * Between smp.c (bring-up) and smp_trampoline.c (the trampoline page):
 * the parameter block the boot CPU writes and trampoline.S reads, and
 * where it is. Not for other callers.
 */
#ifndef ARCH_X86_64_SMP_INTERNAL_H
#define ARCH_X86_64_SMP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86_64/layout.h"

/* The parameter block, as trampoline.S reads it (offsets in smp.h). */
struct tramp_params {
	uint16_t gdt_limit;
	uint32_t gdt_base;
	uint16_t pad0;
	uint32_t far32_offset;
	uint16_t far32_sel;
	uint16_t pad1;
	uint32_t far64_offset;
	uint16_t far64_sel;
	uint16_t pad2;
	uint32_t cr0, cr3, efer;
	uint32_t started;
	uint64_t cr4, stack_top, entry, cpu_id;
	uint32_t apic_id, stray;
} __attribute__((packed));

/* Set by smp_trampoline_install, then read by the boot CPU's bring-up
 * and, through the page, by each AP: */
extern paddr_t smp_tramp_pa;
extern volatile struct tramp_params *smp_params;

/* Copies the trampoline to pa, maps it at its own address (r-x) and
 * fills the parameters every AP shares; *flags gets the mapping's enum
 * vm_flags. Returns false (and says why) on failure. Boot CPU, once. */
bool smp_trampoline_install(paddr_t pa, unsigned *flags);

/* Where the trampoline's 64-bit code calls, on the AP's own stack. */
__attribute__((noreturn)) void smp_ap_entry(uint64_t id);

#endif

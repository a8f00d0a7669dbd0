/*
 * Between the three files of SMP bring-up: smp.c (the driver),
 * smp_ap.c (starting one AP and waiting for it) and smp_trampoline.c
 * (the trampoline page): the parameter block the boot CPU writes and
 * trampoline.S reads, and where it is; the fault injection and the
 * report the driver and the per-AP half share. Not for other callers.
 */
#ifndef ARCH_X86_64_SMP_INTERNAL_H
#define ARCH_X86_64_SMP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86_64/layout.h"

struct smp_report;

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

#define AP_STACK_PAGES 8
/* An AP's answer to its SIPI: an instant on hardware, but TCG starts a
 * vCPU slowly, and on a loaded host a vCPU's thread may wait long to run:
 * at -smp 8 with the host's load at 30, one AP had not run its
 * trampoline's first store 1 s after its SIPI (1 boot of 17, when that
 * was the bound). Linux waits 10 s of wall clock; this waits 10 s of the
 * boot CPU's own running time (smp_clock.h), so that a host that runs
 * neither vCPU for a while does not use the bound up. It only costs time
 * when an AP never answers. */
#define AP_WAIT_US 10000000
#define NO_APIC_ID 0xffffffffu

/* The fault injection the command line asks for, each the APIC id of the
 * AP it applies to or NO_APIC_ID (smp_ap.c says what each does at its
 * variable): smp.late_ap, smp.no_ist, smp.slow_ap, smp.stale_sipi,
 * smp.host_stall. */
struct smp_faults {
	uint32_t late_ap, no_ist, slow_ap, stale_sipi, host_stall;
};

/* The bring-up's report (smp_report), written by the boot CPU in smp.c
 * and smp_ap.c; immutable after smp_boot_aps(). */
extern struct smp_report smp_bringup;

/* Sets what every AP runs once online and the fault injection, before
 * any AP starts. Boot CPU, once. */
void smp_ap_setup(void (*ap_main)(void), const struct smp_faults *f);

/* Starts the AP with apic_id as cpus[id], without its SIPIs if
 * withhold_sipi (smp.skip_sipi). Returns true once it is online; else
 * reports it, parks it with INIT and frees its stacks. Boot CPU, one AP
 * at a time, with the trampoline installed. */
bool smp_start_ap(unsigned id, uint32_t apic_id, bool withhold_sipi);

#endif

/*
 * SMP bring-up: starts the application processors (APs) the MADT lists,
 * through a real-mode trampoline, INIT-SIPI-SIPI and a per-AP stack.
 *
 * The trampoline's layout is shared with trampoline.S, hence the offsets
 * below (the C struct in smp_internal.h is checked against them, in
 * smp_trampoline.c). It is one page below 1 MiB, copied there by the boot
 * CPU:
 *
 *   0x000  16-bit entry (the SIPI starts the AP at CS = page << 8, IP = 0)
 *          then the 32-bit and 64-bit steps
 *   0x100  its GDT: null, 32-bit code 0x08, data 0x10, 64-bit code 0x18
 *   0x140  the parameter block the boot CPU fills in for each AP
 */
#ifndef ARCH_X86_64_SMP_H
#define ARCH_X86_64_SMP_H

#define TRAMP_GDT    0x100
#define TRAMP_PARAMS 0x140

#define TRAMP_SEL_CODE32 0x08
#define TRAMP_SEL_DATA   0x10
#define TRAMP_SEL_CODE64 0x18

/* Offsets in the parameter block. */
#define TP_GDTR    0x00 /* u16 limit, u32 base: for lgdtl */
#define TP_FAR32   0x08 /* u32 offset, u16 selector: the 32-bit step */
#define TP_FAR64   0x10 /* u32 offset, u16 selector: the 64-bit step */
#define TP_CR0     0x18 /* u32: the boot CPU's CR0 (PE, PG, WP...) */
#define TP_CR3     0x1c /* u32: the kernel PML4, below 4 GiB */
#define TP_EFER    0x20 /* u32: EFER bits to set (LME, NXE) */
#define TP_STARTED 0x24 /* u32: the AP sets 1 on its first instruction */
#define TP_CR4     0x28 /* u64: the boot CPU's CR4, loaded in long mode */
#define TP_STACK   0x30 /* u64: the AP's initial stack pointer */
#define TP_ENTRY   0x38 /* u64: the 64-bit C entry, smp_ap_entry */
#define TP_CPU_ID  0x40 /* u64: the AP's cpus[] index, its first argument */
#define TP_APIC_ID 0x48 /* u32: the APIC id of the AP these are for */
#define TP_STRAY                                                \
	0x4c /* u32: 0x100 | the low byte of the APIC id of the \
	        last CPU that ran the trampoline while it was   \
	        set for another, 0 if none */
#define TP_SIZE 0x50

#define TRAMP_SIZE (TRAMP_PARAMS + TP_SIZE)

#ifndef __ASSEMBLY__

#include <stdint.h>

/*
 * Starts every CPU the MADT lists, one at a time; each runs ap_main (which
 * must never return) once it is online. Prints why and returns with the
 * boot CPU alone when there is no usable MADT, no trampoline page, or a
 * PML4 above 4 GiB. An AP that does not come online within 10 s of the
 * boot CPU's running time (smp_clock.h; 600 s of wall clock at most, a freeze
 * of the VM counted 1 s) is
 * reported, sent INIT again (so it cannot wake later on freed memory), and
 * skipped; its cpus[] slot goes to the next AP, so online CPUs are always
 * cpus[0 .. ncpus_online). If a SIPI still pending wakes it later anyway,
 * it halts in the trampoline (which checks that it is the AP it is set
 * for) and smp_report()->stray says so. An AP whose stack or IST stacks
 * cannot be allocated is left out, said so, before it is started. On the
 * command line, "smp.skip_sipi=<apic id>" withholds that AP's SIPIs,
 * "smp.no_ist=<apic id>" its IST stacks, and "smp.stale_sipi=<apic id>"
 * sends that AP, once parked, a SIPI while the trampoline is set for the
 * next, and "smp.host_stall=<apic id>" makes the boot CPU's clock jump
 * 15 s in its wait for that AP (held meanwhile), as when the host runs
 * neither, to exercise those paths. Boot CPU, once, after lapic_init,
 * time_init and acpi_init.
 */
void smp_boot_aps(void (*ap_main)(void));

/* What bring-up found; immutable after smp_boot_aps(). */
struct smp_report {
	unsigned listed; /* usable CPUs in the MADT, the boot CPU included
	                    (1 without a MADT) */
	unsigned failed; /* APs that did not come online */
	uint64_t trampoline_pa; /* the low page used, 0 if none */
	/* the enum vm_flags of its identity mapping while APs started */
	unsigned trampoline_flags;
	/* 0x100 | the low byte of the APIC id of the last CPU that woke
	 * late and ran the trampoline while it was set for another AP (it
	 * halted there), 0 if none did during bring-up */
	uint32_t stray;
	/* the AP that took longest from its INIT to online, and how long
	 * (wall clock); 0 and 0 if none came */
	uint32_t slowest_apic;
	uint64_t slowest_ns;
	/* the boot CPU's waits for APs: how long the host did not run it
	 * (gaps between its polls of 1 ms or more: smp_clock.h) */
	uint64_t stalled_ns;
};

const struct smp_report *smp_report(void);

#endif

#endif

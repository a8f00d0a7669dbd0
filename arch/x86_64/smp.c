/*
 * SMP bring-up (see smp.h), its driver: the boot CPU starts each AP the
 * MADT lists through the trampoline, one AP at a time, and reports.
 *
 * Basic algorithm:
 *   1. Pick the highest usable RAM page below 1 MiB (frames never hands
 *      those out) that is not the kernel image's, copy the trampoline
 *      there and identity-map it in the kernel page tables, so the AP can
 *      keep running from it when it turns paging on. Fill the parameter
 *      block's fixed part: GDT base, far-jump targets, CR0/CR3/CR4/EFER
 *      as the boot CPU has them.
 *   2. Read the fault injection options (smp.skip_sipi, smp.late_ap,
 *      smp.no_ist, smp.slow_ap, smp.stale_sipi, smp.host_stall) from the
 *      command line and hand them to smp_ap.c. Start each AP the MADT
 *      lists, in its order, into cpus[1...] (smp_start_ap, smp_ap.c: its
 *      stacks, INIT and SIPIs, the wait for it, and the AP's side); one
 *      out of xAPIC reach, or past MAX_CPUS, is counted as failed (and a
 *      fault option naming it, said to be ignored). After
 *      each, say whether a CPU ran the trampoline while it was set for
 *      another AP (a SIPI left pending: smp_ap.c); once bring-up is over
 *      the parameters match no CPU.
 *   3. Unmap the trampoline page, and print a line: the CPUs online, the
 *      slowest AP, and the time the host did not run the boot CPU during
 *      the waits.
 */

#include "smp.h"

#include <stdatomic.h>

#include "cpu.h"
#include "lapic.h"
#include "paging.h"
#include "smp_internal.h"
#include "smp_testing.h"

#include "kernel/acpi.h"
#include "kernel/bootinfo.h"
#include "kernel/format.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/time.h"

/* Written by the boot CPU during bring-up (here and in smp_ap.c);
 * immutable after smp_boot_aps(): */
struct smp_report smp_bringup;

const struct smp_report *smp_report(void)
{
	return &smp_bringup;
}

/* Reports the CPU that ran the trampoline while it was set for another
 * AP, if one did since the last look (it halted there, interrupts off, in
 * real mode: nothing sends it anything again). */
static void note_stray(void)
{
	uint32_t stray = smp_params->stray;
	if (!stray || stray == smp_bringup.stray)
		return;
	smp_bringup.stray = stray;
	printk("smp: a CPU with APIC id %u (mod 256) ran the trampoline set "
	       "for another AP; it halted there\n",
	       stray & 0xff);
}

/* Parses "key=<apic id>" (smp.skip_sipi, smp.late_ap, ...) against the
 * MADT's m->ncpus entries at mc; NO_APIC_ID when absent, refused
 * (cmdline_get_uint says why, naming the option) or naming no AP, which
 * is said too: until a review an id no AP has (the boot CPU's, one past
 * the last) was taken and injected nothing, without a word. */
static uint32_t apic_id_arg(const char *key, const struct madt_info *m,
                            const struct madt_cpu *mc, uint32_t bsp)
{
	uint64_t v;
	if (!cmdline_get_uint(key, 0, NO_APIC_ID - 1, &v))
		return NO_APIC_ID;
	for (unsigned i = 0; i < m->ncpus; i++)
		if (mc[i].apic_id == v && v != bsp)
			return (uint32_t)v;
	printk("smp: %s=%llu: no AP has that APIC id (the boot CPU's is "
	       "%u); ignored\n",
	       key, (unsigned long long)v, bsp);
	return NO_APIC_ID;
}

/* The options apic_id_arg reads, in struct smp_faults' order after
 * smp.skip_sipi (start_listed_aps). */
static const char *const fault_keys[] = {
        "smp.skip_sipi", "smp.late_ap",    "smp.no_ist",
        "smp.slow_ap",   "smp.stale_sipi", "smp.host_stall",
};
#define NFAULT_KEYS (sizeof(fault_keys) / sizeof(fault_keys[0]))
_Static_assert(NFAULT_KEYS == 1 + sizeof(struct smp_faults) / sizeof(uint32_t),
               "a key for smp.skip_sipi and each of struct smp_faults");

/* With no AP to start, or bring-up unable to run (why), no fault option
 * is read: each given is named, as one that names no AP is (until a
 * review, at -smp 1 or without a MADT, they and their malformed values
 * passed without a word). */
static void faults_unread(const char *why)
{
	for (size_t i = 0; i < NFAULT_KEYS; i++)
		if (cmdline_get(fault_keys[i], NULL, 0))
			printk("smp: %s: %s; ignored\n", fault_keys[i], why);
}

/* An AP skipped (why) that fault options name (ids[], as fault_keys):
 * each named, as one naming no AP is; until a review the injection did
 * nothing without a word. */
static void faults_skipped(const uint32_t *ids, uint32_t apic_id,
                           const char *why)
{
	for (size_t i = 0; i < NFAULT_KEYS; i++)
		if (ids[i] == apic_id)
			printk("smp: %s=%u: that AP is not started (%s); "
			       "ignored\n",
			       fault_keys[i], apic_id, why);
}

/* Counts the CPUs to start: the MADT's, plus the boot CPU if unlisted. */
static unsigned count_listed(const struct madt_info *m,
                             const struct madt_cpu *mc, uint32_t bsp)
{
	for (unsigned i = 0; i < m->ncpus; i++)
		if (mc[i].apic_id == bsp)
			return m->ncpus;
	printk("smp: the boot CPU (APIC id %u) is not in the MADT\n", bsp);
	return m->ncpus + 1;
}

/* Checks what bring-up needs; on failure says why, counts every AP as
 * failed and returns false. */
static bool can_start_aps(void)
{
	paddr_t pml4 = read_cr3() & PTE_ADDR;
	if (pml4 >= (1ull << 32)) {
		printk("smp: the kernel PML4 at %#llx is above 4 GiB, out of "
		       "the trampoline's reach: running on the boot CPU "
		       "alone\n",
		       (unsigned long long)pml4);
		return false;
	}
	/* smp.no_trampoline: as if there were none, the way to this path
	 * on a machine that has one (the harness's smp_no_trampoline). */
	bool none = cmdline_get("smp.no_trampoline", NULL, 0);
	paddr_t pa = none ? 0 : smp_pick_trampoline_page(&boot_state);
	if (!pa) {
		printk("smp: no usable RAM page below 1 MiB for the "
		       "trampoline%s: running on the boot CPU alone\n",
		       none ? " (smp.no_trampoline on the command line)" : "");
		return false;
	}
	return smp_trampoline_install(pa, &smp_bringup.trampoline_flags);
}

/* Starts every AP in the MADT, in its order, into cpus[1...], each to run
 * ap_main once online. */
static void start_listed_aps(const struct madt_info *m,
                             const struct madt_cpu *mc, uint32_t bsp,
                             void (*ap_main)(void))
{
	uint32_t ids[NFAULT_KEYS];
	for (size_t k = 0; k < NFAULT_KEYS; k++)
		ids[k] = apic_id_arg(fault_keys[k], m, mc, bsp);
	uint32_t skip = ids[0];
	struct smp_faults f = {
	        .late_ap = ids[1],
	        .no_ist = ids[2],
	        .slow_ap = ids[3],
	        .stale_sipi = ids[4],
	        .host_stall = ids[5],
	};
	smp_ap_setup(ap_main, &f);
	unsigned next = 1;
	for (unsigned i = 0; i < m->ncpus; i++) {
		uint32_t apic_id = mc[i].apic_id;
		if (apic_id == bsp)
			continue;
		if (next == MAX_CPUS) {
			/* only with an unlisted boot CPU */
			faults_skipped(ids, apic_id, "past MAX_CPUS");
			smp_bringup.failed++;
			continue;
		}
		if (!lapic_x2apic() && apic_id >= 0xff) {
			printk("smp: APIC id %u is out of xAPIC reach\n",
			       apic_id);
			faults_skipped(ids, apic_id, "out of xAPIC reach");
			smp_bringup.failed++;
			continue;
		}
		if (smp_start_ap(next, apic_id, apic_id == skip))
			next++;
		else
			smp_bringup.failed++;
		note_stray();
	}
	smp_params->apic_id = NO_APIC_ID; /* matches no CPU's low byte */
	note_stray();
}

void smp_boot_aps(void (*ap_main)(void))
{
	struct cpu *bsp = this_cpu();
	cpu_set_online();
	smp_bringup.listed = 1;
	const struct madt_info *m = acpi_madt();
	const struct madt_cpu *mc = acpi_madt_cpus();
	if (!m) {
		printk("smp: %s (%s): running on the boot CPU alone\n",
		       acpi_madt_problem(), acpi_madt_problem_detail());
		faults_unread("no AP to start");
		return;
	}
	smp_bringup.listed = count_listed(m, mc, bsp->apic_id);
	if (smp_bringup.listed == 1) {
		faults_unread("no AP to start");
		return;
	}
	if (!can_start_aps()) {
		smp_bringup.failed = smp_bringup.listed - 1;
		faults_unread("APs listed, but bring-up could not run");
		return;
	}
	uint64_t start = time_now_ns();
	start_listed_aps(m, mc, bsp->apic_id, ap_main);
	vm_unmap_page((uintptr_t)smp_tramp_pa, NULL);
	smp_bringup.trampoline_pa = smp_tramp_pa;
	char slowest[64] = "";
	if (atomic_load(&ncpus_online) > 1)
		ksnprintf(
		        slowest, sizeof(slowest),
		        ", the slowest (APIC id %u) %llu ms after its INIT",
		        smp_bringup.slowest_apic,
		        (unsigned long long)(smp_bringup.slowest_ns / 1000000));
	printk("smp: %u of %u CPUs online in %llu ms%s (trampoline page at "
	       "phys %#llx, %d KiB stack each)\n",
	       atomic_load(&ncpus_online), smp_bringup.listed,
	       (unsigned long long)((time_now_ns() - start) / 1000000), slowest,
	       (unsigned long long)smp_tramp_pa, AP_STACK_PAGES * 4);
	if (smp_bringup.stalled_ns)
		printk("smp: the host did not run the boot CPU for %llu ms of "
		       "its waits for APs; not counted against their %d s\n",
		       (unsigned long long)(smp_bringup.stalled_ns / 1000000),
		       AP_WAIT_US / 1000000);
}

/*
 * kmain: the boot CPU's path from the loader's handoff to a running kernel.
 *
 * Init order, and why:
 *   1. serial        so that anything after can report; the GDT and IDT
 *                    without IST stacks, so that a fault is the kernel's
 *                    to report (the firmware's tables are lost with its
 *                    page tables at step 4: a fault there reset the
 *                    machine without a word)
 *   2. boot info     copied out of loader memory before it is reclaimed
 *   3. frames        conventional memory only: the loader's page tables and
 *                    handoff are still in use
 *   4. paging        the kernel's own tables; loader memory is now free;
 *                    then ACPI: the MADT read into copies while boot-services
 *                    memory, where some boards keep their tables, is still
 *                    the firmware's
 *   5. reclaim       loader and boot-services memory join the frame pool
 *   6. GDT, IDT      with the TSS and IST stacks, which come from kernel
 *                    stacks, so after paging;
 *                    then the heap's restartable sequences (sorted for
 *                    irq_dispatch's restart) before any interrupt can
 *                    land in a kmalloc or kfree
 *   7. LAPIC         its EOI and timer vector before any interrupt; fixes
 *                    the boot CPU's APIC id
 *   8. time          TSC and LAPIC timer calibrated against the PIT; then
 *                    the boot CPU's periodic timer, which APs copy
 *   9. scheduler     the boot context becomes thread "main"; the idle
 *                    thread, timer tick, STW and shootdown IPIs are set
 *                    before any AP can use them
 *  10. SMP           the MADT (step 4) lists the APs; starting them needs the
 *                    delays of step 8 and each AP's GDT/IDT of step 6;
 *                    each AP becomes its CPU's idle thread
 *  11. heap          the kernel's page heap and its scavenger thread
 *  12. banner, then the tests if the command line asks for them, else the
 *      I/O APIC route of the serial console and the shell thread; main
 *      idles
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/gdt.h"
#include "arch/x86_64/ioapic.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/serial.h"
#include "arch/x86_64/smp.h"
#include "arch/x86_64/trap.h"
#include "kernel/acpi.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest_kernel.h"
#include "kernel/percpu.h"
#include "kernel/shell.h"
#include "kernel/printk.h"
#include "kernel/rcu.h"
#include "kernel/stw.h"
#include "kernel/sched.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "kernel/tlb.h"

static void print_cpu(void)
{
	uint32_t r[4];
	char vendor[13], brand[49];
	cpuid(0, 0, r);
	__builtin_memcpy(vendor, &r[1], 4);
	__builtin_memcpy(vendor + 4, &r[3], 4);
	__builtin_memcpy(vendor + 8, &r[2], 4);
	vendor[12] = '\0';
	brand[0] = '\0';
	cpuid(0x80000000, 0, r);
	if (r[0] >= 0x80000004) {
		for (uint32_t i = 0; i < 3; i++)
			cpuid(0x80000002 + i, 0, (uint32_t *)(brand + 16 * i));
		brand[48] = '\0';
	}
	const char *b = brand;
	while (*b == ' ')
		b++;
	unsigned n = atomic_load(&ncpus_online);
	printk("cpu: %s (%s), %u CPU%s online\n", *b ? b : "unknown model",
	       vendor, n, n == 1 ? "" : "s");
}

static void print_memory(void)
{
	struct mem_totals t = mem_totals(&boot_state);
	/* What the pool took, not the regions' size: the kernel image is
	 * loader data, and boot memory below 1 MiB is never the pool's. */
	uint64_t boot = frames_reclaimed_count() * PAGE_SIZE;
	printk("memory: %llu MiB usable (%llu MiB conventional, %llu MiB "
	       "reclaimed from loader and boot services), %zu regions, "
	       "RAM top %#llx\n",
	       (unsigned long long)(t.usable >> 20),
	       (unsigned long long)(t.conventional >> 20),
	       (unsigned long long)(boot >> 20), boot_state.nregions,
	       (unsigned long long)boot_state.ram_top);
	if (t.unaccepted)
		printk("memory: %llu KiB unaccepted (UEFI type 15) not used: "
		       "accepting it needs TDX or SEV-SNP calls this kernel "
		       "does not make\n",
		       (unsigned long long)(t.unaccepted >> 10));
	printk("memory: %llu KiB of ACPI tables (ACPI reclaim) kept, not "
	       "pooled\n",
	       (unsigned long long)(t.acpi_reclaim >> 10));
	printk("memory: kernel image at phys %#llx-%#llx\n",
	       (unsigned long long)boot_state.kernel_phys_base,
	       (unsigned long long)boot_state.kernel_phys_limit);
	printk("frames: %zu free of %zu managed (%zu MiB free)\n",
	       frames_free_count(), frames_managed_count(),
	       frames_free_count() >> 8);
}

/* Page-table pages come from the frame pool, kept together. */
static const struct paging_frame_source table_frames = {
        .alloc = frame_alloc_lasting};

/* rcu_init, after the KTEST_FAIL_DEMO build's misuse of RCU before it
 * (demo.synchronize_rcu_before_init: no rcu thread runs grace periods
 * yet; tools/test-harness). */
static void start_rcu(void)
{
#ifdef KTEST_FAIL_DEMO
	if (cmdline_flag("demo.synchronize_rcu_before_init"))
		synchronize_rcu();
#endif
	rcu_init();
}

__attribute__((noreturn)) void kmain(paddr_t boot_info_phys)
{
	/* GS first: locks (printk's too) find their CPU through it. */
	cpu_init_local(0, 0);
	serial_init();
	gdt_init_boot();
	idt_init_boot();
	printk("\nkernel: entered at %p, boot_info at %#llx\n", (void *)kmain,
	       (unsigned long long)boot_info_phys);
	bootinfo_copy(boot_info_phys);
	/* Before the other CPUs start: under a hypervisor, the locks stop
	 * handing off in FIFO order (spinlock.h). */
	spin_mode_init();
	ktest_kernel_init();
	frames_init();
	paging_init(&table_frames);
	acpi_init();
	frames_reclaim_boot_memory();
#ifdef KTEST_FAIL_DEMO
	/* demo.early_fault: a fault before the IST stacks exist, on the
	 * kernel's own page tables (tools/test-harness). */
	if (cmdline_flag("demo.early_fault"))
		*(volatile int *)(uintptr_t)0xdead000 = 1;
#endif
	if (!gdt_alloc_ist(0))
		panic("gdt: no memory for the boot CPU's IST stacks");
	gdt_init_cpu();
	idt_init_cpu();
	/* Before any interrupt can land in a kmalloc or kfree. */
	heap_rseq_init();
	lapic_init();
	time_init();
	sched_init();
	stw_init();
	tlb_init();
	lapic_timer_periodic(SCHED_HZ);
	ioapic_init();
	smp_boot_aps(sched_start_ap);
	cpu_sti();
	heap_init();
	start_rcu();

	printk("Gantry kernel: a Go-style page and span allocator, x86_64\n");
	print_cpu();
	print_memory();
	paging_print_layout();
	if (boot_state.cmdline[0])
		printk("cmdline: %s\n", boot_state.cmdline);
	cmdline_check_known();
	heap_meminfo();

	ktest_kernel_main();

	printk("kernel: idle\n");
	shell_start();
	for (;;)
		thread_sleep_ns(1000000000ull);
}

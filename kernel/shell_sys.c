/*
 * The shell's commands about the kernel around the allocator: threads
 * (per-CPU run queues and CPU time), locks (acquisitions and contention),
 * cmdline, memmap (the firmware's memory map as the kernel kept it, with
 * its holes, and what the kernel made of each region: the frame pool's,
 * in the direct map), sleep, poweroff and exit.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "boot/boot_info.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/heap_copy.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/shell.h"
#include "kernel/shell_internal.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"

static enum shell_status cmd_threads(int argc, char **argv)
{
	unsigned n;
	struct thread_info *ti = thread_snapshot_all(&n);
	if (!ti) {
		printk("threads: out of memory\n");
		return SHELL_FAILED;
	}
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++) {
		struct sched_cpu_info ci;
		if (!sched_cpu_info(cpu, &ci))
			continue;
		printk("cpu %u: %u thread%s, %u runnable waiting, %u "
		       "sleeping, %llu ticks, running %s\n",
		       cpu, ci.nthreads, ci.nthreads == 1 ? "" : "s",
		       ci.nqueued, ci.nsleeping, (unsigned long long)ci.ticks,
		       ci.current);
		for (unsigned i = 0; i < n; i++) {
			if (ti[i].cpu != cpu)
				continue;
			uint64_t us = ti[i].cpu_ns / 1000;
			printk("  %4llu %-24s %-9s %8llu.%03llu ms\n",
			       (unsigned long long)ti[i].id, ti[i].name,
			       thread_state_name(ti[i].state),
			       (unsigned long long)(us / 1000),
			       (unsigned long long)(us % 1000));
		}
	}
	printk("threads: %u in all\n", n);
	kfree(ti);
	return SHELL_OK;
}

static enum shell_status cmd_locks(int argc, char **argv)
{
	struct spin_stats *st = kmalloc_array(SPIN_LIST_MAX, sizeof(*st), 0);
	if (!st) {
		printk("locks: out of memory\n");
		return SHELL_FAILED;
	}
	unsigned n = spin_list_stats(st, SPIN_LIST_MAX);
	/* Locks of one name and rank (the run queues, the 62 size
	 * classes' central locks) are summed on one line. */
	printk("%-14s %-11s %5s %14s %12s\n", "lock", "rank", "locks",
	       "acquired", "contended");
	for (unsigned i = 0; i < n; i++) {
		if (!st[i].name)
			continue;
		unsigned count = 1;
		uint64_t acq = st[i].acquired, con = st[i].contended;
		for (unsigned j = i + 1; j < n; j++) {
			if (!st[j].name || st[j].rank != st[i].rank ||
			    strcmp(st[j].name, st[i].name) != 0)
				continue;
			count++;
			acq += st[j].acquired;
			con += st[j].contended;
			st[j].name = NULL;
		}
		printk("%-14s %-11s %5u %14llu %12llu\n", st[i].name,
		       lock_rank_name(st[i].rank), count,
		       (unsigned long long)acq, (unsigned long long)con);
	}
	printk("locks: %u listed (locks in kernel data; counters are "
	       "always on); waiters take them in %s mode\n",
	       n, spin_mode_name(spin_mode()));
	kfree(st);
	return SHELL_OK;
}

static enum shell_status cmd_cmdline(int argc, char **argv)
{
	printk("cmdline: %s\n",
	       boot_state.cmdline[0] ? boot_state.cmdline : "(empty)");
	return SHELL_OK;
}

/* n bytes in the largest unit that leaves a whole number above 0. */
static void print_size(uint64_t n)
{
	static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
	unsigned u = 0;
	while (u + 1 < sizeof(unit) / sizeof(unit[0]) && n >= 1024 &&
	       n % 1024 == 0) {
		n /= 1024;
		u++;
	}
	printk("%llu %s", (unsigned long long)n, unit[u]);
}

/* What the frame pool makes of region r: the pool never takes the low
 * MiB or the kernel image (frames.c). */
static const char *region_use(const struct mem_region *r)
{
	if (!mem_type_usable(r->type))
		return "";
	if (r->limit <= (1u << 20))
		return ", below 1 MiB: not the pool's";
	if (r->base < boot_state.kernel_phys_limit &&
	    boot_state.kernel_phys_base < r->limit)
		return ", holds the kernel image";
	if (r->base < (1u << 20))
		return ", the frame pool's above 1 MiB";
	return r->type == EFI_CONVENTIONAL_MEMORY ||
	                       frames_boot_memory_reclaimed()
	               ? ", the frame pool's"
	               : ", the frame pool's once reclaimed";
}

/* One region of the memory map: its range, type and size, and whether
 * the frame pool has it and the direct map holds it. */
static void print_region(const struct mem_region *r)
{
	printk("memmap: %#llx-%#llx %s, ", (unsigned long long)r->base,
	       (unsigned long long)r->limit, mem_type_name(r->type));
	print_size(r->limit - r->base);
	printk("%s%s\n", region_use(r),
	       r->base < DIRECT_MAP_SIZE &&
	                       vm_translate((uintptr_t)phys_to_virt(r->base),
	                                    NULL, NULL)
	               ? ", in the direct map"
	               : "");
}

/* memmap: each region, and each hole between two. */
static enum shell_status cmd_memmap(int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return shell_usage(&shell_sys_cmds[6]);
	paddr_t at = 0;
	unsigned holes = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (r->base > at) {
			printk("memmap: %#llx-%#llx hole, ",
			       (unsigned long long)at,
			       (unsigned long long)r->base);
			print_size(r->base - at);
			printk("\n");
			holes++;
		}
		print_region(r);
		at = r->limit;
	}
	printk("memmap: %zu regions, %u holes between them; RAM top %#llx\n",
	       boot_state.nregions, holes,
	       (unsigned long long)boot_state.ram_top);
	return SHELL_OK;
}

static enum shell_status cmd_sleep(int argc, char **argv);
static enum shell_status cmd_poweroff(int argc, char **argv);
static enum shell_status cmd_exit(int argc, char **argv);

const struct shell_cmd shell_sys_cmds[] = {
        {"threads", "", "per-CPU run queues and CPU time per thread",
         cmd_threads},
        {"locks", "", "acquisitions and contention per lock", cmd_locks},
        {"cmdline", "", "the kernel command line", cmd_cmdline},
        {"sleep", "MS", "wait MS milliseconds (Ctrl-C stops it)", cmd_sleep},
        {"poweroff", "[STATUS]", "leave QEMU (status 0 by default)",
         cmd_poweroff},
        {"exit", "", "leave QEMU with the last command's status", cmd_exit},
        {"memmap", "",
         "the firmware's memory map: regions, holes, what the kernel "
         "made of each",
         cmd_memmap},
        {NULL, NULL, NULL, NULL},
};

static enum shell_status cmd_sleep(int argc, char **argv)
{
	uint64_t ms;
	if (argc != 2)
		return shell_usage(&shell_sys_cmds[3]);
	if (!shell_parse_uint(argv[0], "MS", argv[1], 0, 3600 * 1000, &ms))
		return SHELL_USAGE;
	/* To a deadline: a sleep ends at the first tick past its own, so
	 * MS/10 sleeps of 10 ms in a row took up to twice MS (review: 811
	 * ms for "sleep 500"). Slices of 10 ms keep Ctrl-C quick. */
	uint64_t deadline = time_now_ns() + ms * 1000000ull;
	for (uint64_t now;
	     !shell_interrupted() && (now = time_now_ns()) < deadline;)
		thread_sleep_ns(deadline - now < 10000000ull ? deadline - now
		                                             : 10000000ull);
	return shell_interrupted() ? SHELL_INTERRUPTED : SHELL_OK;
}

static __attribute__((noreturn)) void leave(uint64_t status)
{
	printk("poweroff: leaving QEMU with status %llu\n",
	       (unsigned long long)status);
	qemu_exit(SHELL_EXIT_BASE + (uint32_t)status);
	printk("poweroff: isa-debug-exit is missing; halting\n");
	cpu_halt_forever();
}

static enum shell_status cmd_poweroff(int argc, char **argv)
{
	uint64_t status = 0;
	if (argc > 2)
		return shell_usage(&shell_sys_cmds[4]);
	if (argc == 2 &&
	    !shell_parse_uint(argv[0], "STATUS", argv[1], 0, 63, &status))
		return SHELL_USAGE;
	leave(status);
}

static enum shell_status cmd_exit(int argc, char **argv)
{
	if (argc != 1)
		return shell_usage(&shell_sys_cmds[5]);
	leave(shell_last_status());
}

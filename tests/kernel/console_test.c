/*
 * printk's engine in the kernel build, the symbol table behind backtraces,
 * and the command-line parser the test runner relies on.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/lapic_testing.h"
#include "arch/x86_64/trap.h"
#include "kernel/bootinfo.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/ksyms.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/printk_testing.h"
#include "kernel/spinlock_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "mm/port.h"
#include "tests/kernel/smp_util.h"

KTEST(console, format_in_kernel)
{
	char buf[96];
	ksnprintf(buf, sizeof(buf), "[%5d|%-4s|%04x|%c|%lu|%%]", -42, "ab",
	          0xbeefu, 'z', 18446744073709551615ul);
	KEXPECT_STREQ(buf, "[  -42|ab  |beef|z|18446744073709551615|%]");
	ksnprintf(buf, sizeof(buf), "%p", (void *)__text_start);
	KEXPECT_STREQ(buf, "0xffffffff80000000");
	KEXPECT_EQ(ksnprintf(buf, 4, "%s", "overflow"), 8);
	KEXPECT_STREQ(buf, "ove");
}

KTEST(console, ksyms_names_functions)
{
	uint64_t off;
	const char *name = ksyms_lookup((uint64_t)(uintptr_t)panic + 3, &off);
	KASSERT(name != NULL);
	KEXPECT_STREQ(name, "panic");
	KEXPECT_EQ(off, 3);
	KEXPECT_EQ(ksyms_address("panic"), (uint64_t)(uintptr_t)panic);
	KEXPECT_EQ(ksyms_address("no_such_symbol"), 0);
	KEXPECT(ksyms_lookup(0x1000, &off) == NULL);
	char buf[64];
	ksyms_format((uint64_t)(uintptr_t)printk + 0x10, buf, sizeof(buf));
	KEXPECT_STREQ(buf, "printk+0x10");
}

/* A return address is named after the call before it: at a function's
 * first byte (after a noreturn call that ended the function before it)
 * the name is that previous function's, with the offset of the return
 * address itself; inside a function, its own. Until a review backtraces
 * named such a frame after the next function ("tsc_cal_pick_add+0x0" for
 * trap_dispatch's last call). */
KTEST(console, a_return_address_names_the_call_before_it)
{
	uint64_t at = (uint64_t)(uintptr_t)panic, off;
	const char *before = ksyms_lookup(at - 1, &off);
	KASSERT(before != NULL);
	KEXPECT(strcmp(before, "panic") != 0);
	char want[96], buf[96];
	ksnprintf(want, sizeof(want), "%s+%#lx", before, off + 1);
	ksyms_format_return(at, buf, sizeof(buf));
	KEXPECT_STREQ(buf, want);
	ksyms_format_return(at + 5, buf, sizeof(buf));
	KEXPECT_STREQ(buf, "panic+0x5");
	ksyms_format_return(0, buf, sizeof(buf));
	KEXPECT_STREQ(buf, "?");
}

/* A frame whose saved RBP is above the stack (a smashed frame: a 0xff
 * fill) ends backtrace_save's walk, with no fault: until a review the
 * bound's subtraction wrapped, and the walk read the frame there. */
__attribute__((noinline)) static unsigned save_with_a_smashed_frame(void)
{
	uintptr_t pcs[8];
	uint64_t *fp = __builtin_frame_address(0);
	uint64_t saved = fp[0];
	fp[0] = 0xfffffffffffffff0ull;
	unsigned n = backtrace_save(pcs, 8, 0);
	fp[0] = saved;
	__asm__ volatile("" ::: "memory");
	return n;
}

KTEST(console, backtrace_save_stops_at_a_frame_above_the_stack)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		unsigned n = save_with_a_smashed_frame();
		fault_catch_disarm(&fc);
		KEXPECT(n <= 1);
		return;
	}
	ktest_fail_at(__FILE__, __LINE__,
	              "backtrace_save faulted at %#lx (CR2 %#lx)",
	              (unsigned long)fc.fault_rip, (unsigned long)fc.cr2);
}

/* The table tools/gen-ksyms emits (kernel/ksyms.c reads it). */
extern const uint64_t ksyms_count;
extern const uint64_t ksyms_addrs[];
extern const uint32_t ksyms_name_offs[];
extern const char ksyms_names[];

/* A file-local function: nm lists it as "t", not "T". */
static __attribute__((noinline, used)) int ksyms_local_fn(int x)
{
	return x * 3 + 1;
}

/* Every symbol is found at its own first byte (offset 0, a name at that
 * address), its name is found by ksyms_address, the address just before
 * a symbol is its predecessor's, and nothing is found from __text_end on
 * (the symbols after it are not code). */
KTEST(console, ksyms_finds_every_symbol_at_its_address)
{
	uint64_t off;
	KASSERT(ksyms_count > 100);
	unsigned bad = 0;
	for (uint64_t i = 0; i < ksyms_count; i++) {
		uint64_t a = ksyms_addrs[i];
		if (a >= (uint64_t)(uintptr_t)__text_end)
			continue;
		const char *name = ksyms_lookup(a, &off);
		const char *own = &ksyms_names[ksyms_name_offs[i]];
		bool ok = name != NULL && off == 0 &&
		          ksyms_address(name) != 0 && ksyms_address(own) != 0;
		if (ok && i > 0 && ksyms_addrs[i - 1] < a)
			ok = ksyms_lookup(a - 1, &off) != NULL &&
			     off == a - 1 - ksyms_addrs[i - 1];
		if (!ok && bad++ < 5)
			ktest_diag("symbol %lu %s at %#lx: found '%s'+%#lx", i,
			           own, a, name ? name : "(none)", off);
	}
	KEXPECT_EQ(bad, 0);
	const char *name = ksyms_lookup((uint64_t)(uintptr_t)panic, &off);
	KEXPECT(name != NULL && strcmp(name, "panic") == 0 && off == 0);
	name = ksyms_lookup((uint64_t)(uintptr_t)ksyms_local_fn + 1, &off);
	KEXPECT(name != NULL && strcmp(name, "ksyms_local_fn") == 0 &&
	        off == 1);
	KEXPECT(ksyms_lookup((uint64_t)(uintptr_t)__text_end - 1, &off) !=
	        NULL);
	KEXPECT(ksyms_lookup((uint64_t)(uintptr_t)__text_end, &off) == NULL);
	KEXPECT(ksyms_lookup(ksyms_addrs[0] - 1, &off) == NULL);
	KEXPECT_EQ(
	        ksyms_address(&ksyms_names[ksyms_name_offs[ksyms_count - 1]]),
	        ksyms_addrs[ksyms_count - 1]);
	KEXPECT_EQ(ksyms_local_fn(1), 4);
}

KTEST(console, cmdline_selects_tests)
{
	/* As long as the command line: a ktest glob of 64 characters or
	 * more (a comma list of suites) was refused as too long for the
	 * 64 bytes this had, failing the test, not the kernel. */
	static char v[BOOT_CMDLINE_MAX];
	/* The runner itself was started by "ktest=..." on the command line. */
	KEXPECT(cmdline_get("ktest", v, sizeof(v)));
	KEXPECT(!cmdline_get("ktes", v, sizeof(v)));
	KEXPECT(!cmdline_get("no_such_key", v, sizeof(v)));
}

KTEST(console, memory_map_is_sorted_and_disjoint)
{
	KASSERT(boot_state.nregions > 0);
	int bad = 0;
	for (size_t i = 1; i < boot_state.nregions; i++)
		bad += boot_state.regions[i].base <
		       boot_state.regions[i - 1].limit;
	KEXPECT_EQ(bad, 0);
	/* Not 64 MiB: on a 64 MiB machine the firmware keeps the top. */
	KEXPECT(boot_state.ram_top >= (16ull << 20));
	KEXPECT(boot_state.ram_top >= boot_state.kernel_phys_limit);
	KEXPECT(boot_state.kernel_phys_base % 4096 == 0);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1: proves that a failure is reported
 * (make test must exit non-zero naming demo.deliberate_failure) and that
 * a panic in a test ends the run as a crash. */
KTEST(demo, deliberate_failure)
{
	KEXPECT_EQ(1 + 1, 3);
}

KTEST(demo, deliberate_panic)
{
	panic("deliberate panic in a test");
}

KTEST(demo, deliberate_page_fault)
{
	volatile uintptr_t unmapped = 0xdead000;
	*(volatile int *)unmapped = 1;
}

/* A fault under a leaf lock (the page heap's is one: a corrupt heap
 * faults there) is reported as the panic it is: until a review the
 * report's first printk took the console lock, and the lock checker's
 * panic about that replaced the report. The harness wants the #PF. */
static struct spinlock demo_leaf =
        SPINLOCK_INIT("demo_leaf", LOCK_RANK_TEST_LEAF);

KTEST(demo, fault_under_a_leaf_lock)
{
	unsigned long irq = spin_lock_irqsave(&demo_leaf);
	*(volatile int *)0xdead000 = 1;
	spin_unlock_irqrestore(&demo_leaf, irq);
}

/* A fault inside a panic while the thread's fault hook is armed is the
 * panic's (a nested one, which prints): until a review the thread was
 * resumed from inside its panic, the other CPUs parked for good and no
 * "KERNEL PANIC" said. */
KTEST(demo, fault_inside_a_panic_under_a_catch)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0)
		panic("deliberate panic reading %s", (const char *)0xdead000);
	ktest_diag("the thread resumed from inside its panic");
	KEXPECT(false);
}

static volatile int keep_going = 1;

__attribute__((noinline)) static void recurse(void *arg)
{
	volatile char frame[256];
	frame[0] = 1;
	if (keep_going)
		recurse(arg);
	frame[1] = frame[0];
}

KTEST(demo, deliberate_stack_overflow)
{
	struct thread_handle t =
	        thread_create("deep", recurse, NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
}

KTEST(demo, deliberate_double_free)
{
	paddr_t pa = frame_alloc();
	frame_free(pa);
	frame_free(pa);
}

static _Atomic unsigned chatter_lines[MAX_CPUS];

static void chatter(void *arg)
{
	unsigned id = this_cpu()->id;
	for (unsigned n = 0;; n++) {
		printk("chatter: cpu %u line %u\n", id, n);
		atomic_fetch_add(&chatter_lines[id], 1);
	}
}

/* Gives the other CPUs 100 ms to print over the panic, if they still can. */
static void linger(uintptr_t cpu)
{
	time_delay_us(100000);
}

/* Every other CPU prints without pause when this one panics: the harness
 * checks that no "chatter" line follows "KERNEL PANIC". Run at -smp 4. */
KTEST(demo, panic_while_others_print)
{
	unsigned self = this_cpu()->id;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != self && atomic_load(&cpus[i].online))
			KASSERT(thread_handle_ok(
			        thread_create("chatter", chatter, NULL, i)));
	for (unsigned i = 0; i < MAX_CPUS; i++)
		while (i != self && atomic_load(&cpus[i].online) &&
		       atomic_load(&chatter_lines[i]) < 3)
			thread_yield();
#if KTEST_HOOKS
	atomic_store(&panic_testing_after_message, linger);
#endif
	panic("deliberate panic while other CPUs print");
}

#if KTEST_HOOKS
static _Atomic bool second_go, second_going;

/* On another CPU: mm_panics as soon as the first panic lets it. */
static void second_panicker(void *arg)
{
	while (!atomic_load(&second_go))
		cpu_pause();
	atomic_store(&second_going, true);
	mm_panic("second panic, from cpu %u", this_cpu()->id);
}

/* In the first panic, once claimed: lets the second CPU mm_panic, then
 * gives it 100 ms to format over the first message, if it still can. */
static void let_second_panic(uintptr_t cpu)
{
	atomic_store(&second_go, true);
	while (!atomic_load(&second_going))
		cpu_pause();
	time_delay_us(100000);
}

/* Two CPUs mm_panic at once: the harness checks that the crash names the
 * first one's message, whole. Run at -smp 2 or more. */
KTEST(demo, two_cpus_mm_panic_at_once)
{
	unsigned self = this_cpu()->id, other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	KASSERT(thread_handle_ok(
	        thread_create("second", second_panicker, NULL, other)));
	atomic_store(&panic_testing_claimed, let_second_panic);
	mm_panic("first panic, from cpu %u", self);
}

/* The CPU that stops inside printk, the console lock held, and then
 * never answers the panic's NMI (as one wedged, or in an NMI already). */
static _Atomic int stuck_cpu = -1;
static _Atomic bool stuck;

static void stop_in_printk(uintptr_t c)
{
	if ((int)this_cpu()->id != atomic_load(&stuck_cpu))
		return;
	atomic_store(&stuck, true);
	for (;;)
		cpu_pause();
}

static void never_park(uintptr_t cpu)
{
	if ((int)cpu == atomic_load(&stuck_cpu))
		for (;;)
			cpu_pause();
}

static void print_and_stick(void *arg)
{
	printk("stuck: this line stops at its first character\n");
}

/* The panic message must come out although the console lock's holder
 * never stops: the harness looks for the CRASH line. Run at -smp 2. */
KTEST(demo, panic_while_a_stuck_cpu_holds_the_console)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS) {
		ktest_skip("one CPU");
		return;
	}
	atomic_store(&stuck_cpu, (int)other);
	atomic_store(&panic_testing_park, never_park);
	atomic_store(&printk_testing_putc, stop_in_printk);
	KASSERT(thread_handle_ok(
	        thread_create("stuck", print_and_stick, NULL, other)));
	while (!atomic_load(&stuck))
		thread_yield();
	panic("deliberate panic while cpu %u holds the console", other);
}

/* The CPU that holds the console while the test's CPU queues for it, and
 * then NMIs the test's CPU, whose NMI handler prints its report. */
static _Atomic int nmi_helper = -1, nmi_target = -1;
static _Atomic bool helper_holds, nmi_sent, target_waits;

/* spin_testing_waiting: the test's CPU waits for the console lock (with
 * its ticket taken in ticket mode, with none in test-and-set mode). */
static void note_target_waits(uintptr_t l)
{
	if (l == (uintptr_t)printk_testing_console_lock() &&
	    (int)this_cpu()->id == atomic_load(&nmi_target))
		atomic_store(&target_waits, true);
}

static void nmi_the_waiter(uintptr_t c)
{
	if ((int)this_cpu()->id != atomic_load(&nmi_helper) ||
	    atomic_load(&nmi_sent))
		return;
	atomic_store(&helper_holds, true);
	while (!atomic_load(&target_waits))
		cpu_pause();
	atomic_store(&nmi_sent, true);
	lapic_send_nmi(cpus[atomic_load(&nmi_target)].apic_id);
}

static void print_as_helper(void *arg)
{
	printk("helper: holding the console\n");
}

/* An NMI while this CPU waits for the console lock: the report must come
 * out (a CRASH naming the NMI), not wait behind this CPU's own ticket for
 * good (in ticket mode), or for the lock it waits for (in either). Run at
 * -smp 2. */
KTEST(demo, nmi_while_waiting_for_the_console)
{
	unsigned self = this_cpu()->id, other = other_online_cpu();
	if (other == MAX_CPUS) {
		ktest_skip("one CPU");
		return;
	}
	atomic_store(&nmi_target, (int)self);
	atomic_store(&nmi_helper, (int)other);
	atomic_store(&spin_testing_waiting, note_target_waits);
	atomic_store(&printk_testing_putc, nmi_the_waiter);
	KASSERT(thread_handle_ok(
	        thread_create("helper", print_as_helper, NULL, other)));
	while (!atomic_load(&helper_holds))
		thread_yield();
	printk("waiter: queued behind the helper\n");
	ktest_diag("the NMI did not stop the test");
	KEXPECT(false);
}

/* The panic's NMI to the other CPU is not accepted (xAPIC) while that
 * CPU holds the console lock: the panicking CPU says so without the
 * lock, and the panic comes out. Until a review that line waited for
 * the lock for good. Run at -smp 2. */
KTEST(demo, panic_with_an_nmi_not_accepted_while_the_console_is_held)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS || lapic_x2apic()) {
		ktest_skip("one CPU, or x2APIC (no delivery status)");
		return;
	}
	atomic_store(&stuck_cpu, (int)other);
	atomic_store(&printk_testing_putc, stop_in_printk);
	KASSERT(thread_handle_ok(
	        thread_create("stuck", print_and_stick, NULL, other)));
	while (!atomic_load(&stuck))
		thread_yield();
	lapic_testing_wedge_next_ipi();
	panic("deliberate panic with an NMI not accepted");
}
#endif
#endif

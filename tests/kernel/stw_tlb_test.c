/*
 * Stop-the-world parks every other CPU and resumes them; a TLB shootdown
 * after an unmap on one CPU makes the page fault on another. Both need at
 * least two CPUs and are skipped at -smp 1.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk_testing.h"
#include "kernel/stw.h"
#include "kernel/string.h"
#include "kernel/stw_testing.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "kernel/tlb.h"
#include "kernel/tlb_testing.h"
#include "tests/kernel/fault_util.h"
#include "tests/kernel/smp_util.h"

static _Atomic bool spin_stop;
static _Atomic uint64_t spins[MAX_CPUS];

static void spinner(void *arg)
{
	unsigned id = this_cpu()->id;
	while (!atomic_load(&spin_stop))
		atomic_fetch_add(&spins[id], 1);
}

static bool counters_moved(const uint64_t *snap)
{
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != this_cpu()->id && atomic_load(&cpus[i].online) &&
		    atomic_load(&spins[i]) == snap[i])
			return false;
	return true;
}

/* Waits until every other CPU's counter moved, with no time bound: with
 * more vCPUs than host CPUs, the host can leave a vCPU unscheduled for
 * many seconds, and the 10 s bound this had failed a correct kernel. A
 * CPU that never moves hangs the run, which run-ktest's timeout ends
 * naming the test. */
static void wait_all_move(const uint64_t *snap)
{
	while (!counters_moved(snap))
		cpu_pause();
}

static void snapshot(uint64_t *snap)
{
	for (unsigned i = 0; i < MAX_CPUS; i++)
		snap[i] = atomic_load(&spins[i]);
}

KTEST(stw, parks_every_cpu_and_resumes)
{
	if (other_online_cpu() == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	struct thread_handle t[MAX_CPUS] = {0};
	atomic_store(&spin_stop, false);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != this_cpu()->id && atomic_load(&cpus[i].online))
			t[i] = thread_create("spinner", spinner, NULL, i);
	uint64_t a[MAX_CPUS], b[MAX_CPUS];
	snapshot(a);
	wait_all_move(a); /* every other CPU is spinning */

	stw_stop("test");
	KEXPECT(stw_stopped());
	snapshot(a);
	/* Nothing may move while parked: a stall of this vCPU only
	 * shortens the look, it cannot make a parked CPU move. */
	time_delay_us(30000);
	snapshot(b);
	stw_start();
	int moved = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		moved += i != this_cpu()->id && a[i] != b[i];
	KEXPECT_EQ(moved, 0); /* parked: nothing ran */
	KEXPECT(!stw_stopped());

	snapshot(a);
	wait_all_move(a); /* resumed */
	atomic_store(&spin_stop, true);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (thread_handle_ok(t[i]))
			thread_join(t[i]);
}

/* The remote side of the shootdown tests, on another CPU: reads each of
 * remote_vas (its TLB now holds them), then after the shootdown reads
 * them again; remote_faulted has bit i set if the second read of
 * remote_vas[i] took a page fault at that address. */
#define TLB_TEST_VA 0xfffffe8040000000ull
#define REMOTE_VAS  2
static _Atomic int phase;
static uintptr_t remote_vas[REMOTE_VAS];
static unsigned remote_nvas;
static _Atomic unsigned remote_faulted;

static void remote(void *arg)
{
	for (unsigned i = 0; i < remote_nvas; i++)
		(void)*(volatile uint64_t *)remote_vas[i];
	atomic_store(&phase, 1);
	while (atomic_load(&phase) != 2)
		cpu_pause();
	for (unsigned i = 0; i < remote_nvas; i++)
		if (read_faults_at((volatile const uint8_t *)remote_vas[i]))
			atomic_fetch_or(&remote_faulted, 1u << i);
}

/* Maps a frame at each of vas, lets CPU cpu read them, unmaps them (a
 * local flush only) and runs tlb_shootdown(va, npages); remote_faulted
 * then says which the other CPU could no longer read. With stopped, the
 * unmap and the shootdown run with the world stopped by this CPU and
 * interrupts off. */
static void shootdown_seen_by_as(unsigned cpu, const uintptr_t *vas, unsigned n,
                                 uintptr_t va, size_t npages, bool stopped)
{
	paddr_t pa[REMOTE_VAS];
	remote_nvas = n;
	for (unsigned i = 0; i < n; i++) {
		remote_vas[i] = vas[i];
		pa[i] = frame_alloc();
		KASSERT(pa[i] != 0);
		KASSERT_EQ(vm_map_page(vas[i], pa[i], VM_WRITE), 0);
	}
	atomic_store(&phase, 0);
	atomic_store(&remote_faulted, 0);
	struct thread_handle t = thread_create("tlb_remote", remote, NULL, cpu);
	KASSERT(thread_handle_ok(t));
	while (atomic_load(&phase) != 1)
		thread_yield();
	if (stopped) {
		stw_stop("tlb test: the stopper unmaps");
		cpu_cli();
	}
	for (unsigned i = 0; i < n; i++)
		KEXPECT_EQ(vm_unmap_page(vas[i], NULL), 0);
	tlb_shootdown(va, npages);
	if (stopped) {
		cpu_sti();
		stw_start();
	}
	for (unsigned i = 0; i < n; i++)
		frame_free(pa[i]); /* every CPU has forgotten it */
	atomic_store(&phase, 2);
	thread_join(t);
}

static void shootdown_seen_by(unsigned cpu, const uintptr_t *vas, unsigned n,
                              uintptr_t va, size_t npages)
{
	shootdown_seen_by_as(cpu, vas, n, va, npages, false);
}

#if KTEST_HOOKS
static _Atomic bool deaf_spinning, deaf_release;
static _Atomic cpumask_t reported_waiting;

/* Spins with interrupts off, so deaf to the park IPI, until the stopper's
 * report lets it go. No time bound: it gave up after 20 s, and a host
 * that left the stopper's vCPU unscheduled that long (the report is due
 * 1 s into the stop) failed a correct kernel. A stopper that never
 * reports waits for this CPU for ever, and run-ktest's timeout ends the
 * run naming the test. */
static void deaf(void *arg)
{
	cpu_cli();
	atomic_store(&deaf_spinning, true);
	while (!atomic_load(&deaf_release))
		cpu_pause();
	cpu_sti();
}

/* What the console printed from the test's start (printk_testing_putc;
 * the world stopped, a line may reach it only after the stop). */
static char console_seen[2048];
static _Atomic unsigned console_at;

static void keep_char(uintptr_t c)
{
	unsigned i = atomic_fetch_add(&console_at, 1);
	if (i < sizeof(console_seen) - 1)
		console_seen[i] = (char)c;
}

static void console_capture(bool on)
{
	if (on) {
		memset(console_seen, 0, sizeof(console_seen));
		atomic_store(&console_at, 0);
	}
	atomic_store(&printk_testing_putc, on ? keep_char : NULL);
}

static void note_waiting(uintptr_t missing)
{
	atomic_fetch_or(&reported_waiting, (cpumask_t)missing);
	atomic_store(&deaf_release, true);
}

/* What the still-waiting line (who: "stw: stop", "tlb: shootdown")
 * must say of CPU cpu; checked against the line note_waiting kept. */
static void expect_named(const char *who, unsigned cpu)
{
	char want[48];
	ksnprintf(want, sizeof(want), "for cpu %u to take the ", cpu);
	const char *line = strstr(console_seen, who);
	const char *eol = line ? strstr(line, "\n") : NULL;
	KASSERT(line != NULL && eol != NULL);
	char named[256];
	size_t n = (size_t)(eol - line) < sizeof(named) - 1
	                   ? (size_t)(eol - line)
	                   : sizeof(named) - 1;
	memcpy(named, line, n);
	named[n] = '\0';
	ktest_diag("named: %s", named);
	KEXPECT(strstr(named, " still waiting after ") != NULL);
	KEXPECT(strstr(named, want) != NULL);
}

/* Starts the deaf thread on CPU other, with nothing reported yet, and
 * returns once it spins with interrupts off (THREAD_NONE if it could not
 * be made). */
static struct thread_handle deaf_start(unsigned other)
{
	atomic_store(&deaf_spinning, false);
	atomic_store(&deaf_release, false);
	atomic_store(&reported_waiting, 0);
	struct thread_handle t = thread_create("deaf", deaf, NULL, other);
	if (thread_handle_ok(t))
		while (!atomic_load(&deaf_spinning))
			thread_yield();
	return t;
}

/* A CPU that does not take the park IPI is named while stw_stop waits for
 * it ("stw: ... still waiting ... for cpu N"), and the stop completes once
 * it lets interrupts in. */
KTEST(stw, stop_names_a_cpu_that_does_not_park)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	console_capture(true);
	atomic_store(&stw_testing_still_waiting, note_waiting);
	struct thread_handle t = deaf_start(other);
	KASSERT(thread_handle_ok(t));
	stw_stop("deaf cpu test");
	stw_start();
	atomic_store(&stw_testing_still_waiting, NULL);
	thread_join(t);
	console_capture(false);
	KEXPECT(atomic_load(&reported_waiting) & cpumask_of(other));
	expect_named("stw: stop (\"deaf cpu test\")", other);
}

/* A CPU that does not take the flush IPI is named while tlb_shootdown
 * waits for it ("tlb: shootdown of [...) ... still waiting ... for cpu
 * N"), and the shootdown returns once it lets interrupts in. */
KTEST(tlb, shootdown_names_a_cpu_that_does_not_flush)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	console_capture(true);
	atomic_store(&tlb_testing_still_waiting, note_waiting);
	struct thread_handle t = deaf_start(other);
	KASSERT(thread_handle_ok(t));
	tlb_shootdown(TLB_TEST_VA, 1);
	atomic_store(&tlb_testing_still_waiting, NULL);
	thread_join(t);
	console_capture(false);
	KEXPECT(atomic_load(&reported_waiting) & cpumask_of(other));
	expect_named("tlb: shootdown of [", other);
}
#endif

KTEST(tlb, shootdown_reaches_other_cpus)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	const uintptr_t va = TLB_TEST_VA;
	shootdown_seen_by(cpu, &va, 1, va, 1);
	KEXPECT_EQ(atomic_load(&remote_faulted), 1u);
}

/* The stopper of the world may shoot down with interrupts off: it waits
 * for no one (the others are parked, and flush everything when let go),
 * so the refusal of a shootdown with interrupts off is not for it. */
KTEST(tlb, stopper_shoots_down_with_interrupts_off)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	const uintptr_t va = TLB_TEST_VA;
	shootdown_seen_by_as(cpu, &va, 1, va, 1, true);
	KEXPECT_EQ(atomic_load(&remote_faulted), 1u);
}

/*
 * Over TLB_FULL_FLUSH_PAGES the CR4.PGE toggle runs on every CPU: the
 * other CPU forgets the range's last page and a page outside the range,
 * and global mappings (the kernel image) survive. At -smp 1 only the
 * last is checked, and the test is reported skipped.
 */
KTEST(tlb, large_range_flushes_everything)
{
	const size_t npages = TLB_FULL_FLUSH_PAGES + 1;
	const uintptr_t base = TLB_TEST_VA + PAGE_SIZE;
	const uintptr_t vas[REMOTE_VAS] = {
	        base + (npages - 1) * PAGE_SIZE, /* the range's last page */
	        TLB_TEST_VA,                     /* just below the range */
	};
	unsigned cpu = other_online_cpu();
	if (cpu != MAX_CPUS) {
		shootdown_seen_by(cpu, vas, REMOTE_VAS, base, npages);
		KEXPECT_EQ(atomic_load(&remote_faulted), 3u);
	} else {
		tlb_shootdown(base, npages);
	}
	KEXPECT(read_cr4() & CR4_PGE);
	KEXPECT(vm_translate((uintptr_t)__text_start, NULL, NULL));
	if (cpu == MAX_CPUS)
		KTEST_SKIP("the other CPU's half needs two CPUs");
}

/*
 * The stopper may change a mapping while the world is stopped without a
 * shootdown (the parked CPUs cannot take one): each parked CPU flushes
 * its TLB before it runs on. Without that flush the other CPU read the
 * page through its stale entry after the unmap.
 */
KTEST(stw, parked_cpu_forgets_a_mapping_the_stopper_removed)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	const uintptr_t va = TLB_TEST_VA + 16 * PAGE_SIZE;
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KASSERT_EQ(vm_map_page(va, pa, VM_WRITE), 0);
	remote_nvas = 1;
	remote_vas[0] = va;
	atomic_store(&phase, 0);
	atomic_store(&remote_faulted, 0);
	struct thread_handle t = thread_create("stw_remote", remote, NULL, cpu);
	KASSERT(thread_handle_ok(t));
	while (atomic_load(&phase) != 1)
		thread_yield(); /* its TLB holds va now */
	stw_stop("stw test: the stopper unmaps");
	KEXPECT_EQ(vm_unmap_page(va, NULL), 0); /* a local flush only */
	stw_start();
	atomic_store(&phase, 2);
	thread_join(t);
	frame_free(pa); /* after the join: a stale read hit it, not reuse */
	unsigned faulted = atomic_load(&remote_faulted);
	KEXPECT_EQ(faulted, 1u);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): the stopper
 * stops the world again. The second stop would wait for the first's
 * semaphore for ever; it must panic saying so, not as a sleep with
 * preemption disabled. Runs at -smp 1 too (no other CPU is needed). */
KTEST(demo, stw_stop_nested)
{
	stw_stop("demo: outer stop");
	stw_stop("demo: inner stop");
	stw_start();
	stw_start();
}

/* stw_start with no stop would let a CPU go that never parked, give
 * back a semaphore and an online hold not taken and underflow the
 * preemption count: it must panic saying the world is not stopped. */
KTEST(demo, stw_start_without_a_stop)
{
	stw_start();
	ktest_diag("stw_start returned");
}

static _Atomic bool starter_deaf;

/* Deaf to the park IPI (interrupts off), starts the world once it stops. */
static void start_from_another_cpu(void *arg)
{
	cpu_cli();
	atomic_store(&starter_deaf, true);
	while (!stw_stopped())
		cpu_pause();
	stw_start();
	for (;;)
		cpu_pause();
}

/* Only the stopper's thread may start the world. A thread on a CPU not
 * parked yet that starts it would let the parked CPUs go under the
 * stopper, and give back a semaphore, an online hold and a preemption
 * count that are not its own: it must panic naming the stop and its
 * stopper. Needs two CPUs. */
KTEST(demo, stw_start_from_another_cpu)
{
	unsigned other = other_online_cpu();
	KASSERT(other != MAX_CPUS);
	struct thread_handle t =
	        thread_create("starter", start_from_another_cpu, NULL, other);
	KASSERT(thread_handle_ok(t));
	while (!atomic_load(&starter_deaf))
		thread_yield();
	stw_stop("demo: stopped by cpu 0");
	for (;;)
		cpu_pause();
}

static void start_in_handler(struct trap_frame *f)
{
	stw_start();
}

/* The world is the stopper's thread's to start: an interrupt handler on
 * its CPU that starts it would let the others go under the stopper and
 * re-enable preemption inside the handler. It must panic saying so,
 * naming the stop, not leave the lock checker to blame the handler's
 * preemption count (or a CPU that did not stop it release the world). */
KTEST(demo, stw_start_in_interrupt)
{
	stw_stop("demo: stopped by a thread");
	irq_register(IRQ_VEC_TEST, start_in_handler);
	lapic_send_ipi(this_cpu()->apic_id, IRQ_VEC_TEST);
	for (;;)
		cpu_pause();
}

static void shootdown_in_handler(struct trap_frame *f)
{
	tlb_shootdown(0xfffffe80c0000000ull, 3);
}

/* A range that starts inside a page would be flushed a page short (the
 * loop steps a page from va): it must panic naming the range instead. */
KTEST(demo, tlb_shootdown_unaligned)
{
	tlb_shootdown(TLB_TEST_VA + 0x800, 2);
	ktest_diag("tlb_shootdown returned");
}

/* A range that runs past 2^64 (or out of its canonical half) names no
 * pages that can be mapped: a caller's arithmetic went wrong. */
KTEST(demo, tlb_shootdown_past_the_top)
{
	tlb_shootdown(0xfffffffffffff000ull, 3);
	ktest_diag("tlb_shootdown returned");
}

/* A shootdown from an interrupt handler would wait with interrupts off
 * for CPUs that may be waiting for this one: it must panic saying that
 * it was called in an interrupt handler, naming the range. */
KTEST(demo, tlb_shootdown_in_interrupt)
{
	irq_register(IRQ_VEC_TEST, shootdown_in_handler);
	lapic_send_ipi(this_cpu()->apic_id, IRQ_VEC_TEST);
	for (;;)
		cpu_pause();
}
#endif

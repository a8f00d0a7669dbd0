/*
 * A CPU that comes online while a TLB shootdown or a stop-the-world is in
 * flight. Both work from a snapshot of the online set: the CPU must either
 * be in it (and answer) or stay out until they finish. Test hooks in
 * tlb_shootdown (between the snapshot and the IPIs) and stw_stop (after
 * the IPIs) let a CPU that a test took offline come back at that moment,
 * through the same cpu_set_online an AP uses. Needs two CPUs.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/percpu_testing.h"
#include "kernel/stw.h"
#include "kernel/stw_testing.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "kernel/tlb.h"
#include "kernel/tlb_testing.h"
#include "tests/kernel/smp_util.h"

#if KTEST_HOOKS

/* PML4 slot 509 (free for tests), away from the other tests' pages. */
#define LATE_VA 0xfffffe80c0000000ull

/*
 * How long the hook holds the shootdown or the stop open for late_cpu to
 * come online. A correct kernel keeps it out (cpu_set_online waits for
 * the holders), so the hook always waits this long; the bound is the
 * window in which a kernel that let it in would be caught, and a stall
 * only shortens it, so it can hide that bug but never fail a correct
 * kernel. Every other wait here has no time bound: a 5 s bound on the
 * results failed a correct kernel whose vCPU the host left unscheduled
 * that long, and a hang is ended by run-ktest's timeout, naming the test.
 */
#define ONLINE_WAIT_NS 200000000ull

static unsigned late_cpu;
static _Atomic bool gone_offline;  /* late_cpu left the online set */
static _Atomic bool may_come_back; /* the hook fired: come online now */
static _Atomic bool shot;          /* tlb_shootdown returned */
static _Atomic bool stop_counting;
static _Atomic uint64_t count;
static _Atomic int stale; /* 1: late_cpu still reached LATE_VA */

/* The hook: lets late_cpu come online, and gives it time to. */
static void let_late_cpu_in(uintptr_t arg)
{
	atomic_store(&may_come_back, true);
	uint64_t deadline = time_now_ns() + ONLINE_WAIT_NS;
	while (!atomic_load(&cpus[late_cpu].online) && time_now_ns() < deadline)
		cpu_pause();
}

/* With interrupts off: leaves the online set, says so, and comes back
 * through the path an AP takes once the test allows it. */
static void offline_until_allowed(void)
{
	cpu_cli();
	cpu_testing_set_offline();
	atomic_store(&gone_offline, true);
	while (!atomic_load(&may_come_back))
		cpu_pause();
	cpu_set_online();
}

/* On late_cpu, interrupts off throughout: an IPI sent to it is answered
 * only after it has read LATE_VA, once the shootdown has returned. (A
 * kernel that put it in the shootdown's snapshot would so wait for it,
 * and it for the shootdown: that hangs the run.) */
static void late_reader(void *arg)
{
	(void)*(volatile uint64_t *)LATE_VA; /* the TLB now holds it */
	offline_until_allowed();
	while (!atomic_load(&shot))
		cpu_pause();
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		(void)*(volatile uint64_t *)LATE_VA;
		fault_catch_disarm(&fc);
		atomic_store(&stale, 1);
	} else {
		atomic_store(&stale, 0);
	}
	cpu_sti();
}

KTEST(tlb, cpu_coming_online_mid_shootdown_is_flushed)
{
	late_cpu = other_online_cpu();
	if (late_cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KASSERT_EQ(vm_map_page(LATE_VA, pa, VM_WRITE), 0);
	atomic_store(&gone_offline, false);
	atomic_store(&may_come_back, false);
	atomic_store(&shot, false);
	atomic_store(&stale, -1);
	struct thread_handle t =
	        thread_create("late_reader", late_reader, NULL, late_cpu);
	KASSERT(thread_handle_ok(t));
	while (!atomic_load(&gone_offline))
		thread_yield();
	KEXPECT_EQ(vm_unmap_page(LATE_VA, NULL), 0);
	atomic_store(&tlb_testing_before_send, let_late_cpu_in);
	tlb_shootdown(LATE_VA, 1);
	atomic_store(&tlb_testing_before_send, NULL);
	atomic_store(&shot, true);
	thread_join(t);
	int result = atomic_load(&stale);
	if (result == 1)
		ktest_fail_at(__FILE__, __LINE__,
		              "cpu %u still reached %#llx after tlb_shootdown "
		              "returned",
		              late_cpu, LATE_VA);
	KEXPECT_EQ(result, 0);
	KEXPECT(atomic_load(&cpus[late_cpu].online));
	frame_free(pa); /* every CPU has forgotten it */
}

/* On late_cpu: leaves the online set, comes back when the hook says so,
 * then counts with interrupts on until told to stop. */
static void late_counter(void *arg)
{
	offline_until_allowed();
	cpu_sti();
	while (!atomic_load(&stop_counting))
		atomic_fetch_add(&count, 1);
}

KTEST(stw, cpu_coming_online_while_stopped_stays_out)
{
	late_cpu = other_online_cpu();
	if (late_cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	atomic_store(&gone_offline, false);
	atomic_store(&may_come_back, false);
	atomic_store(&stop_counting, false);
	atomic_store(&count, 0);
	struct thread_handle t =
	        thread_create("late_counter", late_counter, NULL, late_cpu);
	KASSERT(thread_handle_ok(t));
	while (!atomic_load(&gone_offline))
		thread_yield();
	atomic_store(&stw_testing_after_send, let_late_cpu_in);
	stw_stop("test");
	atomic_store(&stw_testing_after_send, NULL);
	uint64_t a = atomic_load(&count);
	time_delay_us(30000); /* a stall shortens the look, as above */
	uint64_t b = atomic_load(&count);
	stw_start();
	if (a != b)
		ktest_fail_at(__FILE__, __LINE__,
		              "cpu %u counted %llu times while the world was "
		              "stopped",
		              late_cpu, (unsigned long long)(b - a));
	/* Once the world runs again, so does late_cpu (or the run hangs). */
	while (atomic_load(&count) == b)
		thread_yield();
	atomic_store(&stop_counting, true);
	thread_join(t);
	KEXPECT(atomic_load(&cpus[late_cpu].online));
}

/* ---- A CPU leaving while a shootdown that counted it waits ------------ */

static _Atomic bool leaver_ready; /* interrupts off, about to leave */
static _Atomic bool go_leave;     /* the shootdown holds its snapshot */

/* The hook, inside the shootdown's hold of the online set: tells
 * late_cpu to leave now, so that it meets the hold. */
static void let_late_cpu_leave(uintptr_t arg)
{
	(void)arg;
	atomic_store(&go_leave, true);
}

/* On late_cpu: interrupts off, waits for the word, leaves the online set
 * (the shootdown waiting for this CPU's answer holds it), comes back. */
static void leaver(void *arg)
{
	(void)arg;
	cpu_cli();
	atomic_store(&leaver_ready, true);
	while (!atomic_load(&go_leave))
		cpu_pause();
	cpu_testing_set_offline();
	atomic_store(&gone_offline, true);
	while (!atomic_load(&may_come_back))
		cpu_pause();
	cpu_set_online();
	cpu_sti();
}

/* Until the fix, leaving waited for the hold with interrupts off while
 * the shootdown waited for this CPU's answer: the run hung, tlb_shootdown
 * naming the CPU every second. A hang is ended by run-ktest's timeout. */
KTEST(tlb, cpu_leaving_answers_a_shootdown_that_counted_it)
{
	late_cpu = other_online_cpu();
	if (late_cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	atomic_store(&leaver_ready, false);
	atomic_store(&go_leave, false);
	atomic_store(&gone_offline, false);
	atomic_store(&may_come_back, false);
	struct thread_handle t =
	        thread_create("leaver", leaver, NULL, late_cpu);
	KASSERT(thread_handle_ok(t));
	while (!atomic_load(&leaver_ready))
		thread_yield();
	atomic_store(&tlb_testing_before_send, let_late_cpu_leave);
	tlb_shootdown(LATE_VA, 1);
	atomic_store(&tlb_testing_before_send, NULL);
	while (!atomic_load(&gone_offline))
		thread_yield();
	KEXPECT(!atomic_load(&cpus[late_cpu].online));
	atomic_store(&may_come_back, true);
	thread_join(t);
	KEXPECT(atomic_load(&cpus[late_cpu].online));
}

#endif

/*
 * Quiescent states and wakes (kernel/rcu.c), each source on its own: a
 * grace period ends beside a CPU that only spins with preemption on (the
 * tick's quiescent state) and beside one whose ticks all land in
 * read-side sections but which yields between them (the context
 * switch's); a lone callback runs whether its call_rcu woke the rcu
 * thread itself or left the wake to a tick; threads on every CPU queue
 * callbacks and wait in synchronize_rcu at once. Waits are bounded by
 * ticks on every CPU, never by the wall clock.
 */
#include <stdatomic.h>
#include <stdint.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/percpu_testing.h"
#include "kernel/rcu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/smp_util.h"

/* Ticks every online CPU takes before a wait is called a hang: a grace
 * period takes two or three. */
#define BOUND_TICKS 100

/* Sleeps until *flag or every online CPU has taken n more ticks; returns
 * *flag. */
static bool wait_flag_ticks(_Atomic bool *flag, uint64_t n)
{
	uint64_t t0[MAX_CPUS];
	for (unsigned i = 0; i < MAX_CPUS; i++)
		t0[i] = cpus[i].ticks;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		while (!atomic_load(flag) && atomic_load(&cpus[i].online) &&
		       *(volatile uint64_t *)&cpus[i].ticks < t0[i] + n)
			thread_sleep_ns(0);
	return atomic_load(flag);
}

/* An online CPU other than this one and CPU 0 (the rcu thread's), or
 * MAX_CPUS; with alone, one that no thread calls home (a thread that
 * sleeps there switches, passing quiescent states of its own). */
static unsigned spin_cpu(bool alone)
{
	struct sched_cpu_info ci;
	for (unsigned i = 1; i < MAX_CPUS; i++)
		if (i != this_cpu()->id && sched_cpu_info(i, &ci) &&
		    (!alone || ci.nthreads == 0))
			return i;
	return MAX_CPUS;
}

static _Atomic bool spinning, spin_stop, synced;

/* Mode 0: spins with preemption on, never switching (its run queue is
 * empty): only its ticks are quiescent states. Mode 1: a read-side
 * section until its CPU's next tick, then a yield, over and over: its
 * ticks find it in a section, only the switches are quiescent states. */
static void spinner(void *arg)
{
	struct cpu *c = this_cpu();
	atomic_store(&spinning, true);
	while (!atomic_load(&spin_stop)) {
		if (arg == NULL) {
			cpu_pause();
			continue;
		}
		rcu_read_lock();
		uint64_t t = *(volatile uint64_t *)&c->ticks;
		while (*(volatile uint64_t *)&c->ticks == t &&
		       !atomic_load(&spin_stop))
			cpu_pause();
		rcu_read_unlock();
		thread_yield();
	}
}

static void synchronizer(void *arg)
{
	synchronize_rcu();
	atomic_store(&synced, true);
}

/* True if a synchronize_rcu here ended while the spinner ran. */
static bool synchronize_beside_spinner(unsigned cpu, void *mode)
{
	atomic_store(&spinning, false);
	atomic_store(&spin_stop, false);
	atomic_store(&synced, false);
	struct thread_handle sp =
	        start_until_set("rcu_spin", spinner, mode, cpu, &spinning);
	if (!thread_handle_ok(sp))
		return false;
	struct thread_handle sy =
	        thread_create("rcu_sync", synchronizer, NULL, this_cpu()->id);
	bool ok = thread_handle_ok(sy) && wait_flag_ticks(&synced, BOUND_TICKS);
	atomic_store(&spin_stop, true);
	thread_join(sp);
	if (thread_handle_ok(sy))
		thread_join(sy);
	return ok;
}

KTEST(rcu, a_cpu_spinning_with_preemption_on_passes_quiescent_states)
{
	unsigned cpu = spin_cpu(true);
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs a CPU besides this one and CPU 0 with no "
		           "thread");
	KEXPECT(synchronize_beside_spinner(cpu, NULL));
}

KTEST(rcu, a_cpu_yielding_between_sections_passes_quiescent_states)
{
	unsigned cpu = spin_cpu(false);
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs a CPU besides this one and CPU 0");
	KEXPECT(synchronize_beside_spinner(cpu, (void *)1));
}

static struct rcu_head lone;
static _Atomic bool lone_ran;

static void lone_cb(struct rcu_head *h)
{
	atomic_store(&lone_ran, true);
}

/* With preemption on, call_rcu wakes the rcu thread itself; with it off,
 * the wake is a tick's: either way the callback runs with no call_rcu
 * after it. */
KTEST(rcu, a_lone_callback_runs_whether_or_not_preemption_was_on)
{
	struct rcu_stats st0, st;
	rcu_barrier();
	rcu_stats(&st0);
	atomic_store(&lone_ran, false);
	call_rcu(&lone, lone_cb);
	rcu_stats(&st);
	KEXPECT_EQ(st.late_wakes, st0.late_wakes);
	KEXPECT(wait_flag_ticks(&lone_ran, BOUND_TICKS));
	atomic_store(&lone_ran, false);
	preempt_disable();
	call_rcu(&lone, lone_cb);
	preempt_enable();
	rcu_stats(&st);
	KEXPECT_EQ(st.late_wakes, st0.late_wakes + 1);
	KEXPECT(wait_flag_ticks(&lone_ran, BOUND_TICKS));
	rcu_barrier(); /* the head is free to go */
}

#define CONC_THREADS 8
#define CONC_HEADS   32
#define CONC_ROUNDS  3
static struct rcu_head conc_heads[CONC_THREADS][CONC_HEADS];
static _Atomic unsigned conc_runs[CONC_THREADS][CONC_HEADS];
static _Atomic unsigned conc_done, conc_bad, conc_n;
static _Atomic bool conc_all_done;

static void conc_cb(struct rcu_head *h)
{
	size_t i = (size_t)(h - &conc_heads[0][0]);
	atomic_fetch_add(&conc_runs[i / CONC_HEADS][i % CONC_HEADS], 1);
}

/* Rounds of CONC_HEADS call_rcus and a synchronize_rcu, which returns
 * only after they all ran (it waits for every callback queued before). */
static void conc_worker(void *arg)
{
	unsigned k = (unsigned)(uintptr_t)arg;
	for (unsigned r = 1; r <= CONC_ROUNDS; r++) {
		for (unsigned i = 0; i < CONC_HEADS; i++)
			call_rcu(&conc_heads[k][i], conc_cb);
		synchronize_rcu();
		for (unsigned i = 0; i < CONC_HEADS; i++)
			if (atomic_load(&conc_runs[k][i]) != r)
				atomic_fetch_add(&conc_bad, 1);
	}
	if (atomic_fetch_add(&conc_done, 1) + 1 == atomic_load(&conc_n))
		atomic_store(&conc_all_done, true);
}

/* Two threads a CPU (so one CPU has two), up to CONC_THREADS, queueing
 * and waiting at once: each callback runs once a round, and every
 * waiter is woken. */
KTEST(rcu, threads_on_every_cpu_queue_and_synchronize_at_once)
{
	struct thread_handle h[CONC_THREADS];
	unsigned n = 0;
	for (unsigned k = 0; k < CONC_THREADS; k++)
		for (unsigned i = 0; i < CONC_HEADS; i++)
			atomic_store(&conc_runs[k][i], 0);
	atomic_store(&conc_done, 0);
	atomic_store(&conc_bad, 0);
	atomic_store(&conc_all_done, false);
	unsigned ncpu = 0;
	for (unsigned c = 0; c < MAX_CPUS; c++)
		ncpu += atomic_load(&cpus[c].online) ? 1 : 0;
	unsigned want = 2 * ncpu < CONC_THREADS ? 2 * ncpu : CONC_THREADS;
	atomic_store(&conc_n, want);
	for (unsigned c = 0; c < MAX_CPUS && n < want; c++)
		for (unsigned j = 0; j < 2 && n < want; j++)
			if (atomic_load(&cpus[c].online)) {
				h[n] = thread_create("rcu_conc", conc_worker,
				                     (void *)(uintptr_t)n, c);
				KASSERT(thread_handle_ok(h[n]));
				n++;
			}
	/* A lost wake leaves a waiter asleep: named here, then the join
	 * hangs (run-ktest's timeout). */
	KEXPECT(wait_flag_ticks(&conc_all_done, 4 * BOUND_TICKS));
	for (unsigned k = 0; k < n; k++)
		thread_join(h[k]);
	rcu_barrier();
	unsigned bad = atomic_load(&conc_bad), done = atomic_load(&conc_done);
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(done, n);
	unsigned wrong = 0;
	for (unsigned k = 0; k < n; k++)
		for (unsigned i = 0; i < CONC_HEADS; i++)
			wrong += atomic_load(&conc_runs[k][i]) != CONC_ROUNDS;
	KEXPECT_EQ(wrong, 0);
}

#if KTEST_HOOKS
static _Atomic bool held, go_offline, gone, come_back, calling;

/* Preemption off (no quiescent state: its ticks see the count) until
 * told, then out of the online set without passing one, then back. */
static void leaver(void *arg)
{
	preempt_disable();
	atomic_store(&held, true);
	while (!atomic_load(&go_offline))
		cpu_pause();
	cpu_cli();
	preempt_enable(); /* interrupts off: no switch, no tick */
	cpu_testing_set_offline();
	atomic_store(&gone, true);
	while (!atomic_load(&come_back))
		cpu_pause();
	cpu_set_online();
	cpu_sti();
}

static void calling_synchronizer(void *arg)
{
	atomic_store(&calling, true);
	synchronizer(arg);
}

/* A CPU in the grace period's snapshot that leaves the online set
 * without a quiescent state: the grace period ends without it. */
KTEST(rcu, a_cpu_leaving_mid_grace_period_is_not_waited_for)
{
	unsigned cpu = spin_cpu(false);
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs a CPU besides this one and CPU 0");
	rcu_barrier(); /* the rcu thread idle: the next batch is ours */
	atomic_store(&held, false);
	atomic_store(&go_offline, false);
	atomic_store(&gone, false);
	atomic_store(&come_back, false);
	atomic_store(&calling, false);
	atomic_store(&synced, false);
	struct thread_handle l =
	        start_until_set("rcu_leaver", leaver, NULL, cpu, &held);
	KASSERT(thread_handle_ok(l));
	struct thread_handle s =
	        start_until_set("rcu_sync", calling_synchronizer, NULL,
	                        this_cpu()->id, &calling);
	KASSERT(thread_handle_ok(s));
	/* Ten ticks of CPU 0: the rcu thread took its snapshot, the leaver's
	 * CPU in it. */
	uint64_t t0 = cpus[0].ticks;
	while (*(volatile uint64_t *)&cpus[0].ticks < t0 + 10)
		thread_sleep_ns(0);
	bool early = atomic_load(&synced);
	atomic_store(&go_offline, true);
	while (!atomic_load(&gone))
		thread_sleep_ns(0);
	bool ended = wait_flag_ticks(&synced, BOUND_TICKS);
	bool was_offline = !atomic_load(&cpus[cpu].online);
	atomic_store(&come_back, true);
	thread_join(l);
	thread_join(s);
	KEXPECT(!early);
	KEXPECT(ended);
	KEXPECT(was_offline);
}
#endif

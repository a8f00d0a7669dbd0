/*
 * The online-set handshake (percpu.c) seen from a holder that comes
 * late: once a change of the set is pending (its changer waits for the
 * holders already in), cpus_online_hold must wait for the change too,
 * not take a snapshot the changer is about to make wrong. Needs three
 * CPUs: this one, one holding the set, one changing it.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/percpu_testing.h"
#include "kernel/thread.h"

#if KTEST_HOOKS
static _Atomic int phase;
static _Atomic bool released;

/* Holds the set until this CPU's late holder has tried, and a while
 * after (bounded tries: the late holder's CPU may stall). */
static void early_holder(void *arg)
{
	cpus_online_hold();
	atomic_store(&phase, 1);
	while (atomic_load(&phase) != 2)
		cpu_pause();
	for (unsigned long i = 0; i < 2000000; i++)
		cpu_pause();
	atomic_store(&released, true);
	cpus_online_release();
}

/* Takes its CPU out of the set and back, interrupts off throughout as
 * an AP coming up has them. */
static void changer(void *arg)
{
	cpu_cli();
	cpu_testing_set_offline();
	cpu_set_online();
	cpu_sti();
}

/* The first two online CPUs other than this one, or false. */
static bool two_others(unsigned *a, unsigned *b)
{
	unsigned n = 0, found[2];
	for (unsigned i = 0; i < MAX_CPUS && n < 2; i++)
		if (i != this_cpu()->id && atomic_load(&cpus[i].online))
			found[n++] = i;
	*a = found[0];
	*b = found[1];
	return n == 2;
}

KTEST(percpu, a_pending_online_change_keeps_new_holders_out)
{
	unsigned hold_cpu, change_cpu;
	if (!two_others(&hold_cpu, &change_cpu))
		KTEST_SKIP("needs three CPUs");
	atomic_store(&phase, 0);
	atomic_store(&released, false);
	struct thread_handle h =
	        thread_create("early_holder", early_holder, NULL, hold_cpu);
	KASSERT(thread_handle_ok(h));
	while (atomic_load(&phase) != 1)
		thread_yield();
	struct thread_handle c =
	        thread_create("changer", changer, NULL, change_cpu);
	KASSERT(thread_handle_ok(c));
	while (!cpu_testing_online_changing())
		thread_yield();
	atomic_store(&phase, 2);
	cpus_online_hold();
	bool early = !atomic_load(&released);
	cpus_online_release();
	KEXPECT(!early);
	thread_join(h);
	thread_join(c);
}
#endif

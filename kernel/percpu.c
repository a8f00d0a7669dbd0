/*
 * The per-CPU areas, the online set and the gate that keeps the set still
 * while a TLB shootdown or a stop-the-world is in flight (see percpu.h).
 *
 * Why a gate: both send an IPI to every other online CPU and then wait for
 * as many answers as they sent. If a CPU could come online in between, it
 * would get an IPI nobody counted (the ack counter of a shootdown wraps,
 * or the extra ack is charged to the next request, whose frames are then
 * freed before every CPU flushed), or be missed altogether (a stop that
 * never parks it). So they take one snapshot of the set, send to exactly
 * that, and keep the set from growing until they are done.
 *
 * Basic algorithm (a Dekker-style handshake on two seq_cst atomics):
 *   holder:  online_holders++; if online_changing is set, undo it, wait
 *            until the flag falls, and retry; else snapshot the set.
 *   changer: set online_changing (one changer at a time), wait until
 *            online_holders is 0, change the set, clear the flag.
 * In the single order of seq_cst operations either the holder's increment
 * comes first, and the changer waits for it, or the changer's flag does,
 * and the holder sees it and backs off. A waiting changer keeps new
 * holders out, so it waits only for those already in flight, and a holder
 * waits only for one change, which takes a few stores.
 */
#include "percpu.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/cpu_local.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/tlbflush.h"
#include "kernel/percpu_testing.h"
#include "kernel/format.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"

_Static_assert(offsetof(struct cpu, fault_catch) == CPU_FAULT_CATCH_OFFSET,
               "fault.S stores the hook at this offset");

struct cpu cpus[MAX_CPUS];
_Atomic unsigned ncpus_online;

/* The gate: no spinlock and no rank (the lock checker does not see it).
 * Its holders (tlb_shootdown under the shootdown lock, stw_stop until
 * stw_start) may take any lock; only cpu_set_online waits for them.
 * Atomic, any CPU (seq_cst: the handshake above depends on it): */
static _Atomic unsigned online_holders;
static _Atomic bool online_changing;

void cpu_init_local(unsigned id, uint32_t apic_id)
{
	struct cpu *c = &cpus[id];
	c->self = c;
	c->id = id;
	c->apic_id = apic_id;
	arch_cpu_local_set(c);
}

cpumask_t cpus_online_hold(void)
{
	for (;;) {
		atomic_fetch_add(&online_holders, 1);
		if (!atomic_load(&online_changing))
			break;
		atomic_fetch_sub(&online_holders, 1);
		while (atomic_load(&online_changing))
			cpu_pause();
	}
	cpumask_t m = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online))
			m |= cpumask_of(i);
	return m;
}

void cpus_online_release(void)
{
	unsigned before = atomic_fetch_sub(&online_holders, 1);
	if (before == 0)
		panic("cpus_online_release without cpus_online_hold");
}

/* Waits until no holder is left and keeps new ones out. */
static void online_change_begin(void)
{
	bool expected = false;
	while (!atomic_compare_exchange_weak(&online_changing, &expected,
	                                     true)) {
		expected = false;
		cpu_pause();
	}
	while (atomic_load(&online_holders) > 0)
		cpu_pause();
}

static void online_change_end(void)
{
	atomic_store(&online_changing, false);
}

void cpu_set_online(void)
{
	struct cpu *c = this_cpu();
	online_change_begin();
	atomic_store(&c->online, true);
	atomic_fetch_add(&ncpus_online, 1);
	online_change_end();
	/* Came up after a panic stopped the others: stop too. */
	if (panic_elsewhere())
		panic_park();
	/* No shootdown before this point reached this CPU, and it may have
	 * run kernel code (and cached translations) while it was coming up:
	 * forget them all. Later shootdowns include it. */
	arch_tlb_flush_all();
}

void cpus_send_ipi(cpumask_t m, unsigned vector)
{
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (m & cpumask_of(i))
			lapic_send_ipi(cpus[i].apic_id, vector);
}

#if KTEST_HOOKS
void cpu_testing_set_offline(void)
{
	/* Refused rather than the rcu thread moved: it is pinned to CPU 0,
	 * and a CPU held here runs nothing but its caller, so every grace
	 * period would wait until CPU 0 came back (one its holder waited
	 * for never would). */
	if (this_cpu()->id == 0)
		panic("cpu_testing_set_offline: CPU 0 runs the rcu thread "
		      "(kernel/rcu.h): taken offline it would stall every "
		      "grace period; take another CPU offline");
	/* A holder may be a shootdown that counted this CPU and waits for
	 * its IPI's answer, which interrupts off keep out: waiting for the
	 * holders with them off hung such a run (240 s at
	 * tlb.cpu_coming_online_mid_shootdown_is_flushed, the scavenger's
	 * shootdown waiting for this CPU). So the change is taken as
	 * online_change_begin takes it (new holders kept out), and the wait
	 * for the old ones lets interrupts in; preemption off keeps this
	 * thread on this CPU and running meanwhile. A loop, not one pause:
	 * QEMU's TCG looks for interrupts only between translated blocks,
	 * and sti; pause; cli is one. */
	preempt_disable();
	bool expected = false;
	while (!atomic_compare_exchange_weak(&online_changing, &expected,
	                                     true)) {
		expected = false;
		cpu_pause();
	}
	while (atomic_load(&online_holders) > 0) {
		cpu_sti();
		for (int i = 0; i < 64; i++)
			cpu_pause();
		cpu_cli();
	}
	atomic_store(&this_cpu()->online, false);
	atomic_fetch_sub(&ncpus_online, 1);
	online_change_end();
	preempt_enable(); /* interrupts off: no switch here */
}

bool cpu_testing_online_changing(void)
{
	return atomic_load(&online_changing);
}
#endif

void cpumask_format(cpumask_t m, char *buf, size_t size)
{
	size_t len = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < MAX_CPUS && len < size; i++)
		if (m & cpumask_of(i))
			len += (size_t)ksnprintf(buf + len, size - len, " %u",
			                         i);
}

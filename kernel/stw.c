/*
 * Stop-the-world (see stw.h). The stopper takes stw_sema, raises `stopped`,
 * sends the park IPI to every other online CPU and waits until each has
 * counted itself in; a parked CPU spins with interrupts off until
 * `stopped` falls, then counts itself out. The stopper runs with
 * preemption disabled from stop to start so that it keeps its CPU.
 *
 * The CPUs to park are one snapshot of the online set (cpus_online_hold),
 * held from stop to start: a CPU that comes online meanwhile would run
 * unparked, so it waits until the world runs again.
 *
 * A CPU answers the park IPI only with interrupts on, so the stopper must
 * not hold an irqsave lock another CPU may be spinning on; it holds none
 * (the semaphore sleeps rather than spins). A CPU that keeps interrupts
 * off for good (a bug) would make the stopper wait forever without a word,
 * so while it waits the stopper names the CPUs not parked yet every
 * STW_WAIT_REPORT_NS. It keeps waiting: unlike the panic path, it cannot
 * go on with a CPU running.
 */
#include "kernel/stw.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/format.h"
#include "kernel/irq.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/stw_testing.h"
#include "kernel/time.h"
#include "kernel/tlb.h"

/* How often stw_stop names the CPUs it is still waiting for. */
#define STW_WAIT_REPORT_NS 1000000000ull

/* The right to stop the world (stw.h), 1 unit of 1, held from stw_stop
 * to stw_start; its count and waiters are under its wait queue's lock
 * (rank WAITQ). A semaphore, not a spinlock: a second stopper sleeps. */
struct semaphore stw_sema;

/* Atomic, any CPU: */
static _Atomic bool stopped;
static _Atomic unsigned nparked;
static _Atomic cpumask_t parked; /* the CPUs counted in nparked */
static _Atomic int stopper = -1; /* CPU id of the stopper */

/* Written and read only by the holder of stw_sema, the stopper (read by
 * stw_stop's nested-stop panic on the stopper's own CPU): */
static const char *stop_reason;

TEST_HOOK_DEFINE(stw_testing_after_send);
TEST_HOOK_DEFINE(stw_testing_still_waiting);

/* Each parked CPU's trap frame: its interrupted thread's registers, the
 * lowest live word of that thread's stack (stw_parked_sp). Written by
 * the CPU before it counts itself in, read by the stopper after. */
static uintptr_t parked_sp[MAX_CPUS];

uintptr_t stw_parked_sp(unsigned cpu)
{
	return cpu < MAX_CPUS ? parked_sp[cpu] : 0;
}

static void park_irq(struct trap_frame *f)
{
	if (!atomic_load(&stopped))
		return;
	parked_sp[this_cpu()->id] = (uintptr_t)f;
	cpumask_t me = cpumask_of(this_cpu()->id);
	atomic_fetch_or(&parked, me);
	atomic_fetch_add(&nparked, 1);
	while (atomic_load_explicit(&stopped, memory_order_acquire))
		cpu_pause();
	/* The stopper may have changed mappings without a shootdown (it
	 * cannot reach parked CPUs): forget everything before going on. */
	tlb_flush_local(0, TLB_FULL_FLUSH_PAGES + 1);
	atomic_fetch_and(&parked, ~me);
	atomic_fetch_sub(&nparked, 1);
}

void stw_init(void)
{
	sema_init(&stw_sema, "stw_sema", 1, 1);
	irq_register(IRQ_VEC_STW, park_irq);
}

/* Prints "stw: ... still waiting for cpu 2 3" naming the CPUs of
 * `others` not parked yet, as one line. */
static void report_waiting(cpumask_t others, uint64_t waited_ns)
{
	cpumask_t missing = others & ~atomic_load(&parked);
	if (!missing)
		return; /* the last one is counting itself in */
	char ids[CPUMASK_IDS_MAX];
	cpumask_format(missing, ids, sizeof(ids));
	printk("stw: stop (\"%s\") by cpu %u still waiting after %llu ms "
	       "for cpu%s to take the park IPI (interrupts off?)\n",
	       stop_reason, this_cpu()->id,
	       (unsigned long long)(waited_ns / 1000000), ids);
	TEST_HOOK(stw_testing_still_waiting, missing);
}

/* Waits until every CPU of others has parked; says which have not every
 * STW_WAIT_REPORT_NS (only then is the clock read again). */
static void wait_parked(cpumask_t others)
{
	unsigned n = cpumask_weight(others);
	uint64_t start = n ? time_now_ns() : 0;
	uint64_t next = start + STW_WAIT_REPORT_NS;
	while (atomic_load_explicit(&nparked, memory_order_acquire) < n) {
		cpu_pause();
		uint64_t now = time_now_ns();
		if (now >= next) {
			report_waiting(others, now - start);
			next = now + STW_WAIT_REPORT_NS;
		}
	}
}

void stw_stop(const char *reason)
{
	/* The stopper would wait for its own semaphore, with preemption
	 * off: say that, not what the sleep check would (a sleep with
	 * preemption disabled). */
	if (stw_stopped_by_this_cpu())
		panic("stw_stop(\"%s\"): cpu %u stopped the world already "
		      "(\"%s\"); a nested stop would wait for itself",
		      reason, this_cpu()->id, stop_reason);
	/* No world to return stopped without the semaphore: a refusal,
	 * recorded in the lock checker's test mode, is fatal here. */
	if (!sema_acquire(&stw_sema))
		panic("stw_stop(\"%s\"): may not wait for stw_sema: %s", reason,
		      lockcheck_last_violation());
	preempt_disable();
	stop_reason = reason;
	struct cpu *self = this_cpu();
	/* Park exactly the CPUs counted; none comes online until
	 * stw_start has let them go (percpu.h). */
	cpumask_t others = cpus_online_hold() & ~cpumask_of(self->id);
	atomic_store(&stopper, (int)self->id);
	atomic_store(&stopped, true);
	cpus_send_ipi(others, IRQ_VEC_STW);
	TEST_HOOK(stw_testing_after_send, self->id);
	wait_parked(others);
}

void stw_start(void)
{
	if (!atomic_load(&stopped))
		panic("stw_start: the world is not stopped");
	/* Only the stopper's thread holds the semaphore, the online hold
	 * and the preemption count that this gives back. */
	struct cpu *self = this_cpu();
	int by = atomic_load(&stopper);
	if (by != (int)self->id)
		panic("stw_start on cpu %u: cpu %d stopped the world "
		      "(\"%s\"); only its stopper may start it",
		      self->id, by, stop_reason);
	if (self->irq_depth > 0)
		panic("stw_start in an interrupt handler on cpu %u: the world "
		      "stopped by this CPU (\"%s\") is its stopper's thread's "
		      "to start",
		      self->id, stop_reason);
	atomic_store_explicit(&stopped, false, memory_order_release);
	while (atomic_load(&nparked) > 0)
		cpu_pause();
	stop_reason = NULL;
	atomic_store(&stopper, -1);
	cpus_online_release();
	preempt_enable();
	sema_release(&stw_sema);
}

#if KTEST_HOOKS
cpumask_t stw_testing_parked(void)
{
	return atomic_load(&parked);
}
#endif

bool stw_stopped(void)
{
	return atomic_load(&stopped);
}

bool stw_stopped_by_this_cpu(void)
{
	return atomic_load(&stopped) &&
	       atomic_load(&stopper) == (int)this_cpu()->id;
}

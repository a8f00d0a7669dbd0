/*
 * Grace periods (kernel/rcu.h): synchronize_rcu waits for a reader held
 * in its section on another CPU, and only for that; a grace period ends
 * with the other CPUs idle and one of them offline; call_rcu works from
 * the timer interrupt; rcu_barrier runs everything queued before it.
 * Waits are flag handshakes and tick counts, never wall-clock bounds.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/percpu_testing.h"
#include "kernel/rcu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/smp_util.h"

/* The first online CPU other than this one and not in skip, or MAX_CPUS. */
static unsigned other_cpu(cpumask_t skip)
{
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != this_cpu()->id && !(skip & cpumask_of(i)) &&
		    atomic_load(&cpus[i].online))
			return i;
	return MAX_CPUS;
}

/* Sleeps until every online CPU has taken n more ticks. */
static void wait_ticks_everywhere(uint64_t n)
{
	uint64_t t0[MAX_CPUS];
	for (unsigned i = 0; i < MAX_CPUS; i++)
		t0[i] = cpus[i].ticks;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		while (atomic_load(&cpus[i].online) &&
		       cpus[i].ticks < t0[i] + n)
			thread_sleep_ns(0);
}

static _Atomic bool in_section, release, left, calling, synced, left_at_sync;

static void held_reader(void *arg)
{
	rcu_read_lock();
	atomic_store(&in_section, true);
	while (!atomic_load(&release))
		cpu_pause();
	atomic_store(&left, true);
	rcu_read_unlock();
}

static void synchronizer(void *arg)
{
	atomic_store(&calling, true);
	synchronize_rcu();
	atomic_store(&left_at_sync, atomic_load(&left));
	atomic_store(&synced, true);
}

KTEST(rcu, synchronize_waits_for_a_reader_held_on_another_cpu)
{
	unsigned rc = other_cpu(0);
	if (rc == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	atomic_store(&in_section, false);
	atomic_store(&release, false);
	atomic_store(&left, false);
	atomic_store(&calling, false);
	atomic_store(&synced, false);
	struct thread_handle r = start_until_set("held_reader", held_reader,
	                                         NULL, rc, &in_section);
	KASSERT(thread_handle_ok(r));
	struct thread_handle s = start_until_set(
	        "synchronizer", synchronizer, NULL, this_cpu()->id, &calling);
	KASSERT(thread_handle_ok(s));
	/* Ten ticks on every CPU: every CPU but the reader's has passed a
	 * quiescent state many times over. */
	wait_ticks_everywhere(10);
	bool early = atomic_load(&synced);
	atomic_store(&release, true);
	thread_join(r);
	thread_join(s);
	KEXPECT(!early);
	KEXPECT(atomic_load(&synced));
	KEXPECT(atomic_load(&left_at_sync));
}

#if KTEST_HOOKS
static _Atomic bool gone, come_back;

static void offline_cpu(void *arg)
{
	cpu_cli();
	cpu_testing_set_offline();
	atomic_store(&gone, true);
	while (!atomic_load(&come_back))
		cpu_pause();
	cpu_set_online();
	cpu_sti();
}

KTEST(rcu, grace_period_ends_with_cpus_idle_and_one_offline)
{
	struct rcu_stats st0, st;
	/* The rcu thread's CPU (0) stays online. */
	unsigned oc = other_cpu(cpumask_of(0));
	rcu_stats(&st0);
	synchronize_rcu(); /* the other CPUs idle */
	rcu_stats(&st);
	KEXPECT(st.gp_completed > st0.gp_completed);
	if (oc == MAX_CPUS)
		KTEST_SKIP("needs a CPU besides this one and CPU 0 to take "
		           "offline");
	atomic_store(&gone, false);
	atomic_store(&come_back, false);
	struct thread_handle h =
	        start_until_set("offline", offline_cpu, NULL, oc, &gone);
	KASSERT(thread_handle_ok(h));
	rcu_stats(&st0);
	synchronize_rcu(); /* a hang here names the bug: run-ktest's timeout */
	synchronize_rcu();
	rcu_stats(&st);
	KEXPECT(!atomic_load(&cpus[oc].online));
	atomic_store(&come_back, true);
	thread_join(h);
	KEXPECT(st.gp_completed >= st0.gp_completed + 2);
	synchronize_rcu(); /* and with it back */
}
#endif

#define IRQ_HEADS 8
static struct rcu_head irq_heads[IRQ_HEADS];
static _Atomic unsigned irq_queued, irq_run, irq_bad_ctx;

static void irq_cb(struct rcu_head *h)
{
	if (in_irq() || this_cpu()->preempt_count != 0)
		atomic_fetch_add(&irq_bad_ctx, 1);
	atomic_fetch_add(&irq_run, 1);
}

static void tick_queue(void)
{
	unsigned i = atomic_load(&irq_queued);
	if (i < IRQ_HEADS &&
	    atomic_compare_exchange_strong(&irq_queued, &i, i + 1))
		call_rcu(&irq_heads[i], irq_cb);
}

KTEST(rcu, call_rcu_from_the_timer_interrupt_runs_in_thread_context)
{
	atomic_store(&irq_queued, 0);
	atomic_store(&irq_run, 0);
	atomic_store(&irq_bad_ctx, 0);
	atomic_store(&sched_tick_hook, tick_queue);
	while (atomic_load(&irq_queued) < IRQ_HEADS)
		thread_sleep_ns(0);
	atomic_store(&sched_tick_hook, NULL);
	rcu_barrier();
	unsigned run = atomic_load(&irq_run), bad = atomic_load(&irq_bad_ctx);
	KEXPECT_EQ(run, IRQ_HEADS);
	KEXPECT_EQ(bad, 0);
}

#define BARRIER_OBJS 200
struct obj {
	uint64_t word[4];
	struct rcu_head rcu;
};
static _Atomic unsigned cb_run, cb_bad;

static void obj_cb(struct rcu_head *h)
{
	struct obj *o = (struct obj *)((char *)h - offsetof(struct obj, rcu));
	for (unsigned j = 0; j < 4; j++)
		if (o->word[j] != (uintptr_t)o + j)
			atomic_fetch_add(&cb_bad, 1);
	kfree(o);
	atomic_fetch_add(&cb_run, 1);
}

/* Queues n objects' callbacks and n kfree_rcu frees, holding a spinlock
 * for half of them (the wake is left to a tick then). */
static bool queue_objs(unsigned n)
{
	static struct spinlock l =
	        SPINLOCK_INIT("rcu_test", LOCK_RANK_TEST_LOW);
	for (unsigned i = 0; i < 2 * n; i++) {
		struct obj *o = kmalloc(sizeof(*o), 0);
		if (!o)
			return false;
		for (unsigned j = 0; j < 4; j++)
			o->word[j] = (uintptr_t)o + j;
		unsigned long irq = 0;
		if (i & 1)
			irq = spin_lock_irqsave(&l);
		if (i < n)
			call_rcu(&o->rcu, obj_cb);
		else
			kfree_rcu(o, rcu);
		if (i & 1)
			spin_unlock_irqrestore(&l, irq);
	}
	return true;
}

KTEST(rcu, barrier_runs_every_callback_queued_before_it)
{
	struct rcu_stats st0, st;
	atomic_store(&cb_run, 0);
	atomic_store(&cb_bad, 0);
	rcu_stats(&st0);
	KASSERT(queue_objs(BARRIER_OBJS));
	rcu_barrier();
	rcu_stats(&st);
	unsigned run = atomic_load(&cb_run), bad = atomic_load(&cb_bad);
	KEXPECT_EQ(run, BARRIER_OBJS);
	KEXPECT_EQ(bad, 0);
	/* 2n callbacks and the barrier's own */
	KEXPECT_EQ(st.cbs_run - st0.cbs_run, 2 * BARRIER_OBJS + 1);
	KEXPECT_EQ(st.waiting, 0);
	KEXPECT(st.late_wakes > st0.late_wakes);
	KEXPECT_EQ(capture_run_line("meminfo"), SHELL_OK);
	KEXPECT(seen_has("rcu: "));
	KEXPECT(seen_has(" callbacks queued, "));
	KEXPECT(seen_has(" run, 0 waiting ("));
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): a
 * synchronize_rcu inside a read-side section would wait for itself; it
 * must panic, naming itself. */
KTEST(demo, synchronize_rcu_in_a_read_section)
{
	rcu_read_lock();
	synchronize_rcu();
	rcu_read_unlock();
	ktest_fail_at(__FILE__, __LINE__,
	              "synchronize_rcu returned inside a read-side section");
}

/* A callback that waits for callbacks runs on the rcu thread, which
 * would wait for itself: it must panic, naming itself. */
static struct rcu_head demo_head;

static void demo_synchronizing_cb(struct rcu_head *h)
{
	synchronize_rcu();
}

KTEST(demo, synchronize_rcu_in_a_callback)
{
	call_rcu(&demo_head, demo_synchronizing_cb);
	rcu_barrier();
	ktest_fail_at(__FILE__, __LINE__,
	              "rcu_barrier returned after a callback's "
	              "synchronize_rcu");
}
#endif

/*
 * Misuse of RCU and of the shrinker registry that must be refused at the
 * call, naming it, rather than hang or corrupt later on the rcu thread
 * (where the caller's stack is lost), and kfree_rcu(NULL), which does
 * nothing. The refusals are panics, so they are demo tests, built only with
 * KTEST_FAIL_DEMO=1 and judged by tools/test-harness; each costs one boot there
 * and well under a second of guest time.
 */
#include <stdint.h>

#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/percpu_testing.h"
#include "kernel/rcu.h"
#include "kernel/shrinker.h"

struct null_obj {
	uint64_t pad[3];
	struct rcu_head rcu;
};

/* kfree_rcu(NULL, field) does nothing, as kfree(NULL) and Linux's
 * kfree_rcu do: no callback is queued (it wrote the head at address 24,
 * a #PF, until review rv97). Microseconds. */
KTEST(rcu_misuse, kfree_rcu_of_null_does_nothing)
{
	struct rcu_stats st0, st;
	struct null_obj *o = NULL;
	rcu_stats(&st0);
	kfree_rcu(o, rcu);
	rcu_stats(&st);
	KEXPECT_EQ(st.cbs_queued, st0.cbs_queued);
}

#ifdef KTEST_FAIL_DEMO
/* meminfo's listing calls each count: one that unregisters its own
 * shrinker would wait for the listing's hold on it (a hang). */
static struct shrinker demo_count_unreg;

static size_t unregistering_count(struct shrinker *s)
{
	shrinker_unregister(s);
	return 0;
}

static size_t no_scan(struct shrinker *s, size_t nr)
{
	return 0;
}

static struct shrinker demo_count_unreg = {
        .name = "demo_count", .count = unregistering_count, .scan = no_scan};

KTEST(demo, shrinker_unregistered_from_its_count_in_meminfo)
{
	shrinker_register(&demo_count_unreg);
	shrink_print();
	ktest_fail_at(__FILE__, __LINE__,
	              "shrink_print returned after a count unregistered");
}

/* A func below RCU_KFREE_OFFSET_MAX (NULL, or here the last offset
 * kfree_rcu may use) would be taken for kfree_rcu's offset: the object
 * around the head kfreed after a grace period, silently. The bound
 * itself, so that a check of NULL alone fails this (mutation audit,
 * rv98: 'func == 0' passed the NULL demo). */
static struct rcu_head demo_head;

KTEST(demo, call_rcu_with_a_func_below_the_offsets_bound)
{
	call_rcu(&demo_head, (void (*)(struct rcu_head *))(
	                             uintptr_t)(RCU_KFREE_OFFSET_MAX - 1));
	rcu_barrier();
	ktest_fail_at(__FILE__, __LINE__, "call_rcu took an offset for a func");
}

static void demo_cb(struct rcu_head *h)
{
}

/* The same head queued twice in a row: the list's tail would point to
 * itself, and the rcu thread run it for good. */
KTEST(demo, call_rcu_of_a_head_queued_already)
{
	call_rcu(&demo_head, demo_cb);
	call_rcu(&demo_head, demo_cb);
	rcu_barrier();
	ktest_fail_at(__FILE__, __LINE__, "call_rcu queued a head twice");
}

/* With mm.debug_poison, a head queued again while further back in the
 * list: before rv99 enqueue wrote its next = NULL first, cutting off
 * the callbacks queued after it (never run, no message), and the test
 * reached its ktest_fail_at. Preemption off: the rcu thread (CPU 0's,
 * as this test's) cannot take the list between the calls. */
static struct rcu_head demo_first, demo_after;

KTEST(demo, call_rcu_of_a_head_queued_further_back)
{
	preempt_disable();
	call_rcu(&demo_first, demo_cb);
	call_rcu(&demo_head, demo_cb);
	call_rcu(&demo_after, demo_cb);
	call_rcu(&demo_head, demo_cb);
	preempt_enable();
	rcu_barrier();
	ktest_fail_at(__FILE__, __LINE__,
	              "call_rcu queued a head further back again");
}

/* kfree_rcu of an object kmalloc did not hand out (here one 16 bytes
 * into a kmalloc'd block): refused at the call, not in the rcu thread. */
struct demo_obj {
	uint64_t pad[2];
	struct rcu_head rcu;
};

KTEST(demo, kfree_rcu_of_an_interior_pointer)
{
	char *p = kmalloc(128, 0);
	KASSERT(p);
	struct demo_obj *o = (struct demo_obj *)(p + 16);
	kfree_rcu(o, rcu);
	rcu_barrier();
	ktest_fail_at(__FILE__, __LINE__, "kfree_rcu took an interior pointer");
}

#if KTEST_HOOKS
/* CPU 0 runs the rcu thread: held offline, it would stall every grace
 * period until it is back. */
KTEST(demo, cpu0_taken_offline)
{
	if (this_cpu()->id != 0)
		ktest_fail_at(__FILE__, __LINE__, "not on CPU 0");
	cpu_testing_set_offline();
	cpu_set_online();
	ktest_fail_at(__FILE__, __LINE__, "CPU 0 was taken offline");
}
#endif
#endif

/*
 * Misuse of RCU and of the shrinker registry that must be refused at the
 * call, naming it, rather than hang or corrupt later on the rcu thread
 * (where the caller's stack is lost). The refusals are panics, so they
 * are demo tests, built only with KTEST_FAIL_DEMO=1 and judged by
 * tools/test-harness; each costs one boot there and well under a second
 * of guest time.
 */
#include <stdint.h>

#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/percpu_testing.h"
#include "kernel/rcu.h"
#include "kernel/shrinker.h"

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
#endif

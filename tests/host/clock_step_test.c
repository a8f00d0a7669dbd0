/*
 * mm/ against a clock whose readings are not in order across threads
 * (mm/port.h: a time another thread took may be later than the one this
 * thread reads next, by a race between the two reads or another CPU's
 * clock running ahead). The POSIX port's test offset
 * (mm_port_set_clock_offset) steps mm_port_now_ns back after a time was
 * taken, and each test checks that the later time is read as "just now",
 * never as an interval wrapped to nearly 2^64 ns: the sweeper runs no
 * periodic cycle on it, and the leak scan counts the object young.
 */
#include <sched.h>
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_leak.h"
#include "../../mm/spanheap_sweep.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

#define HOUR_NS   ((uint64_t)3600 * 1000 * 1000 * 1000)
#define SECOND_NS ((int64_t)1000 * 1000 * 1000)

/* Wakes the sweeper and returns once it has looked (its wait on the wake
 * event returned) and waits again: what it decided is done by then. It
 * waits first for the sweeper to wait: a sweeper just started, woken
 * before its first read of the event, read the wake as seen and slept
 * its quarter period (the first version of this test hung so, once, on
 * a loaded machine). */
static void sweeper_looks(void)
{
	while (mm_port_event_waiters(&sh.sweeper.wake) == 0)
		sched_yield();
	unsigned long r0 = mm_port_event_returns(&sh.sweeper.wake);
	mm_event_wake(&sh.sweeper.wake);
	while (mm_port_event_returns(&sh.sweeper.wake) == r0)
		sched_yield();
	while (mm_port_event_waiters(&sh.sweeper.wake) == 0)
		sched_yield();
}

/*
 * A cycle ends (here the test's, on demand) at a time later than the one
 * the sweeper reads next, as when a reclaim's cycle on another CPU ends
 * between the sweeper's read of its clock and its load of the cycle's
 * end. With frees pending but under the threshold and an hour's period,
 * no cycle is due. Until this version "now - last >= period" wrapped to
 * nearly 2^64 and the sweeper ran a "periodic" cycle right after the
 * other: cycles went from 1 to 2.
 */
KTEST(clock_step, a_later_cycle_end_is_no_period_passed)
{
	enum { N = (8 << 20) / 64, FREED = (64 << 10) / 64 };
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.period_ns = HOUR_NS;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	void **p = calloc(N, sizeof(*p));
	KASSERT(p && sh_alloc_n(&sh, p, N, 64));
	spanheap_flush_cache(&sh);
	KASSERT(spanheap_sweeper_start(&sh));
	sweeper_looks();
	KASSERT_EQ(sh_cycles(&sh), 0);
	spanheap_sweep_cycle(&sh);
	sh_free_first_from_cpu1(&sh, p, FREED);
	KASSERT(spanheap_pending_since_flip(&sh) > 0);
	mm_port_set_clock_offset(-SECOND_NS);
	sweeper_looks();
	KEXPECT_EQ(sh_cycles(&sh), 1);
	mm_port_set_clock_offset(0);
	spanheap_sweeper_stop(&sh);
	for (size_t i = 0; i < N; i++)
		if (p[i])
			spanheap_free(&sh, p[i]);
	free(p);
	sh_flush_cpus(&sh, 2);
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

/*
 * An object nothing points to, allocated at a time later than the scan's
 * (the clock stepped back a second since), is younger than an hour: the
 * scan counts it young, not a leak. Until this version its age wrapped to
 * nearly 2^64 ns and it was reported: leaks 1, young 0.
 */
KTEST(clock_step, a_record_later_than_the_scan_is_young)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	void *lost = spanheap_alloc(&sh, 64, 0);
	KASSERT(lost);
	uintptr_t root = 0; /* no root points anywhere */
	struct spanheap_leak_range roots = {(uintptr_t)&root,
	                                    (uintptr_t)(&root + 1)};
	size_t bytes = spanheap_leak_work_bytes(&sh, 4);
	void *work = calloc(1, bytes);
	KASSERT(work);
	struct spanheap_leak_result r;
	mm_port_set_clock_offset(-SECOND_NS);
	long n =
	        spanheap_leak_scan(&sh, work, bytes, &roots, 1, HOUR_NS, 4, &r);
	mm_port_set_clock_offset(0);
	KEXPECT_EQ(n, 0);
	KEXPECT_EQ(r.leaks, 0);
	KEXPECT_EQ(r.young, 1);
	n = spanheap_leak_scan(&sh, work, bytes, &roots, 1, 0, 4, &r);
	KEXPECT_EQ(n, 1); /* a leak all the same, once old enough */
	free(work);
	spanheap_free(&sh, lost);
	spanheap_flush_cache(&sh);
	sh_heap_release(&heap, &sh);
}

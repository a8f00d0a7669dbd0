/*
 * The sweeper thread's triggers and wake-ups (mm/spanheap_sweep.c): it
 * starts a cycle when the frees pending since the last flip pass both
 * their share of the bytes in use and min_pending_bytes, and not again
 * until new frees are pending; its stop wakes it out of a paced sleep;
 * a cycle's end wakes whoever waits for the cycle semaphore.
 *
 * The period is an hour, so no periodic cycle can run: a cycle here is
 * one the pending frees started. Each test waits for the sweeper to come
 * back to its wait for a wake-up (mm_port_event_waiters), where it has
 * looked at the pending frees and done what they asked.
 */
#include <sched.h>
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

#define HOUR_NS ((uint64_t)3600 * 1000 * 1000 * 1000)

/* A heap with an hour's sweep period, the sweeper's CPU budget and (0:
 * the default) min_pending_bytes given; CPU 0. */
static bool sweeper_heap_with(unsigned cpu_permille, size_t min_pending)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.period_ns = HOUR_NS;
	sc.cpu_permille = cpu_permille;
	if (min_pending)
		sc.min_pending_bytes = min_pending;
	return sh_heap_fresh_with(&heap, &sh, &sc);
}

static bool sweeper_heap(unsigned cpu_permille)
{
	return sweeper_heap_with(cpu_permille, 0);
}

/* Until the sweeper waits for a wake-up, or has run more than max
 * cycles; returns the cycles run. */
static uint64_t sweeper_settles(uint64_t max)
{
	uint64_t n;
	while ((n = sh_cycles(&sh)) <= max &&
	       mm_port_event_waiters(&sh.sweeper.wake) == 0)
		sched_yield();
	return sh_cycles(&sh);
}

/* n objects of 64 bytes in use (on CPU 0); then the first nfree of them
 * freed from CPU 1, whose flush makes them pending. */
static void **in_use_then_pending(size_t n, size_t nfree)
{
	void **p = calloc(n, sizeof(*p));
	if (!p || !sh_alloc_n(&sh, p, n, 64))
		return NULL;
	spanheap_flush_cache(&sh);
	sh_free_first_from_cpu1(&sh, p, nfree);
	return p;
}

static void free_all(void **p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			spanheap_free(&sh, p[i]);
	free(p);
	sh_flush_cpus(&sh, 2);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
}

/* n objects of 64 bytes in use, the first nfree pending (the hour's
 * period: no periodic cycle); the sweeper, started, runs want cycles and
 * settles. The heap's thresholds are the defaults: min_pending_bytes
 * 1 MiB, pending_permille 1/8. */
static void cycles_after_pending(size_t n, size_t nfree, uint64_t want)
{
	KASSERT(sweeper_heap(10));
	KASSERT_EQ(sh.cfg.min_pending_bytes, (size_t)1 << 20);
	void **p = in_use_then_pending(n, nfree);
	KASSERT(p);
	KASSERT(spanheap_sweeper_start(&sh));
	KEXPECT_EQ(sweeper_settles(want), want);
	spanheap_sweeper_stop(&sh);
	/* The sweeper's cycles are charged their CPU time (the stats' and
	 * the pacing's measure): a cycle takes some. */
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->n.sweeper_cpu_ns > 0, want > 0);
	free(st);
	free_all(p, n);
	sh_heap_release(&heap, &sh);
}

/*
 * 2 MiB in use, 640 KiB of it pending: past an eighth of the bytes in
 * use (about 256 KiB), but below min_pending_bytes (1 MiB), the floor
 * that keeps a small heap from sweeping at every few frees. No cycle.
 */
KTEST(spanheap_sweeper, no_cycle_below_min_pending_bytes)
{
	cycles_after_pending((2 << 20) / 64, (640 << 10) / 64, 0);
}

/*
 * 2 MiB pending of 8 MiB in use: past both thresholds, one cycle. It
 * folds them all, and the count of frees pending since the flip starts
 * again at 0: with nothing freed since, the sweeper runs no second cycle.
 */
KTEST(spanheap_sweeper, one_cycle_per_threshold_passed)
{
	cycles_after_pending((8 << 20) / 64, (2 << 20) / 64, 1);
}

/*
 * The stop of a sweeper that paces itself after a cycle (a thousand
 * times the cycle's CPU time, at 0.1% of a CPU) wakes it, rather than
 * wait for the pace to end: the pace event, which only the stop wakes,
 * has moved when the stop returns.
 */
KTEST(spanheap_sweeper, stop_wakes_a_pacing_sweeper)
{
	enum { N = (8 << 20) / 64, FREED = (2 << 20) / 64 };
	KASSERT(sweeper_heap(1));
	void **p = in_use_then_pending(N, FREED);
	KASSERT(p);
	KASSERT(spanheap_sweeper_start(&sh));
	while (mm_port_event_waiters(&sh.sweeper.pace) == 0 &&
	       mm_port_event_waiters(&sh.sweeper.wake) == 0)
		sched_yield();
	uint64_t seen = mm_event_prepare(&sh.sweeper.pace);
	spanheap_sweeper_stop(&sh);
	KEXPECT(mm_event_prepare(&sh.sweeper.pace) != seen);
	KEXPECT_EQ(sh_cycles(&sh), 1);
	free_all(p, N);
	sh_heap_release(&heap, &sh);
}

/*
 * A cycle's end wakes whoever waits for the cycle semaphore (a checker, a
 * second cycle), who would otherwise sleep out its wait's timeout, a
 * second: the event it waits on has moved once the cycle returns.
 */
KTEST(spanheap_sweeper, cycle_end_wakes_the_semaphore_waiters)
{
	KASSERT(sweeper_heap(10));
	uint64_t seen = mm_event_prepare(&sh.sweeper.cycle_done);
	spanheap_sweep_cycle(&sh);
	KEXPECT(mm_event_prepare(&sh.sweeper.cycle_done) != seen);
	seen = mm_event_prepare(&sh.sweeper.cycle_done);
	SH_CHECK(&sh, "the checker holds the semaphore too");
	KEXPECT(mm_event_prepare(&sh.sweeper.cycle_done) != seen);
	sh_heap_release(&heap, &sh);
}

/*
 * Frees that pass the threshold wake an idle sweeper at once (the flush
 * that makes them pending kicks it), rather than leave them until its
 * next look, a quarter period later (here a quarter of an hour): the wake
 * event has moved when the flush returns, and a cycle follows.
 */
KTEST(spanheap_sweeper, pending_frees_wake_an_idle_sweeper)
{
	enum { N = (8 << 20) / 64, FREED = (2 << 20) / 64 };
	KASSERT(sweeper_heap(10));
	void **p = in_use_then_pending(N, 0);
	KASSERT(p);
	KASSERT(spanheap_sweeper_start(&sh));
	KEXPECT_EQ(sweeper_settles(0), 0);
	uint64_t seen = mm_event_prepare(&sh.sweeper.wake);
	mm_port_set_cpu(1);
	for (size_t i = 0; i < FREED; i++) {
		spanheap_free(&sh, p[i]);
		p[i] = NULL;
	}
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	KASSERT(mm_event_prepare(&sh.sweeper.wake) != seen);
	while (sh_cycles(&sh) == 0)
		sched_yield();
	spanheap_sweeper_stop(&sh);
	free_all(p, N);
	sh_heap_release(&heap, &sh);
}

/*
 * Frees pending of exactly min_pending_bytes (1 MiB, above an eighth of
 * the 2 MiB in use) are due: the threshold is "at least", so the sweeper
 * runs one cycle.
 */
KTEST(spanheap_sweeper, cycle_at_exactly_min_pending_bytes)
{
	cycles_after_pending((2 << 20) / 64, (1 << 20) / 64, 1);
}

/*
 * min_pending_bytes 0 (no floor: a port's configuration at its lower
 * extreme) on a heap with nothing in use and nothing pending: the sweeper
 * has nothing to do and waits for a wake-up. Until a review its threshold,
 * the larger of min_pending_bytes and a share of the bytes in use, was 0
 * here, and "0 pending >= 0" started cycle after cycle on an empty heap,
 * for good, paced only by its CPU budget (at cpu_permille 1000, a whole
 * CPU): 51 cycles had run when this test stopped it.
 */
KTEST(spanheap_sweeper, no_cycle_with_nothing_pending_and_no_floor)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.period_ns = HOUR_NS;
	sc.min_pending_bytes = 0;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	KASSERT(spanheap_sweeper_start(&sh));
	KEXPECT_EQ(sweeper_settles(50), 0);
	spanheap_sweeper_stop(&sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

/*
 * The free whose spill brings the pending bytes to exactly
 * min_pending_bytes (here 512 KiB, the second of the kick's 256 KiB
 * steps) wakes the sweeper; the spill that crossed the first step, at
 * half of it, does not. Frees one at a time from CPU 1, so each spill
 * (half a magazine, pending bits as no CPU caches the spans) is the only
 * one of its free. No sweeper thread: the wake event alone tells.
 */
KTEST(spanheap_sweeper, kick_at_exactly_min_pending_bytes)
{
	enum { MIN = 512 << 10, N = 2 * MIN / 64 };
	KASSERT(sweeper_heap_with(SPANHEAP_DEFAULT_CPU_PERMILLE, MIN));
	void **p = in_use_then_pending(N, 0);
	KASSERT(p);
	_Atomic uint64_t *pending = &sh.caches[1].n.pending_bytes;
	uint64_t seen = mm_event_prepare(&sh.sweeper.wake);
	bool half_woke = false;
	mm_port_set_cpu(1);
	size_t i = 0;
	for (; i < N && atomic_load(pending) < MIN; i++) {
		spanheap_free(&sh, p[i]);
		p[i] = NULL;
		if (atomic_load(pending) >= MIN / 2 &&
		    atomic_load(pending) < MIN)
			half_woke |= mm_event_prepare(&sh.sweeper.wake) != seen;
	}
	mm_port_set_cpu(0);
	KEXPECT(!half_woke);
	KASSERT_EQ(atomic_load(pending), MIN);
	KEXPECT(mm_event_prepare(&sh.sweeper.wake) != seen);
	free_all(p, N);
	sh_heap_release(&heap, &sh);
}

/*
 * The background threads' start failing (the port's start refused, as a
 * system out of threads does): each start says so, keeps no handle and
 * leaves nothing on (no idle CPU's flush handed to a sweeper that is not
 * there); a stop then is nothing; the next start runs the thread, a
 * second start of a running one is nothing, and a stop joins it, after
 * which a start runs a new one.
 */
KTEST(spanheap_sweeper, a_failed_start_says_so_and_a_retry_runs)
{
	KASSERT(sweeper_heap(1000));
	mm_port_set_quiet(true);
	mm_port_fail_thread_start(1);
	KEXPECT(!mheap_scavenger_start(&heap));
	KEXPECT(strstr(mm_port_last_log(), "cannot start the scavenger") !=
	        NULL);
	mm_port_fail_thread_start(1);
	KEXPECT(!spanheap_sweeper_start(&sh));
	KEXPECT(strstr(mm_port_last_log(), "cannot start the sweeper") != NULL);
	mm_port_set_quiet(false);
	KEXPECT(heap.scav.thread == NULL && sh.sweeper.thread == NULL);
	KEXPECT(!atomic_load(&sh.sweeper.idle_flush));
	spanheap_sweeper_stop(&sh); /* nothing to stop */
	mheap_scavenger_stop(&heap);
	for (int round = 0; round < 2; round++) {
		KASSERT(mheap_scavenger_start(&heap));
		KASSERT(spanheap_sweeper_start(&sh));
		struct mm_thread *scav = heap.scav.thread,
		                 *sweeper = sh.sweeper.thread;
		KEXPECT(scav != NULL && sweeper != NULL);
		KEXPECT(atomic_load(&sh.sweeper.idle_flush));
		KEXPECT(mheap_scavenger_start(&heap) &&
		        spanheap_sweeper_start(&sh));
		KEXPECT(heap.scav.thread == scav &&
		        sh.sweeper.thread == sweeper);
		/* The sweeper runs: it settles to wait for work. */
		sweeper_settles(0);
		spanheap_sweeper_stop(&sh);
		mheap_scavenger_stop(&heap);
		KEXPECT(heap.scav.thread == NULL && sh.sweeper.thread == NULL);
	}
	sh_heap_release(&heap, &sh);
}

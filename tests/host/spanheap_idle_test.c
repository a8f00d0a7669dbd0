/*
 * spanheap_cpu_idle (mm/spanheap_flush.c), a CPU's idle loop's call: it
 * hands the CPU's cache back once a sweep cycle began since its last
 * flush, once per cycle, and only while the sweeper runs; the sweeper's
 * stop waits for an idle flush in flight, so none runs past it.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

#define HOUR_NS ((uint64_t)3600 * 1000 * 1000 * 1000)
enum { IDLE_N = 8, IDLE_SIZE = 64 };

/* A heap whose sweeper runs no periodic cycle (an hour's period): a
 * cycle here is one the test runs. This thread on CPU 0. */
static bool idle_heap(void)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.period_ns = HOUR_NS;
	return sh_heap_fresh_with(&heap, &sh, &sc);
}

static struct spanheap_stats *stats(void)
{
	static struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return &st;
}

static size_t mag_objects(void)
{
	return stats()->cls[sizeclass_of(IDLE_SIZE)].mag_objects;
}

/* IDLE_N objects allocated and freed on CPU cpu: into its magazine,
 * which also holds what its refill put there beside the first. */
static void leave_on(unsigned cpu)
{
	void *p[IDLE_N];
	mm_port_set_cpu(cpu);
	KASSERT(sh_alloc_n(&sh, p, IDLE_N, IDLE_SIZE));
	for (unsigned i = 0; i < IDLE_N; i++)
		spanheap_free(&sh, p[i]);
	mm_port_set_cpu(0);
}

/* A flip, from CPU 0 (whose own magazines go back with it). */
static void flip(void)
{
	mm_port_set_cpu(0);
	spanheap_sweep_cycle(&sh);
}

/* The end of each test: the sweeper stopped (if it runs), the first
 * ncpus CPUs' caches flushed and a cycle run; then every page but those
 * the heap keeps for itself is back, and the heap's checker passes. */
static void heap_end(unsigned ncpus, const char *when)
{
	spanheap_sweeper_stop(&sh);
	sh_flush_cpus(&sh, ncpus);
	flip();
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, when);
	sh_heap_release(&heap, &sh);
}

/*
 * CPU 1 freed objects into its magazine. Its idle call does nothing
 * until a cycle begins; then it hands the cache back, once: the next
 * call, with no cycle since, does nothing again.
 */
KTEST(spanheap_idle, an_idle_cpu_hands_its_cache_back_once_a_cycle)
{
	KASSERT(idle_heap());
	KASSERT(spanheap_sweeper_start(&sh));
	leave_on(1);
	mm_port_set_cpu(1);
	KEXPECT(!spanheap_cpu_idle(&sh));
	/* What CPU 1 freed, and what its refill put in with them */
	size_t held = mag_objects();
	KEXPECT(held >= IDLE_N);
	flip();
	KEXPECT_EQ(mag_objects(), held); /* CPU 1's, still */
	mm_port_set_cpu(1);
	KEXPECT(spanheap_cpu_idle(&sh));
	KEXPECT_EQ(mag_objects(), (size_t)0);
	KEXPECT(!spanheap_cpu_idle(&sh));
	KEXPECT_EQ(stats()->n.idle_flushes, (uint64_t)1);
	heap_end(2, "after the idle flush");
}

/* With no sweeper running (never started, or stopped) an idle CPU keeps
 * its cache: it goes back at the CPU's next refill. */
KTEST(spanheap_idle, no_idle_flush_without_the_sweeper)
{
	KASSERT(idle_heap());
	leave_on(1);
	size_t held = mag_objects();
	KEXPECT(held >= IDLE_N);
	flip();
	mm_port_set_cpu(1);
	KEXPECT(!spanheap_cpu_idle(&sh)); /* never started */
	KASSERT(spanheap_sweeper_start(&sh));
	spanheap_sweeper_stop(&sh);
	flip();
	mm_port_set_cpu(1);
	KEXPECT(!spanheap_cpu_idle(&sh)); /* stopped */
	KEXPECT_EQ(mag_objects(), held);
	KEXPECT_EQ(stats()->n.idle_flushes, (uint64_t)0);
	heap_end(2, "after the flush");
}

/* ---- The stop against idle flushes in flight
 * ---------------------------------- */

enum { RACE_ROUNDS = 200 };

static _Atomic bool race_done;
static _Atomic unsigned long race_passes;

/* Widens both windows of the idle call (before it counts itself in
 * flight, and before its flush) to 200 us, the stop's to race. */
static void idle_slow(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where == MHEAP_HOOK_IDLE_SEEN || where == MHEAP_HOOK_IDLE_FLUSHING)
		nanosleep(&(struct timespec){.tv_nsec = 200000}, NULL);
}

/* CPU 2's idle loop, with allocations between its passes so that each
 * flush has objects to hand back. */
static void *idle_loop(void *arg)
{
	(void)arg;
	mm_port_set_cpu(2);
	void *p[IDLE_N];
	while (!atomic_load(&race_done)) {
		if (sh_alloc_n(&sh, p, IDLE_N, IDLE_SIZE))
			for (unsigned i = 0; i < IDLE_N; i++)
				spanheap_free(&sh, p[i]);
		spanheap_cpu_idle(&sh);
		atomic_fetch_add(&race_passes, 1);
		sched_yield();
	}
	return NULL;
}

/*
 * A thread on CPU 2 passes its idle call over and over while this one
 * starts the sweeper, flips, stops it and flips again, RACE_ROUNDS times.
 * Once the stop has returned no idle flush may run, or count, until the
 * next start: the count read after the stop holds through the next flip.
 * Even rounds wait for two passes after the flip, so that the idle call
 * flushes (unless a refill of the pass in flight flushed first); odd
 * ones stop 0 to 400 us after the flip, racing a pass in flight, which
 * the hook holds 200 us in each of its windows.
 */
KTEST(spanheap_idle, no_idle_flush_runs_past_the_sweepers_stop)
{
	KASSERT(idle_heap());
	atomic_store(&race_done, false);
	pthread_t t;
	mheap_test_hook = idle_slow;
	KASSERT_EQ(pthread_create(&t, NULL, idle_loop, NULL), 0);
	unsigned late = 0;
	for (unsigned r = 0; r < RACE_ROUNDS; r++) {
		KASSERT(spanheap_sweeper_start(&sh));
		flip();
		unsigned long passes = atomic_load(&race_passes);
		while (r % 2 == 0 && atomic_load(&race_passes) < passes + 2)
			sched_yield();
		if (r % 2) /* 0 to 400 us: the stop lands in either window */
			nanosleep(&(struct timespec){.tv_nsec = r / 2 % 5 *
			                                        100000},
			          NULL);
		spanheap_sweeper_stop(&sh);
		uint64_t n = stats()->n.idle_flushes;
		flip();
		/* Time for a pass the stop raced to flush and count */
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
		late += stats()->n.idle_flushes != n;
	}
	atomic_store(&race_done, true);
	pthread_join(t, NULL);
	mheap_test_hook = NULL;
	uint64_t flushes = stats()->n.idle_flushes;
	ktest_diag("%lu idle flushes in %u rounds", (unsigned long)flushes,
	           RACE_ROUNDS);
	KEXPECT_EQ(late, 0u);
	KEXPECT(flushes > 0);
	heap_end(3, "after the race");
}

/* ---- A quiet heap's sweeper hands back other CPUs' stale caches --------- */

#define QUIET_PERIOD_NS ((uint64_t)20 * 1000 * 1000)

/* A heap whose sweeper looks every 5 ms, with flush_quiet_cpus as
 * given; the sweeper started. */
static bool quiet_heap(bool flush_quiet)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.period_ns = QUIET_PERIOD_NS;
	sc.flush_quiet_cpus = flush_quiet;
	return sh_heap_fresh_with(&heap, &sh, &sc) &&
	       spanheap_sweeper_start(&sh);
}

/* Sleeps n of the quiet heap's periods. */
static void periods(unsigned n)
{
	uint64_t ns = n * QUIET_PERIOD_NS;
	nanosleep(&(struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
	                             .tv_nsec = (long)(ns % 1000000000u)},
	          NULL);
}

/* Waits (a hang guard of 1000 periods) until the sweeper's visits stop
 * coming: 10 periods in a row with none. Returns the visits made. */
static uint64_t visits_settled(void)
{
	uint64_t v = stats()->n.quiet_visits;
	for (unsigned i = 0, still = 0; i < 1000 && still < 10; i++) {
		periods(1);
		uint64_t now = stats()->n.quiet_visits;
		still = now == v ? still + 1 : 0;
		v = now;
	}
	return v;
}

/*
 * flush_quiet_cpus (the hosted malloc's: its threads have no idle loop):
 * CPU 1 freed objects into its magazine and went quiet. A period after a
 * cycle began, the sweeper hands CPU 1's cache back through
 * mm_port_each_other_cpu. Then, with nothing more freed, its visits stop
 * (one for the cycle that folded what it handed back, none after):
 * visits settle, and 20 more periods bring at most one late one. Waits
 * for the flush, with no bound (a hang is the runner's silence timeout's
 * to end: a cap of 1000 periods failed a correct heap whose sweeper the
 * host starved for 20 s). Fails with quiet_visit
 * a no-op, and with a visit that marks no cycle visited (a membarrier a
 * period for good in the library, a review found).
 */
KTEST(spanheap_idle, a_quiet_heaps_sweeper_hands_back_stale_caches)
{
	KASSERT(quiet_heap(true));
	leave_on(1);
	KEXPECT(mag_objects() >= IDLE_N);
	flip();
	while (stats()->n.quiet_flushes == 0)
		periods(1);
	KEXPECT_EQ(mag_objects(), (size_t)0);
	KEXPECT_EQ(stats()->n.quiet_flushes, (uint64_t)1);
	/* At most one late visit (a sweeper stalled past the settling):
	 * one that marked no cycle visited makes one every period. */
	uint64_t visits = visits_settled();
	periods(20);
	KEXPECT(stats()->n.quiet_visits <= visits + 1);
	KEXPECT_EQ(stats()->n.quiet_flushes, (uint64_t)1);
	heap_end(2, "after the quiet flush");
}

static _Atomic bool busy_stop;

/* CPU 2 refills over and over (more objects than its magazine holds,
 * allocated and freed), which runs cycles too. */
static void *busy_cpu(void *arg)
{
	(void)arg;
	mm_port_set_cpu(2);
	enum { BUSY_N = 512 };
	static void *p[BUSY_N];
	while (!atomic_load(&busy_stop)) {
		if (sh_alloc_n(&sh, p, BUSY_N, 4 * IDLE_SIZE))
			for (unsigned i = 0; i < BUSY_N; i++)
				spanheap_free(&sh, p[i]);
		nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
	}
	return NULL;
}

/*
 * A CPU that keeps refilling does not keep a quiet CPU's cache from the
 * sweeper: CPU 1's goes back while CPU 2 allocates throughout. Until a
 * review the visit waited for a period with no refill anywhere, and one
 * busy thread kept every blocked thread's cache for good. Waits with no
 * bound, as above.
 */
KTEST(spanheap_idle, a_busy_cpu_does_not_keep_quiet_caches)
{
	KASSERT(quiet_heap(true));
	leave_on(1);
	KEXPECT(mag_objects() >= IDLE_N);
	atomic_store(&busy_stop, false);
	pthread_t t;
	KASSERT(pthread_create(&t, NULL, busy_cpu, NULL) == 0);
	while (mag_objects() != 0)
		periods(1);
	size_t left = mag_objects();
	atomic_store(&busy_stop, true);
	pthread_join(t, NULL);
	KEXPECT_EQ(left, (size_t)0);
	KEXPECT(stats()->n.quiet_flushes >= 1);
	heap_end(3, "after the busy CPU");
}

/* Off (the default, a kernel's: its idle loop does it): CPU 1 keeps its
 * cache through many quiet periods after a cycle. */
KTEST(spanheap_idle, no_quiet_flush_unless_configured)
{
	KASSERT(quiet_heap(false));
	leave_on(1);
	size_t held = mag_objects();
	KEXPECT(held >= IDLE_N);
	flip();
	periods(10);
	KEXPECT_EQ(mag_objects(), held);
	KEXPECT_EQ(stats()->n.quiet_flushes, (uint64_t)0);
	heap_end(2, "after the flush");
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * A visit that cannot reach every CPU (the port refuses: a thread stopped
 * inside a call, in the library) is tried again, each time twice as long
 * after the last: the third visit comes at least 1 + 2 + 4 periods after
 * the cycle. Until a review found it, one came every period for good.
 * Waits for three visits with no bound, as above.
 */
KTEST(spanheap_idle, a_visit_that_misses_a_cpu_backs_off)
{
	KASSERT(quiet_heap(true));
	leave_on(1);
	mm_port_refuse_each_other_cpu(true);
	uint64_t t0 = now_ns();
	flip();
	while (stats()->n.quiet_visits < 3)
		periods(1);
	uint64_t took = now_ns() - t0;
	mm_port_refuse_each_other_cpu(false);
	KEXPECT(stats()->n.quiet_visits >= 3);
	KEXPECT(took >= 7 * QUIET_PERIOD_NS);
	KEXPECT(mag_objects() >= IDLE_N); /* never reached */
	heap_end(2, "after the refused visits");
}

/*
 * The backed-off visit's wait is the period doubled per refused visit,
 * and saturates rather than wrap: period_ns runs to UINT64_MAX (never),
 * and until a review a period of 2^62 ns shifted by the second backoff
 * was 0, so a heap configured to visit almost never visited at once.
 */
KTEST(spanheap_idle, a_visits_backoff_saturates)
{
	static const struct {
		uint64_t period;
		unsigned backoff;
		uint64_t want;
	} rows[] = {
	        {QUIET_PERIOD_NS, 0, QUIET_PERIOD_NS},
	        {QUIET_PERIOD_NS, 6, 64 * QUIET_PERIOD_NS},
	        {(uint64_t)1 << 57, 6, (uint64_t)1 << 63},
	        {(uint64_t)1 << 62, 2, UINT64_MAX},
	        {((uint64_t)1 << 58) + 1, 6, UINT64_MAX},
	        {UINT64_MAX, 1, UINT64_MAX},
	        {UINT64_MAX, 6, UINT64_MAX},
	        {1, 64, UINT64_MAX},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t got =
		        spanheap_visit_wait_ns(rows[i].period, rows[i].backoff);
		if (got != rows[i].want)
			ktest_fail_at(__FILE__, __LINE__,
			              "period %#lx, backoff %u: %#lx, not %#lx",
			              (unsigned long)rows[i].period,
			              rows[i].backoff, (unsigned long)got,
			              (unsigned long)rows[i].want);
	}
}

/* Moves sh's sweepgen on by n cycles, as if they ran with no span made
 * and no CPU refilling (so only the count moves) and no visit. */
static void cycles_pass(uint32_t n)
{
	atomic_store(&sh.sweepgen, atomic_load(&sh.sweepgen) + 2 * n);
}

/* A visit for the cycle now, from CPU 0, as the sweeper makes it. */
static void visit_now(void)
{
	bool kick;
	mm_port_set_cpu(0);
	KEXPECT(spanheap_flush_stale_others(&sh, atomic_load(&sh.sweepgen),
	                                    &kick));
}

/*
 * A visit tells a stale cache by a signed difference of sweepgens
 * (spanheap_cache_stale_since), right for half their range: 2^30
 * cycles, 2.6 days of malloc_trim in a loop (4800 cycles a second in
 * this ASan build), 74 of a sweeper under churn (170 a second here).
 * Until a review a visit passed an empty cache by and left its flushgen
 * where its last flush put it: after 2^30 cycles with nothing cached
 * there, a thread that then only freed on that CPU kept its magazines'
 * objects (and their spans) from every visit for 2^30 cycles more. Here
 * CPU 1 is empty for 2^30 cycles, with a visit half-way that must bring
 * its flushgen along, then holds objects that the next visit must take.
 */
KTEST(spanheap_idle, a_visit_keeps_an_empty_caches_flushgen_near)
{
	KASSERT(idle_heap());
	cycles_pass((uint32_t)1 << 29);
	visit_now(); /* CPU 1 holds nothing */
	cycles_pass((uint32_t)1 << 29);
	void *p[IDLE_N];
	KASSERT(sh_alloc_n(&sh, p, IDLE_N, IDLE_SIZE));
	mm_port_set_cpu(1); /* only frees: no refill flushes its cache */
	for (unsigned i = 0; i < IDLE_N; i++)
		spanheap_free(&sh, p[i]);
	flip();
	KEXPECT_EQ(mag_objects(), (size_t)IDLE_N);
	visit_now();
	KEXPECT_EQ(mag_objects(), (size_t)0);
	KEXPECT_EQ(stats()->n.quiet_flushes, (uint64_t)1);
	heap_end(2, "after the visits");
}

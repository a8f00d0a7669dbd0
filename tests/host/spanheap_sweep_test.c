/*
 * The span heap's sweep cycles, release and statistics
 * (mm/spanheap_sweep.c) through the POSIX port: a sweep cycle gives empty
 * spans back to the page heap, release-all returns every page but the span
 * heap's own bookkeeping, the per-class statistics count what the test
 * holds, and the sweeper starts and stops. The free paths and magazines
 * are spanheap_mag_test.c's. spanheap_check runs at every quiet point.
 */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

/* ---- Sweep cycles and release -------------------------------------------- */

KTEST(spanheap, sweep_frees_spans)
{
	enum { N = 1000 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(256);
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	size_t nspans = (N + ci->nelems - 1) / ci->nelems;
	void **p = calloc(N, sizeof(*p));
	KASSERT(p);
	size_t base = sh_in_use_pages(&heap);
	KASSERT(sh_alloc_n(&sh, p, N, 256));
	size_t full = sh_in_use_pages(&heap);
	KEXPECT(full >= base + nspans * ci->npages);
	/* What the last refill put into the magazine and no allocation
	 * took (mag_fill): the flush gives it back to the cached span. */
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	size_t left = st.mag_objects;
	KEXPECT(left < sizeclass_info[cls].nelems);
	/* Hand the cached span back, then free: every free takes the
	 * pending path, and nothing is given back before a sweep. */
	spanheap_flush_cache(&sh);
	size_t kept = sh_kept_pages(&sh);
	for (int i = 0; i < N; i++)
		spanheap_free(&sh, p[i]);
	/* The slab of magazine slots, made at the first refill, is not
	 * made again. */
	kept = sh_kept_pages(&sh) - kept;
	KEXPECT_EQ(kept, 0);
	KEXPECT_EQ(sh_in_use_pages(&heap), full + kept);
	SH_CHECK(&sh, "pending frees");
	size_t freed = spanheap_sweep_cycle(&sh);
	KEXPECT_EQ(freed, nspans);
	KEXPECT_EQ(sh_in_use_pages(&heap), full + kept - nspans * ci->npages);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].spans, 0);
	KEXPECT_EQ(st.cls[cls].objects_in_use, 0);
	KEXPECT_EQ(st.n.cycles, 1);
	KEXPECT_EQ(st.n.freed_spans, nspans);
	KEXPECT_EQ(st.n.swept_spans, nspans);
	KEXPECT_EQ(st.remote_frees, N);
	KEXPECT_EQ(st.local_frees, left); /* the flush's, by the owner */
	/* A second cycle finds nothing. */
	KEXPECT_EQ(spanheap_sweep_cycle(&sh), 0);
	SH_CHECK(&sh, "after the sweep");
	free(p);
	sh_heap_release(&heap, &sh);
}

/* A large span in use has nothing to sweep: a cycle moves its sweepgen
 * but does not count it as a span swept. */
KTEST(spanheap, large_spans_are_not_counted_as_swept)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	void *big[3];
	for (int i = 0; i < 3; i++) {
		big[i] = spanheap_alloc(&sh, 100000 + (size_t)i * PG, 0);
		KASSERT(big[i]);
	}
	KEXPECT_EQ(spanheap_sweep_cycle(&sh), 0);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.n.cycles, 1);
	KEXPECT_EQ(st.n.swept_spans, 0);
	KEXPECT_EQ(st.cls[0].spans, 3);
	for (int i = 0; i < 3; i++)
		spanheap_free(&sh, big[i]);
	SH_CHECK(&sh, "after the large frees");
	sh_heap_release(&heap, &sh);
}

/* One round of a mixed workload on CPUs 0 and 1: everything allocated is
 * freed, half from the other CPU. */
static void mixed_round(void)
{
	enum { N = 600 };
	static void *p[N];
	for (int i = 0; i < N; i++) {
		mm_port_set_cpu((unsigned)i % 2);
		size_t size = i % 50 == 0 ? 100000 + (size_t)i * 100
		                          : (size_t)(i * 37) % 9000;
		p[i] = spanheap_alloc(&sh, size, 0);
		if (!p[i])
			ktest_fail_at(__FILE__, __LINE__, "alloc %d failed", i);
	}
	for (int i = 0; i < N; i++) {
		mm_port_set_cpu((unsigned)(i / 3) % 2);
		spanheap_free(&sh, p[i]);
	}
	sh_flush_cpus(&sh, 2);
}

KTEST(spanheap, release_all_returns_everything)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mixed_round();
	spanheap_release_all(&sh);
	size_t baseline = sh_in_use_pages(&heap);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "after the first round");
	mixed_round();
	size_t held = sh_in_use_pages(&heap);
	size_t released = spanheap_release_all(&sh);
	struct mheap_stats hs;
	mheap_stats(&heap, &hs);
	ktest_diag("baseline %zu pages, %zu before release-all, %zu "
	           "released",
	           baseline, held, released);
	KEXPECT(held > baseline);
	KEXPECT_EQ(hs.in_use_pages, baseline);
	KEXPECT_EQ(hs.free_backed_pages, 0);
	KEXPECT(released > 0);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.spans, 0);
	KEXPECT_EQ(st.bytes_in_use, 0);
	/* Nothing left to give back: 0 (malloc_trim's answer). The heap
	 * has no guarded pool, whose drains' pages count too: a drain that
	 * counted one for a pool not there was not seen before. */
	KEXPECT_EQ(spanheap_release_all(&sh), 0);
	SH_CHECK(&sh, "after the second round");
	sh_heap_release(&heap, &sh);
}

/* Reads sh's statistics into *st until done(st) holds, with no bound: a
 * hang is the runner's silence timeout's to end (a minute's cap failed a
 * correct heap on a host that starved the sweeper that long). */
static void stats_until(struct spanheap_stats *st,
                        bool (*done)(const struct spanheap_stats *))
{
	for (;;) {
		spanheap_stats(&sh, st);
		if (done(st))
			return;
		usleep(1000);
	}
}

static bool first_cycle_done(const struct spanheap_stats *st)
{
	return st->n.cycles >= 1;
}

static bool no_256_byte_spans(const struct spanheap_stats *st)
{
	return st->cls[sizeclass_of(256)].spans == 0;
}

/*
 * The sweeper paces itself to its CPU budget after each cycle; but a heap
 * that goes quiet (no cache refill for a period) with frees pending gets
 * its next cycle at once, so its empty spans go back. Here the budget is
 * 0.1% of a CPU, so the pause after the first cycle is a thousand times
 * its CPU time, and the second cycle can only come early: quiet_cycles
 * says so. (Waits have a generous cap; nothing is timed.)
 */
KTEST(spanheap, quiet_heap_sweeps_before_its_pace_ends)
{
	enum { N = 32768, SIZE = 256 };
	_Static_assert(SIZE == 256, "no_256_byte_spans watches this class");
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.cpu_permille = 1;
	sc.period_ns = 5 * 1000 * 1000;
	sc.min_pending_bytes = 64 << 10;
	KASSERT(sh_heap_new_with(&heap, &sh, &hc, &sc));
	void **p = calloc(N, sizeof(*p));
	KASSERT(p);
	for (int i = 0; i < N; i++) {
		p[i] = spanheap_alloc(&sh, SIZE, 0);
		KASSERT(p[i]);
	}
	spanheap_flush_cache(&sh); /* every free below is a remote one */
	KASSERT(spanheap_sweeper_start(&sh));
	/* Half the frees, from CPU 1: past the threshold, so a cycle runs. */
	mm_port_set_cpu(1);
	for (int i = 0; i < N / 2; i++)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh);
	struct spanheap_stats st;
	stats_until(&st, first_cycle_done);
	/* The other half: pending, while the sweeper pauses. */
	for (int i = N / 2; i < N; i++)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	stats_until(&st, no_256_byte_spans);
	spanheap_sweeper_stop(&sh);
	KEXPECT_EQ(st.cls[sizeclass_of(SIZE)].spans, 0);
	KEXPECT(st.n.quiet_cycles >= 1);
	ktest_diag("%lu cycles, %lu of them brought forward by a quiet heap",
	           (unsigned long)st.n.cycles,
	           (unsigned long)st.n.quiet_cycles);
	SH_CHECK(&sh, "after the quiet cycle");
	free(p);
	sh_heap_release(&heap, &sh);
}

/*
 * spanheap_check while a cycle sweeps: no CPU allocates or frees
 * meanwhile (the checker's condition), but a cycle flips, claims spans and
 * frees the empty ones, which the checker must not take for faults (the
 * kernel shell's stress checks right after the flush that wakes the
 * sweeper). Each round frees a heap of objects of several classes from
 * another CPU; a thread of the test runs the cycle (spanheap_sweep_cycle:
 * the sweeper's, without its pauses), and the page heap's test hook holds
 * it at its first claimed span, which is then on no list. A checker
 * thread runs spanheap_check, which must wait for the cycle (the test lets
 * the cycle go once the checker waits on its event) and then find nothing
 * wrong. Without the wait the checker counts the claimed span missing from
 * its class's lists, in every round.
 *
 * Not the sweeper thread: a cycle of its that began before a round could
 * fold the round's spans off their fold queues and free them all, and the
 * next cycle then claimed none (a hang, once in 20 TSan runs). Left to
 * chance, as this test was, a check overlapped no cycle in some runs.
 */
static _Atomic bool hold_claim;
static sem_t claim_held, claim_resume;
static _Atomic bool check_done;
static bool check_panicked; /* read after the checker is joined */

static void hold_claimed(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SWEEP_CLAIMED ||
	    !atomic_exchange(&hold_claim, false))
		return;
	sem_post(&claim_held);
	sem_wait(&claim_resume);
}

static void *cycle_runner(void *arg)
{
	mm_port_set_cpu(2);
	*(size_t *)arg = spanheap_sweep_cycle(&sh);
	return NULL;
}

static void *checker(void *arg)
{
	(void)arg;
	check_panicked = sh_check_panics(&sh);
	atomic_store(&check_done, true);
	return NULL;
}

/* Frees the n objects at p from CPU 1, not the CPU that took them. */
static void free_from_cpu1(void **p, int n)
{
	mm_port_set_cpu(1);
	for (int i = 0; i < n; i++)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh); /* every free is pending */
	mm_port_set_cpu(0);
}

/* Waits until the checker has finished or waits on the cycle's event;
 * true in the second case, the one the test wants. */
static bool checker_waits(void)
{
	bool blocked = false;
	while (!atomic_load(&check_done) &&
	       !(blocked = mm_port_event_waiters(&sh.sweeper.cycle_done) > 0))
		sched_yield();
	return blocked;
}

KTEST(spanheap, check_waits_for_a_cycle_mid_sweep)
{
	enum { N = 8192, ROUNDS = 4 };
	static const size_t sizes[] = {16, 48, 128, 384, 1024};
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	void **p = calloc(N, sizeof(*p));
	KASSERT(p);
	sem_init(&claim_held, 0, 0);
	sem_init(&claim_resume, 0, 0);
	mheap_test_hook = hold_claimed;
	unsigned long waited = 0, panics = 0;
	size_t freed = 0;
	for (int r = 0; r < ROUNDS; r++) {
		mm_port_set_cpu(0);
		for (int i = 0; i < N; i++)
			KASSERT(p[i] = spanheap_alloc(&sh, sizes[i % 5], 0));
		spanheap_flush_cache(&sh);
		free_from_cpu1(p, N);
		atomic_store(&hold_claim, true);
		size_t n = 0;
		pthread_t cy, ck;
		KASSERT(pthread_create(&cy, NULL, cycle_runner, &n) == 0);
		sem_wait(&claim_held); /* the cycle, mid-sweep */
		atomic_store(&check_done, false);
		KASSERT(pthread_create(&ck, NULL, checker, NULL) == 0);
		bool blocked = checker_waits();
		sem_post(&claim_resume);
		pthread_join(cy, NULL);
		pthread_join(ck, NULL);
		waited += blocked;
		freed += n;
		if (check_panicked) {
			panics++;
			ktest_fail_at(__FILE__, __LINE__,
			              "round %d: the check during a cycle: %s",
			              r, mm_port_last_panic());
		}
		SH_CHECK(&sh, "after the cycle");
	}
	mheap_test_hook = NULL;
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->n.cycles, ROUNDS);
	KEXPECT(freed > 0);
	KEXPECT_EQ(st->spans, 0);
	KEXPECT_EQ(waited, ROUNDS);
	KEXPECT_EQ(panics, 0);
	ktest_diag("%lu of %d checks waited for a cycle held at a claimed "
	           "span; the cycles freed %zu spans",
	           waited, ROUNDS, freed);
	SH_CHECK(&sh, "at the end");
	free(st);
	free(p);
	sh_heap_release(&heap, &sh);
}

/* ---- Statistics ---------------------------------------------------------- */

/* Checks that st counts held objects of each class of sizes[0..n) in use,
 * and their spans' room; returns their bytes. */
static size_t expect_held(const struct spanheap_stats *st, const size_t *sizes,
                          int n, size_t held)
{
	size_t bytes = 0;
	for (int s = 0; s < n; s++) {
		unsigned cls = sizeclass_of(sizes[s]);
		KEXPECT_EQ(st->cls[cls].objects_in_use, held);
		KEXPECT_EQ(st->cls[cls].size, sizeclass_info[cls].size);
		KEXPECT(st->cls[cls].objects_in_use +
		                st->cls[cls].objects_free ==
		        st->cls[cls].spans * sizeclass_info[cls].nelems);
		bytes += held * sizeclass_info[cls].size;
	}
	return bytes;
}

/* The pages of n large objects of 50000, 100000, ... bytes. */
static size_t large_pages(int n)
{
	size_t lpages = 0;
	for (int i = 0; i < n; i++)
		lpages += (50000 * (size_t)(i + 1) + PG - 1) / PG;
	return lpages;
}

/* The slabinfo table: a line per class in use, then the totals and the
 * page heap's lines. */
static void expect_dump_lines(void)
{
	unsigned long logs = mm_port_log_count();
	mm_port_set_quiet(true);
	spanheap_dump(&sh);
	mm_port_set_quiet(false);
	KEXPECT(mm_port_log_count() >= logs + 6);
}

KTEST(spanheap, stats_count_objects)
{
	static const size_t sizes[] = {16, 100, 1000, 5000, 32768};
	enum { K = 40, NS = sizeof(sizes) / sizeof(sizes[0]), L = 3 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	void *p[NS][K], *big[L];
	for (int s = 0; s < NS; s++)
		for (int i = 0; i < K; i++) {
			mm_port_set_cpu((unsigned)i % 3);
			p[s][i] = spanheap_alloc(&sh, sizes[s], 0);
			KASSERT(p[s][i]);
		}
	for (int i = 0; i < L; i++)
		big[i] = spanheap_alloc(&sh, 50000 * (i + 1), 0);
	mm_port_set_cpu(0);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	/* The objects the refills put into magazines and no allocation
	 * took (mag_fill): free, in no one's hands. */
	spanheap_stats(&sh, st);
	size_t left = st->mag_objects;
	for (int round = 0; round < 2; round++) {
		/* Round 0: all held; 1: the first half freed. Each round
		 * then frees the next half, from CPUs 0 to 3. */
		size_t held = round == 0 ? K : K - K / 2;
		spanheap_stats(&sh, st);
		size_t bytes = expect_held(st, sizes, NS, held);
		size_t lheld = round == 0 ? L : 0;
		KEXPECT_EQ(st->cls[0].objects_in_use, lheld);
		size_t lpages = large_pages(L);
		KEXPECT_EQ(st->large_pages, lheld ? lpages : 0);
		KEXPECT_EQ(st->bytes_in_use, bytes + st->large_pages * PG);
		SH_CHECK(&sh, "stats round");
		for (int s = 0; s < NS; s++)
			for (int i = round == 0 ? 0 : K / 2;
			     i < (round == 0 ? K / 2 : K); i++) {
				mm_port_set_cpu((unsigned)i % 4);
				spanheap_free(&sh, p[s][i]);
			}
		mm_port_set_cpu(0);
		for (int i = 0; round == 0 && i < L; i++)
			spanheap_free(&sh, big[i]);
	}
	spanheap_stats(&sh, st);
	for (int s = 0; s < NS; s++)
		KEXPECT_EQ(st->cls[sizeclass_of(sizes[s])].objects_in_use, 0);
	KEXPECT_EQ(st->bytes_in_use, 0);
	/* Each object was freed once and none allocated again: each is in
	 * a magazine or went back to its span, by one path or the other;
	 * and so is each that a refill put into a magazine. */
	KEXPECT_EQ(st->local_frees + st->remote_frees + st->mag_objects,
	           NS * K + left);
	free(st);
	expect_dump_lines();
	SH_CHECK(&sh, "after stats");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap, sweeper_start_and_stop_twice)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	spanheap_sweeper_stop(&sh);
	KEXPECT(sh.sweeper.thread == NULL);
	KASSERT(spanheap_sweeper_start(&sh));
	struct mm_thread *t = sh.sweeper.thread;
	KEXPECT(t != NULL);
	KEXPECT(spanheap_sweeper_start(&sh));
	KEXPECT(sh.sweeper.thread == t);
	spanheap_sweeper_stop(&sh);
	KEXPECT(sh.sweeper.thread == NULL);
	spanheap_sweeper_stop(&sh);
	KASSERT(spanheap_sweeper_start(&sh));
	KEXPECT(sh.sweeper.thread != NULL);
	spanheap_sweeper_stop(&sh);
	KEXPECT(sh.sweeper.thread == NULL);
	sh_heap_release(&heap, &sh);
}

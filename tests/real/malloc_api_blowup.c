/*
 * tests/real/malloc_api_blowup.c: malloc-api-test's bounds on memory
 * blowup (malloc_api_test.h): the failure modes of the Hoard paper
 * (Berger et al., 2000) and Larson's server, run by blowup_work.c's
 * workloads, which tools/bench-blowup measures against the peers.
 *
 * A private-heap allocator can grow without bound when memory freed by
 * one thread lands where only that thread reuses it: ten times more
 * rounds must not mean more memory, beyond a margin of about one live set
 * (the ring holds at most 4096 objects of up to 512 bytes: 2 MiB). And
 * memory freed in one size class must be reused for another before the
 * heap grows. And two threads' fresh objects must not share a cache line
 * (active false sharing). Bounds are on RSS (/proc/self/status), never on
 * time; each scenario runs in a fresh process (run_scenario) and says on
 * stderr what it measured when it fails. Peers fail some (measured by
 * tools/bench-blowup: jemalloc's producer/consumer peak went from 8 to
 * 26 MiB from 10 to 100 rounds, tcmalloc's from 13 to 22).
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "blowup.h"
#include "malloc_api_test.h"

/* The margin of growth allowed between a run and one ten times longer. */
enum { MARGIN_KIB = 4096 };

/* rounds, then 9 * rounds more, of the workload; fails if the peak at the
 * end passed the RSS after the first part by more than the margin. */
static int grows_bounded(const char *name, void (*run)(unsigned, unsigned),
                         unsigned arg, unsigned rounds)
{
	run(arg, rounds);
	long first = blowup_status_kib("VmRSS:");
	run(arg, 9 * rounds);
	long peak = blowup_status_kib("VmHWM:");
	long last = blowup_status_kib("VmRSS:");
	if (first <= 0 || peak <= 0 || peak > first + MARGIN_KIB) {
		fprintf(stderr,
		        "%s: RSS %ld KiB after %u rounds; peak %ld KiB, "
		        "RSS %ld KiB after %u (allowed: %d KiB more)\n",
		        name, first, rounds, peak, last, 10 * rounds,
		        MARGIN_KIB);
		return 3;
	}
	return 0;
}

static void run_rotate(unsigned nthreads, unsigned rounds)
{
	blowup_rotate(nthreads, rounds);
}

/* arg: unused, as run_larson's. */
static void run_exitcons(unsigned arg, unsigned rounds)
{
	(void)arg;
	blowup_exitcons(rounds);
}

static unsigned larson_epoch;
static void run_larson(unsigned arg, unsigned epochs)
{
	(void)arg;
	for (unsigned e = 0; e < epochs; e++)
		blowup_larson_epoch(larson_epoch++);
}

/* Thread A allocates, thread B frees. */
static int scenario_prodcons(void)
{
	return grows_bounded("producer/consumer", run_rotate, 2, 10);
}

/* The roles rotate among 4 threads, round by round. */
static int scenario_rotate(void)
{
	return grows_bounded("rotating producer/consumer", run_rotate, 4, 10);
}

/* Each round's consumer is a new thread, which exits. */
static int scenario_exitcons(void)
{
	return grows_bounded("exiting consumers", run_exitcons, 0, 10);
}

/* Larson's server: threads replace random objects of a shared array and
 * are replaced by new threads every epoch; its live set is about 4 MiB. */
static int scenario_larson(void)
{
	return grows_bounded("larson", run_larson, 0, 4);
}

/*
 * Phases of 32 MiB of one size each, written, then freed whole before
 * the next phase's size: the peak must stay under twice the live set.
 * Until this test a phase grew the heap rather than wait for the
 * sweeper's cycle (paced to 1% of a CPU) to give the last phase's spans
 * back: 152 MiB after 8 phases, 275 MiB after 32, with or without the
 * background threads (mm/spanheap_sweeper.c, sweep before growth).
 */
static int scenario_phases(void)
{
	static const unsigned sizes[] = {64,  1000, 200,  3000,
	                                 512, 128,  2048, 96};
	enum { LIVE = 32 << 20, NMAX = LIVE / 64 };
	void **v = calloc(NMAX, sizeof(void *));
	if (!v)
		return 2;
	long base = blowup_status_kib("VmRSS:");
	for (unsigned ph = 0; ph < 8; ph++) {
		unsigned sz = sizes[ph], n = LIVE / sz;
		for (unsigned i = 0; i < n; i++)
			if (!(v[i] = malloc(sz)) || !memset(v[i], 1, sz))
				return 2;
		for (unsigned i = 0; i < n; i++)
			free(v[i]);
	}
	long peak = blowup_status_kib("VmHWM:");
	free(v);
	if (base <= 0 || peak - base > 2 * (LIVE >> 10)) {
		fprintf(stderr,
		        "phases: peak %ld KiB over a start of %ld, for 32 MiB "
		        "live (allowed: 64 MiB)\n",
		        peak - base, base);
		return 3;
	}
	return 0;
}

/*
 * 64 MiB of 64-byte objects, all but every 1024th freed (half the spans
 * empty: a span holds 512), then 64 MiB of 1000-byte objects: the empty
 * spans' 32 MiB are reused, so RSS grows by less than 48 MiB (64 MiB
 * more with no reuse, as until the sweep before growth: the frees were
 * still pending).
 */
static int scenario_frag(void)
{
	enum { N = (64 << 20) / 64, M = (64 << 20) / 1000 };
	void **v = calloc(N, sizeof(void *)), **w = calloc(M, sizeof(void *));
	if (!v || !w)
		return 2;
	for (unsigned i = 0; i < N; i++)
		if (!(v[i] = malloc(64)) || !memset(v[i], 1, 64))
			return 2;
	for (unsigned i = 0; i < N; i++)
		if (i % 1024)
			free(v[i]);
	long sparse = blowup_status_kib("VmRSS:");
	for (unsigned i = 0; i < M; i++)
		if (!(w[i] = malloc(1000)) || !memset(w[i], 2, 1000))
			return 2;
	long other = blowup_status_kib("VmRSS:");
	if (sparse <= 0 || other - sparse > 48 << 10) {
		fprintf(stderr,
		        "frag: RSS %ld KiB with every 1024th 64-byte object "
		        "left, %ld after 64 MiB of 1000-byte ones (allowed: "
		        "48 MiB more)\n",
		        sparse, other);
		return 3;
	}
	return 0;
}

/* Active false sharing (Hoard's cache-thrash): two threads allocating in
 * lockstep must not be handed objects on one cache line. Each CPU (slot)
 * carves its own span, so no line holds both threads' objects;
 * tcmalloc's per-CPU caches did here (its transfer batches split spans). */
enum { LINE_ROUNDS = 64, LINE = 64 };
static pthread_barrier_t lockstep;
static void *line_objs[2][LINE_ROUNDS];

static void *line_thread(void *arg)
{
	void **mine = arg;
	for (int i = 0; i < LINE_ROUNDS; i++) {
		pthread_barrier_wait(&lockstep);
		if (!(mine[i] = malloc(16)))
			return (void *)1;
	}
	return NULL;
}

static int scenario_lines(void)
{
	pthread_t t[2];
	void *r[2] = {NULL, NULL};
	pthread_barrier_init(&lockstep, NULL, 2);
	for (int k = 0; k < 2; k++)
		if (pthread_create(&t[k], NULL, line_thread, line_objs[k]))
			return 2;
	for (int k = 0; k < 2; k++)
		pthread_join(t[k], &r[k]);
	if (r[0] || r[1])
		return 2;
	for (int i = 0; i < LINE_ROUNDS; i++)
		for (int j = 0; j < LINE_ROUNDS; j++)
			if ((uintptr_t)line_objs[0][i] / LINE ==
			    (uintptr_t)line_objs[1][j] / LINE) {
				fprintf(stderr,
				        "lines: %p (thread 0's) and %p (thread "
				        "1's) share a cache line\n",
				        line_objs[0][i], line_objs[1][j]);
				return 3;
			}
	return 0;
}

const struct scenario blowup_scenarios[] = {
        {"blowup-prodcons", scenario_prodcons},
        {"blowup-rotate", scenario_rotate},
        {"blowup-exitcons", scenario_exitcons},
        {"blowup-larson", scenario_larson},
        {"blowup-phases", scenario_phases},
        {"blowup-frag", scenario_frag},
        {"blowup-lines", scenario_lines},
};
const size_t blowup_nscenarios =
        sizeof(blowup_scenarios) / sizeof(blowup_scenarios[0]);

/* Each scenario in a fresh process; phases also without the background
 * threads, which must not be what bounds it. */
const char *test_blowup(void)
{
	for (size_t i = 0; i <= blowup_nscenarios; i++) {
		bool alone = i == blowup_nscenarios;
		const char *name =
		        alone ? "blowup-phases" : blowup_scenarios[i].name;
		int st = run_scenario(name,
		                      alone ? "MM_MALLOC_BACKGROUND" : NULL,
		                      alone ? "0" : NULL, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "%s%s: status %#x (its reason on stderr)", name,
		      alone ? " with MM_MALLOC_BACKGROUND=0" : "", st);
	}
	return NULL;
}

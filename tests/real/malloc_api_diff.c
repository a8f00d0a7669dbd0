/*
 * tests/real/malloc_api_diff.c: a randomized differential test of the
 * whole allocation API against glibc 2.36's documented conventions.
 *
 * NTHREADS threads each run a seeded random sequence of malloc, calloc,
 * realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc and malloc_usable_size (diff_ops.c), with sizes at the
 * edges (0, 1, each size class and one either side, pages, impossible
 * sizes, n * size overflows) and alignments from 0 to many pages (powers
 * of two or not). A thread hands objects to another through its queue,
 * which frees, resizes or keeps them, in a table of their own
 * (diff_thread says why). A shadow table (malloc_api_diff_shadow.c)
 * holds every live object (address, requested size, alignment, fill pattern);
 * after each operation the object it made or touched is checked: its
 * alignment, usable size >= size, no overlap with any live object, its
 * whole pattern (the old prefix after a realloc, zeros after calloc),
 * and errno and the return value as glibc documents them. Each thread's
 * objects are all checked every CHECK_EVERY operations. At the end all is
 * freed and mallinfo2 must show the objects gone: read after malloc_trim
 * (with no background thread, before it too), once, with no time bound.
 *
 * It runs in fresh processes (run_scenario), once as is, once with
 * MM_MALLOC_MEMBARRIER=0, once with MM_MALLOC_BACKGROUND=0 and once under
 * a memory limit (MALLOC_DIFF_DATA_MB=48: RLIMIT_DATA 48 MiB above what
 * the process has at the start), where any allocation may fail with
 * ENOMEM, a failed realloc must leave its object intact, some must fail,
 * and nothing may leak. The
 * operations run in ROUNDS rounds, each of new threads that take over
 * the objects (and queues) the last round's threads left.
 * MALLOC_DIFF_OPS (operations a thread, default DEFAULT_OPS: a few
 * seconds in all), MALLOC_DIFF_THREADS (default NTHREADS; up to
 * MAX_THREADS, past the 63 slots, so that threads share one) and
 * MALLOC_DIFF_SEED (default 1) choose the run; a failure names the seed,
 * the thread and the operation, and the same seed and thread count run
 * that thread's own operations again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "malloc_api_diff.h"
#include "proc_read.h"

struct diff_thread diff_threads[MAX_THREADS];
unsigned diff_nthreads;
bool diff_data_limited;
static atomic_bool stop;

static pthread_barrier_t done_sending;
static bool last_round;

/* A round of t's operations; in the last round it frees all it holds
 * once no thread sends any more. Its objects and queue are left to the
 * next round's thread otherwise: objects of a thread that exited. */
static void *worker(void *arg)
{
	struct diff_thread *t = arg;
	const char *e = NULL;
	long end = t->op + t->nops / ROUNDS;
	for (; t->op < end && !e && !atomic_load(&stop); t->op++) {
		e = diff_receive(t);
		if (!e)
			e = diff_op(t);
		for (int i = 0; !e && t->op % CHECK_EVERY == 0 && i < t->nlive;
		     i++)
			e = diff_check(t, &t->live[i]);
		for (int i = 0; !e && t->op % CHECK_EVERY == 0 && i < t->nother;
		     i++)
			e = diff_check(t, &t->other[i]);
	}
	if (e)
		atomic_store(&stop, true);
	pthread_barrier_wait(&done_sending);
	if (!e && last_round)
		e = diff_free_all(t);
	if (e && e != t->why)
		snprintf(t->why, sizeof(t->why), "%s", e);
	return (void *)e;
}

static unsigned long env_num(const char *name, unsigned long dflt)
{
	const char *v = getenv(name);
	return v && *v ? strtoul(v, NULL, 0) : dflt;
}

/* Starts the threads of a round. */
static void start_round(unsigned long seed, unsigned long nops, int round)
{
	unsigned n = diff_nthreads;
	last_round = round == ROUNDS - 1;
	pthread_barrier_init(&done_sending, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		struct diff_thread *t = &diff_threads[i];
		if (round == 0) {
			t->id = i;
			t->nops = (long)nops;
			t->rng = (seed + 1) * 0x9e3779b97f4a7c15ull ^ (i + 1);
			t->rng_other = t->rng ^ 0xd1b54a32d192ed03ull;
			t->live = t->own, t->other = t->got;
			t->nlive = t->nother = 0;
			pthread_mutex_init(&t->qlock, NULL);
		}
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstack(&attr, t->stack, STACK_BYTES);
		int err = pthread_create(&t->th, &attr, worker, t);
		pthread_attr_destroy(&attr);
		if (err) { /* the others would wait for it for ever */
			fprintf(stderr, "diff: pthread_create: %s\n",
			        strerror(err));
			exit(1);
		}
	}
}

/* Each thread's stack, mapped before the memory limit (glibc maps a
 * thread's stack at its creation, which the limit would refuse). */
static bool map_stacks(void)
{
	for (unsigned i = 0; i < diff_nthreads; i++) {
		void *st = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE,
		                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (st == MAP_FAILED)
			return false;
		diff_threads[i].stack = st;
	}
	return true;
}

/* Runs the rounds; 0, or 1 with what went wrong on stderr. */
static int run_threads(unsigned long seed, unsigned long nops)
{
	int failed = 0;
	for (int round = 0; round < ROUNDS && !failed; round++) {
		start_round(seed, nops, round);
		for (unsigned i = 0; i < diff_nthreads; i++) {
			void *e;
			pthread_join(diff_threads[i].th, &e);
			if (!e)
				continue;
			fprintf(stderr,
			        "diff: seed %lu, %u threads, thread %u, "
			        "operation %ld: %s\n",
			        seed, diff_nthreads, i, diff_threads[i].op,
			        (const char *)e);
			failed = 1;
		}
		pthread_barrier_destroy(&done_sending);
	}
	return failed;
}

/* This process's data size (VmData), in bytes; 0 if unknown. */
static size_t data_size(void)
{
	char buf[4096];
	if (proc_read("/proc/self/status", buf, sizeof(buf)) <= 0)
		return 0;
	const char *p = strstr(buf, "\nVmData:");
	return p ? strtoul(p + 8, NULL, 10) << 10 : 0;
}

/* MALLOC_DIFF_DATA_MB=n: RLIMIT_DATA n MiB above what the process has
 * now (the threads' stacks count too), so that the heap's growth fails
 * and allocations of every kind meet ENOMEM. 0 or -1 (setrlimit). */
static int limit_data(void)
{
	unsigned long mb = env_num("MALLOC_DIFF_DATA_MB", 0);
	if (!mb)
		return 0;
	size_t now = data_size(), lim = now + (mb << 20);
	struct rlimit rl = {lim, lim};
	diff_data_limited = true;
	return now && setrlimit(RLIMIT_DATA, &rl) == 0 ? 0 : -1;
}

/* 1, with a line on stderr, if mallinfo2 shows more bytes in use than
 * before (and INFO_SLACK) now that all was freed; else 0. */
static int leaked(unsigned long seed, const struct mallinfo2 *before,
                  const char *when)
{
	struct mallinfo2 after = mallinfo2();
	if (after.uordblks <= before->uordblks + INFO_SLACK)
		return 0;
	fprintf(stderr,
	        "diff: seed %lu: mallinfo2 uordblks %zu %s, all freed, %zu "
	        "before the run\n",
	        seed, after.uordblks, when, before->uordblks);
	return 1;
}

/* The scenario: the run, then mallinfo2 against what it said before. */
int scenario_diff(void)
{
	unsigned long seed = env_num("MALLOC_DIFF_SEED", 1);
	unsigned long nops = env_num("MALLOC_DIFF_OPS", DEFAULT_OPS);
	diff_nthreads = (unsigned)env_num("MALLOC_DIFF_THREADS", NTHREADS);
	if (diff_nthreads < 2 || diff_nthreads > MAX_THREADS) {
		fprintf(stderr, "diff: MALLOC_DIFF_THREADS=%u: not 2 to %d\n",
		        diff_nthreads, MAX_THREADS);
		return 1;
	}
	diff_sizes_init();
	free(malloc(1));
	if (!map_stacks() || limit_data() != 0) {
		fprintf(stderr, "diff: no stacks or no RLIMIT_DATA: %s\n",
		        strerror(errno));
		return 1;
	}
	struct mallinfo2 before = mallinfo2();
	if (run_threads(seed, nops))
		return 1;
	long ooms = 0;
	for (unsigned i = 0; i < diff_nthreads; i++)
		ooms += diff_threads[i].ooms;
	if (diff_data_limited && ooms == 0) {
		fprintf(stderr, "diff: under the memory limit no allocation "
		                "failed: the limit was too high to test\n");
		return 1;
	}
	/* Without background threads nothing changes the heap now: exact
	 * as it is, the exited threads' caches (given back at their exit)
	 * and this thread's counted. */
	const char *bg = getenv("MM_MALLOC_BACKGROUND");
	if (bg && strcmp(bg, "0") == 0 && leaked(seed, &before, "untrimmed"))
		return 1;
	/* Else the sweeper may fold a span while mallinfo2 reads it (its
	 * counts are exact only when nothing changes meanwhile): a read
	 * mid-fold once counted 33344 bytes in use. malloc_trim flushes
	 * this thread's cache and runs a whole sweep cycle, after the
	 * sweeper's if one runs: every free is folded once it returns, and
	 * a later cycle of the sweeper finds nothing to fold. A leak stays
	 * counted. The alarm ends a trim that never returns. */
	hang_guard();
	malloc_trim(0);
	alarm(0);
	return leaked(seed, &before, "after malloc_trim");
}

const char *test_diff(void)
{
	static const struct {
		const char *env, *val;
	} runs[] = {
	        {NULL, NULL},
	        {"MM_MALLOC_MEMBARRIER", "0"},
	        {"MM_MALLOC_BACKGROUND", "0"},
	        {"MALLOC_DIFF_DATA_MB", "48"},
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		int st = run_scenario("diff", runs[i].env, runs[i].val, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "%s%s%s: status %#x (its reason on stderr; SIGALRM: "
		      "malloc_trim hung)",
		      runs[i].env ? runs[i].env : "defaults",
		      runs[i].env ? "=" : "", runs[i].env ? runs[i].val : "",
		      st);
	}
	return NULL;
}

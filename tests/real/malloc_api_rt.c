/*
 * tests/real/malloc_api_rt.c: the library's waits under real-time
 * priorities. A wait for another thread (a fork being prepared, a slot's
 * busy word, the set-up) that only spins and yields never ends when the
 * waiter is a SCHED_FIFO thread of a higher priority than the thread it
 * waits for on the same CPU: sched_yield gives the CPU to no thread of a
 * lower priority. Needs two CPUs and the right to set SCHED_FIFO
 * (CAP_SYS_NICE or an RLIMIT_RTPRIO): skipped, said so, without them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "malloc_api_test.h"

enum { RT_FORKS = 300, RT_CHURN_ROUNDS = 100, RT_EXIT_SKIP = 77 };

static atomic_uint forks_done, allocs_done, allocs_among_forks;
static atomic_uint trims_done, churn_rounds;
/* The low-priority thread is done; the high-priority one has started. */
static atomic_bool low_done, high_started;

/* Pins the calling thread to cpu, SCHED_FIFO at prio (0: left as it
 * is); false if either is refused. */
static bool pin(int cpu, int prio)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		return false;
	struct sched_param sp = {.sched_priority = prio};
	return !prio ||
	       pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
}

/* The low-priority thread's start: CPU 0, FIFO 10, once the high one
 * runs (above it: this thread waits by sleeping). */
static void low_start(void)
{
	if (!pin(0, 10))
		_exit(RT_EXIT_SKIP);
	while (!atomic_load(&high_started)) {
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
}

/* The high-priority thread's start: CPU 0, FIFO 20. */
static void high_start(void)
{
	if (!pin(0, 20))
		_exit(RT_EXIT_SKIP);
	atomic_store(&high_started, true);
}

/* The high-priority thread's nap before its round i: 20 to 220 us, so
 * that it wakes at varied points of the low one's work. */
static void high_nap(unsigned i)
{
	struct timespec ts = {0, 20000 + (long)(i * 7919u % 200000u)};
	nanosleep(&ts, NULL);
}

/* Runs low and high (each pins itself to CPU 0), this thread on CPU 1
 * waiting for them: a waiter in high that never lets low run hangs the
 * scenario (its hang guard ends it, a failure). Returns 0, RT_EXIT_SKIP
 * when it cannot set up, 2 when a thread cannot be made. */
static int run_pair(void *(*low)(void *), void *(*high)(void *))
{
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || !pin(1, 0))
		return RT_EXIT_SKIP;
	free(malloc(1));
	pthread_t l, h;
	if (pthread_create(&l, NULL, low, NULL) != 0 ||
	    pthread_create(&h, NULL, high, NULL) != 0)
		return 2;
	if (pthread_join(l, NULL) != 0 || pthread_join(h, NULL) != 0)
		return 2;
	return 0;
}

/* The parent's side: runs scenario what (with env=val if env) and judges
 * its status; hang says what a hang there means. */
static const char *judge(const char *what, const char *env, const char *val,
                         const char *hang)
{
	int st = run_scenario(what, env, val, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == RT_EXIT_SKIP)
		return "SKIP needs 2 CPUs and SCHED_FIFO (CAP_SYS_NICE)";
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "%s: status %#x (a signal: the hang guard's alarm, %s)", what, st,
	      hang);
	return NULL;
}

/* ---- A fork beside a real-time allocator ------------------------------- */

/* The low-priority thread: forks RT_FORKS children that exit at once. */
static void *forker(void *arg)
{
	low_start();
	for (int i = 0; i < RT_FORKS; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 || wait_status(pid) != 0)
			_exit(2);
		atomic_fetch_add(&forks_done, 1);
	}
	atomic_store(&low_done, true);
	return arg;
}

/* The high-priority thread on the same CPU: sleeps a little, then
 * allocates and frees, until the forker is done; its calls meet the
 * forks' windows. */
static void *allocator(void *arg)
{
	high_start();
	for (unsigned i = 0; !atomic_load(&low_done); i++) {
		high_nap(i);
		void *p = malloc(64 + i % 512);
		if (!p)
			_exit(2);
		memset(p, 5, 64);
		free(p);
		atomic_fetch_add(&allocs_done, 1);
		if (atomic_load(&forks_done) > 0 && !atomic_load(&low_done))
			atomic_fetch_add(&allocs_among_forks, 1);
	}
	return arg;
}

/* Exits 0, RT_EXIT_SKIP when it cannot set up, 3 if too few allocations
 * met the forks. */
int scenario_rt_fork(void)
{
	int st = run_pair(forker, allocator);
	if (st)
		return st;
	unsigned among = atomic_load(&allocs_among_forks);
	fprintf(stderr,
	        "%u forks, %u allocations, %u of them among the forks\n",
	        atomic_load(&forks_done), atomic_load(&allocs_done), among);
	return among >= 50 ? 0 : 3; /* else the windows went untested */
}

/* A SCHED_FIFO thread that allocates while a lower-priority one on its
 * CPU forks: until a review every wait of the library spun and yielded
 * for good, and the process hung (3 runs of 3). */
const char *test_rt_fork(void)
{
	return judge("rt-fork", NULL, NULL,
	             "the waiter never let the forker run");
}

/* ---- A trim beside a guarded pool's drain ------------------------------ */

/* The low-priority thread: allocations and frees of every small size, so
 * that guarded objects come and go and their pages are drained (unmapped
 * one batch at a time, the drain's flag held meanwhile). */
static void *churner(void *arg)
{
	low_start();
	enum { N = 256 };
	static void *v[N];
	for (unsigned r = 0; r < RT_CHURN_ROUNDS; r++) {
		for (unsigned i = 0; i < N; i++) {
			v[i] = malloc(8 + (i * 131u + r) % 2048u);
			if (!v[i])
				_exit(2);
			memset(v[i], 7, 8);
		}
		for (unsigned i = 0; i < N; i++)
			free(v[i]);
		atomic_fetch_add(&churn_rounds, 1);
	}
	atomic_store(&low_done, true);
	return arg;
}

/* The high-priority thread on the same CPU: sleeps a little, then trims
 * (which drains the guarded pool and waits for another thread's drain to
 * end), until the churner is done. */
static void *trimmer(void *arg)
{
	high_start();
	for (unsigned i = 0; !atomic_load(&low_done); i++) {
		high_nap(i);
		malloc_trim(0);
		atomic_fetch_add(&trims_done, 1);
	}
	return arg;
}

/* With MM_MALLOC_GUARD=1. Exits 0, RT_EXIT_SKIP when it cannot set up. */
int scenario_rt_guard_trim(void)
{
	int st = run_pair(churner, trimmer);
	fprintf(stderr, "%u rounds, %u trims\n", atomic_load(&churn_rounds),
	        atomic_load(&trims_done));
	return st;
}

/* A SCHED_FIFO thread's malloc_trim while a lower-priority thread on its
 * CPU drains the guarded pool: the trim waited for the drain by yielding,
 * which never runs a thread of a lower priority (3 runs of 3 hung). */
const char *test_rt_guard_trim(void)
{
	return judge("rt-guard-trim", "MM_MALLOC_GUARD", "1",
	             "the trim never let the drain end");
}

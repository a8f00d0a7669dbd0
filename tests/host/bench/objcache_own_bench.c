/*
 * tests/host/bench/objcache_own_bench.c: alloc+free pairs on one cache
 * with a constructor (slabs of its own, mm/objcache_own.c) from THREADS
 * threads at once, the cost per pair when they share the cache.
 *
 *   objcache_own_bench THREADS [PAIRS]
 *
 * Each thread i binds mm CPU i (mm_port_bind_cpu, so its pins cost
 * nothing, as spanheap_bench's workers) and runs on host CPU i modulo
 * those online; after a warm-up and a barrier it times PAIRS (default
 * 2000000) pairs of objcache_alloc and objcache_free of one 64-byte
 * object, writing and checking a word of each. Prints one line:
 * ns_per_pair, the slowest thread's wall time a pair (equal work per
 * thread: with no contention it stays as threads are added, on as many
 * host CPUs), cpu_ns_per_pair, its CPU time a pair (what it spent,
 * spinning on a lock included, whatever else the host ran), and
 * cpu_share, the one over the other (below 1: the host ran something
 * else, e.g. more threads than CPUs). A bad command line is
 * refused naming it (status 2). Built -O2 without sanitizers (make
 * bench-objcache-own).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../../../mm/objcache_own.h"
#include "../mm_port_posix.h"
#include "spanheap_bench.h"

#define MAX_WORKERS 8
#define WARM_PAIRS  20000

static struct objcache *cache;
static pthread_barrier_t barrier;
static unsigned long pairs = 2000000;

struct pairer {
	pthread_t tid;
	unsigned id;
	uint64_t wall_ns, cpu_ns;
};

static uint64_t ns_of(clockid_t clk)
{
	struct timespec t;
	clock_gettime(clk, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void ctor(void *p)
{
	*(uint64_t *)p = 0;
}

static void pair_loop(unsigned long n, uint64_t tag)
{
	for (unsigned long i = 0; i < n; i++) {
		volatile uint64_t *p = objcache_alloc(cache, 0);
		if (!p) {
			fprintf(stderr, "objcache_own_bench: out of memory\n");
			exit(1);
		}
		if (*p != 0) {
			fprintf(stderr, "objcache_own_bench: an object not as "
			                "it was left\n");
			exit(1);
		}
		*p = tag;
		*p = 0;
		objcache_free(cache, (void *)p);
	}
}

static void *worker_main(void *arg)
{
	struct pairer *w = arg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu > 1) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->id % (unsigned)ncpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	mm_port_bind_cpu(w->id);
	pair_loop(WARM_PAIRS, w->id + 1);
	pthread_barrier_wait(&barrier);
	uint64_t t0 = ns_of(CLOCK_MONOTONIC),
	         c0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
	pair_loop(pairs, w->id + 1);
	w->wall_ns = ns_of(CLOCK_MONOTONIC) - t0;
	w->cpu_ns = ns_of(CLOCK_THREAD_CPUTIME_ID) - c0;
	mm_port_unbind_cpu();
	return NULL;
}

int main(int argc, char **argv)
{
	char *end = NULL;
	long n = argc >= 2 ? strtol(argv[1], &end, 10) : 0;
	if (argc < 2 || argc > 3 || *end || n < 1 || n > MAX_WORKERS) {
		fprintf(stderr,
		        "objcache_own_bench: THREADS must be 1 to %d\n"
		        "usage: objcache_own_bench THREADS [PAIRS]\n",
		        MAX_WORKERS);
		return 2;
	}
	if (argc == 3) {
		long p = strtol(argv[2], &end, 10);
		if (*end || p < 1) {
			fprintf(stderr,
			        "objcache_own_bench: PAIRS must be a "
			        "positive number, not '%s'\n",
			        argv[2]);
			return 2;
		}
		pairs = (unsigned long)p;
	}
	bench_select(true, &workloads[0]);
	bench_mm_setup(true, 0);
	cache = objcache_create_flags(bench_spanheap(), "bench-ctor", 64, 0, 0,
	                              ctor);
	if (!cache) {
		fprintf(stderr, "objcache_own_bench: no cache\n");
		return 1;
	}
	struct pairer ws[MAX_WORKERS] = {0};
	pthread_barrier_init(&barrier, NULL, (unsigned)n);
	for (unsigned i = 0; i < (unsigned)n; i++) {
		ws[i].id = i;
		if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]))
			return 1;
	}
	struct pairer *slow = &ws[0];
	for (unsigned i = 0; i < (unsigned)n; i++) {
		pthread_join(ws[i].tid, NULL);
		if (ws[i].wall_ns > slow->wall_ns)
			slow = &ws[i];
	}
	printf("threads=%ld pairs=%lu ns_per_pair=%.1f cpu_ns_per_pair=%.1f "
	       "cpu_share=%.2f\n",
	       n, pairs, (double)slow->wall_ns / (double)pairs,
	       (double)slow->cpu_ns / (double)pairs,
	       (double)slow->cpu_ns / (double)slow->wall_ns);
	return objcache_destroy(cache) ? 0 : 1;
}

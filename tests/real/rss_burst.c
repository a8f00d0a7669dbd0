/*
 * tests/real/rss_burst.c: a program's RSS over a burst of allocation, the
 * free of all of it, and an idle stretch, for tools/plot-rss. It calls
 * malloc and free: run it under LD_PRELOAD to see another allocator.
 *
 *   rss_burst [BURST_MIB [IDLE_S]]     (default 256 MiB, 20 s)
 *
 * Phases: 0.5 s idle; the burst (objects of 16 B to 4 KiB, log-uniform,
 * and one 1 MiB object in 64, each written); 1 s holding it; everything
 * freed in random order, from the main thread and a second thread (half
 * each, so that both local and cross-thread frees happen); then idle.
 * A sampler thread reads /proc/self/statm every 50 ms. Output: CSV lines
 * "seconds,rss_mib,phase" on stdout.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proc_read.h"

static atomic_int phase; /* 0 idle, 1 burst, 2 hold, 3 free, 4 idle */
static atomic_bool done;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read with proc_read, not stdio: a FILE is a malloc of the allocator
 * being measured, every 50 ms. */
static double rss_mib(void)
{
	char buf[128];
	long size = 0, resident = 0;

	if (proc_read("/proc/self/statm", buf, sizeof(buf)) <= 0 ||
	    sscanf(buf, "%ld %ld", &size, &resident) != 2)
		resident = 0;
	return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static void *sampler(void *arg)
{
	double t0 = *(double *)arg;
	while (!atomic_load(&done)) {
		printf("%.3f,%.1f,%d\n", now_s() - t0, rss_mib(),
		       atomic_load(&phase));
		fflush(stdout);
		usleep(50000);
	}
	return NULL;
}

struct half {
	void **v;
	size_t n;
};

static void *free_half(void *arg)
{
	struct half *h = arg;
	for (size_t i = 0; i < h->n; i++)
		free(h->v[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	size_t burst = (argc > 1 ? strtoull(argv[1], NULL, 10) : 256) << 20;
	double idle = argc > 2 ? atof(argv[2]) : 20;
	double t0 = now_s();
	pthread_t st, ft;
	pthread_create(&st, NULL, sampler, &t0);
	usleep(500000);

	atomic_store(&phase, 1);
	size_t cap = 1 << 20, n = 0, bytes = 0;
	void **v = malloc(cap * sizeof(*v));
	uint64_t x = 88172645463325252u;
	while (bytes < burst) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t sz =
		        (x % 64 == 0) ? (1u << 20) : (size_t)16 << (x >> 8) % 9;
		sz += (x >> 20) % sz;
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof(*v));
		}
		v[n] = malloc(sz);
		memset(v[n], (int)n, sz);
		n++;
		bytes += sz;
	}
	atomic_store(&phase, 2);
	usleep(1000000);

	atomic_store(&phase, 3);
	for (size_t i = n - 1; i > 0; i--) { /* shuffle */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t j = x % (i + 1);
		void *t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
	struct half other = {v + n / 2, n - n / 2};
	pthread_create(&ft, NULL, free_half, &other);
	for (size_t i = 0; i < n / 2; i++)
		free(v[i]);
	pthread_join(ft, NULL);
	free(v);

	atomic_store(&phase, 4);
	usleep((useconds_t)(idle * 1e6));
	atomic_store(&done, true);
	pthread_join(st, NULL);
	return 0;
}

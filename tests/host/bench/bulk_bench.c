/*
 * tests/host/bench/bulk_bench.c: the bulk calls (mm/spanheap_bulk.c,
 * mm/objcache_bulk.c) against single pairs on one thread, ns per object.
 *
 *   bulk_bench [ROUNDS]
 *
 * The thread binds mm CPU 0 (mm_port_bind_cpu, as spanheap_bench's
 * workers: its pins cost nothing, so the figures show the per-object
 * work a batch saves, not a kernel's interrupt flag); for 16-byte
 * objects of the heap, of a merged cache and of a ctor cache it times
 * ROUNDS objects (default 4000000) as single alloc+free pairs and as
 * batches of 16 and 64 (alloc_bulk then free_bulk), after a warm-up.
 * Prints a line per way: ns_per_object, the best of 3 runs. Built -O2
 * without sanitizers (make bench-bulk). Not pass/fail.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../../mm/objcache_bulk.h"
#include "../../../mm/objcache_own.h"
#include "../../../mm/spanheap_bulk.h"
#include "../mm_port_posix.h"
#include "spanheap_bench.h"

static unsigned long rounds = 4000000;
static struct spanheap *sh;
static void *v[64];

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void ctor(void *p)
{
	*(uint64_t *)p = 0;
}

static void die(const char *what)
{
	fprintf(stderr, "bulk_bench: %s\n", what);
	exit(1);
}

/* n objects by way batch (1: single pairs) of c (NULL: the heap's). */
static void run(struct objcache *c, unsigned batch, unsigned long n)
{
	for (unsigned long i = 0; i < n; i += batch) {
		if (batch == 1) {
			void *p = c ? objcache_alloc(c, 0)
			            : spanheap_alloc(sh, 16, 0);
			if (!p)
				die("out of memory");
			*(volatile char *)p = 1;
			c ? objcache_free(c, p) : spanheap_free(sh, p);
			continue;
		}
		size_t got = c ? objcache_alloc_bulk(c, 0, batch, v)
		               : spanheap_alloc_bulk(sh, 16, 0, batch, v);
		if (got != batch)
			die("out of memory");
		*(volatile char *)v[batch - 1] = 1;
		c ? objcache_free_bulk(c, batch, v)
		  : spanheap_free_bulk(sh, batch, v);
	}
}

static double best_ns(struct objcache *c, unsigned batch)
{
	double best = 1e30;
	run(c, batch, rounds / 10);
	for (int k = 0; k < 3; k++) {
		uint64_t t0 = now_ns();
		run(c, batch, rounds);
		double ns = (double)(now_ns() - t0) / (double)rounds;
		best = ns < best ? ns : best;
	}
	return best;
}

int main(int argc, char **argv)
{
	if (argc == 2) {
		char *end;
		long r = strtol(argv[1], &end, 10);
		if (*end || r < 64) {
			fprintf(stderr, "bulk_bench: ROUNDS must be a number "
			                "of at least 64\n");
			return 2;
		}
		rounds = (unsigned long)r;
	} else if (argc > 2) {
		fprintf(stderr, "usage: bulk_bench [ROUNDS]\n");
		return 2;
	}
	bench_select(true, &workloads[0]);
	bench_mm_setup(true, 0);
	sh = bench_spanheap();
	struct objcache *m = objcache_create(sh, "bench-bulk", 16, 0);
	struct objcache *o =
	        objcache_create_flags(sh, "bench-bulk-ctor", 16, 0, 0, ctor);
	if (!m || !o)
		die("no cache");
	mm_port_bind_cpu(0);
	static const char *names[] = {"spanheap", "merged cache", "ctor cache"};
	struct objcache *cs[] = {NULL, m, o};
	for (int k = 0; k < 3; k++)
		printf("%-13s 16 B ns/object: pairs %.2f, batch 16 %.2f, "
		       "batch 64 %.2f\n",
		       names[k], best_ns(cs[k], 1), best_ns(cs[k], 16),
		       best_ns(cs[k], 64));
	mm_port_unbind_cpu();
	return 0;
}

/*
 * tests/host/bench/spanheap_bench.h: what spanheap_bench.c (the workloads,
 * the runs, the report) and spanheap_bench_args.c (its command line)
 * share.
 */
#ifndef TESTS_HOST_BENCH_SPANHEAP_BENCH_H
#define TESTS_HOST_BENCH_SPANHEAP_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#define MAX_THREADS 8

/* A workload as the command line knows it. */
struct bench_name {
	const char *name;
	unsigned max_threads;
};

struct bench_args {
	bool use_mm; /* --alloc=mm, else --alloc=system */
	unsigned nthreads;
	double scale;
	unsigned long callgrind, arena_mib; /* 0: not given */
	bool class_known;
	size_t workload; /* index into the names; unset with --callgrind */
};

/*
 * The command line, checked as a whole against the n workloads names.
 * Exits: 0 after printing the workloads for --list; pin_cost()'s status
 * for --pin-cost; 2, naming what is wrong, then the usage, for a bad
 * argument or combination.
 */
struct bench_args bench_parse_args(int argc, char **argv,
                                   const struct bench_name *names, size_t n,
                                   int (*pin_cost)(void));

#endif

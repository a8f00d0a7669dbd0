/*
 * tests/host/bench/spanheap_bench.h: what spanheap_bench's three files
 * share: spanheap_bench.c (what it measures, the report, main),
 * spanheap_bench_work.c (the allocator under test, the workloads and
 * their threads) and spanheap_bench_args.c (its command line).
 */
#ifndef TESTS_HOST_BENCH_SPANHEAP_BENCH_H
#define TESTS_HOST_BENCH_SPANHEAP_BENCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MAX_THREADS 8
#define NWORKLOADS  8 /* entries of workloads[] */

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

/* ---- spanheap_bench_work.c ------------------------------------------------
 */

/* One worker thread: its share of the work, and what it measured. */
struct worker {
	pthread_t tid;
	unsigned id;
	uint64_t ops;      /* ops this thread does (or, consumer: frees) */
	uint64_t timed_ns; /* its timed sections */
	/* bulk64: the allocation and the free phases (timed_ns is their
	 * sum) */
	uint64_t alloc_ns, free_ns;
	/* The thread's CPU time over its timed sections (bench_start,
	 * bench_stop): below timed_ns when the host took the CPU away. */
	uint64_t cpu_ns;
	uint64_t t_wall, t_cpu; /* the open section's start */
	uint64_t rng;
	size_t size; /* pairN */
};

struct workload {
	const char *name;
	void (*fn)(struct worker *w);
	uint64_t ops; /* per thread, at scale 1 */
	size_t size;
	unsigned max_threads; /* prodcons: 1 or 2 */
};

extern const struct workload workloads[NWORKLOADS];

struct spanheap;

/* Sets the allocator the workloads call (mm: the span heap, which
 * bench_mm_setup makes; else malloc) and the workload bench_run runs.
 * Once, before anything else. */
void bench_select(bool mm, const struct workload *w);

/* Makes the default span heap over arena_bytes (0: the default arena),
 * with the sweeper and the scavenger running if threads; exits 1, saying
 * why, if it cannot. */
void bench_mm_setup(bool threads, size_t arena_bytes);

/* The span heap bench_mm_setup made. */
struct spanheap *bench_spanheap(void);

/* Runs the workload on nthreads workers ws[0..nthreads), its ops scaled
 * by scale (bulk64's are fixed), and returns when all are done. */
void bench_run(struct worker *ws, unsigned nthreads, double scale);

/* bulk64: its phases are timed apart (worker.alloc_ns, free_ns). */
bool bench_is_bulk(const struct workload *w);

/* --callgrind=N: n 16-byte alloc+free pairs on this thread, nothing else
 * (for mm, a 1 GiB arena and no sweeper or scavenger); class_known
 * allocates through spanheap_alloc_class. Returns the exit status. */
int bench_callgrind(long n, bool class_known);

/* CLOCK_MONOTONIC in nanoseconds. Inline, as it was when the bench was
 * one file: the timed sections' edges stay as they were. */
static inline uint64_t bench_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* This thread's CPU time in nanoseconds (a system call: only at the
 * edges of a timed section). */
static inline uint64_t bench_cpu_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Opens a timed section of w's. */
static inline void bench_start(struct worker *w)
{
	w->t_cpu = bench_cpu_ns();
	w->t_wall = bench_now_ns();
}

/* Closes it: adds its CPU time to w->cpu_ns; returns its wall time. */
static inline uint64_t bench_stop(struct worker *w)
{
	uint64_t wall = bench_now_ns() - w->t_wall;
	w->cpu_ns += bench_cpu_ns() - w->t_cpu;
	return wall;
}

#endif

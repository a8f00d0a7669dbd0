/*
 * tests/host/bench/cliffs_bench.c: allocation patterns where an allocator
 * may be many times slower than its peers, or do work proportional to
 * something it should not (tools/bench-cliffs runs it under each
 * allocator: `make bench-cliffs`).
 *
 * Not the steady-state fast paths (tools/bench-spanheap measures those):
 * realloc growing a byte at a time or shrinking, realloc across the
 * small/large boundary (32 KiB) and across glibc's mmap threshold, one
 * large size allocated and freed in a loop, its pages written or not
 * (does each round map, give back or fault its pages again?), calloc of large
 * sizes, large and small alignments, malloc_usable_size and malloc_trim in
 * loops, a large live set freed in LIFO, FIFO and random order, threads that
 * make a few allocations and exit, 64 threads alive at once, and the calls that
 * may walk the heap's history (mallinfo2, malloc_trim) after the heap grew to
 * 2 GiB and shrank.
 *
 * Usage: cliffs_bench --list | cliffs_bench NAME. A run prints one line:
 *   name=NAME ns_op=X ops=N minflt_op=F malloc_from=PATH
 * ns_op: wall time (CLOCK_MONOTONIC) of the measured loop over its ops;
 * minflt_op: the process's minor page faults over the loop, per op (a
 * heap that gives pages back and faults them in again every round shows
 * here); malloc_from: the file whose malloc the program calls (the tool
 * checks it is the preloaded allocator's). Uses the system's malloc API
 * only: the allocator under test is LD_PRELOADed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Keeps the compiler from pairing an allocation with its free away. */
static inline void escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "cliffs_bench: malloc(%zu) failed\n", n);
		exit(1);
	}
	escape(p);
	return p;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---- realloc ------------------------------------------------------------- */

/* A buffer grown by 1 to 16 bytes at a time to 4 MiB. */
static long realloc_grow(void)
{
	char *p = NULL;
	size_t size = 0;
	long ops = 0;
	while (size < ((size_t)4 << 20)) {
		size += 1 + next_rand() % 16;
		p = realloc(p, size);
		if (!p)
			exit(1);
		p[size - 1] = 1;
		ops++;
	}
	free(p);
	return ops;
}

/* A 4 MiB buffer shrunk by up to 4 KiB at a time, 4 times. */
static long realloc_shrink(void)
{
	long ops = 0;
	for (int r = 0; r < 4; r++) {
		long size = 4 << 20;
		char *p = xmalloc((size_t)size);
		memset(p, 1, (size_t)size);
		while ((size -= 1 + (long)(next_rand() % 4096)) > 64) {
			p = realloc(p, (size_t)size);
			ops++;
		}
		free(p);
	}
	return ops;
}

/* One object resized between lo and hi bytes, n times. */
static long realloc_between(size_t lo, size_t hi, long n)
{
	char *p = xmalloc(16);
	for (long i = 0; i < n; i++) {
		p = realloc(p, i & 1 ? hi : lo);
		if (!p)
			exit(1);
		p[0] = 1;
	}
	free(p);
	return n;
}

static long realloc_across_32k(void)
{
	return realloc_between((32 << 10) - 64, (32 << 10) + 1, 100000);
}

static long realloc_across_32m(void)
{
	return realloc_between((size_t)31 << 20, (size_t)33 << 20, 4000);
}

/* ---- Large sizes --------------------------------------------------------- */

/* One size allocated, its first and last byte written, freed, n times. */
static long alloc_free(size_t size, long n)
{
	for (long i = 0; i < n; i++) {
		char *p = xmalloc(size);
		p[0] = 1;
		p[size - 1] = 1;
		escape(p); /* the stores before a free are not dead */
		free(p);
	}
	return n;
}

/* One size allocated, every byte written, freed, n times: does the heap
 * give the pages back and fault them in again each round (minflt_op)? */
static long touch_free(size_t size, long n)
{
	for (long i = 0; i < n; i++) {
		char *p = xmalloc(size);
		memset(p, 1, size);
		escape(p);
		free(p);
	}
	return n;
}

static long touched_1m(void)
{
	return touch_free(1 << 20, 2000);
}

static long touched_16m(void)
{
	return touch_free(16 << 20, 50);
}

static long large_64k(void)
{
	return alloc_free(64 << 10, 100000);
}

static long large_1m(void)
{
	return alloc_free(1 << 20, 50000);
}

static long large_16m(void)
{
	return alloc_free(16 << 20, 10000);
}

static long large_256m(void)
{
	return alloc_free((size_t)256 << 20, 1000);
}

/* calloc of size, a byte read in the middle, n times. */
static long calloc_free(size_t size, long n)
{
	volatile char sink = 0;
	for (long i = 0; i < n; i++) {
		char *p = calloc(1, size);
		if (!p)
			exit(1);
		escape(p);
		sink += p[size / 2];
		free(p);
	}
	return n + sink; /* sink stays 0: calloc zeroes */
}

static long calloc_64m(void)
{
	return calloc_free((size_t)64 << 20, 20);
}

/* ---- Alignment ----------------------------------------------------------- */

/* Alignments 64 KiB to 2 MiB, objects of half the alignment. */
static long aligned_large(void)
{
	long ops = 0;
	for (int r = 0; r < 5000; r++)
		for (size_t a = 64 << 10; a <= (2u << 20); a <<= 1) {
			void *p;
			if (posix_memalign(&p, a, a / 2 + 100))
				exit(1);
			escape(p);
			free(p);
			ops++;
		}
	return ops;
}

/* Every power of two alignment from 16 to 4096, sizes 1 to twice it. */
static long aligned_small(void)
{
	long ops = 0;
	for (int r = 0; r < 10000; r++)
		for (size_t a = 16; a <= 4096; a <<= 1)
			for (size_t s = 1; s <= 2 * a; s *= 3) {
				void *p;
				if (posix_memalign(&p, a, s))
					exit(1);
				escape(p);
				free(p);
				ops++;
			}
	return ops;
}

/* ---- Queries ------------------------------------------------------------- */

static long usable_size(void)
{
	void *v[256];
	size_t sum = 0;
	for (int k = 0; k < 256; k++)
		v[k] = xmalloc(1 + (size_t)k * 37);
	for (long i = 0; i < 5000000; i++)
		sum += malloc_usable_size(v[i & 255]);
	for (int k = 0; k < 256; k++)
		free(v[k]);
	escape(&sum);
	return 5000000;
}

/* malloc_trim after every free and allocation of a small live set. */
static long trim_small_heap(void)
{
	void *v[256];
	for (int k = 0; k < 256; k++)
		v[k] = xmalloc(1 + (size_t)k * 377);
	for (long i = 0; i < 2000; i++) {
		free(v[i & 255]);
		v[i & 255] = xmalloc(1 + (size_t)(i & 255) * 377);
		malloc_trim(0);
	}
	for (int k = 0; k < 256; k++)
		free(v[k]);
	return 2000;
}

/* ---- Free order ---------------------------------------------------------- */

enum { LIVE = 200000 };
static void **live;

/* LIVE objects of 16 to 2 KiB bytes, one in 64 of 4 to 34 KiB
 * (set-up, not timed). */
static void fill_live(void)
{
	live = xmalloc(LIVE * sizeof(*live));
	for (long i = 0; i < LIVE; i++) {
		size_t s = 16 + next_rand() % 2048;
		if (next_rand() % 64 == 0)
			s = 4096 + next_rand() % 30000;
		live[i] = xmalloc(s);
		*(char *)live[i] = 1;
	}
}

static long free_lifo(void)
{
	for (long i = LIVE - 1; i >= 0; i--)
		free(live[i]);
	return LIVE;
}

static long free_fifo(void)
{
	for (long i = 0; i < LIVE; i++)
		free(live[i]);
	return LIVE;
}

static void fill_shuffled(void)
{
	fill_live();
	for (long i = LIVE - 1; i > 0; i--) {
		long j = (long)(next_rand() % (uint64_t)(i + 1));
		void *t = live[i];
		live[i] = live[j];
		live[j] = t;
	}
}

/* ---- Threads ------------------------------------------------------------- */

static void *few_and_exit(void *arg)
{
	void *v[8];
	for (int i = 0; i < 8; i++)
		v[i] = xmalloc(32 + (size_t)i * 100);
	for (int i = 0; i < 8; i++)
		free(v[i]);
	return arg;
}

/* 1000 threads in turn, each 8 allocations then its exit. */
static long threads_short_lived(void)
{
	for (int i = 0; i < 1000; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, few_and_exit, NULL))
			exit(1);
		pthread_join(t, NULL);
	}
	return 1000;
}

static pthread_barrier_t start;

static void *rounds_of_32(void *arg)
{
	void *v[32];
	pthread_barrier_wait(&start);
	for (long r = 0; r < 2000; r++) {
		for (int i = 0; i < 32; i++)
			v[i] = xmalloc(16 + (size_t)i * 24);
		for (int i = 0; i < 32; i++)
			free(v[i]);
	}
	return arg;
}

/* 64 threads alive at once (as many as the library's slots), then 128. */
static long threads_alive(int n)
{
	pthread_t t[128];
	pthread_barrier_init(&start, NULL, (unsigned)n);
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], NULL, rounds_of_32, NULL))
			exit(1);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
	return (long)n * 2000 * 32;
}

static long threads_64(void)
{
	return threads_alive(64);
}

static long threads_128(void)
{
	return threads_alive(128);
}

/* ---- After the heap grew and shrank -------------------------------------- */

/* 2 GiB of 64 KiB objects (32768), a byte of each written, all freed. */
static void grow_2g_and_free(void)
{
	enum { N = 32768 };
	void **v = xmalloc(N * sizeof(*v));
	for (long i = 0; i < N; i++) {
		v[i] = xmalloc(64 << 10);
		*(char *)v[i] = 1;
	}
	for (long i = 0; i < N; i++)
		free(v[i]);
	free(v);
	malloc_trim(0); /* the history's own trim, not timed */
}

static long grown_mallinfo2(void)
{
	size_t sum = 0;
	for (int i = 0; i < 2000; i++)
		sum += mallinfo2().arena;
	escape(&sum);
	return 2000;
}

static long grown_trim(void)
{
	for (int i = 0; i < 500; i++)
		malloc_trim(0);
	return 500;
}

/* ---- The runs ------------------------------------------------------------ */

struct pattern {
	const char *name;
	void (*setup)(void); /* not timed; may be NULL */
	long (*run)(void);   /* returns its ops */
};

/* The grown_* rows and their controls (the same loop, no history) tell
 * the cost of the heap's history from the call's own. */
static const struct pattern patterns[] = {
        {"realloc_grow_by_1_16", NULL, realloc_grow},
        {"realloc_shrink_4k_steps", NULL, realloc_shrink},
        {"realloc_across_32k", NULL, realloc_across_32k},
        {"realloc_across_32m", NULL, realloc_across_32m},
        {"alloc_free_64k", NULL, large_64k},
        {"alloc_free_1m", NULL, large_1m},
        {"alloc_free_16m", NULL, large_16m},
        {"alloc_free_256m", NULL, large_256m},
        {"alloc_touch_free_1m", NULL, touched_1m},
        {"alloc_touch_free_16m", NULL, touched_16m},
        {"calloc_64m", NULL, calloc_64m},
        {"memalign_64k_2m", NULL, aligned_large},
        {"memalign_16_4k", NULL, aligned_small},
        {"usable_size", NULL, usable_size},
        {"trim_small_heap", NULL, trim_small_heap},
        {"free_lifo_200k", fill_live, free_lifo},
        {"free_fifo_200k", fill_live, free_fifo},
        {"free_random_200k", fill_shuffled, free_fifo},
        {"threads_1000_short", NULL, threads_short_lived},
        {"threads_64_alive", NULL, threads_64},
        {"threads_128_alive", NULL, threads_128},
        {"mallinfo2_fresh", NULL, grown_mallinfo2},
        {"mallinfo2_after_2g", grow_2g_and_free, grown_mallinfo2},
        {"trim_fresh", NULL, grown_trim},
        {"trim_after_2g", grow_2g_and_free, grown_trim},
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static long minor_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* The file whose malloc this program calls. */
static const char *malloc_owner(void)
{
	Dl_info info;
	void *m = dlsym(RTLD_DEFAULT, "malloc");
	return m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "?";
}

int main(int argc, char **argv)
{
	size_t n = sizeof(patterns) / sizeof(patterns[0]);
	if (argc == 2 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < n; i++)
			puts(patterns[i].name);
		return 0;
	}
	for (size_t i = 0; argc == 2 && i < n; i++) {
		const struct pattern *pt = &patterns[i];
		if (strcmp(argv[1], pt->name) != 0)
			continue;
		if (pt->setup)
			pt->setup();
		long f0 = minor_faults();
		uint64_t t0 = now_ns();
		long ops = pt->run();
		uint64_t ns = now_ns() - t0;
		long faults = minor_faults() - f0;
		printf("name=%s ns_op=%.1f ops=%ld minflt_op=%.3f "
		       "malloc_from=%s\n",
		       pt->name, (double)ns / (double)ops, ops,
		       (double)faults / (double)ops, malloc_owner());
		return 0;
	}
	fprintf(stderr, "usage: %s --list | NAME (one of --list's)\n", argv[0]);
	return 2;
}

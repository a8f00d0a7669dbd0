/*
 * tests/real/latency.c: the latency of single malloc and free calls (not
 * their mean: the tail), for tools/bench-latency. It calls malloc and
 * free: run it under LD_PRELOAD to measure another allocator.
 *
 *   latency phases MIB N   N phases of MIB of objects of one size each,
 *                          written, then all freed before the next phase
 *                          (another size): the heap must reuse the
 *                          previous phase's memory or grow
 *   latency mixed MIB OPS  a live set of MIB of random sizes (16 B to
 *                          32 KiB, mostly small); OPS times a random
 *                          object is replaced, and half the old objects
 *                          are freed by a second thread (remote frees)
 *
 * Every call is timed with the time-stamp counter (lfence; rdtsc on each
 * side), converted to ns by a calibration against CLOCK_MONOTONIC. The
 * samples live in memory mapped for them, so the allocator measured
 * holds none of them. The first call (the allocator's set-up) is timed
 * apart, as first_ns. Output: one line of "key=value" fields, the p50,
 * p99, p99.9 and max ns of malloc and of free. The max includes this
 * process being preempted on a busy machine: read it beside the p99.9,
 * and over several runs.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <x86intrin.h>

/* Samples of one kind (malloc or free): cycles per call. */
struct samples {
	uint32_t *v;
	size_t n, cap;
};

static void *map_or_die(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("latency: mmap");
		exit(2);
	}
	return p;
}

static void samples_init(struct samples *s, size_t cap)
{
	s->v = map_or_die(cap * sizeof(uint32_t));
	s->n = 0;
	s->cap = cap;
}

static inline uint64_t tsc(void)
{
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
}

static inline void record(struct samples *s, uint64_t cycles)
{
	if (s->n < s->cap)
		s->v[s->n++] =
		        cycles > UINT32_MAX ? UINT32_MAX : (uint32_t)cycles;
}

static inline void *timed_malloc(struct samples *s, size_t sz)
{
	uint64_t t0 = tsc();
	void *p = malloc(sz);
	record(s, tsc() - t0);
	if (!p) {
		fprintf(stderr, "latency: malloc(%zu) failed\n", sz);
		exit(2);
	}
	return p;
}

static inline void timed_free(struct samples *s, void *p)
{
	uint64_t t0 = tsc();
	free(p);
	record(s, tsc() - t0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Time-stamp counter cycles per ns, over 50 ms. */
static double tsc_per_ns(void)
{
	uint64_t n0 = now_ns(), c0 = tsc();
	while (now_ns() - n0 < 50000000u)
		;
	uint64_t n1 = now_ns(), c1 = tsc();
	return (double)(c1 - c0) / (double)(n1 - n0);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Prints " NAME_p50=.. NAME_p99=.. NAME_p999=.. NAME_max=.." in ns. */
static void report(const char *name, struct samples *s, double per_ns)
{
	if (s->n == 0) {
		printf(" %s_n=0", name);
		return;
	}
	qsort(s->v, s->n, sizeof(uint32_t), cmp_u32);
	static const struct {
		const char *key;
		double q;
	} qs[] = {{"p50", 0.5}, {"p99", 0.99}, {"p999", 0.999}};
	for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
		size_t k = (size_t)(qs[i].q * (double)(s->n - 1));
		printf(" %s_%s=%.0f", name, qs[i].key, s->v[k] / per_ns);
	}
	printf(" %s_max=%.0f %s_n=%zu", name, s->v[s->n - 1] / per_ns, name,
	       s->n);
}

/* ---- phases ---------------------------------------------------------- */

static void phases(size_t mib, unsigned n, struct samples *ms,
                   struct samples *fs)
{
	static const unsigned sizes[] = {64,  1000, 200,  3000,
	                                 512, 128,  2048, 96};
	size_t nmax = (mib << 20) / 64;
	void **v = map_or_die(nmax * sizeof(void *));
	samples_init(ms, nmax * n);
	samples_init(fs, nmax * n);
	for (unsigned ph = 0; ph < n; ph++) {
		size_t sz = sizes[ph % 8], cnt = (mib << 20) / sz;
		for (size_t i = 0; i < cnt; i++)
			memset(v[i] = timed_malloc(ms, sz), 1, sz);
		for (size_t i = 0; i < cnt; i++)
			timed_free(fs, v[i]);
	}
}

/* ---- mixed ----------------------------------------------------------- */

/* Objects handed to the freeing thread: a single-producer,
 * single-consumer ring. */
enum { RING = 1 << 16 };
struct ring {
	void *v[RING];
	_Atomic size_t head, tail; /* head: written by the producer */
	_Atomic int done;
	struct samples fs;
};

static void ring_push(struct ring *r, void *p)
{
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	while (h - atomic_load_explicit(&r->tail, memory_order_acquire) >= RING)
		sched_yield();
	r->v[h % RING] = p;
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
}

static void *freer(void *arg)
{
	struct ring *r = arg;
	for (;;) {
		size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
		if (t == atomic_load_explicit(&r->head, memory_order_acquire)) {
			if (atomic_load(&r->done))
				return NULL;
			sched_yield();
			continue;
		}
		timed_free(&r->fs, r->v[t % RING]);
		atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	}
}

/* xorshift64: the same sequence under every allocator. */
static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Mostly small sizes, some up to 32 KiB: 16 << (0..11), times 1 to 2. */
static size_t mixed_size(uint64_t *x)
{
	uint64_t r = rnd(x);
	unsigned sh = (unsigned)(r % 64);
	sh = sh < 40 ? sh % 4 : sh < 60 ? 4 + sh % 4 : 8 + sh % 4;
	size_t base = (size_t)16 << sh;
	return base + (size_t)((r >> 8) % base);
}

static void mixed(size_t mib, size_t ops, struct samples *ms,
                  struct samples *fs)
{
	/* The mean size is about 1.4 KiB; slots for the live set. */
	size_t slots = (mib << 20) / 1400;
	void **v = map_or_die(slots * sizeof(void *));
	struct ring *r = map_or_die(sizeof *r);
	uint64_t x = 88172645463325252ull;
	samples_init(ms, slots + ops);
	samples_init(fs, ops);
	samples_init(&r->fs, ops);
	for (size_t i = 0; i < slots; i++)
		memset(v[i] = malloc(mixed_size(&x)), 1, 16);
	pthread_t t;
	if (pthread_create(&t, NULL, freer, r) != 0) {
		fprintf(stderr, "latency: pthread_create failed\n");
		exit(2);
	}
	for (size_t k = 0; k < ops; k++) {
		size_t i = (size_t)(rnd(&x) % slots);
		if (rnd(&x) & 1)
			ring_push(r, v[i]);
		else
			timed_free(fs, v[i]);
		size_t sz = mixed_size(&x);
		memset(v[i] = timed_malloc(ms, sz), 1, sz < 64 ? sz : 64);
	}
	atomic_store(&r->done, 1);
	pthread_join(t, NULL);
	/* The remote frees' samples join the local ones. */
	memcpy(fs->v + fs->n, r->fs.v, r->fs.n * sizeof(uint32_t));
	fs->n += r->fs.n;
	for (size_t i = 0; i < slots; i++)
		free(v[i]);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: latency phases MIB N | "
		                "latency mixed MIB OPS\n");
		return 2;
	}
	size_t mib = strtoul(argv[2], NULL, 10), n = strtoul(argv[3], NULL, 10);
	if (mib == 0 || mib > 65536 || n == 0 || n > 1000000000) {
		fprintf(stderr,
		        "latency: MIB must be 1..65536 and N or OPS "
		        "1..10^9 (got %s %s)\n",
		        argv[2], argv[3]);
		return 2;
	}
	double per_ns = tsc_per_ns();
	/* The first call sets the allocator up (ours maps its arenas and
	 * starts its threads: 2 to 4 ms here, which was our max until it
	 * was left out); its own field. */
	uint64_t c0 = tsc();
	free(malloc(1));
	double first_ns = (double)(tsc() - c0) / per_ns;
	struct samples ms, fs;
	uint64_t t0 = now_ns();
	if (strcmp(argv[1], "phases") == 0)
		phases(mib, (unsigned)n, &ms, &fs);
	else if (strcmp(argv[1], "mixed") == 0)
		mixed(mib, n, &ms, &fs);
	else {
		fprintf(stderr, "latency: no workload '%s' (phases, mixed)\n",
		        argv[1]);
		return 2;
	}
	printf("%s mib=%zu n=%zu wall_ms=%.0f first_ns=%.0f", argv[1], mib, n,
	       (now_ns() - t0) / 1e6, first_ns);
	report("malloc", &ms, per_ns);
	report("free", &fs, per_ns);
	printf("\n");
	return 0;
}

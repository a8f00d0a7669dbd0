/*
 * tests/host/bench/spanheap_bench_work.c: spanheap_bench's allocator under
 * test and its workloads: the span heap or malloc behind obj_alloc and
 * obj_free, the worker threads, the timed loops, and the callgrind
 * mode's pair loop. spanheap_bench.c says what each workload does and
 * what the numbers mean, and prints them.
 *
 * The timed loops and the allocator calls they make stay together in this
 * file, with the allocator's state static here, so that the compiler
 * builds them as it did when the bench was one file (the same
 * instructions): splitting the bench changed nothing it measures.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../mm/spanheap.h"
#include "../mm_port_posix.h"
#include "spanheap_bench.h"

#define BULK_OBJECTS 1000000
#define BULK_ROUNDS  3
#define RANDOM_LIVE  10000
#define RING_SLOTS   1024 /* a power of two */
#define PAIR_OPS     5000000
#define RANDOM_OPS   2000000
#define PRODCONS_OPS 2000000
#define WARMUP_PAIRS 10000
/* valgrind cannot reserve the default 64 GiB arena; the pair's path does
 * not depend on the arena's size. */
#define CALLGRIND_ARENA_BYTES ((size_t)1 << 30)

/* ---- The allocator under test ---------------------------------------------
 */

static struct mheap heap;
static struct spanheap sh;
/* Set by bench_select before anything runs, then only read. */
static bool use_mm;
static const struct workload *wl;

static void die(const char *what)
{
	fprintf(stderr, "spanheap_bench: %s\n", what);
	exit(1);
}

/* Hides p from the optimiser, so that no malloc+free pair is elided. */
static inline void escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

/* size bytes (at least 8), whose first 8 hold the address xor tag: two
 * live objects that overlap would overwrite each other's. */
static inline void *obj_init(void *p, uint64_t tag)
{
	if (!p)
		die("out of memory");
	*(volatile uint64_t *)p = (uintptr_t)p ^ tag;
	escape(p);
	return p;
}

/* Ours through spanheap_alloc_sized, as the kernel's kmalloc(size, 0)
 * reaches the heap: flags fixed where the caller calls are not tested at
 * run time (and malloc has none to test). */
static inline void *obj_alloc(size_t size, uint64_t tag)
{
	return obj_init(use_mm ? spanheap_alloc_sized(&sh, size, 0)
	                       : malloc(size),
	                tag);
}

static inline void obj_free(void *p, uint64_t tag)
{
	if (*(volatile uint64_t *)p != ((uintptr_t)p ^ tag))
		die("an object's first bytes changed while it was live");
	if (use_mm)
		spanheap_free(&sh, p);
	else
		free(p);
}

/* A default span heap; arena_bytes 0 keeps the default arena. */
void bench_mm_setup(bool threads, size_t arena_bytes)
{
	struct mheap_config hc;
	struct spanheap_config sc;
	mm_port_set_quiet(true);
	/* Map as a production malloc: chunks read-write at growth, scavenged
	 * pages only dropped (the tests' port faults on them instead). */
	mm_port_set_production_mapping(true);
	mheap_config_default(&hc);
	if (arena_bytes)
		hc.arena_bytes = arena_bytes;
	spanheap_config_default(&sc);
	if (!mheap_init(&heap, &hc) || !spanheap_init(&sh, &heap, &sc)) {
		/* quiet kept mm's reason off stderr: say it */
		fprintf(stderr, "spanheap_bench: span heap setup failed: %s\n",
		        mm_port_last_log());
		exit(1);
	}
	if (threads &&
	    (!spanheap_sweeper_start(&sh) || !mheap_scavenger_start(&heap)))
		die("cannot start the sweeper or the scavenger");
}

/* ---- Harness ----------------------------------------------------------------
 */

struct run {
	unsigned nthreads;
	pthread_barrier_t barrier;
	/* prodcons: the ring (slots hold object pointers) */
	void **ring;
	_Alignas(64) _Atomic uint64_t head; /* written by the producer */
	_Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
};

static struct run run;

static inline uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Harness memory comes from mmap, never from the allocator under test. */
static void *harness_alloc(size_t nbytes)
{
	void *p = mmap(NULL, nbytes, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap failed");
	return p;
}

static void wait_all(void)
{
	pthread_barrier_wait(&run.barrier);
}

/* ---- Workloads
 * ----------------------------------------------------------------- */

static void pair_loop(size_t size, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		obj_free(obj_alloc(size, i), i);
}

/* pair_loop(16, n) with the allocation through spanheap_alloc_class, the
 * inline path of a caller that knows the class where it calls (the
 * kernel's kmalloc of a constant size does this). */
static void pair_loop_class_known(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		obj_free(
		        obj_init(spanheap_alloc_class(
		                         &sh, spanheap_class_linear(16), 16, 0),
		                 i),
		        i);
}

static void work_pair(struct worker *w)
{
	pair_loop(w->size, WARMUP_PAIRS);
	wait_all();
	bench_start(w);
	pair_loop(w->size, w->ops);
	w->timed_ns = bench_stop(w);
}

static void work_bulk(struct worker *w)
{
	void **v = harness_alloc(BULK_OBJECTS * sizeof(void *));
	for (int r = 0; r < BULK_ROUNDS; r++) {
		wait_all();
		bench_start(w);
		for (size_t i = 0; i < BULK_OBJECTS; i++)
			v[i] = obj_alloc(64, 0);
		w->alloc_ns += bench_stop(w);
		/* Fisher-Yates */
		for (size_t i = BULK_OBJECTS - 1; i > 0; i--) {
			size_t j = rng(&w->rng) % (i + 1);
			void *t = v[i];
			v[i] = v[j];
			v[j] = t;
		}
		wait_all();
		bench_start(w);
		for (size_t i = 0; i < BULK_OBJECTS; i++)
			obj_free(v[i], 0);
		w->free_ns += bench_stop(w);
	}
	w->timed_ns = w->alloc_ns + w->free_ns;
	munmap(v, BULK_OBJECTS * sizeof(void *));
}

/* 8 B to 4 KiB, log-uniform: an octave [8 << k, 16 << k), k in 0..8, then
 * uniform within it. */
static inline size_t random_size(uint64_t *s)
{
	uint64_t r = rng(s);
	unsigned k = (unsigned)(r % 9);
	size_t lo = (size_t)8 << k;
	return lo + (size_t)((r >> 8) % (lo + (k == 8)));
}

static void work_random(struct worker *w)
{
	void **v = harness_alloc(RANDOM_LIVE * sizeof(void *));
	for (size_t i = 0; i < RANDOM_LIVE; i++)
		v[i] = obj_alloc(random_size(&w->rng), i);
	wait_all();
	bench_start(w);
	for (uint64_t i = 0; i < w->ops; i++) {
		size_t k = (size_t)(rng(&w->rng) % RANDOM_LIVE);
		obj_free(v[k], k);
		v[k] = obj_alloc(random_size(&w->rng), k);
	}
	w->timed_ns = bench_stop(w);
	for (size_t i = 0; i < RANDOM_LIVE; i++)
		obj_free(v[i], i);
	munmap(v, RANDOM_LIVE * sizeof(void *));
}

/* Spins briefly, then gives the CPU away: a sweeper or scavenger thread
 * may need it on this 2-core machine. */
static inline void backoff(unsigned *spins)
{
	if (++*spins < 64)
		__builtin_ia32_pause();
	else
		sched_yield();
}

static void produce(uint64_t n, uint64_t *seed)
{
	uint64_t head = atomic_load_explicit(&run.head, memory_order_relaxed);
	for (uint64_t i = 0; i < n; i++, head++) {
		unsigned spins = 0;
		while (head - atomic_load_explicit(&run.tail,
		                                   memory_order_acquire) ==
		       RING_SLOTS)
			backoff(&spins);
		size_t size = 16 + (size_t)(rng(seed) % 241);
		run.ring[head % RING_SLOTS] = obj_alloc(size, head);
		atomic_store_explicit(&run.head, head + 1,
		                      memory_order_release);
	}
}

static void consume(uint64_t n)
{
	uint64_t tail = atomic_load_explicit(&run.tail, memory_order_relaxed);
	for (uint64_t i = 0; i < n; i++, tail++) {
		unsigned spins = 0;
		while (atomic_load_explicit(&run.head, memory_order_acquire) ==
		       tail)
			backoff(&spins);
		obj_free(run.ring[tail % RING_SLOTS], tail);
		atomic_store_explicit(&run.tail, tail + 1,
		                      memory_order_release);
	}
}

static void work_prodcons(struct worker *w)
{
	wait_all();
	bench_start(w);
	if (run.nthreads == 1) {
		for (uint64_t done = 0; done < w->ops; done += RING_SLOTS / 2) {
			uint64_t n = w->ops - done < RING_SLOTS / 2
			                     ? w->ops - done
			                     : RING_SLOTS / 2;
			produce(n, &w->rng);
			consume(n);
		}
	} else if (w->id == 0) {
		produce(w->ops, &w->rng);
	} else {
		consume(w->ops);
	}
	w->timed_ns = bench_stop(w);
}

/* Its size is NWORKLOADS: the header's declaration says so, and a table of
 * another size would not compile against it. */
const struct workload workloads[] = {
        {"pair16", work_pair, PAIR_OPS, 16, MAX_THREADS},
        {"pair64", work_pair, PAIR_OPS, 64, MAX_THREADS},
        {"pair256", work_pair, PAIR_OPS, 256, MAX_THREADS},
        {"pair1024", work_pair, PAIR_OPS, 1024, MAX_THREADS},
        {"pair8192", work_pair, PAIR_OPS, 8192, MAX_THREADS},
        {"bulk64", work_bulk, BULK_ROUNDS *BULK_OBJECTS, 64, MAX_THREADS},
        {"random", work_random, RANDOM_OPS, 0, MAX_THREADS},
        {"prodcons", work_prodcons, PRODCONS_OPS, 0, 2},
};

bool bench_is_bulk(const struct workload *w)
{
	return w->fn == work_bulk;
}

/* ---- Running ---------------------------------------------------------------
 */

void bench_select(bool mm, const struct workload *w)
{
	use_mm = mm;
	wl = w;
}

struct spanheap *bench_spanheap(void)
{
	return &sh;
}

/* Worker i runs on CPU i (of those online), for every allocator alike:
 * left to the scheduler, two workers that hand objects over (prodcons)
 * sometimes share a CPU and take turns, and the same run of the same
 * allocator came out 29 or 210 ns an object. */
static void pin_worker(unsigned id)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 2)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(id % (unsigned)n, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pin_worker(w->id);
	if (use_mm)
		mm_port_bind_cpu(w->id);
	wl->fn(w);
	if (use_mm)
		mm_port_unbind_cpu();
	return NULL;
}

void bench_run(struct worker *ws, unsigned nthreads, double scale)
{
	run.nthreads = nthreads;
	pthread_barrier_init(&run.barrier, NULL, nthreads);
	run.ring = harness_alloc(RING_SLOTS * sizeof(void *));
	uint64_t ops = (uint64_t)(wl->ops * scale);
	if (wl->fn == work_bulk)
		ops = BULK_ROUNDS * BULK_OBJECTS; /* fixed by the workload */
	for (unsigned i = 0; i < nthreads; i++) {
		ws[i] = (struct worker){.id = i,
		                        .ops = ops,
		                        .size = wl->size,
		                        .rng = 0x9e3779b97f4a7c15ull * (i + 1)};
		if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]))
			die("pthread_create failed");
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(ws[i].tid, NULL);
}

int bench_callgrind(long n, bool class_known)
{
	if (use_mm) {
		bench_mm_setup(false, CALLGRIND_ARENA_BYTES);
		mm_port_bind_cpu(0);
	}
	if (class_known)
		pair_loop_class_known((uint64_t)n);
	else
		pair_loop(16, (uint64_t)n);
	if (use_mm)
		mm_port_unbind_cpu();
	return 0;
}

/*
 * tests/host/bench/spanheap_bench.c: the span heap against real
 * allocators, one workload per process.
 *
 *   spanheap_bench --alloc=mm|system [--threads=N] [--scale=F] [--arena-mib=M]
 *                  WORKLOAD
 *   spanheap_bench --alloc=mm|system --callgrind=N
 *   spanheap_bench --alloc=mm --callgrind=N --class-known
 *   spanheap_bench --pin-cost
 *   spanheap_bench --list
 *
 * --alloc=mm runs the workload on the span heap in this process
 * (spanheap_alloc / spanheap_free over a default page heap, with the
 * sweeper and the page heap's scavenger running); each worker thread binds
 * CPU i (mm_port_bind_cpu), so its per-CPU cache is its own, as a peer's
 * thread cache is, and its pins cost nothing (the kernel's fast paths
 * pin nothing, being restartable sequences, and its slow paths turn
 * interrupts off and on; --pin-cost shows the POSIX port's unbound pin).
 * --alloc=system calls malloc and free: glibc's, or whatever LD_PRELOAD
 * puts in front of it (tools/bench-spanheap runs jemalloc, mimalloc and
 * tcmalloc that way, and ours as a program's malloc, libmm_malloc.so:
 * "mm-malloc", reached through the PLT as the peers are, where mm is the
 * core called directly). Under every allocator, worker i runs on online
 * CPU i (modulo their number; sched affinity). A bad command line is
 * refused naming what is wrong (status 2). docs/DESIGN.md, "Benchmarks",
 * says what is deliberate.
 *
 * Workloads (per worker thread; an "op" is one object allocated and
 * freed):
 *   pairN     alloc+free of N bytes in a tight loop (N = 16, 64, 256,
 *             1024, 8192)
 *   bulk64    allocate 10^6 objects of 64 bytes, then free them in random
 *             order (the shuffle is not timed); three rounds
 *   random    10000 live objects of random sizes, 8 B to 4 KiB
 *             log-uniform (as many in 8-16 B as in 2-4 KiB); each step
 *             frees a random one and allocates its replacement, so
 *             lifetimes are random (geometric)
 *   prodcons  one thread allocates 16-256 B objects and passes them
 *             through a ring of 1024 pointers; another frees them (cross-
 *             thread frees). With one thread, it fills half the ring and
 *             drains it itself.
 * Every object gets its first 8 bytes written when allocated, and read
 * back and checked before it is freed, so no allocator can skip the
 * memory and a broken one is caught.
 *
 * Output: one line of key=value pairs: ns_per_op is the slowest thread's
 * timed nanoseconds divided by its ops (equal per-thread work: perfect
 * scaling keeps it constant as threads are added); maxrss_kib is the
 * process's peak RSS (getrusage), harness arrays included (the same for
 * every allocator). For bulk64 also alloc_ns_per_obj and
 * free_ns_per_obj, that thread's two phases apart (per object and round;
 * the first round's allocations take the page faults). For mm also
 * sweeper_cpu_ns, the sweeper thread's CPU time over the run (its own CPU
 * clock, wake-ups and pacing included; mm's sweeper_cpu_ns, printed as
 * sweeper_cycles_cpu_ns, counts only its cycles), wall_ns over the same
 * window, and the cycles; spanheap_check runs after the workload (sweeper
 * stopped).
 *
 * --callgrind=N runs N 16-byte alloc+free pairs on one thread and nothing
 * else (for mm: no sweeper or scavenger thread, which would add
 * run-to-run noise, and a 1 GiB arena); tools/bench-spanheap runs it under
 * callgrind twice and divides the difference of the totals, as palloc_bench
 * does. With --class-known, ours allocates through spanheap_alloc_class,
 * inline, as a caller that knows the class where it calls does (the
 * kernel's kmalloc of a constant size).
 *
 * --pin-cost prints what one mm_port_pin + mm_port_unpin costs here for
 * an unbound thread (an atomic exchange: the host's stand-in for
 * interrupts off). --list prints the workloads and their most threads.
 *
 * Built -O2 without sanitizers (tests/host/host.mk: make bench).
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
#include <sys/resource.h>
#include <time.h>
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

static bool use_mm;
static struct mheap heap;
static struct spanheap sh;

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

static inline void *obj_alloc(size_t size, uint64_t tag)
{
	return obj_init(use_mm ? spanheap_alloc(&sh, size, 0) : malloc(size),
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
static void mm_setup(bool threads, size_t arena_bytes)
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

struct worker {
	pthread_t tid;
	unsigned id;
	uint64_t ops;      /* ops this thread does (or, consumer: frees) */
	uint64_t timed_ns; /* its timed sections */
	/* bulk64: the allocation and the free phases (timed_ns is their
	 * sum) */
	uint64_t alloc_ns, free_ns;
	uint64_t rng;
	size_t size; /* pairN */
};

struct run {
	unsigned nthreads;
	pthread_barrier_t barrier;
	/* prodcons: the ring (slots hold object pointers) */
	void **ring;
	_Alignas(64) _Atomic uint64_t head; /* written by the producer */
	_Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
};

static struct run run;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

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
	uint64_t t0 = now_ns();
	pair_loop(w->size, w->ops);
	w->timed_ns = now_ns() - t0;
}

static void work_bulk(struct worker *w)
{
	void **v = harness_alloc(BULK_OBJECTS * sizeof(void *));
	for (int r = 0; r < BULK_ROUNDS; r++) {
		wait_all();
		uint64_t t0 = now_ns();
		for (size_t i = 0; i < BULK_OBJECTS; i++)
			v[i] = obj_alloc(64, 0);
		w->alloc_ns += now_ns() - t0;
		/* Fisher-Yates */
		for (size_t i = BULK_OBJECTS - 1; i > 0; i--) {
			size_t j = rng(&w->rng) % (i + 1);
			void *t = v[i];
			v[i] = v[j];
			v[j] = t;
		}
		wait_all();
		t0 = now_ns();
		for (size_t i = 0; i < BULK_OBJECTS; i++)
			obj_free(v[i], 0);
		w->free_ns += now_ns() - t0;
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
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < w->ops; i++) {
		size_t k = (size_t)(rng(&w->rng) % RANDOM_LIVE);
		obj_free(v[k], k);
		v[k] = obj_alloc(random_size(&w->rng), k);
	}
	w->timed_ns = now_ns() - t0;
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
	uint64_t t0 = now_ns();
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
	w->timed_ns = now_ns() - t0;
}

struct workload {
	const char *name;
	void (*fn)(struct worker *w);
	uint64_t ops; /* per thread, at scale 1 */
	size_t size;
	unsigned max_threads; /* prodcons: 1 or 2 */
};

static const struct workload workloads[] = {
        {"pair16", work_pair, PAIR_OPS, 16, MAX_THREADS},
        {"pair64", work_pair, PAIR_OPS, 64, MAX_THREADS},
        {"pair256", work_pair, PAIR_OPS, 256, MAX_THREADS},
        {"pair1024", work_pair, PAIR_OPS, 1024, MAX_THREADS},
        {"pair8192", work_pair, PAIR_OPS, 8192, MAX_THREADS},
        {"bulk64", work_bulk, BULK_ROUNDS *BULK_OBJECTS, 64, MAX_THREADS},
        {"random", work_random, RANDOM_OPS, 0, MAX_THREADS},
        {"prodcons", work_prodcons, PRODCONS_OPS, 0, 2},
};
#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static const struct workload *wl;

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

/* ---- Running and reporting -------------------------------------------------
 */

static void run_workload(struct worker *ws, unsigned nthreads, double scale)
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

/* The sweeper thread's CPU time so far, all of it: its cycles, and its
 * wake-ups, polls and pacing, which mm's sweeper_cpu_ns leaves out. */
static uint64_t sweeper_thread_ns(void)
{
	return use_mm ? mm_port_thread_cpu_ns_of(sh.sweeper.thread) : 0;
}

static void report(const struct worker *ws, unsigned nthreads, uint64_t wall,
                   uint64_t sweeper_ns)
{
	uint64_t worst = 0;
	unsigned slowest = 0;
	for (unsigned i = 0; i < nthreads; i++)
		if (ws[i].timed_ns > worst) {
			worst = ws[i].timed_ns;
			slowest = i;
		}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("spanheap_bench alloc=%s workload=%s threads=%u ops=%lu "
	       "ns_per_op=%.2f maxrss_kib=%ld wall_ns=%lu",
	       use_mm ? "mm" : "system", wl->name, nthreads,
	       (unsigned long)ws[0].ops, (double)worst / (double)ws[0].ops,
	       ru.ru_maxrss, (unsigned long)wall);
	if (wl->fn == work_bulk)
		printf(" alloc_ns_per_obj=%.2f free_ns_per_obj=%.2f",
		       (double)ws[slowest].alloc_ns / (double)ws[0].ops,
		       (double)ws[slowest].free_ns / (double)ws[0].ops);
	if (use_mm) {
		static struct spanheap_stats st; /* large */
		spanheap_stats(&sh, &st);
		printf(" sweeper_cpu_ns=%lu sweeper_cycles_cpu_ns=%lu "
		       "cycles=%lu "
		       "remote_frees=%lu refills=%lu demand_swept=%lu "
		       "heap_in_use_kib=%zu",
		       (unsigned long)sweeper_ns,
		       (unsigned long)st.n.sweeper_cpu_ns,
		       (unsigned long)st.n.cycles,
		       (unsigned long)st.remote_frees,
		       (unsigned long)st.refills,
		       (unsigned long)st.n.demand_swept,
		       st.heap.in_use_pages * (MM_PAGE_SIZE / 1024));
	}
	printf("\n");
}

static int callgrind_mode(long n, bool class_known)
{
	if (use_mm) {
		mm_setup(false, CALLGRIND_ARENA_BYTES);
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

/* What the POSIX port's pinning costs for a thread that has not bound a
 * CPU: one atomic exchange and a store per pin+unpin, twice per alloc+free
 * pair (the kernel: interrupts off and on; a bound thread: nothing). */
static int pin_cost_mode(void)
{
	const long n = 10000000;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		mm_port_unpin(mm_port_pin());
	printf("spanheap_bench pin_unpin_ns=%.2f\n",
	       (double)(now_ns() - t0) / (double)n);
	return 0;
}

int main(int argc, char **argv)
{
	static struct bench_name names[NWORKLOADS];
	for (size_t k = 0; k < NWORKLOADS; k++)
		names[k] = (struct bench_name){workloads[k].name,
		                               workloads[k].max_threads};
	struct bench_args a =
	        bench_parse_args(argc, argv, names, NWORKLOADS, pin_cost_mode);
	use_mm = a.use_mm;
	wl = &workloads[a.workload];
	if (a.callgrind)
		return callgrind_mode((long)a.callgrind, a.class_known);
	if (use_mm)
		mm_setup(true, (size_t)a.arena_mib << 20);
	static struct worker ws[MAX_THREADS];
	uint64_t sw0 = sweeper_thread_ns(), t0 = now_ns();
	run_workload(ws, a.nthreads, a.scale);
	uint64_t wall = now_ns() - t0, sw = sweeper_thread_ns() - sw0;
	report(ws, a.nthreads, wall, sw);
	if (use_mm) {
		spanheap_sweeper_stop(&sh);
		spanheap_check(&sh);
	}
	return 0;
}

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
 * (spanheap_alloc_sized / spanheap_free, as kmalloc(size, 0) and kfree
 * reach them, over a default page heap, with the
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
 * process's peak RSS (its memory's VmHWM, which exec starts afresh; not
 * getrusage's ru_maxrss, which keeps the image exec replaced: the
 * forking parent's copy, timeout's under the allocator's LD_PRELOAD or
 * a large shell's), harness arrays included (the same for every
 * allocator). cpu_share is that thread's CPU time over its timed
 * sections divided by their wall time: well below 1, the host took the
 * CPU away from it (other load, a yield that let another thread in) and
 * its time is not the allocator's alone. malloc_from is the file whose
 * malloc the program calls (tools/bench-spanheap checks it is the
 * preloaded peer's). For bulk64 also alloc_ns_per_obj and
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
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../../../mm/spanheap.h"
#include "../mm_port_posix.h"
#include "spanheap_bench.h"

/* The sweeper thread's CPU time so far, all of it: its cycles, and its
 * wake-ups, polls and pacing, which mm's sweeper_cpu_ns leaves out. */
static uint64_t sweeper_thread_ns(bool use_mm)
{
	return use_mm ? mm_port_thread_cpu_ns_of(
	                        bench_spanheap()->sweeper.thread)
	              : 0;
}

/* This process's peak RSS in KiB since its exec: /proc's VmHWM. Linux's
 * ru_maxrss is the larger of it and the RSS of the image exec replaced
 * (a fork of the parent: a shell of 60 MiB made a 1.6 MiB run 60 MiB),
 * so it is the fallback only, without /proc. Read with read(2), not
 * stdio and scanf, whose first use faulted in 100-400 KiB of libc before
 * the figure was read (this, 100-200 KiB, is the same for every
 * allocator). */
static long peak_rss_kib(void)
{
	static char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	const char *v = strstr(buf, "\nVmHWM:");
	if (v)
		return strtol(v + 7, NULL, 10);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* The file whose malloc the program calls: the preloaded peer's, or
 * libc's when the preload failed (ld.so only warns, and the run goes
 * on with glibc) or the peer does not interpose; "?" if unknown. */
static const char *malloc_owner(void)
{
	Dl_info info;
	void *f = dlsym(RTLD_DEFAULT, "malloc");
	if (!f || !dladdr(f, &info) || !info.dli_fname)
		return "?";
	return info.dli_fname;
}

/* The output line (see the top of this file) for workload wl, run as the
 * command line a says by the workers ws, over wall ns. */
static void report(const struct bench_args *a, const struct workload *wl,
                   const struct worker *ws, uint64_t wall, uint64_t sweeper_ns)
{
	long rss = peak_rss_kib(); /* first: before the report's own pages */
	uint64_t worst = 0;
	unsigned slowest = 0, nthreads = a->nthreads;
	bool use_mm = a->use_mm;
	for (unsigned i = 0; i < nthreads; i++)
		if (ws[i].timed_ns > worst) {
			worst = ws[i].timed_ns;
			slowest = i;
		}
	printf("spanheap_bench alloc=%s workload=%s threads=%u ops=%lu "
	       "ns_per_op=%.2f maxrss_kib=%ld wall_ns=%lu cpu_share=%.3f "
	       "malloc_from=%s",
	       use_mm ? "mm" : "system", wl->name, nthreads,
	       (unsigned long)ws[0].ops, (double)worst / (double)ws[0].ops, rss,
	       (unsigned long)wall,
	       worst ? (double)ws[slowest].cpu_ns / (double)worst : 1.0,
	       malloc_owner());
	if (bench_is_bulk(wl))
		printf(" alloc_ns_per_obj=%.2f free_ns_per_obj=%.2f",
		       (double)ws[slowest].alloc_ns / (double)ws[0].ops,
		       (double)ws[slowest].free_ns / (double)ws[0].ops);
	if (use_mm) {
		static struct spanheap_stats st; /* large */
		spanheap_stats(bench_spanheap(), &st);
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

/* What the POSIX port's pinning costs for a thread that has not bound a
 * CPU: one atomic exchange and a store per pin+unpin, twice per alloc+free
 * pair (the kernel: interrupts off and on; a bound thread: nothing). */
static int pin_cost_mode(void)
{
	const long n = 10000000;
	uint64_t t0 = bench_now_ns();
	for (long i = 0; i < n; i++)
		mm_port_unpin(mm_port_pin());
	printf("spanheap_bench pin_unpin_ns=%.2f\n",
	       (double)(bench_now_ns() - t0) / (double)n);
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
	const struct workload *wl = &workloads[a.workload];
	bench_select(a.use_mm, wl);
	if (a.callgrind)
		return bench_callgrind((long)a.callgrind, a.class_known);
	if (a.use_mm)
		bench_mm_setup(true, (size_t)a.arena_mib << 20);
	static struct worker ws[MAX_THREADS];
	uint64_t sw0 = sweeper_thread_ns(a.use_mm), t0 = bench_now_ns();
	bench_run(ws, a.nthreads, a.scale);
	uint64_t wall = bench_now_ns() - t0;
	uint64_t sw = sweeper_thread_ns(a.use_mm) - sw0;
	report(&a, wl, ws, wall, sw);
	if (a.use_mm) {
		spanheap_sweeper_stop(bench_spanheap());
		spanheap_check(bench_spanheap());
	}
	return 0;
}

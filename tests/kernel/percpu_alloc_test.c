/*
 * Dynamic per-CPU memory in the kernel (kernel/percpu_alloc.h over
 * mm/pcpu.c), with the lock checker on: allocations of many sizes and
 * alignments come zeroed in every CPU's copy; a thread pinned on every
 * CPU writes its pattern into its own copies and counts with
 * this_cpu_inc while every CPU's timer interrupt counts into the same
 * counter with this_cpu_add, and one CPU then finds every copy as its CPU
 * left it and every count exact; freed and allocated again, the memory
 * is zeroed again; the allocator's limit and an injected failure of the
 * heap give NULL with nothing kept, and the frame pool comes back to
 * where it was; meminfo shows the chunks. Misuse (a free of a kmalloc
 * object, a double free, an interior pointer) are demos
 * (KTEST_FAIL_DEMO), checked by the harness. About 0.35 s of guest time
 * at -smp 4 (1 s with mm.debug_poison).
 */
#include <stdatomic.h>

#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu_alloc.h"
#include "kernel/printk.h"
#include "kernel/shrinker.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/storm_util.h"

#define NALLOC 24
static void *h[NALLOC];
static size_t hsize[NALLOC];
static int64_t *counter;

static const size_t sizes[] = {1, 8, 12, 24, 64, 100, 256, 1000, 4096, 40};
static const size_t aligns[] = {0, 8, 16, 64, 256, 4096};

/* Byte k of CPU cpu's copy of allocation i. */
static uint8_t pattern(unsigned i, unsigned cpu, size_t k)
{
	return (uint8_t)(i * 37 + cpu * 101 + k * 7 + 1);
}

/* Allocates h[], checking alignment and zeroes in every unit. */
static unsigned alloc_all(void)
{
	unsigned bad = 0;
	for (unsigned i = 0; i < NALLOC; i++) {
		size_t align = aligns[i % 6], sz = sizes[i % 10];
		hsize[i] = sz;
		h[i] = __alloc_percpu(sz, align);
		if (!h[i] || (align && (uintptr_t)h[i] % align)) {
			bad++;
			continue;
		}
		for (unsigned cpu = 0; cpu < kpcpu.nunits; cpu++)
			bad += !ktest_all_zero(per_cpu_ptr(h[i], cpu), sz);
	}
	return bad;
}

static _Atomic bool irq_on;
static _Atomic unsigned irq_inside, running;
static _Atomic uint64_t irq_adds;
static _Atomic uint64_t irq_adds_on[MAX_CPUS];
enum { ADDS = 3000, IRQ_MIN = 20 };

static void irq_tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on)) {
		this_cpu_add(counter, 1);
		atomic_fetch_add(&irq_adds_on[this_cpu()->id], 1);
		atomic_fetch_add(&irq_adds, 1);
	}
	atomic_fetch_sub(&irq_inside, 1);
}

/* On its CPU (threads never migrate): its pattern into its copies,
 * then counts until it made ADDS and the interrupts IRQ_MIN, so that
 * ticks land among its adds. Not a proof that an add cannot be cut in
 * two: under TCG an interrupt is taken only between translated blocks,
 * and an unpinned load and store in one block never are (such a mutant
 * of this_cpu_add passed); the pin is what makes it so on hardware. */
static int64_t thread_adds[MAX_CPUS];

static void worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg - 1;
	int64_t done = 0;
	for (unsigned i = 0; i < NALLOC; i++) {
		uint8_t *p = per_cpu_ptr((uint8_t *)h[i], cpu);
		for (size_t k = 0; k < hsize[i]; k++)
			p[k] = pattern(i, cpu, k);
	}
	while (done < ADDS || atomic_load(&irq_adds) < IRQ_MIN) {
		this_cpu_inc(counter);
		done++;
	}
	thread_adds[cpu] = done;
	atomic_fetch_sub(&running, 1);
}

/* Every online CPU's copies as its worker left them, the others zero. */
static unsigned check_all(void)
{
	unsigned bad = 0;
	for (unsigned i = 0; i < NALLOC; i++)
		for (unsigned cpu = 0; cpu < kpcpu.nunits; cpu++) {
			const uint8_t *p = per_cpu_ptr((uint8_t *)h[i], cpu);
			bool on = atomic_load(&cpus[cpu].online);
			for (size_t k = 0; k < hsize[i]; k++)
				bad += p[k] != (on ? pattern(i, cpu, k) : 0);
		}
	return bad;
}

KTEST(percpu_alloc, every_cpu_and_interrupts_write_their_own_copies)
{
	for (unsigned i = 0; i < NALLOC; i++)
		h[i] = NULL;
	KASSERT(counter = alloc_percpu(int64_t));
	KEXPECT_EQ(alloc_all(), 0);
	for (unsigned i = 0; i < NALLOC; i++)
		KASSERT(h[i]);
	for (unsigned c = 0; c < MAX_CPUS; c++) {
		atomic_store(&irq_adds_on[c], 0);
		thread_adds[c] = 0;
	}
	atomic_store(&irq_adds, 0);
	unsigned nw =
	        cpu_storm_run(&(struct cpu_storm){.name = "kpercpu",
	                                          .worker = worker,
	                                          .tick = irq_tick,
	                                          .running = &running,
	                                          .irq_on = &irq_on,
	                                          .irq_inside = &irq_inside,
	                                          .irq_allocs = &irq_adds,
	                                          .irq_min = IRQ_MIN});
	ktest_diag("%u CPUs of %u units, %lu counts by interrupts, %ld by "
	           "CPU 0's thread",
	           nw, kpcpu.nunits, (unsigned long)atomic_load(&irq_adds),
	           (long)thread_adds[0]);
	KEXPECT_EQ(check_all(), 0);
	int64_t all = (int64_t)atomic_load(&irq_adds);
	for (unsigned c = 0; c < kpcpu.nunits; c++) {
		all += thread_adds[c];
		KEXPECT_EQ(*per_cpu_ptr(counter, c),
		           thread_adds[c] +
		                   (int64_t)atomic_load(&irq_adds_on[c]));
	}
	KEXPECT_EQ(percpu_counter_sum(counter), all);
	KEXPECT(nw > 0);
	pcpu_check(&kpcpu);
	/* Freed and made again: zeroed again, wherever they land. */
	for (unsigned i = 0; i < NALLOC; i++)
		free_percpu(h[i]);
	pcpu_check(&kpcpu);
	KEXPECT_EQ(alloc_all(), 0);
	for (unsigned i = 0; i < NALLOC; i++)
		free_percpu(h[i]);
	free_percpu(counter);
	pcpu_check(&kpcpu);
}

/* Whole units until the limit refuses one; how many were had. */
static unsigned fill_to_limit(void)
{
	static void *unit[PCPU_MAX_CHUNKS + 1];
	unsigned n = 0;
	while (n <= PCPU_MAX_CHUNKS && (unit[n] = __alloc_percpu(8192, 0)))
		n++;
	pcpu_check(&kpcpu);
	for (unsigned i = 0; i < n; i++)
		free_percpu(unit[i]);
	return n;
}

/* The spare chunk pcpu_free keeps when the last allocation leaves goes
 * back at a reclaim: the shrinkers' (shrink_all, kheap's "pcpu"
 * shrinker) and heap_release_all's (pcpu_trim), with the frame pool
 * back where it was. Before rv99 it stayed for good: nchunks was still
 * 1 after both. A few ms of guest time. */
KTEST(percpu_alloc, the_spare_chunk_goes_back_at_a_reclaim)
{
	struct pcpu_stats s;
	heap_settle();
	pcpu_stats(&kpcpu, &s);
	KASSERT(s.nlive == 0); /* nothing else in the kernel holds one */
	size_t frames0 = frames_free_count();
	for (unsigned round = 0; round < 2; round++) {
		int64_t *h = alloc_percpu(int64_t);
		KASSERT(h);
		free_percpu(h);
		pcpu_stats(&kpcpu, &s);
		KEXPECT_EQ(s.nchunks, 1); /* the spare */
		if (round == 0)
			KEXPECT(shrink_all() >= 1);
		else
			heap_release_all();
		pcpu_stats(&kpcpu, &s);
		KEXPECT_EQ(s.nchunks, 0);
		heap_settle();
		KEXPECT_EQ(frames_free_count(), frames0);
	}
	pcpu_check(&kpcpu);
}

#if KTEST_HOOKS
KTEST(percpu_alloc, the_limit_gives_null_and_the_pool_comes_back)
{
	struct pcpu_stats s0, s;
	capture_start();
	unsigned first = fill_to_limit();
	capture_stop();
	KEXPECT(seen_has("pcpu: allocation of 8192 bytes refused: all 64 "
	                 "chunks (PCPU_MAX_CHUNKS) are full"));
	heap_settle(); /* the spare chunk too goes back (pcpu_trim) */
	pcpu_stats(&kpcpu, &s0);
	size_t frames0 = frames_free_count();
	capture_start();
	unsigned second = fill_to_limit();
	capture_stop();
	heap_settle();
	pcpu_stats(&kpcpu, &s);
	KEXPECT(first > 0 && first <= PCPU_MAX_CHUNKS);
	KEXPECT_EQ(second, first);
	KEXPECT_EQ(s.nchunks, s0.nchunks);
	KEXPECT_EQ(s.nlive, s0.nlive);
	KEXPECT_EQ(frames_free_count(), frames0);
	KEXPECT_EQ(capture_run_line("meminfo"), SHELL_OK);
	KEXPECT(seen_has("percpu: "));
	KEXPECT(seen_has("units of 8192 bytes"));
}

KTEST(percpu_alloc, bad_requests_and_a_failing_heap_give_null)
{
	capture_start();
	void *zero = __alloc_percpu(0, 0);
	void *big = __alloc_percpu(8193, 0);
	void *odd = __alloc_percpu(8, 24);
	void *wide = __alloc_percpu(8, 8192);
	capture_stop();
	KEXPECT(!zero && !big && !odd && !wide);
	KEXPECT(seen_has("pcpu: allocation of 0 bytes aligned to 0 refused: "
	                 "size 0"));
	KEXPECT(seen_has("a size above PCPU_UNIT_BYTES"));
	KEXPECT(seen_has("an alignment not a power of two"));
	KEXPECT(seen_has("an alignment above a page"));
	/* A whole unit takes a chunk of its own: the spare, then a new one,
	 * whose struct (1st) or memory (2nd) the heap refuses. */
	void *spare = __alloc_percpu(8192, 0);
	KASSERT(spare);
	for (uint32_t nth = 1; nth <= 2; nth++) {
		struct pcpu_stats s0, s;
		pcpu_stats(&kpcpu, &s0);
		heap_threads_stop(); /* nothing else takes the failure */
		struct spanheap_fail_attr a = {.interval = nth,
		                               .probability =
		                                       SPANHEAP_FAIL_PROB_ALL,
		                               .times = 1};
		KASSERT(spanheap_fail_arm(&kspanheap, &a));
		void *p = __alloc_percpu(8192, 0);
		spanheap_fail_disarm(&kspanheap);
		KEXPECT(heap_threads_start());
		pcpu_stats(&kpcpu, &s);
		KEXPECT(p == NULL);
		KEXPECT_EQ(s.nchunks, s0.nchunks);
		KEXPECT_EQ(s.nlive, s0.nlive);
		free_percpu(p);
	}
	free_percpu(spare);
	pcpu_check(&kpcpu);
}
#endif

#ifdef KTEST_FAIL_DEMO
/* Each prints the pointer first ("kfree of"), for the harness. */
KTEST(demo, free_percpu_of_a_kmalloc_object)
{
	void *p = kmalloc(64, 0);
	ktest_diag("kfree of %p", p);
	free_percpu(p);
}

KTEST(demo, free_percpu_twice)
{
	void *p = __alloc_percpu(64, 0);
	ktest_diag("kfree of %p", p);
	free_percpu(p);
	free_percpu(p);
}

KTEST(demo, free_percpu_of_an_interior_pointer)
{
	uint8_t *p = __alloc_percpu(64, 0);
	ktest_diag("kfree of %p", (void *)(p + 16));
	free_percpu(p + 16);
}
#endif

/*
 * In-kernel cost figures, printed as KTAP diagnostics (benchmarks, not
 * pass/fail): an uncontended lock_irqsave+unlock, a context switch, a
 * TLB shootdown round trip, release-all, a partly scavenged run's
 * allocation, and kmalloc+kfree of 16 bytes
 * (on one CPU, and freed by another) with the pin it costs. Under `make
 * bench-kernel` QEMU runs with -icount shift=0, so rdtsc counts guest
 * instructions and the figures are instructions per operation; in a normal run
 * they are TSC ticks.
 *
 * KTEST_EXPLICIT: they run only when the selection names the suite
 * (ktest=bench.*, as tools/bench-kernel does), not under make test's "*",
 * whose counts they only swelled: they assert what they must to measure
 * (no NULL from kmalloc, release-all released the pages), not a result.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/heap.h"
#include "kernel/heap_copy.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "kernel/tlb.h"
#include "mm/mm.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/smp_util.h"

#define BENCH_VA 0xfffffe8080000000ull

static struct spinlock bench_lock = SPINLOCK_INIT("bench", LOCK_RANK_TEST_LOW);

KTEST_EXPLICIT(bench, lock_irqsave_unlock)
{
	enum { N = 20000 };
	uint64_t start = rdtsc();
	for (int i = 0; i < N; i++) {
		unsigned long irq = spin_lock_irqsave(&bench_lock);
		spin_unlock_irqrestore(&bench_lock, irq);
	}
	uint64_t per = (rdtsc() - start) / N;
	ktest_diag("bench lock_irqsave+unlock_irqrestore: %lu tsc/op", per);
}

static _Atomic bool pong_stop;

static void ponger(void *arg)
{
	while (!atomic_load(&pong_stop))
		thread_yield();
}

KTEST_EXPLICIT(bench, context_switch)
{
	enum { N = 5000 };
	atomic_store(&pong_stop, false);
	struct thread_handle t =
	        thread_create("ponger", ponger, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(t));
	thread_yield(); /* let it start */
	uint64_t start = rdtsc();
	for (int i = 0; i < N; i++)
		thread_yield(); /* two switches: to the ponger and back */
	uint64_t per = (rdtsc() - start) / (2 * N);
	atomic_store(&pong_stop, true);
	thread_join(t);
	ktest_diag("bench context switch (yield to yield): %lu tsc/switch",
	           per);
}

KTEST_EXPLICIT(bench, tlb_shootdown_round_trip)
{
	unsigned others = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		others += i != this_cpu()->id && atomic_load(&cpus[i].online);
	if (others == 0)
		KTEST_SKIP("needs two CPUs");
	enum { N = 500 };
	uint64_t start = rdtsc();
	for (int i = 0; i < N; i++)
		tlb_shootdown(BENCH_VA, 1);
	uint64_t per = (rdtsc() - start) / N;
	ktest_diag("bench tlb shootdown, 1 page, %u other CPUs: %lu tsc/op",
	           others, per);
}

/* A page heap of its own for a bench (1 GiB of arena). */
static bool bench_page_heap(struct mheap *h)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 1ull << 30;
	return mheap_init(h, &cfg);
}

KTEST_EXPLICIT(bench, scavenge_throughput)
{
	/* mheap_release_all of 16 MiB of free backed pages: unmapping,
	 * shootdown, frames back to the pool. */
	enum { N = 4096 };
	static struct mheap h;
	KASSERT(bench_page_heap(&h));
	uint8_t *p = mheap_alloc_pages(&h, N, 0);
	KASSERT(p != NULL);
	for (size_t i = 0; i < N; i++)
		p[i * MM_PAGE_SIZE] = 1;
	mheap_free_pages(&h, p, N);
	uint64_t start = rdtsc();
	size_t released = mheap_release_all(&h);
	uint64_t ticks = rdtsc() - start;
	KASSERT(released >= N);
	uint64_t per = ticks / released;
	uint64_t per_ms = time_tsc_per_ms();
	ktest_diag("bench scavenge (release-all, %zu pages): %lu tsc/page, "
	           "%lu pages/s at the calibrated TSC rate",
	           released, per, per ? per_ms * 1000 / per : 0);
}

/* A 512-page run of backed pages but one, scavenged, allocated: the
 * port makes that page usable (mm_port_used: a page-table lookup per
 * page of the range it is given, twice). Until review rv76 it was given
 * the whole run (golang/go#36603). One allocation: under -icount its
 * count is exact. */
KTEST_EXPLICIT(bench, alloc_partly_scavenged_run)
{
	enum { N = 512, SCAV = 300 };
	static struct mheap h;
	KASSERT(bench_page_heap(&h));
	uint8_t *p = mheap_alloc_pages(&h, N, 0);
	void *wall = mheap_alloc_pages(&h, 1, 0);
	KASSERT(p != NULL && wall == p + N * MM_PAGE_SIZE);
	for (size_t i = 0; i < N; i++)
		p[i * MM_PAGE_SIZE] = 1;
	mheap_free_pages(&h, p + SCAV * MM_PAGE_SIZE, 1);
	mheap_release_all(&h);
	mheap_free_pages(&h, p, SCAV);
	mheap_free_pages(&h, p + (SCAV + 1) * MM_PAGE_SIZE, N - SCAV - 1);
	uint64_t start = rdtsc();
	uint8_t *q = mheap_alloc_pages(&h, N, 0);
	uint64_t ticks = rdtsc() - start;
	KASSERT(q == p);
	ktest_diag("bench alloc of 512 pages, 1 scavenged: %lu tsc", ticks);
}

/* ---- kmalloc ------------------------------------------------------------ */

/* ticks minus the cost of a bare loop of n rounds (never below 1). */
static uint64_t minus_loop(uint64_t ticks, uint64_t n)
{
	uint64_t start = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		__asm__ volatile("" ::: "memory");
	uint64_t loop = rdtsc() - start;
	return ticks > loop ? ticks - loop : 1;
}

/* The pin that guards the per-CPU caches on the slow paths (pushf, cli,
 * the CPU index; then sti if interrupts were on). The fast paths pin
 * nothing: a restartable sequence reads the CPU index alone (mm/rseq.h),
 * so a kmalloc+kfree pair from the magazine saves this twice. */
KTEST_EXPLICIT(bench, kmalloc_pin_unpin)
{
	enum { N = 20000 };
	uint64_t start = rdtsc();
	for (unsigned i = 0; i < N; i++) {
		mm_port_unpin(mm_port_pin());
		__asm__ volatile("" ::: "memory");
	}
	uint64_t ticks = minus_loop(rdtsc() - start, N);
	ktest_diag("bench kmalloc pin+unpin: %lu tsc/pair", ticks / N);
}

/* kmalloc(16) then kfree on the same CPU: the fast paths, with the slow
 * path (refill, fold) amortised over each span. The size is a constant,
 * as sizeof(struct ...) is: kmalloc's class folds and its pop is inline
 * (kernel/heap.h). */
KTEST_EXPLICIT(bench, kmalloc_kfree_16_local)
{
	enum { N = 20000, WARM = 2000 };
	for (unsigned i = 0; i < WARM; i++)
		kfree(kmalloc(16, 0));
	uint64_t start = rdtsc();
	for (unsigned i = 0; i < N; i++) {
		void *p = kmalloc(16, 0);
		kfree(p);
		__asm__ volatile("" ::"r"(p) : "memory");
	}
	uint64_t ticks = minus_loop(rdtsc() - start, N);
	ktest_diag("bench kmalloc+kfree 16 B, same CPU: %lu tsc/pair",
	           ticks / N);
	heap_settle(); /* no work left for the scavenger meanwhile */
}

/* TSC ticks (instructions under -icount shift=0) of one kmem_cache_alloc
 * and kmem_cache_free pair of c on this CPU, warmed first, the loop's own
 * taken off. */
static uint64_t cache_pair_ticks(struct objcache *c)
{
	enum { N = 20000, WARM = 2000 };
	for (unsigned i = 0; i < WARM; i++)
		kmem_cache_free(c, kmem_cache_alloc(c, 0));
	uint64_t start = rdtsc();
	for (unsigned i = 0; i < N; i++) {
		void *p = kmem_cache_alloc(c, 0);
		kmem_cache_free(c, p);
		__asm__ volatile("" ::"r"(p) : "memory");
	}
	return minus_loop(rdtsc() - start, N) / N;
}

/* kmem_cache_alloc and kmem_cache_free of a 16-byte cache on the same
 * CPU: kmalloc's paths (spanheap_alloc, as the size is the cache's, not a
 * constant here) and the cache's count on each, a pin. */
KTEST_EXPLICIT(bench, kmem_cache_16_local)
{
	struct objcache *c = kmem_cache_create("bench-16", 16, 0);
	KASSERT(c);
	ktest_diag("bench kmem_cache alloc+free 16 B, same CPU: %lu tsc/pair",
	           cache_pair_ticks(c));
	KEXPECT(kmem_cache_destroy(c));
	heap_settle();
}

static void bench_ctor(void *p)
{
	*(uint64_t *)p = 0xc7012c7012ull;
}

/* The same with a constructor: a cache with slabs of its own
 * (mm/objcache_own.c), whose every call goes out of line to its own
 * paths. */
KTEST_EXPLICIT(bench, kmem_cache_ctor_16_local)
{
	struct objcache *c =
	        kmem_cache_create_flags("bench-ctor-16", 16, 0, 0, bench_ctor);
	KASSERT(c);
	ktest_diag("bench kmem_cache ctor alloc+free 16 B, same CPU: %lu "
	           "tsc/pair",
	           cache_pair_ticks(c));
	KEXPECT(kmem_cache_destroy(c));
	heap_settle();
}

/* Guest instructions (TSC ticks) per object of batch-object rounds of
 * kmalloc_bulk(16) and kfree_bulk (c NULL), or of c's bulk calls, on this
 * CPU, warmed first, the loop's own taken off. */
static void bulk_round(struct objcache *c, unsigned batch, void **v)
{
	if (c) {
		KASSERT(kmem_cache_alloc_bulk(c, 0, batch, v) == batch);
		kmem_cache_free_bulk(c, batch, v);
	} else {
		KASSERT(kmalloc_bulk(16, 0, batch, v) == batch);
		kfree_bulk(batch, v);
	}
}

static uint64_t bulk_ticks(struct objcache *c, unsigned batch)
{
	enum { N = 20480, WARM = 2048 };
	static void *v[64];
	for (unsigned i = 0; i < WARM / batch; i++)
		bulk_round(c, batch, v);
	uint64_t start = rdtsc();
	for (unsigned i = 0; i < N / batch; i++)
		bulk_round(c, batch, v);
	return minus_loop(rdtsc() - start, N / batch) / N;
}

/* The bulk calls (mm/spanheap_bulk.c, mm/objcache_bulk.c) against the
 * pairs above: a batch of 16 and of 64 objects, per object. */
KTEST_EXPLICIT(bench, bulk_16_local)
{
	struct objcache *m = kmem_cache_create("bench-bulk-16", 16, 0);
	struct objcache *o = kmem_cache_create_flags("bench-bulk-ctor-16", 16,
	                                             0, 0, bench_ctor);
	KASSERT(m && o);
	for (unsigned batch = 16; batch <= 64; batch *= 4) {
		ktest_diag("bench kmalloc_bulk+kfree_bulk 16 B, batch %u: %lu "
		           "tsc/object",
		           batch, bulk_ticks(NULL, batch));
		ktest_diag("bench kmem_cache bulk alloc+free 16 B, batch %u: "
		           "%lu tsc/object",
		           batch, bulk_ticks(m, batch));
		ktest_diag("bench kmem_cache ctor bulk alloc+free 16 B, batch "
		           "%u: %lu tsc/object",
		           batch, bulk_ticks(o, batch));
	}
	KEXPECT(kmem_cache_destroy(m) && kmem_cache_destroy(o));
	heap_settle();
}

/* The same with the size known only at run time (a computed length):
 * kmalloc calls spanheap_alloc_sized (its flags, 0, checked at compile
 * time), which looks the class up. */
KTEST_EXPLICIT(bench, kmalloc_kfree_16_local_runtime_size)
{
	enum { N = 20000, WARM = 2000 };
	size_t size = 16;
	__asm__ volatile("" : "+r"(size)); /* not a constant any more */
	for (unsigned i = 0; i < WARM; i++)
		kfree(kmalloc(size, 0));
	uint64_t start = rdtsc();
	for (unsigned i = 0; i < N; i++) {
		void *p = kmalloc(size, 0);
		kfree(p);
		__asm__ volatile("" ::"r"(p) : "memory");
	}
	uint64_t ticks = minus_loop(rdtsc() - start, N);
	ktest_diag("bench kmalloc+kfree 16 B, same CPU, size at run time: "
	           "%lu tsc/pair",
	           ticks / N);
	heap_settle();
}

/*
 * Cross-CPU: this CPU allocates a batch, another frees it (pending bits),
 * then a sweep cycle folds the frees; each phase runs while the other
 * CPU sleeps (under -icount rdtsc counts every CPU's instructions). A
 * batch is just under 1 MiB of 16-byte objects, the sweeper's default
 * trigger, so the cycle is the test's own (timed), not the sweeper
 * thread's. Round 0 (growing the heap, making the spans) is not timed.
 * The timed cycle's flip makes every CPU's cache stale, so each idle CPU
 * flushes its own at its next tick (spanheap_cpu_idle), counted too: an
 * almost empty cache's flush a round, about 0.1% of the figure.
 */
#define XFREE_N      64512
#define XFREE_ROUNDS 4

static void **xfree_objs;
static struct semaphore xfree_go, xfree_done;
static uint64_t xfree_ticks; /* the freeing thread's */

static void xfree_thread(void *arg)
{
	for (unsigned r = 0; r <= XFREE_ROUNDS; r++) {
		if (!sema_acquire(&xfree_go))
			return;
		uint64_t start = rdtsc();
		for (unsigned i = 0; i < XFREE_N; i++)
			kfree(xfree_objs[i]);
		if (r > 0)
			xfree_ticks += rdtsc() - start;
		sema_release(&xfree_done);
	}
}

KTEST_EXPLICIT(bench, kmalloc_kfree_16_cross_cpu)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	xfree_objs = kmalloc(XFREE_N * sizeof(void *), 0);
	KASSERT(xfree_objs != NULL);
	sema_init(&xfree_go, "xfree_go", 0, 1);
	sema_init(&xfree_done, "xfree_done", 0, 1);
	xfree_ticks = 0;
	struct thread_handle t =
	        thread_create("xfree", xfree_thread, NULL, other);
	KASSERT(thread_handle_ok(t));
	uint64_t alloc = 0, sweep = 0;
	size_t nulls = 0;
	for (unsigned r = 0; r <= XFREE_ROUNDS; r++) {
		uint64_t start = rdtsc();
		for (unsigned i = 0; i < XFREE_N; i++)
			xfree_objs[i] = kmalloc(16, 0);
		if (r > 0)
			alloc += rdtsc() - start;
		for (unsigned i = 0; i < XFREE_N; i++)
			nulls += xfree_objs[i] == NULL;
		sema_release(&xfree_go);
		KASSERT(sema_acquire(&xfree_done));
		start = rdtsc();
		spanheap_sweep_cycle(&kspanheap);
		if (r > 0)
			sweep += rdtsc() - start;
	}
	thread_join(t);
	kfree(xfree_objs);
	uint64_t n = (uint64_t)XFREE_N * XFREE_ROUNDS;
	uint64_t a = minus_loop(alloc, n) / n;
	uint64_t f = minus_loop(xfree_ticks, n) / n, s = sweep / n;
	ktest_diag("bench kmalloc+kfree 16 B, freed by another CPU: %lu "
	           "tsc/pair (kmalloc %lu, remote kfree %lu, sweep %lu per "
	           "object, a cycle per %u objects)",
	           a + f + s, a, f, s, XFREE_N);
	KEXPECT_EQ(nulls, 0);
	heap_settle();
}

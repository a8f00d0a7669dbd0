/*
 * The shrinker registry's contract (kernel/shrinker.h): atomic callers
 * never run a shrinker; unregistering waits for a scan running on
 * another CPU; a shrinker whose own allocation fails does not reclaim
 * again; and several CPUs allocating under pressure beside a shrinker
 * that other threads register and unregister keep every object whole.
 */
#include <stdatomic.h>

#include "kernel/dma.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/shrinker.h"
#include "kernel/thread.h"
#include "tests/kernel/reclaim_util.h"
#include "tests/kernel/smp_util.h"

static struct test_cache sc; /* emptied by every test: heap_leaks */

/* ---- Atomic callers ------------------------------------------------------ */

static _Atomic bool tick_claimed, tick_done;
static unsigned tick_cpu;
static void *tick_obj, *tick_dma;
static size_t tick_shrunk;

/* In a timer interrupt: a 64 KiB KM_ATOMIC kmalloc, a dma_alloc and
 * shrink_all, with the pool empty. */
static void atomic_tick(void)
{
	if (this_cpu()->id != tick_cpu || atomic_load(&tick_done) ||
	    atomic_exchange(&tick_claimed, true))
		return;
	paddr_t phys;
	tick_obj = kmalloc(64 << 10, KM_ATOMIC);
	tick_dma = dma_alloc(64 << 10, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	tick_shrunk = shrink_all();
	atomic_store(&tick_done, true);
}

/* The end of a test over the cache sc with the pool drained to head:
 * the cache emptied (no pattern found bad), the pool refilled, the
 * heap's threads running again and its checker passed. */
static void cache_test_end(paddr_t head)
{
	test_cache_empty(&sc);
	KEXPECT_EQ(sc.bad, 0);
	frames_refill(head);
	heap_settle();
	KEXPECT(heap_threads_start());
	spanheap_check(&kspanheap);
}

/*
 * The cache holds the pool, its shrinker registered. A timer interrupt's
 * KM_ATOMIC kmalloc and dma_alloc, and a dma_alloc under a spinlock, get
 * NULL and scan nothing (the skipped count says they asked); a thread's
 * kmalloc then scans.
 */
KTEST(shrinker, atomic_callers_never_run_shrinkers)
{
	heap_threads_stop();
	heap_settle();
	paddr_t head = frames_drain(RECLAIM_LEFT);
	test_cache_init(&sc, 4096);
	size_t got = test_cache_fill(&sc, 1 << 16);
	shrinker_register(&sc.s);
	struct shrink_stats st0, st;
	shrink_stats(&st0);

	tick_cpu = this_cpu()->id;
	atomic_store(&tick_claimed, false);
	atomic_store(&tick_done, false);
	sched_tick_hook = atomic_tick;
	while (!atomic_load(&tick_done))
		thread_sleep_ns(1000000);
	sched_tick_hook = NULL;
	/* A lock ranked below the DMA table's and the pool's. */
	static struct spinlock low;
	spin_init(&low, "shrinker_test_low", LOCK_RANK_TEST_IRQ);
	unsigned long irq = spin_lock_irqsave(&low);
	paddr_t phys;
	void *locked_dma =
	        dma_alloc(64 << 10, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	spin_unlock_irqrestore(&low, irq);
	uint64_t scans_atomic = sc.s.scans;
	shrink_stats(&st);
	void *p = kmalloc(64 << 10, 0);
	ktest_diag("cache of %zu objects: in an interrupt kmalloc %s, "
	           "dma_alloc %s; under a lock dma_alloc %s; %lu scans, %lu "
	           "skipped; then a thread's kmalloc %s, %lu scans",
	           got, tick_obj ? "ok" : "NULL", tick_dma ? "ok" : "NULL",
	           locked_dma ? "ok" : "NULL", (unsigned long)scans_atomic,
	           (unsigned long)(st.skipped - st0.skipped), p ? "ok" : "NULL",
	           (unsigned long)sc.s.scans);
	KEXPECT(tick_obj == NULL);
	KEXPECT(tick_dma == NULL);
	KEXPECT(locked_dma == NULL);
	KEXPECT_EQ(tick_shrunk, 0);
	KEXPECT_EQ(scans_atomic, 0);
	KEXPECT(st.skipped >= st0.skipped + 3);
	KEXPECT(p != NULL);
	KEXPECT(sc.s.scans > 0);
	shrinker_unregister(&sc.s);
	kfree(p);
	kfree(tick_obj);
	if (tick_dma)
		dma_free(tick_dma, 64 << 10);
	if (locked_dma)
		dma_free(locked_dma, 64 << 10);
	tick_obj = tick_dma = NULL;
	cache_test_end(head);
}

/* ---- Unregister during a scan -------------------------------------------- */

static _Atomic int slow_in_scan, slow_release, slow_scan_done, unreg_done;
static _Atomic int unreg_saw_scan_done;

static size_t slow_count(struct shrinker *s)
{
	return 1;
}

/* Holds its scan until the test releases it. */
static size_t slow_scan(struct shrinker *s, size_t nr)
{
	atomic_store(&slow_in_scan, 1);
	while (!atomic_load(&slow_release))
		thread_sleep_ns(1000000);
	atomic_store(&slow_scan_done, 1);
	return 0;
}

static struct shrinker slow = {
        .name = "slow", .count = slow_count, .scan = slow_scan};

static void scanner_main(void *arg)
{
	(void)arg;
	shrink_all();
}

static void unregister_main(void *arg)
{
	shrinker_unregister(arg);
	atomic_store(&unreg_saw_scan_done, atomic_load(&slow_scan_done));
	atomic_store(&unreg_done, 1);
}

/*
 * A scan of the shrinker runs on one CPU (held inside its callback);
 * another CPU unregisters it: the unregister does not return while the
 * scan runs (checked while the scan is held, for as long as 20 ticks of
 * sleep: a lower bound on waiting, never an upper one on time), and does
 * once the scan ended, which it saw end.
 */
KTEST(shrinker, unregister_waits_for_a_scan_on_another_cpu)
{
	unsigned a = other_online_cpu();
	if (a == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	atomic_store(&slow_in_scan, 0);
	atomic_store(&slow_release, 0);
	atomic_store(&slow_scan_done, 0);
	atomic_store(&unreg_done, 0);
	atomic_store(&unreg_saw_scan_done, 0);
	shrinker_register(&slow);
	struct thread_handle ts =
	        thread_create("shr_scan", scanner_main, NULL, a);
	KASSERT(thread_handle_ok(ts));
	while (!atomic_load(&slow_in_scan))
		thread_sleep_ns(1000000);
	struct thread_handle tu = thread_create("shr_unreg", unregister_main,
	                                        &slow, this_cpu()->id);
	KASSERT(thread_handle_ok(tu));
	for (int i = 0; i < 20; i++)
		thread_sleep_ns(1000000);
	int early = atomic_load(&unreg_done);
	atomic_store(&slow_release, 1);
	thread_join(tu);
	thread_join(ts);
	ktest_diag("unregister returned while the scan ran: %s; saw it end: "
	           "%s",
	           early ? "yes" : "no",
	           atomic_load(&unreg_saw_scan_done) ? "yes" : "no");
	KEXPECT_EQ(early, 0);
	KEXPECT_EQ(atomic_load(&unreg_saw_scan_done), 1);
	KEXPECT(!slow.registered);
	/* Gone: a reclaim does not scan it. */
	uint64_t scans = slow.scans;
	shrink_all();
	KEXPECT_EQ(slow.scans, scans);
}

/* ---- A shrinker that allocates ------------------------------------------- */

static _Atomic int alloc_depth, alloc_max_depth, alloc_nulls;

/* Allocates 1 MiB (which fails under the test's pressure), then frees
 * what the cache's scan frees. */
static size_t alloc_scan(struct shrinker *s, size_t nr)
{
	int d = atomic_fetch_add(&alloc_depth, 1) + 1;
	if (d > atomic_load(&alloc_max_depth))
		atomic_store(&alloc_max_depth, d);
	void *p = kmalloc(1 << 20, 0);
	if (!p)
		atomic_fetch_add(&alloc_nulls, 1);
	kfree(p);
	size_t n = test_cache_scan(s, nr);
	atomic_fetch_sub(&alloc_depth, 1);
	return n;
}

/*
 * The cache's shrinker allocates 1 MiB in its scan, with the pool held
 * by the cache: that allocation fails without reclaiming again (depth
 * 1, the nested reclaim counted as skipped), and the outer allocation
 * still gets its memory from what the scans freed.
 */
KTEST(shrinker, a_shrinker_that_allocates_does_not_recurse)
{
	heap_threads_stop();
	heap_settle();
	paddr_t head = frames_drain(RECLAIM_LEFT);
	test_cache_init(&sc, 4096);
	sc.s.scan = alloc_scan;
	sc.s.batch = 1024;
	size_t got = test_cache_fill(&sc, 1 << 16);
	atomic_store(&alloc_depth, 0);
	atomic_store(&alloc_max_depth, 0);
	atomic_store(&alloc_nulls, 0);
	shrinker_register(&sc.s);
	struct shrink_stats st0, st;
	shrink_stats(&st0);
	void *p = kmalloc(2 << 20, 0);
	shrink_stats(&st);
	shrinker_unregister(&sc.s);
	ktest_diag("cache of %zu: kmalloc of 2 MiB %s; %lu scans, deepest "
	           "%d, %d NULLs inside, %lu reclaims skipped",
	           got, p ? "ok" : "NULL", (unsigned long)sc.s.scans,
	           atomic_load(&alloc_max_depth), atomic_load(&alloc_nulls),
	           (unsigned long)(st.skipped - st0.skipped));
	KEXPECT(p != NULL);
	KEXPECT(sc.s.scans > 0);
	KEXPECT_EQ(atomic_load(&alloc_max_depth), 1);
	KEXPECT(st.skipped > st0.skipped);
	kfree(p);
	cache_test_end(head);
}

/* ---- Several CPUs under pressure ----------------------------------------- */

/* At most ST_WORKERS workers (the first online CPUs): under smp8 eight
 * took 9 s of a suite run, each refusal stopping eight CPUs. */
enum {
	ST_ROUNDS = 2,
	ST_CAP = 1024,
	ST_CACHE_EVERY = 4,
	ST_LEFT = 2048,
	ST_WORKERS = 4
};

static const size_t st_sizes[] = {64, 1024, 4096, 64 << 10};
#define ST_NSIZES (sizeof st_sizes / sizeof st_sizes[0])

struct st_worker {
	unsigned id;
	size_t objs, nulls, bad, cached;
	uintptr_t **held;
};

static struct test_cache sc2; /* the toggled shrinker's */
static _Atomic bool st_done;

static uintptr_t st_pattern(const struct st_worker *w, size_t i, const void *p)
{
	return (uintptr_t)p ^ ((uintptr_t)w->id << 56) ^ i;
}

/* One round: objects of one size until NULL or ST_CAP, every
 * ST_CACHE_EVERY-th with a 512-byte object for the shared cache; each
 * own object's first and last words checked and freed. */
static void st_round(struct st_worker *w, size_t size)
{
	size_t n = 0, last = size / sizeof(uintptr_t) - 1;
	uintptr_t *p;
	while (n < ST_CAP && (p = kmalloc(size, 0)) != NULL) {
		p[0] = p[last] = st_pattern(w, n, p);
		w->held[n++] = p;
		void **c;
		if (n % ST_CACHE_EVERY == 0 && (c = kmalloc(512, 0)) != NULL) {
			test_cache_push(&sc, c);
			w->cached++;
		}
	}
	w->nulls += n < ST_CAP;
	w->objs += n;
	for (size_t i = 0; i < n; i++) {
		p = w->held[i];
		uintptr_t want = st_pattern(w, i, p);
		w->bad += p[0] != want || p[last] != want;
		kfree(p);
		w->held[i] = NULL;
	}
}

/* Toggles of sc2's shrinker done (st_toggle_main). */
static _Atomic size_t st_toggles;

static void st_worker_main(void *arg)
{
	struct st_worker *w = arg;
	for (unsigned r = 0; r < ST_ROUNDS; r++) {
		/* The last round waits for a whole toggle, so that one
		 * overlaps the rounds however the CPUs are scheduled (a
		 * toggle thread that hangs hangs the test). */
		while (r == ST_ROUNDS - 1 && atomic_load(&st_toggles) == 0)
			thread_sleep_ns(1000000);
		/* From 4 KiB: CPU 0 alone (smp1) still runs out. */
		st_round(w, st_sizes[(w->id + r + 2) % ST_NSIZES]);
	}
}

/* Registers and unregisters sc2's shrinker until the workers are done. */
static void st_toggle_main(void *arg)
{
	while (!atomic_load(&st_done)) {
		shrinker_register(&sc2.s);
		thread_sleep_ns(500000);
		shrinker_unregister(&sc2.s);
		atomic_fetch_add(&st_toggles, 1);
	}
}

/*
 * A worker on each of the first four online CPUs allocates under
 * pressure (8 MiB left),
 * round after round of one size each, and feeds a shared cache whose
 * shrinker gives it back when allocations fail; meanwhile a thread
 * registers and unregisters a second cache's shrinker. No pattern
 * breaks, the shrinkers ran, and the heap and the pool check clean.
 */
KTEST(shrinker, cpus_allocate_under_pressure_beside_shrinkers)
{
	static struct st_worker w[MAX_CPUS];
	test_cache_init(&sc, 512);
	test_cache_init(&sc2, 512);
	sc2.s.name = "test_cache2";
	KEXPECT_EQ(test_cache_fill(&sc2, 256), 256);
	unsigned nworkers = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		w[i] = (struct st_worker){.id = i};
		if (atomic_load(&cpus[i].online) && nworkers++ < ST_WORKERS)
			KASSERT(w[i].held = kmalloc(ST_CAP * sizeof(void *),
			                            KM_ZERO));
	}
	shrinker_register(&sc.s);
	atomic_store(&st_done, false);
	atomic_store(&st_toggles, 0);
	/* Before the pool is drained: the workers wait for its toggles. */
	struct thread_handle tt = thread_create("shr_toggle", st_toggle_main,
	                                        NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(tt));
	paddr_t head = frames_drain(ST_LEFT);
	struct thread_handle t[MAX_CPUS] = {0};
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (w[i].held)
			t[i] = thread_create("shr_storm", st_worker_main, &w[i],
			                     i);
	size_t objs = 0, nulls = 0, bad = 0, cached = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (!thread_handle_ok(t[i]))
			continue;
		thread_join(t[i]);
		objs += w[i].objs;
		nulls += w[i].nulls;
		bad += w[i].bad;
		cached += w[i].cached;
	}
	atomic_store(&st_done, true);
	thread_join(tt);
	shrinker_unregister(&sc.s);
	size_t left = test_cache_empty(&sc) + test_cache_empty(&sc2);
	frames_refill(head);
	ktest_diag("%zu objects, %zu rounds ended by NULL, %zu cached, %zu "
	           "left in the caches; shrinker scans %lu (freed %lu); "
	           "%zu toggles of the second",
	           objs, nulls, cached, left, (unsigned long)sc.s.scans,
	           (unsigned long)sc.s.freed, atomic_load(&st_toggles));
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(sc.bad + sc2.bad, 0);
	KEXPECT(objs > 0);
	KEXPECT(sc.s.scans > 0);
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		kfree(w[i].held);
		w[i].held = NULL;
	}
	heap_settle();
	spanheap_check(&kspanheap);
	frames_check();
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): a shrinker's
 * scan that unregisters its shrinker would wait for itself; the
 * unregister panics naming it instead. */
static size_t one_object(struct shrinker *s)
{
	return 1;
}

static size_t unregistering_scan(struct shrinker *s, size_t nr)
{
	shrinker_unregister(s);
	return 0;
}

KTEST(demo, shrinker_unregistered_from_its_callback)
{
	static struct shrinker self = {.name = "demo_self",
	                               .count = one_object,
	                               .scan = unregistering_scan};
	shrinker_register(&self);
	shrink_all();
}
#endif

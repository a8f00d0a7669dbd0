/*
 * Reserved-element pools in the kernel (mm/mempool.c over kmalloc), with
 * the lock checker on: once a thread runs on every CPU, the heap's
 * injection fails nine kmallocs in ten, and the threads and every CPU's
 * timer interrupt allocate from one pool of 8 reserved elements: the
 * handler and a thread holding elements with KM_ATOMIC (which may get
 * NULL), a thread holding none sleeping (which may not: it waits for the
 * others' frees). Elements cross CPUs through a hand-off array, each
 * holding a pattern of its address checked before its free. At the end
 * none is out, the reserve is full again and checks clean (the handlers
 * check it too, every 16th tick), the NULLs seen are the pool's count,
 * and the pool is destroyed; the heap checks clean. And a thread
 * asleep for an element is woken by a timer interrupt's free of one,
 * which it then gets. The storm runs again, a quarter as long, over a
 * constructor cache's pool (its elements left as the cache keeps them,
 * each free a scan of the reserve under its lock): the constructor's
 * word checked on every element handed out and left as it was.
 * A double free's panic is a demo (KTEST_FAIL_DEMO),
 * checked by the harness.
 */
#include <stdatomic.h>

#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/storm_util.h"

enum { SIZE = 160, MIN = 8, OPS = 3000, LIVE = 8, IRQ_MIN = 100 };
#define HANDOFF  16
#define IRQ_KEEP 2

static struct mempool pool;
static _Atomic uint64_t n_bad, n_nulls, n_sleeping_nulls, n_allocs;
static _Atomic uint64_t n_irq_allocs;
static _Atomic unsigned running, started;
static _Atomic bool armed;
/* The constructor cache's run: its cache (NULL: kmalloc's), the ops. */
static struct objcache *own;
static unsigned ops = OPS;
#define CTOR_WORD 0xc7057a7ec7057a7eull

static void ctor(void *p)
{
	*(uint64_t *)p = CTOR_WORD;
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t pattern(const void *p, size_t i)
{
	return ((uintptr_t)p + 8 * i) * 0x9e3779b97f4a7c15ull;
}

static void *take(unsigned flags)
{
	uint64_t *p = mempool_alloc(&pool, flags);
	if (!p) {
		atomic_fetch_add(&n_nulls, 1);
		if (!(flags & KM_ATOMIC))
			atomic_fetch_add(&n_sleeping_nulls, 1);
		return NULL;
	}
	if (own && p[0] != CTOR_WORD)
		atomic_fetch_add(&n_bad, 1);
	for (size_t i = own != NULL; i < SIZE / 8; i++)
		p[i] = pattern(p, i);
	return p;
}

static void give(void *obj)
{
	uint64_t *p = obj;
	for (size_t i = own != NULL; i < SIZE / 8; i++)
		if (p[i] != pattern(p, i)) {
			atomic_fetch_add(&n_bad, 1);
			break;
		}
	mempool_free(&pool, p);
}

static void *_Atomic handoff[HANDOFF];
/* Row c, IRQ_KEEP slots: CPU c's handler's (atomic for
 * cpu_storm_give_back; the handler alone uses its row meanwhile). */
static void *_Atomic irq_keep[MAX_CPUS * IRQ_KEEP];
static uint64_t irq_rnd[MAX_CPUS];
static _Atomic bool irq_on;
static _Atomic unsigned irq_inside;

static void hand_off(uint64_t *p, uint64_t r)
{
	uint64_t *old = atomic_exchange(&handoff[r % HANDOFF], p);
	if (old)
		give(old);
}

/* A CPU's timer interrupt: frees one of its elements (or hands it to
 * whichever CPU takes it next) and takes another, KM_ATOMIC. */
static void irq_tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	unsigned cpu = this_cpu()->id;
	if (atomic_load(&irq_on) && atomic_load(&armed)) {
		if (!irq_rnd[cpu])
			irq_rnd[cpu] = 0x2545f4914f6cdd1dull * (cpu + 1);
		uint64_t r = next_rand(&irq_rnd[cpu]);
		void *_Atomic *slot = &irq_keep[cpu * IRQ_KEEP + r % IRQ_KEEP];
		uint64_t *p = atomic_load(slot);
		if (p && (r >> 8) % 2)
			hand_off(p, r >> 16);
		else if (p)
			give(p);
		atomic_store(slot, p = take(KM_ATOMIC));
		atomic_fetch_add(&n_irq_allocs, p != NULL);
		if ((r >> 24) % 16 == 0)
			mempool_check(&pool);
	}
	atomic_fetch_sub(&irq_inside, 1);
}

/* Every worker waits for the others (their threads made, so that no
 * thread_create meets the injection); CPU 0's then arms it. */
static void wait_for_all(unsigned cpu)
{
	unsigned n = atomic_load(&running);
	atomic_fetch_add(&started, 1);
	while (atomic_load(&started) < n)
		thread_yield();
	if (cpu == 1) {
		struct spanheap_fail_attr a = {.interval = 1,
		                               .probability = 9000,
		                               .times = -1,
		                               .seed = 5};
		KEXPECT(spanheap_fail_arm(&kspanheap, &a));
		atomic_store(&armed, true);
	}
	while (!atomic_load(&armed))
		thread_yield();
}

static void worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	wait_for_all(cpu);
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (cpu + 3);
	uint64_t *live[LIVE] = {0};
	unsigned held = 0;
	for (unsigned i = 0; i < ops; i++) {
		uint64_t r = next_rand(&rnd);
		uint64_t **s = &live[r % LIVE];
		if (*s) {
			if ((r >> 8) % 4 == 0)
				hand_off(*s, r >> 16);
			else
				give(*s);
			*s = NULL;
			held--;
			continue;
		}
		/* Sleeping only with no element held (mempool.h). */
		*s = take(held ? KM_ATOMIC : 0);
		held += *s != NULL;
		atomic_fetch_add(&n_allocs, *s != NULL);
		if (i % 64 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < LIVE; k++)
		if (live[k])
			give(live[k]);
	atomic_fetch_sub(&running, 1);
}

/* The storm over kmalloc's objects, or (own set) a constructor cache's,
 * for n operations a thread. */
static void storm(unsigned n)
{
	ops = n;
	atomic_store(&n_bad, 0);
	atomic_store(&n_nulls, 0);
	atomic_store(&n_sleeping_nulls, 0);
	atomic_store(&n_allocs, 0);
	atomic_store(&n_irq_allocs, 0);
	KASSERT(own ? kmempool_init_cache(&pool, "ktest-pool", own, MIN)
	            : kmempool_init(&pool, "ktest-pool", MIN, SIZE));
	atomic_store(&started, 0);
	atomic_store(&armed, false);
	cpu_storm_run(CPU_STORM("kmempool", worker, irq_tick));
	spanheap_fail_disarm(&kspanheap);
	cpu_storm_give_back(handoff, HANDOFF, give);
	cpu_storm_give_back(irq_keep, MAX_CPUS * IRQ_KEEP, give);
	struct mempool_info in;
	mempool_info(&pool, &in);
	ktest_diag("%lu elements to threads, %lu to interrupt handlers; from "
	           "the reserve %lu, sleeps %lu, KM_ATOMIC NULLs %lu",
	           (unsigned long)atomic_load(&n_allocs),
	           (unsigned long)atomic_load(&n_irq_allocs),
	           (unsigned long)in.from_reserve, (unsigned long)in.waits,
	           (unsigned long)in.atomic_fails);
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	KEXPECT_EQ(atomic_load(&n_sleeping_nulls), 0);
	KEXPECT_EQ(in.atomic_fails, atomic_load(&n_nulls));
	KEXPECT(in.from_reserve > 0);
	KEXPECT_EQ(in.out, 0);
	KEXPECT_EQ(in.curr, MIN);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	spanheap_check(&kspanheap);
}

KTEST(mempool, every_cpu_and_interrupts_share_a_reserve_while_kmalloc_fails)
{
	own = NULL;
	storm(OPS);
}

KTEST(mempool, every_cpu_and_interrupts_share_a_constructor_caches_reserve)
{
	own = kmem_cache_create_flags("pool-ctor", SIZE, 0, 0, ctor);
	KASSERT(own);
	storm(OPS / 4);
	KEXPECT(objcache_own_check(own));
	KEXPECT(kmem_cache_destroy(own));
	own = NULL;
}

/* The wake from an interrupt handler: the element the tick frees, and
 * what the sleeper got. */
static void *_Atomic for_the_tick;
static void *_Atomic sleeper_got;
static _Atomic bool sleeper_may_go;

static void freeing_tick(void)
{
	void *p = atomic_exchange(&for_the_tick, NULL);
	if (p)
		mempool_free(&pool, p);
}

static void sleeper(void *arg)
{
	while (!atomic_load(&sleeper_may_go))
		thread_yield();
	atomic_store(&sleeper_got, mempool_alloc(&pool, 0));
}

KTEST(mempool, a_sleeper_is_woken_by_an_interrupt_handlers_free)
{
	KASSERT(kmempool_init(&pool, "ktest-wake", 2, 64));
	/* An hour's period: its wake must be the free's. A lost wake-up is
	 * a hang, which the run's timeout ends; the test bounds no time. */
	pool.wait_ns = 3600ull * 1000 * 1000 * 1000;
	atomic_store(&sleeper_may_go, false);
	atomic_store(&sleeper_got, NULL);
	struct thread_handle t = thread_create("kmempool-sleeper", sleeper,
	                                       NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1,
	                               .seed = 1};
	KASSERT(spanheap_fail_arm(&kspanheap, &a));
	void *e0 = mempool_alloc(&pool, 0), *e1 = mempool_alloc(&pool, 0);
	KASSERT(e0 && e1);
	atomic_store(&sleeper_may_go, true);
	struct mempool_info in;
	do {
		thread_sleep_ns(1000000);
		mempool_info(&pool, &in);
	} while (in.waits == 0);
	atomic_store(&for_the_tick, e1);
	sched_tick_hook = freeing_tick;
	thread_join(t);
	sched_tick_hook = NULL;
	spanheap_fail_disarm(&kspanheap);
	KEXPECT(atomic_load(&for_the_tick) == NULL);
	KEXPECT(atomic_load(&sleeper_got) == e1);
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.waits, 1);
	KEXPECT_EQ(in.timeouts, 0);
	mempool_free(&pool, e0);
	mempool_free(&pool, atomic_load(&sleeper_got));
	KEXPECT(mempool_destroy(&pool));
}

/* A pool over a named cache (kmempool_init_cache: the cache looked for
 * on kspanheap's list before it is read): its elements are the cache's
 * objects, counted by the cache while out or in the reserve, so the cache
 * cannot be destroyed before the pool is. */
KTEST(mempool, a_pool_over_a_named_cache)
{
	struct objcache *c = kmem_cache_create("pool-objs", 72, 0);
	KASSERT(c);
	static struct mempool cp;
	KASSERT(kmempool_init_cache(&cp, "cache-pool", c, 3));
	void *e = mempool_alloc(&cp, 0);
	KEXPECT(e != NULL);
	struct objcache_info in;
	objcache_info(c, &in);
	KEXPECT_EQ(in.live, 4); /* the element and the reserve's 3 */
	KEXPECT(!kmem_cache_destroy(c));
	mempool_free(&cp, e);
	KEXPECT(mempool_destroy(&cp));
	KEXPECT(kmem_cache_destroy(c));
	KEXPECT(!kmempool_init_cache(&cp, "no-cache", NULL, 3));
}

#ifdef KTEST_FAIL_DEMO
/* An element freed into the reserve, then freed again: the pool's panic
 * names it (the pointer printed first, for the harness). */
KTEST(demo, mempool_double_free)
{
	static struct mempool demo;
	KASSERT(kmempool_init(&demo, "demo-pool", 2, 64));
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1,
	                               .seed = 1};
	KASSERT(spanheap_fail_arm(&kspanheap, &a));
	void *p = mempool_alloc(&demo, 0); /* the reserve's */
	spanheap_fail_disarm(&kspanheap);
	mempool_free(&demo, p); /* back into the reserve */
	ktest_diag("kfree of %p", p);
	mempool_free(&demo, p);
}
#endif

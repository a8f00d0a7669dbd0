/*
 * KASAN's shadow under every CPU at once (instrumented, as kasan_test.c;
 * with mm.kasan, make test-kernel-poison): a worker on each CPU allocates
 * objects of 1 to 700 bytes, writes a pattern through checked stores and
 * trades them through shared slots, so that most are freed by another
 * CPU; the timer interrupt allocates and frees too. Every object is
 * checked when it is taken from a slot: its pattern, and its shadow
 * accessible for exactly the bytes asked (ksize gives them in poison
 * mode). No report may be made, and the heap's checker runs at the end.
 */
#include <stdatomic.h>

#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ktest.h"
#include "tests/kernel/kasan_util.h"
#include "tests/kernel/storm_util.h"

enum { SLOTS = 64, ROUNDS = 400, IRQ_MIN = 200, MAX_BYTES = 700 };

static void *_Atomic slot[SLOTS];
static _Atomic unsigned running, irq_inside, bad;
static _Atomic bool irq_on;
static _Atomic uint64_t irq_allocs;

/* The pattern's seed for object p: its address's. */
static inline unsigned seed_of(const void *p)
{
	return (unsigned)((uintptr_t)p >> 4);
}

/* Checks an object taken from a slot, then frees it. */
static void give(void *obj)
{
	uint8_t *p = obj;
	size_t n = ksize(p);
	if (!holds(p, n, seed_of(p)) || !shadow_fits(p, n))
		atomic_fetch_add(&bad, 1);
	kfree(p);
}

static void worker(void *arg)
{
	uint64_t x = (uintptr_t)arg * 0x9e3779b97f4a7c15u;
	for (int r = 0; r < ROUNDS; r++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t n = 1 + x % MAX_BYTES;
		uint8_t *p = kmalloc(n, 0);
		if (!p || !touch(p, n, seed_of(p)) || !shadow_fits(p, n)) {
			atomic_fetch_add(&bad, 1);
			kfree(p);
			continue;
		}
		void *old = atomic_exchange(&slot[(x >> 32) % SLOTS], p);
		if (old)
			give(old);
	}
	atomic_fetch_sub(&running, 1);
}

/* The timer interrupt's share: one small object, written and freed. */
static void tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on)) {
		uint8_t *p = kmalloc(40, KM_ATOMIC);
		if (p) {
			if (!touch(p, 40, 7) || !shadow_fits(p, 40))
				atomic_fetch_add(&bad, 1);
			kfree(p);
			atomic_fetch_add(&irq_allocs, 1);
		}
	}
	atomic_fetch_sub(&irq_inside, 1);
}

KTEST(kasan, every_cpu_and_interrupts_keep_the_shadow_true)
{
	if (!kasan_enabled())
		KTEST_SKIP("no mm.kasan");
	for (unsigned i = 0; i < SLOTS; i++)
		atomic_store(&slot[i], NULL);
	atomic_store(&bad, 0);
	atomic_store(&irq_allocs, 0);
	struct kasan_seen seen = {0};
	kasan_expect(&seen);
	struct cpu_storm s = {
	        .name = "kasan-storm",
	        .worker = worker,
	        .tick = tick,
	        .running = &running,
	        .irq_on = &irq_on,
	        .irq_inside = &irq_inside,
	        .irq_allocs = &irq_allocs,
	        .irq_min = IRQ_MIN,
	};
	unsigned nw = cpu_storm_run(&s);
	cpu_storm_give_back(slot, SLOTS, give);
	kasan_expect(NULL);
	unsigned nbad = atomic_load(&bad);
	ktest_diag("%u workers, %llu interrupt allocations, %u reports", nw,
	           (unsigned long long)atomic_load(&irq_allocs), seen.reports);
	KEXPECT_EQ(nbad, 0u);
	KEXPECT_EQ(seen.reports, 0u);
	spanheap_check(&kspanheap);
}

/*
 * The span heap's metadata blocks (mm/spanheap_meta_blocks.c) on the real
 * kernel, with the lock checker on: a thread on every CPU makes and
 * destroys kmem caches and mempools of varied sizes (a cache's struct, the
 * counters' area, reserves of 1 to 700 elements: blocks of every class and
 * large ones of one and two pages; resizes swap arrays), allocating and
 * freeing through them, every object filled with a pattern of its address
 * and checked before its free, and each CPU running the blocks' checker
 * now and then; meanwhile another thread and every CPU's timer interrupt
 * allocate plain objects the same way. After the run no block is left,
 * the heap checks clean and the frame pool holds what it held after a
 * warm-up run, but for the span heap's own pages, which stay by design.
 */
#include <stdatomic.h>

#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "mm/spanheap_internal.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/storm_util.h"

enum { SLOTS = 3, HOLD = 4, IRQ_MIN = 100 };

static const size_t cache_sizes[] = {24, 100, 512, 3000, 40000};
static const uint32_t pool_mins[] = {1, 8, 20, 100, 140, 700};
static const size_t pool_sizes[] = {16, 96, 300};

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t pattern(uintptr_t p, uint64_t tag, size_t off)
{
	return (p + off) * 0x9e3779b97f4a7c15ull ^ tag;
}

static void fill(void *p, size_t size, uint64_t tag)
{
	for (size_t off = 0; off + 8 <= size; off += 40)
		*(uint64_t *)((uintptr_t)p + off) =
		        pattern((uintptr_t)p, tag, off);
}

static _Atomic uint64_t n_bad, n_made, n_refused, n_plain, n_irq_allocs;
static _Atomic unsigned running, irq_inside;
static _Atomic bool irq_on;
static unsigned ops;

/* Whether p still holds its pattern of tag. */
static bool intact(const void *p, size_t size, uint64_t tag)
{
	for (size_t off = 0; off + 8 <= size; off += 40)
		if (*(const uint64_t *)((uintptr_t)p + off) !=
		    pattern((uintptr_t)p, tag, off))
			return false;
	return true;
}

/* A worker's slot: nothing, a cache or a pool, and its objects. */
struct slot {
	enum { EMPTY, CACHE, POOL } kind;
	struct objcache *c;
	struct mempool pool;
	char name[OBJCACHE_NAME_MAX + 1];
	size_t size;
	void *held[HOLD];
	uint64_t tag[HOLD];
};
static struct slot slots[MAX_CPUS][SLOTS];

static void drop(struct slot *s, int i)
{
	void *p = s->held[i];
	if (!p)
		return;
	if (!intact(p, s->size, s->tag[i]))
		atomic_fetch_add(&n_bad, 1);
	if (s->kind == CACHE)
		kmem_cache_free(s->c, p);
	else
		mempool_free(&s->pool, p);
	s->held[i] = NULL;
}

static void churn(struct slot *s, int i, uint64_t tag)
{
	drop(s, i);
	void *p = s->kind == CACHE ? kmem_cache_alloc(s->c, 0)
	                           : mempool_alloc(&s->pool, 0);
	if (!p) {
		atomic_fetch_add(&n_bad, 1); /* a sleeping call: never NULL */
		return;
	}
	s->held[i] = p;
	s->tag[i] = tag;
	fill(p, s->size, tag);
}

static void make(struct slot *s, unsigned cpu, unsigned op, uint64_t r)
{
	ksnprintf(s->name, sizeof(s->name), "mb%u.%u", cpu, op);
	bool ok;
	/* Caches on the first 20 CPUs: with the kernel's own, no more than
	 * OBJCACHE_MAX live at once (a larger machine's others make pools). */
	if (r & 1 && cpu < (OBJCACHE_MAX - 4) / SLOTS) {
		s->size = cache_sizes[(r >> 8) % 5];
		s->c = kmem_cache_create(s->name, s->size, r & 2 ? 64 : 0);
		s->kind = CACHE;
		ok = s->c != NULL;
	} else {
		s->size = pool_sizes[(r >> 8) % 3];
		s->kind = POOL;
		ok = kmempool_init(&s->pool, s->name, pool_mins[(r >> 16) % 6],
		                   s->size);
	}
	if (!ok)
		s->kind = EMPTY;
	atomic_fetch_add(ok ? &n_made : &n_refused, 1);
}

/* Checks s's metadata (a cache's listing, a pool's reserve), frees its
 * objects and destroys it. */
static void unmake(struct slot *s)
{
	for (int i = 0; i < HOLD; i++)
		drop(s, i);
	bool ok;
	if (s->kind == CACHE) {
		struct objcache_info in;
		objcache_info(s->c, &in);
		if (strcmp(in.name, s->name) || in.size != s->size || in.live)
			atomic_fetch_add(&n_bad, 1);
		ok = kmem_cache_destroy(s->c);
	} else {
		mempool_check(&s->pool);
		ok = mempool_destroy(&s->pool);
	}
	atomic_fetch_add(&n_bad, !ok);
	s->kind = EMPTY;
}

static void worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg - 1;
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (cpu + 3);
	struct slot *mine = slots[cpu];
	for (unsigned op = 0; op < ops; op++) {
		uint64_t r = next_rand(&rnd);
		struct slot *s = &mine[r % SLOTS];
		unsigned what = (unsigned)(r >> 32) % 16;
		if (s->kind == EMPTY)
			make(s, cpu, op, r >> 4);
		else if (what == 0)
			unmake(s);
		else if (what == 1 && s->kind == POOL)
			atomic_fetch_add(
			        &n_bad,
			        !mempool_resize(&s->pool,
			                        pool_mins[(r >> 40) % 6]));
		else
			churn(s, (int)(what % HOLD), (uint64_t)cpu << 32 | op);
		if (op % 64 == 0)
			spanheap_meta_blocks_check(&kspanheap);
		if (op % 16 == 0)
			thread_yield();
	}
	for (int k = 0; k < SLOTS; k++)
		if (mine[k].kind != EMPTY)
			unmake(&mine[k]);
	atomic_fetch_sub(&running, 1);
}

/* Plain objects of 16 bytes to 48 KiB, by a thread until the workers are
 * done. */
static void plain(void *arg)
{
	(void)arg;
	enum { KEEP = 16 };
	void *keep[KEEP] = {0};
	size_t size[KEEP] = {0};
	uint64_t rnd = 0x2545f4914f6cdd1dull, round = 0;
	while (atomic_load(&running) > 0) {
		unsigned k = (unsigned)(next_rand(&rnd) % KEEP);
		if (keep[k] && !intact(keep[k], size[k], k))
			atomic_fetch_add(&n_bad, 1);
		kfree(keep[k]);
		size[k] = ++round % 32 == 0 ? 48 * 1024
		                            : 16 + next_rand(&rnd) % 2000;
		keep[k] = kmalloc(size[k], 0);
		if (keep[k])
			fill(keep[k], size[k], k);
		atomic_fetch_add(keep[k] ? &n_plain : &n_bad, 1);
		if (round % 16 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < KEEP; k++)
		kfree(keep[k]);
}

/* Each CPU's handler: one plain object kept from tick to tick. */
static void *irq_keep[MAX_CPUS];

static void irq_tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on)) {
		unsigned cpu = this_cpu()->id;
		if (irq_keep[cpu] && !intact(irq_keep[cpu], 200, cpu))
			atomic_fetch_add(&n_bad, 1);
		kfree(irq_keep[cpu]);
		irq_keep[cpu] = kmalloc(200, KM_ATOMIC);
		if (irq_keep[cpu]) { /* KM_ATOMIC may get NULL */
			fill(irq_keep[cpu], 200, cpu);
			atomic_fetch_add(&n_irq_allocs, 1);
		}
	}
	atomic_fetch_sub(&irq_inside, 1);
}

static void run(unsigned n)
{
	ops = n;
	cpu_storm_run(CPU_STORM("metablk", worker, irq_tick, .extra = plain));
	for (unsigned c = 0; c < MAX_CPUS; c++) {
		kfree(irq_keep[c]);
		irq_keep[c] = NULL;
	}
}

KTEST(meta_blocks, caches_and_pools_come_and_go_on_every_cpu)
{
	/* Grow both heaps past the run's peak and run a small one first:
	 * their growth's metadata and page tables, the counters' area's
	 * first page tables and the threads' stack slots are in place
	 * before the baseline. */
	enum { WARM_PAGES = 8192, META_PAGES = 64 };
	KTEST_NEED_FREE_FRAMES(WARM_PAGES);
	void *grow = mheap_alloc_pages(&kheap, WARM_PAGES, 0);
	void *mgrow = mheap_alloc_pages(&kspanheap.meta, META_PAGES, 0);
	KASSERT(grow && mgrow);
	mheap_free_pages(&kheap, grow, WARM_PAGES);
	mheap_free_pages(&kspanheap.meta, mgrow, META_PAGES);
	size_t blocks0 = kspanheap.meta_blocks.pages; /* the kernel's caches */
	run(100);
	heap_settle();
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	uint64_t made0 = atomic_load(&n_made);

	run(2000);
	heap_settle();
	size_t meta = span_meta_pages();
	ktest_diag("%lu caches and pools made, %lu refused, %lu plain "
	           "objects, %lu by interrupt handlers; frames free %zu "
	           "then, %zu now; span-heap pages %zu then, %zu now",
	           (unsigned long)(atomic_load(&n_made) - made0),
	           (unsigned long)atomic_load(&n_refused),
	           (unsigned long)atomic_load(&n_plain),
	           (unsigned long)atomic_load(&n_irq_allocs), frames0,
	           frames_free_count(), meta0, meta);
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	KEXPECT_EQ(atomic_load(&n_refused), 0);
	KEXPECT(atomic_load(&n_made) - made0 > 100);
	KEXPECT_EQ(kspanheap.meta_blocks.pages, blocks0);
	spanheap_check(&kspanheap);
	KEXPECT_EQ(frames_free_count() + (meta - meta0), frames0);
	frames_check();
}

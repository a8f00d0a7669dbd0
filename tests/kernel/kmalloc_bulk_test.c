/*
 * Bulk allocation and free in the kernel (kernel/heap_copy.h's
 * kmalloc_bulk and kfree_bulk, kernel/kmem_cache.h's
 * kmem_cache_alloc_bulk and kmem_cache_free_bulk, over mm/spanheap_bulk.c
 * and mm/objcache_bulk.c): a worker on every online CPU allocates batches
 * of 1 to 64 objects of kmalloc sizes (small, past a magazine's fill,
 * large) and of a merged and a constructor cache, writes a pattern into
 * each object, hands every fourth batch to the next CPU's worker and
 * frees the rest with the bulk frees; meanwhile each CPU's timer tick
 * allocates and frees batches with KM_ATOMIC. Every object's pattern is
 * checked before its free; at the end the caches count nothing out, the
 * heap checks, and the frame pool is back to its count before the run.
 * About 0.3 s of guest time on 4 CPUs.
 */
#include <stdatomic.h>

#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/heap_copy.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/storm_util.h"

enum { ROUNDS = 40, MAXN = 64, IRQ_N = 8, IRQ_MIN = 50 };

static const size_t ksizes[] = {16, 64, 200, 1500, 40000};
static struct objcache *merged, *ctored;
static _Atomic uint64_t n_bad, n_nulls, n_irq_allocs, n_irq_nulls;
static _Atomic unsigned running;
static _Atomic bool irq_on;
static _Atomic unsigned irq_inside;

#define CTOR_MAGIC 0xc70b0b1eull

static void ctor(void *p)
{
	*(uint64_t *)p = CTOR_MAGIC;
}

/* A batch and its pattern: every 8-byte word past the first of each
 * object (the first keeps a ctor cache's magic). */
struct batch {
	void *p[MAXN];
	size_t n, size;
	uint64_t tag;
	int kind; /* 0 kmalloc, 1 merged cache, 2 ctor cache */
};

static uint64_t word(uint64_t tag, const void *p, size_t i)
{
	return (tag * 0x9e3779b97f4a7c15ull) ^ ((uintptr_t)p + i);
}

static void fill(struct batch *b)
{
	for (size_t k = 0; k < b->n; k++)
		for (size_t i = 1; i < b->size / 8; i += 5)
			((uint64_t *)b->p[k])[i] = word(b->tag, b->p[k], i);
}

static void check_and_free(struct batch *b)
{
	for (size_t k = 0; k < b->n; k++) {
		const uint64_t *w = b->p[k];
		if (b->kind == 2 && w[0] != CTOR_MAGIC)
			atomic_fetch_add(&n_bad, 1);
		for (size_t i = 1; i < b->size / 8; i += 5)
			if (w[i] != word(b->tag, b->p[k], i)) {
				atomic_fetch_add(&n_bad, 1);
				break;
			}
	}
	if (b->kind == 0)
		kfree_bulk(b->n, b->p);
	else
		kmem_cache_free_bulk(b->kind == 1 ? merged : ctored, b->n,
		                     b->p);
	b->n = 0;
}

/* Fills b with n objects of kind; false (counted) if it got none. */
static bool take(struct batch *b, int kind, size_t n, size_t size,
                 unsigned flags, uint64_t tag)
{
	*b = (struct batch){.n = n, .tag = tag, .kind = kind};
	size_t got;
	if (kind == 0) {
		b->size = size;
		got = kmalloc_bulk(size, flags, n, b->p);
	} else {
		struct objcache *c = kind == 1 ? merged : ctored;
		b->size = c->size;
		got = kmem_cache_alloc_bulk(c, flags, n, b->p);
	}
	if (got != n) {
		b->n = 0;
		return false;
	}
	fill(b);
	return true;
}

/* Batches handed from CPU i's worker to the next one's, one slot each. */
static struct batch handed[MAX_CPUS];
static _Atomic bool handed_full[MAX_CPUS];

static void worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg - 1;
	uint64_t r = 0x2545f4914f6cdd1dull * (cpu + 1);
	static struct batch mine[MAX_CPUS];
	struct batch *b = &mine[cpu];
	for (unsigned k = 0; k < ROUNDS; k++) {
		r ^= r << 13, r ^= r >> 7, r ^= r << 17;
		int kind = (int)(r % 3);
		size_t n = 1 + (r >> 8) % MAXN;
		size_t size = ksizes[(r >> 16) % 5];
		if (size > 32768)
			n = 1 + n % 4;
		/* KM_ZERO now and then; a ctor cache refuses it. */
		unsigned flags = kind != 2 && (r >> 24) % 4 == 0 ? KM_ZERO : 0;
		if (!take(b, kind, n, size, flags, r)) {
			atomic_fetch_add(&n_nulls, 1);
			continue;
		}
		unsigned next = (cpu + 1) % MAX_CPUS;
		if (k % 4 == 0 && !atomic_load(&handed_full[next])) {
			handed[next] = *b;
			atomic_store(&handed_full[next], true);
		} else {
			check_and_free(b);
		}
		if (atomic_load(&handed_full[cpu])) {
			check_and_free(&handed[cpu]);
			atomic_store(&handed_full[cpu], false);
		}
		thread_yield();
	}
	atomic_fetch_sub(&running, 1);
}

/* The tick: a KM_ATOMIC batch of each kind, checked and freed at once. */
static void irq_tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on)) {
		static struct batch ib[MAX_CPUS];
		unsigned cpu = this_cpu()->id;
		for (int kind = 0; kind < 3; kind++) {
			if (!take(&ib[cpu], kind, IRQ_N, 64, KM_ATOMIC,
			          cpu * 3 + (unsigned)kind)) {
				atomic_fetch_add(&n_irq_nulls, 1);
				continue;
			}
			atomic_fetch_add(&n_irq_allocs, 1);
			check_and_free(&ib[cpu]);
		}
	}
	atomic_fetch_sub(&irq_inside, 1);
}

KTEST(kmalloc_bulk, every_cpu_and_the_timer_tick)
{
	heap_settle();
	/* The pool, allowing for what the heap keeps for good once grown:
	 * its metadata (the shadow's in heap_meta_frames) and page tables. */
	size_t frames0 = frames_free_count(), own0 = span_own_pages();
	size_t hmeta0 = heap_meta_frames(), tables0 = paging_table_pages();
	KASSERT(merged = kmem_cache_create("ktest-bulk", 96, 0));
	KASSERT(ctored = kmem_cache_create_flags("ktest-bulk-ctor", 80, 0, 0,
	                                         ctor));
	cpu_storm_run(CPU_STORM("kbulk", worker, irq_tick));
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (atomic_exchange(&handed_full[i], false))
			check_and_free(&handed[i]);
	ktest_diag("%lu bad objects, %lu thread batches refused, %lu tick "
	           "batches (%lu refused)",
	           (unsigned long)atomic_load(&n_bad),
	           (unsigned long)atomic_load(&n_nulls),
	           (unsigned long)atomic_load(&n_irq_allocs),
	           (unsigned long)atomic_load(&n_irq_nulls));
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	KEXPECT_EQ(atomic_load(&n_nulls), 0);
	struct objcache_info in;
	objcache_info(merged, &in);
	KEXPECT_EQ(in.live, 0);
	objcache_info(ctored, &in);
	KEXPECT_EQ(in.live, 0);
	KEXPECT(kmem_cache_destroy(merged));
	KEXPECT(kmem_cache_destroy(ctored));
	spanheap_check(&kspanheap);
	heap_settle();
	KEXPECT_EQ(frames_free_count() + (span_own_pages() - own0) +
	                   (heap_meta_frames() - hmeta0) +
	                   (paging_table_pages() - tables0),
	           frames0);
}

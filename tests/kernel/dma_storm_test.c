/*
 * DMA buffers from every CPU at once (kernel/dma.h): a worker per online
 * CPU and every CPU's timer tick allocate buffers of random sizes,
 * alignments and limits, fill them with a pattern of their address, and
 * free them (some on another CPU, through a hand-off array) after
 * checking the pattern, the alignment, the limit and, through the page
 * tables, that the pages are consecutive. At the end no buffer is live
 * and the frame pool checks clean.
 */
#include <stdatomic.h>

#include "kernel/dma.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "tests/kernel/storm_util.h"

enum { OPS = 400, LIVE = 6, IRQ_MIN = 60, HANDOFF = 16 };

/* A buffer's first words: how to free it and what to check. */
struct dma_head {
	size_t nbytes;
	paddr_t phys, limit;
	size_t align;
};

static void *_Atomic handoff[HANDOFF];
static void *_Atomic irq_slot[MAX_CPUS];
static _Atomic uint64_t n_bad, n_nulls, n_allocs, n_irq_allocs;
static _Atomic unsigned running, irq_inside;
static _Atomic bool irq_on;

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

/* Allocates a buffer as r says and fills it; NULL (counted) if none. */
static void *take(uint64_t r, size_t max_pages)
{
	static const size_t aligns[] = {PAGE_SIZE, 16 << 10, 64 << 10};
	size_t nbytes = (1 + r % max_pages) * PAGE_SIZE - (r >> 8) % 2048;
	size_t align = aligns[(r >> 20) % 3];
	paddr_t limit = (r >> 24) % 2 ? DMA_LIMIT_32BIT : DMA_LIMIT_ANY;
	paddr_t phys = 0;
	uint64_t *p = dma_alloc(nbytes, align, limit, 0, &phys);
	if (!p) {
		atomic_fetch_add(&n_nulls, 1);
		return NULL;
	}
	struct dma_head *h = (struct dma_head *)p;
	*h = (struct dma_head){nbytes, phys, limit, align};
	for (size_t i = sizeof(*h) / 8; i < nbytes / 8; i++)
		p[i] = pattern(p, i);
	return p;
}

/* Checks a buffer from take and frees it. */
static void give(void *obj)
{
	uint64_t *p = obj;
	struct dma_head h = *(struct dma_head *)p;
	bool ok = h.phys % h.align == 0 && h.phys + h.nbytes <= h.limit;
	paddr_t pa = 0;
	ok &= kvirt_range_to_phys(p, h.nbytes, &pa) == NULL && pa == h.phys;
	for (size_t i = sizeof(h) / 8; i < h.nbytes / 8; i++)
		ok &= p[i] == pattern(p, i);
	if (!ok)
		atomic_fetch_add(&n_bad, 1);
	dma_free(p, h.nbytes);
}

static void worker(void *arg)
{
	uint64_t rnd = 0x2545f4914f6cdd1dull * (uintptr_t)arg;
	void *mine[LIVE] = {0};
	for (unsigned op = 0; op < OPS; op++) {
		uint64_t r = next_rand(&rnd);
		void **slot = &mine[r % LIVE];
		if (*slot)
			give(*slot);
		*slot = take(next_rand(&rnd), 8);
		if (*slot && r % 5 == 0) {
			void *old = atomic_exchange(
			        &handoff[(r >> 8) % HANDOFF], *slot);
			*slot = NULL;
			if (old)
				give(old);
		}
		atomic_fetch_add(&n_allocs, 1);
	}
	for (unsigned k = 0; k < LIVE; k++)
		if (mine[k])
			give(mine[k]);
	atomic_fetch_sub(&running, 1);
}

/* From every CPU's timer tick: frees the CPU's last buffer, takes one. */
static void tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on)) {
		unsigned cpu = this_cpu()->id;
		void *old = atomic_exchange(&irq_slot[cpu], NULL);
		if (old)
			give(old);
		uint64_t r = (n_irq_allocs + 1) * 0x9e3779b97f4a7c15ull + cpu;
		void *p = take(r, 2);
		atomic_store(&irq_slot[cpu], p);
		if (p)
			atomic_fetch_add(&n_irq_allocs, 1);
	}
	atomic_fetch_sub(&irq_inside, 1);
}

KTEST(dma, storm_on_every_cpu)
{
	size_t live = dma_live_count();
	cpu_storm_run(CPU_STORM("dmastorm", worker, tick));
	cpu_storm_give_back(handoff, HANDOFF, give);
	cpu_storm_give_back(irq_slot, MAX_CPUS, give);
	ktest_diag("%llu allocations by threads, %llu in interrupts",
	           (unsigned long long)n_allocs,
	           (unsigned long long)n_irq_allocs);
	uint64_t bad = atomic_load(&n_bad), nulls = atomic_load(&n_nulls);
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(nulls, 0);
	KEXPECT_EQ(dma_live_count(), live);
	frames_check();
}

/*
 * Memory pressure: an allocation does not fail while memory that could
 * serve it sits in the heap's caches or a subsystem's (kernel/shrinker.h).
 * The pool is taken down to RECLAIM_LEFT frames (16 MiB), the heap or a
 * cache made to hold them, and then a dma_alloc or a large kmalloc must
 * get them back. The heap's threads are stopped meanwhile, so that
 * nothing but the allocation itself gives memory back; every test gives
 * the pool back as it found it. A cache with slabs of its own gives its
 * stashes and kept slab back under the same pressure (the "slab"
 * shrinker).
 */
#include "arch/x86_64/paging.h"
#include "kernel/dma.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/shrinker.h"
#include "kernel/thread.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/reclaim_util.h"
#include "tests/kernel/smp_util.h"

enum { DMA_BYTES = 1 << 20, MAX_OBJS = 1 << 16 };

static struct test_cache cache; /* emptied by every test: heap_leaks */

/* Frames held for good: the span heap's own pages, the page heaps'
 * metadata (mm.kasan's shadow with it) and page tables, which a pressure
 * may grow (the heap reaching further into its arena than before).
 * span_own_pages, not span_meta_pages, which counts the shadow too: until
 * this version the shadow a test mapped first was counted twice, and a
 * test run alone on the KASAN image found hundreds of frames too many
 * ('128691 vs 128286' for dma_alloc_takes_back_what_the_heap_keeps);
 * in the suite earlier tests had mapped that shadow already. */
static size_t held_for_good(void)
{
	return span_own_pages() + heap_meta_frames() + paging_table_pages();
}

/* Before: the heap settled, its threads stopped, the pool at
 * RECLAIM_LEFT. *frames0 and *held0: the counts to come back to. */
static paddr_t pressure_begin(size_t *frames0, size_t *held0)
{
	heap_threads_stop();
	heap_settle();
	*frames0 = frames_free_count();
	*held0 = held_for_good();
	return frames_drain(RECLAIM_LEFT);
}

/* After: the pool refilled and the heap settled, the pool is where it
 * was but for what the heap holds for good (counted before the heap's
 * threads start again: their structs and stacks are new); then the
 * threads run again. */
static void pressure_end(paddr_t head, size_t frames0, size_t held0)
{
	frames_refill(head);
	heap_settle();
	KEXPECT_EQ(frames_free_count() + (held_for_good() - held0), frames0);
	KEXPECT(heap_threads_start());
	spanheap_check(&kspanheap);
	frames_check();
}

/*
 * The heap keeps the pool: 4 KiB objects until NULL, all freed (into
 * this CPU's magazine, their spans, the page heap's free backed pages).
 * A dma_alloc of 1 MiB from a thread then must get frames back from the
 * heap: before, it found no run and returned NULL while the heap kept
 * 16 MiB of frames it did not use.
 */
KTEST(reclaim, dma_alloc_takes_back_what_the_heap_keeps)
{
	size_t frames0, meta0;
	paddr_t head = pressure_begin(&frames0, &meta0);
	test_cache_init(&cache, 4096);
	size_t got = test_cache_fill(&cache, MAX_OBJS);
	size_t freed = test_cache_empty(&cache);
	size_t before = frames_free_count();
	paddr_t phys = 0;
	uint8_t *p = dma_alloc(DMA_BYTES, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	ktest_diag("%zu objects of 4 KiB, freed; frames free then %zu; "
	           "dma_alloc of 1 MiB: %s, frames free %zu",
	           got, before, p ? "ok" : "NULL", frames_free_count());
	KEXPECT(got > 0 && got < MAX_OBJS);
	KEXPECT_EQ(freed, got);
	KEXPECT_EQ(cache.bad, 0);
	KEXPECT(before < DMA_BYTES / PAGE_SIZE);
	KEXPECT(p != NULL);
	if (p) {
		memset(p, 0xa5, DMA_BYTES);
		dma_free(p, DMA_BYTES);
	}
	pressure_end(head, frames0, meta0);
}

/*
 * A cache of 4 KiB objects holds the pool. Unregistered, a kmalloc of 1
 * MiB and a dma_alloc of 1 MiB fail; registered as a shrinker, the
 * same allocations succeed, the shrinker having been scanned, and what
 * is left of the cache is intact.
 */
KTEST(reclaim, a_shrinker_gives_back_its_cache_before_null)
{
	size_t frames0, meta0;
	paddr_t head = pressure_begin(&frames0, &meta0);
	test_cache_init(&cache, 4096);
	size_t got = test_cache_fill(&cache, MAX_OBJS);
	paddr_t phys = 0;
	void *big = kmalloc(DMA_BYTES, 0);
	void *dma = dma_alloc(DMA_BYTES, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KEXPECT(big == NULL);
	KEXPECT(dma == NULL);
	kfree(big);
	if (dma)
		dma_free(dma, DMA_BYTES);

	shrinker_register(&cache.s);
	big = kmalloc(DMA_BYTES, 0);
	uint64_t scans_kmalloc = cache.s.scans;
	size_t left = cache.n;
	/* The cache takes the pool again, less the megabyte, its shrinker
	 * out of the way (else the fill's refusals would shrink it): a
	 * dma_alloc must shrink it again. */
	shrinker_unregister(&cache.s);
	size_t refill = test_cache_fill(&cache, MAX_OBJS);
	shrinker_register(&cache.s);
	dma = dma_alloc(DMA_BYTES, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	ktest_diag("cache of %zu objects; with its shrinker: kmalloc %s "
	           "(%lu scans, %zu left); %zu more, then dma_alloc %s (%lu "
	           "scans, %zu left)",
	           got, big ? "ok" : "NULL", (unsigned long)scans_kmalloc, left,
	           refill, dma ? "ok" : "NULL", (unsigned long)cache.s.scans,
	           cache.n);
	KEXPECT(big != NULL);
	KEXPECT(dma != NULL);
	KEXPECT(scans_kmalloc > 0);
	KEXPECT(cache.s.scans > scans_kmalloc);
	if (big)
		memset(big, 0x5a, DMA_BYTES);
	if (dma)
		memset(dma, 0xa5, DMA_BYTES);
	shrinker_unregister(&cache.s);
	kfree(big);
	if (dma)
		dma_free(dma, DMA_BYTES);
	size_t freed = test_cache_empty(&cache);
	KEXPECT_EQ(cache.bad, 0);
	KEXPECT(refill > 0 && refill < MAX_OBJS);
	KEXPECT(freed < got + refill);
	pressure_end(head, frames0, meta0);
}

static void nothing(void *arg)
{
	(void)arg;
}

/*
 * The heap keeps the pool (as in dma_alloc_takes_back_what_the_heap_keeps)
 * and the pool's last frames are taken too: thread_create's stack, whose
 * frames come from the pool, must get them back from the heap. Before,
 * it returned THREAD_NONE with 16 MiB kept by the heap.
 */
KTEST(reclaim, thread_create_takes_back_what_the_heap_keeps)
{
	size_t frames0, held0;
	paddr_t head = pressure_begin(&frames0, &held0);
	test_cache_init(&cache, 4096);
	size_t got = test_cache_fill(&cache, MAX_OBJS);
	test_cache_empty(&cache);
	paddr_t rest = frames_drain(0);
	struct thread_handle t =
	        thread_create("reclaim_nothing", nothing, NULL, this_cpu()->id);
	bool ok = thread_handle_ok(t);
	ktest_diag("%zu objects of 4 KiB, freed; pool emptied; thread_create "
	           "%s, frames free %zu",
	           got, ok ? "ok" : "failed", frames_free_count());
	KEXPECT(ok);
	if (ok)
		thread_join(t);
	frames_refill(rest);
	pressure_end(head, frames0, held0);
}

/* A thread on another CPU: fills the pool with 1 KiB objects and frees
 * them all there (its magazine, its spans, not swept: the sweeper is
 * stopped); got[0], their count, got[1], the bad patterns. */
static void fill_and_free_1k(void *arg)
{
	static struct test_cache other; /* one at a time: joined below */
	size_t *got = arg;
	test_cache_init(&other, 1000);
	got[0] = test_cache_fill(&other, MAX_OBJS);
	test_cache_empty(&other);
	got[1] = other.bad;
}

/*
 * Another CPU fills the pool with 1 KiB objects and frees them (its
 * magazine and a class's empty spans, unswept, hold the pool); then a 4
 * MiB kmalloc on this CPU must succeed: the page heap's refusal flushes
 * every CPU's cache and sweeps (spanheap_reclaim), and the retry
 * scavenges the freed pages for frames. This held before the shrinkers
 * (kmalloc.out_of_frames_flushes_other_cpus is its small-object twin);
 * kept as the large request's check.
 */
KTEST(reclaim, a_large_kmalloc_takes_back_another_cpus_class)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	size_t frames0, held0, got[2] = {0};
	paddr_t head = pressure_begin(&frames0, &held0);
	struct thread_handle t =
	        thread_create("reclaim_1k", fill_and_free_1k, got, other);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
	size_t before = frames_free_count();
	void *p = kmalloc(4 << 20, 0);
	ktest_diag("CPU %u: %zu objects of 1 KiB, freed; frames free then "
	           "%zu; kmalloc of 4 MiB here: %s",
	           other, got[0], before, p ? "ok" : "NULL");
	KEXPECT(got[0] > 0 && got[0] < MAX_OBJS);
	KEXPECT_EQ(got[1], 0);
	KEXPECT(before < (4 << 20) / PAGE_SIZE);
	KEXPECT(p != NULL);
	if (p)
		memset(p, 0x3c, 4 << 20);
	kfree(p);
	pressure_end(head, frames0, held0);
}

/*
 * A cache of 256 KiB objects (large: the page heap's, not a class's)
 * holds the pool; registered as a shrinker, a 1 MiB kmalloc must get its
 * pages: what the shrinker freed went back to the page heap at once, no
 * span and no cycle between, so only the port's answer (mm_port_reclaim
 * freed something) has the span heap retry.
 */
KTEST(reclaim, a_shrinker_of_large_objects_serves_the_retry)
{
	size_t frames0, held0;
	paddr_t head = pressure_begin(&frames0, &held0);
	test_cache_init(&cache, 256 << 10);
	size_t got = test_cache_fill(&cache, MAX_OBJS);
	shrinker_register(&cache.s);
	void *big = kmalloc(DMA_BYTES, 0);
	shrinker_unregister(&cache.s);
	ktest_diag("cache of %zu objects of 256 KiB; kmalloc of 1 MiB with "
	           "its shrinker: %s (%lu scans, %zu left)",
	           got, big ? "ok" : "NULL", (unsigned long)cache.s.scans,
	           cache.n);
	KEXPECT(got > 0 && got < MAX_OBJS);
	KEXPECT(big != NULL);
	KEXPECT(cache.s.scans > 0);
	if (big)
		memset(big, 0x5a, DMA_BYTES);
	kfree(big);
	test_cache_empty(&cache);
	KEXPECT_EQ(cache.bad, 0);
	pressure_end(head, frames0, held0);
}

static void pressure_ctor(void *p)
{
	*(uint64_t *)p = 0x5eedc7012ull;
}

/*
 * A constructor cache (slabs of its own) keeps a slab's worth of free
 * objects: those in this CPU's stash and its kept empty slab. A fill of
 * the pool with kmalloc'd pages then runs out of memory, and the reclaim
 * it starts must give those pages back through the "slab" shrinker
 * (objcache_shrink_all): the cache ends with no slab and no stashed
 * object. Before the shrinker it kept both: 3 slabs.
 */
KTEST(reclaim, memory_pressure_empties_the_own_slab_caches)
{
	enum { OBJS = 64 };
	size_t frames0, held0;
	paddr_t head = pressure_begin(&frames0, &held0);
	struct objcache *c = kmem_cache_create_flags("ktest-pressure", 500, 0,
	                                             0, pressure_ctor);
	KASSERT(c);
	static void *p[OBJS];
	for (unsigned i = 0; i < OBJS; i++)
		KASSERT(p[i] = kmem_cache_alloc(c, 0));
	for (unsigned i = 0; i < OBJS; i++)
		kmem_cache_free(c, p[i]);
	struct objcache_slabs before, after;
	objcache_slabs_info(c, &before);
	test_cache_init(&cache, 4096);
	size_t got = test_cache_fill(&cache, MAX_OBJS);
	objcache_slabs_info(c, &after);
	ktest_diag("own-slab cache: %zu slabs, %zu objects stashed; after a "
	           "fill of %zu pages until NULL: %zu slabs, %zu stashed",
	           before.slabs, before.stashed, got, after.slabs,
	           after.stashed);
	KEXPECT(before.slabs > 0 && before.stashed > 0);
	KEXPECT(got > 0 && got < MAX_OBJS);
	KEXPECT_EQ(after.slabs, 0);
	KEXPECT_EQ(after.stashed, 0);
	test_cache_empty(&cache);
	KEXPECT_EQ(cache.bad, 0);
	KEXPECT(objcache_own_check(c));
	KEXPECT(kmem_cache_destroy(c));
	pressure_end(head, frames0, held0);
}

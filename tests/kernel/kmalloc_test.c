/*
 * kmalloc on the real kernel, with the lock checker on: sizes, alignment
 * and the edges of the API (the storm, in which threads on every CPU and
 * every CPU's timer interrupt allocate and free while the sweeper, the
 * scavenger and release-all run, is kmalloc_storm_test.c's; an empty
 * frame pool is kmalloc_oom_test.c's). The misuse demos at the end
 * (KTEST_FAIL_DEMO only) panic on purpose; tools/test-harness checks
 * their messages.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/string.h"
#include "kernel/sched.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "mm/spanheap_internal.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"

/* ---- The API ----------------------------------------------------------------
 */

KTEST(kmalloc, sizes_alignment_and_ksize)
{
	KEXPECT_EQ(ksize(NULL), 0);
	static const size_t sizes[] = {
	        0,     1,     8,     15,     16,     17,    24,    48,
	        64,    100,   128,   256,    500,    512,   1000,  1024,
	        2048,  3000,  4096,  5000,   8192,   10000, 16384, 32767,
	        32768, 32769, 65536, 100000, 1 << 20};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	uint8_t *p[N];
	for (unsigned i = 0; i < N; i++) {
		size_t n = sizes[i];
		p[i] = kmalloc(n, 0);
		KASSERT(p[i] != NULL);
		KEXPECT_EQ((uintptr_t)p[i] % 16, 0);
		if (n && !(n & (n - 1)) && n <= 4096)
			KEXPECT_EQ((uintptr_t)p[i] % n, 0);
		KEXPECT(ksize(p[i]) >= n);
		memset(p[i], 0x40 + i, ksize(p[i]));
	}
	/* All live at once: none overlaps another. */
	for (unsigned i = 0; i < N; i++) {
		size_t bad = 0;
		for (size_t k = 0; k < ksize(p[i]); k++)
			bad += p[i][k] != 0x40 + i;
		KEXPECT_EQ(bad, 0);
	}
	KEXPECT(p[0] != p[1]); /* size 0: a unique object */
	for (unsigned i = 0; i < N; i++)
		kfree(p[i]);
	kfree(NULL);
}

KTEST(kmalloc, zeroed_calloc_realloc_aligned)
{
	uint8_t *a = kmalloc(300, 0);
	KASSERT(a != NULL);
	memset(a, 0xff, 300);
	kfree(a);
	uint8_t *z = kzalloc(300, 0);
	KASSERT(z != NULL);
	size_t nonzero = 0;
	for (size_t k = 0; k < 300; k++)
		nonzero += z[k] != 0;
	KEXPECT_EQ(nonzero, 0);
	kfree(z);

	KEXPECT(kcalloc((size_t)1 << 62, 8, 0) == NULL); /* overflow */
	uint32_t *c = kcalloc(25, 4, 0);
	KASSERT(c != NULL);
	KEXPECT_EQ(c[0] | c[12] | c[24], 0);
	kfree(c);

	uint8_t *r = krealloc(NULL, 24, 0);
	KASSERT(r != NULL);
	for (unsigned k = 0; k < 24; k++)
		r[k] = (uint8_t)k;
	uint8_t *g = krealloc(r, 5000, KM_ZERO);
	KASSERT(g != NULL);
	size_t lost = 0;
	for (unsigned k = 0; k < 24; k++)
		lost += g[k] != k;
	KEXPECT_EQ(lost, 0);
	KEXPECT_EQ(g[4999], 0);
	uint8_t *s = krealloc(g, 10, 0);
	KASSERT(s != NULL);
	KEXPECT_EQ(s[9], 9);
	KEXPECT(krealloc(s, 0, 0) == NULL); /* freed */

	for (size_t align = 1; align <= 65536; align *= 2) {
		void *q = kmalloc_aligned(40, align, 0);
		KASSERT(q != NULL);
		KEXPECT_EQ((uintptr_t)q % align, 0);
		kfree(q);
	}
	void *q = kmalloc_aligned(40, 3 * 4096, 0); /* a page multiple */
	KASSERT(q != NULL);
	KEXPECT_EQ((uintptr_t)q % (3 * 4096), 0);
	kfree(q);
	KEXPECT(kmalloc_aligned(40, 24, 0) == NULL);
	KEXPECT(kmalloc_aligned(40, 0, 0) == NULL);
}

/* The bytes of the n at p that are not zero. */
static size_t nonzero_bytes(const uint8_t *p, size_t n)
{
	size_t bad = 0;
	for (size_t k = 0; k < n; k++)
		bad += p[k] != 0;
	return bad;
}

/*
 * KM_ATOMIC with interrupts off, small and large; the large one with
 * KM_ZERO after a large object of its size was filled and freed (the
 * page heap keeps its pages backed, and dirty, for the next run): every
 * byte must read zero.
 */
KTEST(kmalloc, atomic_with_interrupts_off)
{
	enum { LARGE = 40000 };
	uint8_t *dirty = kmalloc(LARGE, 0);
	KASSERT(dirty != NULL);
	memset(dirty, 0xa5, LARGE);
	kfree(dirty);
	uint64_t flags = read_rflags();
	cpu_cli();
	uint8_t *small = kmalloc(64, KM_ATOMIC);
	uint8_t *large = kmalloc(LARGE, KM_ATOMIC | KM_ZERO);
	size_t nonzero = large ? nonzero_bytes(large, LARGE) : 0;
	kfree(small);
	kfree(large);
	if (flags & RFLAGS_IF)
		cpu_sti();
	KEXPECT(small != NULL);
	KEXPECT(large != NULL);
	KEXPECT_EQ(nonzero, 0);
}

/*
 * The heap's mode, as booted: with mm.debug_poison (tools/test-harness,
 * kmalloc_poison) a freed object holds the poison but for its marker's
 * word, from any CPU's free, and the CPUs keep no magazines; without it a
 * free leaves the object's bytes as they were but for that word.
 */
static bool guarded(const void *p)
{
	return spanheap_guard_owns(&kspanheap.guard, p);
}

KTEST(kmalloc, freed_objects_follow_the_heap_mode)
{
	bool poison = kspanheap.cfg.poison;
	ktest_diag("heap in %s mode", poison ? "poison" : "normal");
	/* Stale reads, on purpose: with preemption off, nothing else runs
	 * on this CPU, which owns the span, to hand the object out again.
	 * A sampled object (mm.guard) is kept until the pool is full: its
	 * page may be unmapped by another CPU's drain after its free
	 * (kmalloc_guard_test.c reads those). */
	static struct guard_aside aside;
	preempt_disable();
	uint8_t *p = kmalloc_plain(256, KM_ATOMIC, &aside);
	size_t off = 0;
	if (p) {
		memset(p, 0x11, 256);
		kfree(p);
		uint8_t want = poison ? SPANHEAP_POISON_BYTE : 0x11;
		while (off < 256 &&
		       (off / 8 == 1 || kasan_peek_u8(p + off) == want))
			off++;
	}
	preempt_enable();
	kmalloc_plain_done(&aside);
	KASSERT(p != NULL);
	KEXPECT_EQ(off, 256);
	KEXPECT_EQ(atomic_load(&kspanheap.mag_slabs) == 0, poison);
}

/*
 * The usable size as booted: with mm.debug_poison a small object's is the
 * bytes asked, and the rest of its class is its red zone (the red-zone
 * byte until the free checks it: mm/spanheap_redzone.c); without it, the
 * class's size. kmalloc of a constant size (the class known where it is
 * called) and kzalloc, which take two ways into the heap. An object the
 * guarded pool took (mm.guard) has the bytes asked, and no red zone: its
 * page's canary (kmalloc_guard_test.c).
 */
KTEST(kmalloc, usable_size_follows_the_heap_mode)
{
	bool poison = kspanheap.cfg.poison;
	uint8_t *p = kmalloc(20, 0);
	uint8_t *z = kzalloc(100, 0);
	KASSERT(p != NULL && z != NULL);
	bool redzone = poison && !guarded(p);
	KEXPECT_EQ(ksize(p), poison || guarded(p) ? 20u : 32u);
	KEXPECT_EQ(ksize(z), poison || guarded(z) ? 100u : 112u);
	size_t off = 20;
	while (redzone && off < 32 &&
	       kasan_peek_u8(p + off) == SPANHEAP_REDZONE_BYTE)
		off++;
	KEXPECT_EQ(off, redzone ? 32u : 20u);
	for (off = 0; off < 100 && z[off] == 0; off++)
		;
	KEXPECT_EQ(off, 100);
	/* What ksize promised is the caller's: no alarm at the free. */
	memset(p, 0x5a, ksize(p));
	memset(z, 0x5a, ksize(z));
	kfree(p);
	kfree(z);
	/* An exact fit, its size known here (kmalloc's inline class path):
	 * in poison mode a larger class, for a red zone, aligned to 64 as
	 * every power of two up to a page is. */
	struct exact {
		uint8_t b[64];
	} *e = kmalloc(sizeof(struct exact), 0);
	KASSERT(e != NULL);
	KEXPECT_EQ((uintptr_t)e % 64, 0);
	KEXPECT_EQ(ksize(e), 64u);
	if (poison && !guarded(e))
		KEXPECT_EQ(kasan_peek_u8((uint8_t *)e + 64),
		           SPANHEAP_REDZONE_BYTE);
	memset(e, 0x5a, sizeof(*e));
	kfree(e);
}

/* True if a lies in page heap h's arena. */
static bool in_arena(const struct mheap *h, uintptr_t a)
{
	return a - h->arena_base < h->arena_pages * PAGE_SIZE;
}

/* The heap's own metadata (mm/spanheap_meta.c) lies in its metadata
 * heap's arena, apart from every object: each CPU's magazine slab, the
 * all-spans array and the span structs in it. Until a review they were
 * runs of kheap, among the objects, where an overrun past a span's last
 * page reached them (host test spanheap_meta.*). The array is read from
 * a snapshot (a growth meanwhile keeps it until the snapshot goes). */
KTEST(kmalloc, the_heaps_own_metadata_lies_apart_from_its_objects)
{
	void *p = kmalloc(64, 0);
	KASSERT(p != NULL);
	kfree(p); /* this CPU's slab, if it had none (not in poison mode) */
	KEXPECT(kspanheap.meta.arena_pages > 0);
	KEXPECT(in_arena(&kheap, (uintptr_t)p) || guarded(p)); /* mm.guard */
	KEXPECT(!in_arena(&kspanheap.meta, (uintptr_t)p));
	unsigned slabs = 0;
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++) {
		uintptr_t s = (uintptr_t)__atomic_load_n(
		        &kspanheap.caches[cpu].slab, __ATOMIC_ACQUIRE);
		if (!s)
			continue;
		slabs++;
		KEXPECT(in_arena(&kspanheap.meta, s) && !in_arena(&kheap, s));
	}
	KEXPECT(slabs > 0 || kspanheap.cfg.poison);
	struct spanheap_snapshot snap;
	spanheap_snapshot(&kspanheap, &snap);
	KEXPECT(in_arena(&kspanheap.meta, (uintptr_t)snap.arr) &&
	        !in_arena(&kheap, (uintptr_t)snap.arr));
	size_t outside = 0;
	for (size_t i = 0; i < snap.len; i++)
		outside +=
		        !in_arena(&kspanheap.meta, (uintptr_t)snap.arr->v[i]);
	KEXPECT_EQ(outside, 0);
	spanheap_snapshot_put(&kspanheap, &snap);
	/* Since a review, a named cache's struct and counters and a pool's
	 * reserve array too (mm/spanheap_meta_blocks.c). */
	struct objcache *c = kmem_cache_create("ktest-meta", 40, 0);
	static struct mempool pool;
	KASSERT(c && kmempool_init(&pool, "ktest-meta", 4, 64));
	const void *meta[] = {c, kspanheap.objcache_counts, pool.reserve};
	for (size_t i = 0; i < 3; i++)
		KEXPECT(in_arena(&kspanheap.meta, (uintptr_t)meta[i]) &&
		        !in_arena(&kheap, (uintptr_t)meta[i]));
	KEXPECT(mempool_destroy(&pool) && kmem_cache_destroy(c));
}

/* ---- Misuse (KTEST_FAIL_DEMO only: each panics)
 * ------------------------------ */

#ifdef KTEST_FAIL_DEMO
static uint64_t demo_data;

/* Prints the pointer first: the harness checks the panic names it. */
static void demo_kfree(void *p)
{
	ktest_diag("kfree of %p", p);
	kfree(p);
}

KTEST(demo, kfree_double_free)
{
	void *p = kmalloc(64, 0);
	kfree(p);
	demo_kfree(p);
}

/* The same, run with mm.debug_poison (the harness's
 * kfree_double_free_poison): poison mode keeps no magazines, so the free
 * takes the sequence's refusal; it must still say "double free", not that
 * the marker was overwritten (it did after the marker's test moved into
 * the sequence, until a review). */
KTEST(demo, kfree_double_free_poison)
{
	void *p = kmalloc(64, 0);
	kfree(p);
	demo_kfree(p);
}

KTEST(demo, kfree_interior_pointer)
{
	uint8_t *p = kmalloc(64, 0);
	demo_kfree(p + 16);
}

static void kfree_own_stack(void *arg)
{
	uint64_t on_stack = 1;
	demo_kfree(&on_stack);
}

/* A thread's stack, in the kstack region (tests run on the boot stack,
 * which is in the image). */
KTEST(demo, kfree_foreign_stack)
{
	struct thread_handle t = thread_create("kfree_stack", kfree_own_stack,
	                                       NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
}

KTEST(demo, kfree_foreign_kernel_data)
{
	demo_kfree(&demo_data);
}

KTEST(demo, kfree_foreign_direct_map)
{
	paddr_t pa = frame_alloc();
	demo_kfree(phys_to_virt(pa));
}

KTEST(demo, kfree_large_twice)
{
	void *p = kmalloc(100 << 10, 0);
	kfree(p);
	demo_kfree(p);
}

/* With mm.debug_poison: a 32 KiB object (its class has one a span) is
 * written after its free; the next allocation of the class hands it out
 * again, and the check then panics, naming it. */
KTEST(demo, kmalloc_write_after_free)
{
	uint8_t *p = kmalloc(32 << 10, 0);
	KASSERT(p != NULL);
	demo_kfree(p);
	p[5000] = 0;
	for (int i = 0; i < 16; i++)
		KASSERT(kmalloc(32 << 10, 0) != NULL);
	ktest_fail_at(__FILE__, __LINE__,
	              "16 allocations and the write after free went unseen");
}

/* With mm.debug_poison: a write one byte past the end of kmalloc(20) (a
 * 32-byte class: 12 bytes of red zone); its free panics, naming it. */
KTEST(demo, kmalloc_write_past_the_end)
{
	uint8_t *p = kmalloc(20, 0);
	KASSERT(p != NULL);
	memset(p, 0, 20);
	p[20] = 0x41;
	demo_kfree(p);
	ktest_fail_at(__FILE__, __LINE__, "the write past the end went unseen");
}

/* With mm.debug_poison: a double free, whose report is preceded by the
 * object's records (mm/spanheap_track.c): allocated here, freed in
 * demo_kfree. */
KTEST(demo, kmalloc_double_free_callers)
{
	void *p = kmalloc(64, 0);
	KASSERT(p != NULL);
	demo_kfree(p);
	demo_kfree(p);
	ktest_fail_at(__FILE__, __LINE__, "the double free went unseen");
}

KTEST(demo, kfree_page_heap_memory)
{
	void *p = mheap_alloc_pages(&kheap, 2, 0);
	demo_kfree(p);
}

/* The other way round: a kmalloc object (8 KiB: page-aligned, as a run
 * of pages would be) given to the page heap's free -> mheap's mm_panic
 * naming its span and class; until a review it freed the span's pages. */
KTEST(demo, page_heap_free_of_a_kmalloc_object)
{
	void *p = kmalloc(8192, 0);
	KASSERT(p != NULL);
	ktest_diag("kfree of %p", p);
	mheap_free_pages(&kheap, p, 2);
	ktest_fail_at(__FILE__, __LINE__, "the page heap freed a span's pages");
}

/* ksize of a freed object -> the free's checks, naming the call. */
KTEST(demo, ksize_of_a_freed_object)
{
	void *p = kmalloc(64, 0);
	KASSERT(p != NULL);
	kfree(p);
	ktest_diag("kfree of %p", p);
	ksize(p);
	ktest_fail_at(__FILE__, __LINE__,
	              "ksize of a freed object went unseen");
}

/* A timer interrupt's allocation without KM_ATOMIC, its class's span
 * cached with objects to spare: mm_panic naming the call (kernel/heap.h),
 * not an object handed out until the day the class needs a new span. */
static void forgot_atomic_tick(void)
{
	sched_tick_hook = NULL;
	kfree(kzalloc(64, 0)); /* no KM_ATOMIC */
}

KTEST(demo, kzalloc_without_atomic_from_interrupt)
{
	kfree(kzalloc(64, 0)); /* the class has a span */
	sched_tick_hook = forgot_atomic_tick;
	thread_sleep_ns(1000000000);
	sched_tick_hook = NULL;
}

/* A plain kmalloc from a timer interrupt, its CPU's magazine of the class
 * empty (objects over 512 bytes come to it only by frees) and its span
 * cached with objects to spare: the refill's check. */
enum { FORGOT_SIZE = 28000 };
static void forgot_atomic_plain_tick(void)
{
	sched_tick_hook = NULL;
	(void)kmalloc(FORGOT_SIZE, 0); /* no KM_ATOMIC */
}

KTEST(demo, kmalloc_without_atomic_from_interrupt)
{
	/* Kept, not freed: a free would fill the magazine. */
	KASSERT(kmalloc(FORGOT_SIZE, 0) != NULL);
	sched_tick_hook = forgot_atomic_plain_tick;
	thread_sleep_ns(1000000000);
	sched_tick_hook = NULL;
}
#endif

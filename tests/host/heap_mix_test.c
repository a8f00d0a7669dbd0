/*
 * The heap's features met by each other, beyond objcache_mix_test.c (rv122's
 * second interaction review): the page heap's debug mode (the kernel's
 * mm.debug_pagealloc) with the bulk calls, whose frees must unmap what
 * the single frees unmap and name an entry whose pages are unmapped
 * without reading them; a realloc of a guarded object (growth, past 32
 * KiB, shrink, MM_ATOMIC, a failure injected, the copy check and the usable
 * size of the result); and percpu memory kept across release-everything.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/objcache_bulk.h"
#include "../../mm/objcache_internal.h"
#include "../../mm/pcpu.h"
#include "../../mm/spanheap_bulk.h"
#include "../../mm/spanheap_fail.h"
#include "../../mm/spanheap_usercopy.h"
#include "fault_touch_util.h"
#include "guard_test_util.h"
#include "objcache_test_util.h"

/* A heap whose page heap unmaps every page given back (the kernel's
 * mm.debug_pagealloc), this thread on CPU 0. */
static bool debug_heap(void)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	hc.flags = MHEAP_DEBUG_SCAV_ON_FREE;
	if (!sh_heap_new_with(&heap, &sh, &hc, NULL))
		return false;
	mm_port_set_cpu(0);
	return true;
}

/* How many of v[0..n) fault when read at byte off. */
static size_t faulting(void **v, size_t n, size_t off)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += touch_faults((char *)v[i] + off);
	return k;
}

/* Debug mode: large objects of a batch (kmalloc_bulk, kfree_bulk) are
 * mapped when handed out and unmapped when freed, each as the single
 * calls' are, so a use after free of a bulk-freed one faults. */
KTEST(heap_mix, kfree_bulk_unmaps_large_objects_in_debug_mode)
{
	KASSERT(debug_heap());
	static void *v[6];
	KASSERT(spanheap_alloc_bulk(&sh, 40 << 10, 0, 6, v) == 6);
	for (int i = 0; i < 6; i++)
		memset(v[i], 0x77, 40 << 10);
	KEXPECT_EQ(faulting(v, 6, 100), 0);
	spanheap_free_bulk(&sh, 6, v);
	KEXPECT_EQ(faulting(v, 6, 100), 6);
	KEXPECT_EQ(faulting(v, 6, (40 << 10) - 1), 6);
	SH_CHECK(&sh, "after the large batch in debug mode");
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* Debug mode: spans emptied by kfree_bulk go back to the page heap, and
 * are unmapped there, as spans the single free emptied: a read of a
 * bulk-freed small object faults once its span is given back. */
KTEST(heap_mix, kfree_bulk_empties_spans_that_debug_mode_unmaps)
{
	KASSERT(debug_heap());
	enum { N = 256 };
	static void *v[N];
	KASSERT(spanheap_alloc_bulk(&sh, 2048, MM_ZERO, N, v) == N);
	for (int i = 0; i < N; i++)
		memset(v[i], 0x66, 2048);
	spanheap_free_bulk(&sh, N / 2, v);
	for (int i = N / 2; i < N; i++)
		spanheap_free(&sh, v[i]);
	spanheap_release_all(&sh); /* the magazines back, the spans swept */
	KEXPECT_EQ(faulting(v, N / 2, 8), N / 2);
	KEXPECT_EQ(faulting(v + N / 2, N / 2, 8), N / 2);
	SH_CHECK(&sh, "after the small batch in debug mode");
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* Debug mode: a batch that holds an object freed already, whose pages
 * are unmapped (a large one's at its free, a small one's span given
 * back), panics naming the entry and the misuse, as the single free
 * does: the batch's look at the entry reads no unmapped page. */
KTEST(heap_mix, kfree_bulk_of_an_unmapped_object_names_it)
{
	KASSERT(debug_heap());
	static void *v[2];
	void *big = spanheap_alloc(&sh, 40 << 10, 0);
	void *small = spanheap_alloc(&sh, 2048, 0);
	KASSERT(big && small);
	spanheap_free(&sh, big);
	spanheap_free(&sh, small);
	spanheap_release_all(&sh);
	KEXPECT(touch_faults(big) && touch_faults(small));
	static char log[1024];
	mm_port_set_quiet(true);
	mm_port_log_capture(log, sizeof(log));
	v[0] = big;
	SH_EXPECT_PANIC(spanheap_free_bulk(&sh, 1, v),
	                "a large span freed twice");
	KEXPECT(strstr(log, "entry 0 of 1") != NULL);
	v[0] = spanheap_alloc(&sh, 64, 0); /* freed by the batch */
	v[1] = small;
	SH_EXPECT_PANIC(spanheap_free_bulk(&sh, 2, v),
	                "but in no span (never allocated, or its span was "
	                "freed)");
	KEXPECT(strstr(log, "entry 1 of 2") != NULL);
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
	spanheap_release_all(&sh);
	SH_CHECK(&sh, "after the refused batches");
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

static void ctor(void *p)
{
	memset(p, 0x5c, 8);
}

/* Debug mode: a constructor cache's slabs emptied by
 * kmem_cache_free_bulk and given back by a shrink are unmapped, as those
 * emptied by single frees. */
KTEST(heap_mix, cache_free_bulk_slabs_are_unmapped_in_debug_mode)
{
	KASSERT(debug_heap());
	struct objcache *c = objcache_create_flags(&sh, "dbg", 200, 0, 0, ctor);
	KASSERT(c && c->own);
	enum { N = 300 };
	static void *v[N];
	KASSERT(objcache_alloc_bulk(c, 0, N, v) == N);
	KEXPECT_EQ(faulting(v, N, 0), 0);
	objcache_free_bulk(c, N, v);
	KEXPECT_EQ(live(c), 0);
	objcache_shrink(c);
	spanheap_release_all(&sh);
	struct objcache_slabs s;
	objcache_slabs_info(c, &s);
	KEXPECT_EQ(s.slabs + s.stashed, 0);
	KEXPECT_EQ(faulting(v, N, 0), N);
	/* One of them in a batch again: named, its slab's unmapped
	 * header not read (the slab's owner is cleared before its free). */
	static char log[512];
	mm_port_set_quiet(true);
	mm_port_log_capture(log, sizeof(log));
	SH_EXPECT_PANIC(objcache_free_bulk(c, 1, v), "freed since");
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
	KEXPECT(strstr(log, "cache 'dbg': entry 0 of 1") != NULL);
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

static char log_buf[2048];

static enum spanheap_copy_verdict check(const void *p, size_t n)
{
	return sh_copy_check_logged(&sh, p, n, log_buf, sizeof(log_buf));
}

/* A heap whose guarded pool of 8 slots samples every refill. */
static bool guard_heap(void)
{
	return sh_guard_heap_fresh(&heap, &sh, 8, 1, false);
}

static void guard_heap_release(void)
{
	SH_GUARD_RELEASE(&heap, &sh, "after the guarded reallocs");
}

/* A guarded object's usable size and copy bound are the bytes asked; a
 * growth that failure injection fails leaves it as it was; a shrink is
 * never failed; a growth past 32 KiB moves it to a large object, its
 * bytes kept, zeros after them with MM_ZERO, bounded by its pages, and
 * its old page faults once drained. */
KTEST(heap_mix, realloc_of_a_guarded_object)
{
	KASSERT(guard_heap());
	char *p = spanheap_alloc(&sh, 100, 0);
	KASSERT(p && spanheap_guard_owns(&sh.guard, p));
	memset(p, 0xab, 100);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 100);
	KEXPECT_EQ(check(p, 100), SPANHEAP_COPY_INSIDE);
	KEXPECT_EQ(check(p, 101), SPANHEAP_COPY_BAD);
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1};
	KASSERT(spanheap_fail_arm(&sh, &a));
	mm_port_set_quiet(true);
	KEXPECT(spanheap_realloc(&sh, p, 300, 0) == NULL);
	mm_port_set_quiet(false);
	KEXPECT(spanheap_fail_get(&sh, &a) && a.times == 0);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 100);
	KEXPECT(all_bytes(p, 100, 0xab));
	a.times = 1;
	KASSERT(spanheap_fail_arm(&sh, &a));
	char *q = spanheap_realloc(&sh, p, 60, 0); /* a shrink: not asked */
	KEXPECT(spanheap_fail_get(&sh, &a) && a.times == 1);
	spanheap_fail_disarm(&sh);
	KASSERT(q && q != p && spanheap_guard_owns(&sh.guard, q));
	KEXPECT_EQ(spanheap_usable_size(&sh, q), 60);
	KEXPECT(all_bytes(q, 60, 0xab));
	spanheap_guard_drain(&sh);
	KEXPECT(touch_faults(p));
	char *r = spanheap_realloc(&sh, q, 40 << 10, MM_ZERO);
	KASSERT(r && !spanheap_guard_owns(&sh.guard, r));
	size_t us = spanheap_usable_size(&sh, r);
	KEXPECT(us >= 40 << 10);
	KEXPECT(all_bytes(r, 60, 0xab) && all_bytes(r + 60, us - 60, 0));
	KEXPECT_EQ(check(r, us), SPANHEAP_COPY_INSIDE);
	KEXPECT_EQ(check(r, us + 1), SPANHEAP_COPY_BAD);
	spanheap_guard_drain(&sh);
	KEXPECT(touch_faults(q));
	spanheap_free(&sh, r);
	guard_heap_release();
}

/* MM_ATOMIC, in a context that cannot sleep (an interrupt handler's): a
 * guarded object grows and shrinks; its old page waits for the next
 * drain in thread context (the unmap waits for other CPUs), then
 * faults. */
KTEST(heap_mix, realloc_of_a_guarded_object_in_atomic_context)
{
	KASSERT(guard_heap());
	char *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && spanheap_guard_owns(&sh.guard, p));
	memset(p, 0x3c, 64);
	mm_port_set_atomic(true);
	char *q = spanheap_realloc(&sh, p, 1000, MM_ATOMIC);
	bool kept = q && all_bytes(q, 64, 0x3c);
	char *r = q ? spanheap_realloc(&sh, q, 16, MM_ATOMIC) : NULL;
	/* Past 32 KiB, within an atomic large object's 64 pages: the
	 * guarded object becomes a large one, or stays whole if the
	 * heap has no pages ready. */
	char *big = r ? spanheap_realloc(&sh, r, 40 << 10, MM_ATOMIC) : NULL;
	mm_port_set_atomic(false);
	KASSERT(q && r);
	KEXPECT(kept && all_bytes(big ? big : r, 16, 0x3c));
	KEXPECT(spanheap_guard_owns(&sh.guard, q));
	/* Freed where nothing may sleep, q's page waits for the drain,
	 * mapped: a copy at it is refused all the same. */
	KEXPECT_EQ(check(q, 8), SPANHEAP_COPY_BAD);
	KEXPECT(strstr(log_buf, "guarded object") &&
	        strstr(log_buf, "which is free"));
	KEXPECT_EQ(spanheap_usable_size(&sh, big ? big : r),
	           big ? (size_t)40 << 10 : 16);
	spanheap_guard_drain(&sh);
	KEXPECT(touch_faults(p));
	KEXPECT(touch_faults(q));
	if (big && spanheap_guard_owns(&sh.guard, r))
		KEXPECT(touch_faults(r));
	spanheap_free(&sh, big ? big : r);
	guard_heap_release();
}

/* Percpu memory across release-everything (spanheap_release_all, the
 * shell's "free" and the shrinkers' last resort): its chunks are heap
 * objects in use, so every CPU's copy keeps its value, and freed and
 * trimmed the chunks go back with the rest. */
KTEST(heap_mix, percpu_memory_survives_release_everything)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static struct pcpu pc;
	KASSERT(pcpu_init(&pc, &sh, 4));
	uint64_t *v = pcpu_alloc(&pc, sizeof(uint64_t), sizeof(uint64_t));
	KASSERT(v);
	for (unsigned c = 0; c < 4; c++)
		*(uint64_t *)pcpu_ptr(&pc, v, c) = 0x1000 + c;
	spanheap_release_all(&sh);
	for (unsigned c = 0; c < 4; c++)
		KEXPECT_EQ(*(uint64_t *)pcpu_ptr(&pc, v, c), 0x1000 + c);
	pcpu_free(&pc, v);
	pcpu_trim(&pc);
	spanheap_release_all(&sh);
	SH_CHECK(&sh, "after the percpu memory");
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/*
 * The hardened usercopy check (check_object_size in kernel/heap_copy.h,
 * over mm/spanheap_usercopy.c) on the real kernel, in whichever heap mode
 * it booted (mm.debug_poison, mm.guard): a copy of an object's ksize
 * passes at every size class and for a large object, a byte more is
 * refused with a line naming the object, a freed object is refused, a
 * stack's and the kernel image's memory is not the heap's, a constructor
 * cache's object is bounded by its cache's size, a DMA buffer by its
 * pages, and the check runs in the timer interrupt on every CPU it lands. The
 * host suite's spanheap_usercopy tests check the verdicts and lines exactly;
 * the harness's demo_usercopy_overrun shows the panic.
 */
#include <stdatomic.h>
#include <stdint.h>

#include "kernel/dma.h"
#include "kernel/heap_copy.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/heap_util.h"

static enum spanheap_copy_verdict verdict(const void *p, size_t n, bool out)
{
	return spanheap_check_copy(&kspanheap, p, n,
	                           out ? SPANHEAP_COPY_TO_USER
	                               : SPANHEAP_COPY_FROM_USER);
}

/* Its ksize both ways passes, a byte more is refused both ways. */
static bool bounded_at_ksize(const void *p)
{
	size_t n = ksize(p);
	check_object_size(p, n, true); /* panics if refused */
	check_object_size(p, n, false);
	check_object_size((const char *)p + n - 1, 1, true);
	return verdict(p, n, true) == SPANHEAP_COPY_INSIDE &&
	       verdict(p, n + 1, true) == SPANHEAP_COPY_BAD &&
	       verdict(p, n + 1, false) == SPANHEAP_COPY_BAD &&
	       verdict((const char *)p + 1, n, false) == SPANHEAP_COPY_BAD;
}

static void *objs[SC_NCLASSES];

KTEST(kmalloc_usercopy, every_class_and_a_large_object_at_ksize)
{
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		objs[c] = kmalloc(sizeclass_info[c].size - 3, 0);
		KASSERT(objs[c] != NULL);
	}
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		if (!bounded_at_ksize(objs[c]))
			ktest_fail_at(__FILE__, __LINE__, "class %u: %zu bytes",
			              c, ksize(objs[c]));
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		kfree(objs[c]);
		objs[c] = NULL; /* the leak scan reads .bss */
	}
	char *big = kmalloc(100 * 1024 + 5, 0);
	KASSERT(big != NULL);
	KEXPECT_EQ(ksize(big), 104 * 1024);
	KEXPECT(bounded_at_ksize(big));
	kfree(big);
	heap_settle();
}

KTEST(kmalloc_usercopy, a_freed_object_is_refused)
{
	char *p = kmalloc(200, 0);
	KASSERT(p != NULL);
	KEXPECT_EQ(verdict(p, 200, true), SPANHEAP_COPY_INSIDE);
	kfree(p);
	/* Another CPU, or an interrupt here, may take it again meanwhile:
	 * then it is theirs, and the copy's verdict is theirs too. */
	enum spanheap_copy_verdict v = verdict(p, 8, false);
	struct spanheap_where w;
	spanheap_where(&kspanheap, p, &w);
	if (w.state != SPANHEAP_OBJ_ALLOCATED)
		KEXPECT_EQ(v, SPANHEAP_COPY_BAD);
	heap_settle();
}

static void uc_ctor(void *p)
{
	*(uint64_t *)p = 0x75636f7079;
}

/* A constructor cache's object is bounded by the cache's size: the slab
 * is no large object to copy across (rv118; the host's objcache_mix
 * test checks the lines). The kernel's own copy check passes inside. */
KTEST(kmalloc_usercopy, an_own_slab_object_is_bounded_by_its_cache)
{
	struct objcache *c =
	        kmem_cache_create_flags("uc-own", 72, 0, 0, uc_ctor);
	KASSERT(c != NULL);
	char *p = kmem_cache_alloc(c, 0);
	KASSERT(p != NULL);
	check_object_size(p, 72, true); /* panics if refused */
	check_object_size(p, 72, false);
	KEXPECT_EQ(verdict(p, 72, true), SPANHEAP_COPY_INSIDE);
	KEXPECT_EQ(verdict(p, 73, true), SPANHEAP_COPY_BAD);
	KEXPECT_EQ(verdict(p + 8, 2 * 72, false), SPANHEAP_COPY_BAD);
	kmem_cache_free(c, p);
	KEXPECT(kmem_cache_destroy(c));
}

static char image_data[256];

KTEST(kmalloc_usercopy, a_stack_and_the_image_are_not_the_heaps)
{
	char stack[128];
	for (size_t i = 0; i < sizeof(stack); i++)
		stack[i] = (char)i;
	KEXPECT_EQ(verdict(stack, sizeof(stack), true), SPANHEAP_COPY_NOT_OURS);
	KEXPECT_EQ(verdict(image_data, sizeof(image_data), false),
	           SPANHEAP_COPY_NOT_OURS);
	check_object_size(stack, sizeof(stack), false);
	check_object_size(image_data, sizeof(image_data), true);
	KEXPECT_EQ(verdict(NULL, 0, true), SPANHEAP_COPY_NOT_OURS);
}

/* A DMA buffer (rv122): a copy inside its whole pages passes; one past
 * its last page, from before its first, or across two buffers is
 * refused, naming the buffer. Until rv122 each passed as memory not the
 * heap's, and a copy to or from a device's window overran into whatever
 * frames lay next. */
KTEST(kmalloc_usercopy, a_dma_buffer_bounds_a_copy)
{
	paddr_t pa, pb;
	char *a = dma_alloc(PAGE_SIZE + 100, PAGE_SIZE, DMA_LIMIT_ANY, 0, &pa);
	char *b = dma_alloc(PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, 0, &pb);
	KASSERT(a && b);
	KEXPECT(usercopy_refused(a, PAGE_SIZE + 100, true) == NULL);
	KEXPECT(usercopy_refused(a, 2 * PAGE_SIZE, false) == NULL);
	KEXPECT(usercopy_refused(a + 2 * PAGE_SIZE - 1, 1, true) == NULL);
	check_object_size(a + 8, 2 * PAGE_SIZE - 8, true);
	KEXPECT(usercopy_refused(a, 2 * PAGE_SIZE + 1, true) != NULL);
	KEXPECT(usercopy_refused(a - 1, 2, false) != NULL);
	KEXPECT(usercopy_refused(b - 1, 2, false) != NULL);
	if (b == a + 2 * PAGE_SIZE) /* adjacent: one copy over both */
		KEXPECT(usercopy_refused(a, 3 * PAGE_SIZE, true) != NULL);
	dma_free(b, PAGE_SIZE);
	dma_free(a, PAGE_SIZE + 100);
}

static _Atomic unsigned tick_checks, tick_bad, tick_busy;
static void *_Atomic tick_obj;

/* On every tick: the check of a live object's ksize and of a byte more,
 * in the timer interrupt. Counted busy before it looks at the object, so
 * the test, having cleared tick_obj, waits out every hook that saw it. */
static void usercopy_tick(void)
{
	atomic_fetch_add(&tick_busy, 1);
	char *p = atomic_load(&tick_obj);
	if (p) {
		check_object_size(p, ksize(p), true);
		if (verdict(p, ksize(p) + 1, true) != SPANHEAP_COPY_BAD)
			atomic_fetch_add(&tick_bad, 1);
		atomic_fetch_add(&tick_checks, 1);
	}
	atomic_fetch_sub(&tick_busy, 1);
}

KTEST(kmalloc_usercopy, the_check_runs_in_an_interrupt_handler)
{
	char *p = kmalloc(72, 0);
	KASSERT(p != NULL);
	atomic_store(&tick_checks, 0);
	atomic_store(&tick_bad, 0);
	atomic_store(&tick_obj, p);
	sched_tick_hook = usercopy_tick;
	while (atomic_load(&tick_checks) < 20)
		thread_sleep_ns(1000000);
	sched_tick_hook = NULL;
	atomic_store(&tick_obj, NULL);
	while (atomic_load(&tick_busy) != 0)
		thread_sleep_ns(1000000);
	KEXPECT_EQ(atomic_load(&tick_bad), 0);
	kfree(p);
	heap_settle();
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): a copy of 100
 * bytes out of a 40-byte object must panic, naming it. */
KTEST(demo, usercopy_overrun)
{
	char *p = kmalloc(40, 0);
	KASSERT(p != NULL);
	check_object_size(p, 100, true);
	ktest_fail_at(__FILE__, __LINE__,
	              "check_object_size passed 100 bytes of a 40-byte object");
}
#endif

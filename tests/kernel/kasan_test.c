/*
 * KASAN (kernel/kasan.h): this file is built with the kernel address
 * sanitizer (the Makefile's KASAN_SRCS), so its own loads and stores are
 * checked against the heap's shadow when the kernel booted with mm.kasan
 * (make test-kernel-poison does). With the mode on: correct accesses of
 * every kind raise no report, and each bug is caught at the access with
 * the right kind (the tests arm kasan_expect to count instead of
 * panicking); off, nothing is reported. The demos (KTEST_FAIL_DEMO) make
 * the same bugs for real: tools/test-harness checks their reports.
 */
#include "kernel/heap.h"
#include "kernel/heap_copy.h"
#include "kernel/kasan.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/kasan_util.h"

/* krealloc grown and shrunk keeps the bytes and the shadow follows. */
static bool realloc_round(size_t n, unsigned s)
{
	uint8_t *p = kmalloc(n, 0);
	if (!p || !touch(p, n, s))
		return false;
	uint8_t *q = krealloc(p, n * 2 + 3, 0);
	if (!q)
		return false;
	for (size_t i = 0; i < n; i++)
		if (q[i] != pat(i, s))
			return false;
	bool ok = touch(q, n * 2 + 3, s + 1);
	uint8_t *r = krealloc(q, n / 2 + 1, 0);
	ok = ok && r && touch(r, n / 2 + 1, s + 2) &&
	     (n / 2 + 1 >= 32768 || shadow_fits(r, n / 2 + 1));
	kfree(r ? r : q);
	return ok;
}

KTEST(kasan, correct_accesses_raise_no_report)
{
	if (!kasan_enabled())
		KTEST_SKIP("no mm.kasan");
	struct kasan_seen seen = {0};
	kasan_expect(&seen);
	unsigned bad = 0;
	for (size_t n = 1; n <= 1100; n += (n < 64 ? 1 : 37)) {
		uint8_t *p = kmalloc(n, 0), *q = kmalloc(n + 5, 0);
		if (!p || !q || !touch(p, n, (unsigned)n) || !shadow_fits(p, n))
			bad++;
		else {
			memcpy(q + 5, p, n);
			memmove(q, q + 5, n);
			bad += q[n - 1] != pat(n - 1, (unsigned)n);
		}
		kfree(p);
		kfree(q);
	}
	static const size_t sizes[] = {13, 100, 2000, 5000, 20000, 70000};
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		bad += !realloc_round(sizes[i], i);
	struct objcache *c = kmem_cache_create("kasan-test", 52, 0);
	KASSERT(c != NULL);
	uint8_t *objs[24];
	for (int i = 0; i < 24; i++) {
		objs[i] = kmem_cache_alloc(c, 0);
		bad += !objs[i] || !touch(objs[i], 52, i);
	}
	for (int i = 0; i < 24; i++)
		kmem_cache_free(c, objs[i]);
	KEXPECT(kmem_cache_destroy(c));
	kasan_expect(NULL);
	KEXPECT_EQ(bad, 0u);
	if (seen.reports)
		ktest_diag("first: %s of %zu at %p (byte %p)", seen.kind,
		           seen.size, (void *)seen.addr, (void *)seen.bad);
	KEXPECT_EQ(seen.reports, 0u);
}

/* Arms seen, runs nothing itself: the caller's access follows. */
static struct kasan_seen *arm(struct kasan_seen *seen)
{
	*seen = (struct kasan_seen){0};
	kasan_expect(seen);
	return seen;
}

/* An address in a span whose shadow says never used (an object not yet
 * handed out, or the span's tail), or NULL; *keep, an object of that span
 * held so that the span stays (the caller frees it). */
static uint8_t *never_used(void **keep)
{
	static const size_t sizes[] = {3000, 40, 100, 200, 500, 1000};
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct spanheap_where w;
		*keep = kmalloc(sizes[i], 0);
		if (!*keep || !spanheap_where(&kspanheap, *keep, &w) ||
		    w.kind != SPANHEAP_WHERE_SMALL)
			return NULL;
		uintptr_t end = w.span_base + (uintptr_t)w.span_pages * 4096;
		for (uintptr_t a = end - 8; a >= w.span_base; a -= 8) {
			bool mapped;
			if (kasan_shadow_of((void *)a, &mapped) == KASAN_UNUSED)
				return (uint8_t *)a;
		}
		kfree(*keep);
	}
	*keep = NULL;
	return NULL;
}

KTEST(kasan, bad_accesses_are_caught_at_the_access)
{
	if (!kasan_enabled())
		KTEST_SKIP("no mm.kasan");
	/* Its 13 bytes would be the guarded pool's, outside the arena and
	 * its shadow: a read past them hits the canary, then the guard. */
	if (kspanheap.guard.base)
		KTEST_SKIP("mm.guard: sampled objects have no shadow");
	struct kasan_seen seen;
	uint8_t *p = kmalloc(13, 0), dst[16];
	KASSERT(p != NULL);
	(void)((volatile uint8_t *)p)[12]; /* its last byte: fine */
	arm(&seen);
	(void)((volatile uint8_t *)p)[13];
	kasan_expect(NULL);
	KEXPECT_EQ(seen.reports, 1u);
	KEXPECT_EQ(seen.bad, (uintptr_t)p + 13);
	KEXPECT(!seen.write && seen.size == 1 &&
	        !strcmp(seen.kind, "slab-out-of-bounds"));
	arm(&seen);
	(void)*(volatile uint64_t *)(p + 8); /* bytes 8-15: 13 on are not */
	memcpy(dst, p, 14);
	kasan_expect(NULL);
	KEXPECT_EQ(seen.reports, 2u);
	KEXPECT(seen.bad == (uintptr_t)p + 13 && seen.size == 8);
	kfree(p);
	arm(&seen);
	/* The poison's own byte: the heap's check at its reuse stays quiet. */
	((volatile uint8_t *)p)[0] = SPANHEAP_POISON_BYTE;
	kasan_expect(NULL);
	KEXPECT_EQ(seen.reports, 1u);
	KEXPECT(seen.write && !strcmp(seen.kind, "use-after-free"));
	void *q;
	uint8_t *u = never_used(&q);
	KASSERT(u != NULL);
	arm(&seen);
	(void)((volatile uint8_t *)u)[0];
	kasan_expect(NULL);
	kfree(q);
	KEXPECT_EQ(seen.reports, 1u);
	KEXPECT(!strcmp(seen.kind, "use-of-never-allocated"));
}

/* A large object (past the 32 KiB classes) is the caller's by whole
 * pages: a shrinking realloc gives its tail back (KASAN_PAGE_FREE, an
 * access reported), a growth in place over those pages makes them
 * accessible again, and its free gives every page back. Each of these
 * three calls of the hook went untested (mutation audit, rv98). */
KTEST(kasan, large_objects_pages_follow_shrink_growth_and_free)
{
	if (!kasan_enabled())
		KTEST_SKIP("no mm.kasan");
	enum { PAGE = 4096, BIG = 70000, SMALLER = 40000 }; /* 18, 10 pages */
	struct kasan_seen seen;
	bool mapped;
	uint8_t *p = kmalloc(BIG, 0), *after = kmalloc(BIG, 0);
	KASSERT(p && after);
	uint8_t *q = krealloc(p, SMALLER, 0);
	KASSERT(q != NULL);
	KEXPECT(q == p); /* shrunk in place: pages 10 to 17 given back */
	KEXPECT_EQ(kasan_shadow_of(q + 12 * PAGE, &mapped), KASAN_PAGE_FREE);
	/* mm.debug_pagealloc unmapped them: the report counted, the read
	 * itself would fault (with no test armed, the report's panic
	 * comes first). */
	bool unmapped = kheap.cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE;
	arm(&seen);
	if (!unmapped)
		(void)((volatile uint8_t *)q)[12 * PAGE];
	kasan_expect(NULL);
	KEXPECT_EQ(seen.reports, unmapped ? 0u : 1u);
	KEXPECT(unmapped ||
	        (seen.shadow == KASAN_PAGE_FREE &&
	         !strcmp(seen.kind, "use-after-free (pages given back to the "
	                            "page heap)")));
	uint8_t *r = krealloc(q, BIG, 0);
	KASSERT(r != NULL);
	KEXPECT(r == q); /* grown in place over the pages it gave back */
	arm(&seen);
	bool ok = touch(r, BIG, 9); /* every page, the last one's too */
	kasan_expect(NULL);
	KEXPECT(ok);
	KEXPECT_EQ(seen.reports, 0u);
	kfree(r);
	KEXPECT_EQ(kasan_shadow_of(r, &mapped), KASAN_PAGE_FREE);
	arm(&seen);
	if (!unmapped)
		(void)((volatile uint8_t *)r)[0];
	kasan_expect(NULL);
	kfree(after);
	KEXPECT_EQ(seen.reports, unmapped ? 0u : 1u);
	KEXPECT(unmapped ||
	        (seen.bad == (uintptr_t)r && seen.shadow == KASAN_PAGE_FREE));
}

static void bulk_ctor(void *p)
{
	memset(p, 0x5c, 8);
}

/* Batches (rv122's review): kmalloc_bulk's and a constructor cache's
 * kmem_cache_alloc_bulk's objects are shadowed as the single calls'
 * (accessible to the bytes asked, the red zone after), and a read of
 * each one after kfree_bulk or kmem_cache_free_bulk is reported at the
 * access as a use after free. */
KTEST(kasan, a_batch_is_shadowed_as_single_calls)
{
	if (!kasan_enabled())
		KTEST_SKIP("no mm.kasan");
	struct objcache *c =
	        kmem_cache_create_flags("kasan-bulk", 44, 0, 0, bulk_ctor);
	KASSERT(c != NULL);
	void *v[8], *w[8];
	KASSERT(kmalloc_bulk(37, 0, 8, v) == 8);
	KASSERT(kmem_cache_alloc_bulk(c, 0, 8, w) == 8);
	unsigned fits = 0;
	for (int i = 0; i < 8; i++)
		fits += shadow_fits(v[i], 37) + shadow_fits(w[i], 44);
	KEXPECT_EQ(fits, 16u);
	/* mm.guard's sampled objects have no shadow: a read after their
	 * free faults on the pool's unmapped page instead. */
	bool guarded[8];
	unsigned shadowed = 8;
	for (int i = 0; i < 8; i++) {
		guarded[i] = spanheap_guard_owns(&kspanheap.guard, v[i]);
		shadowed += !guarded[i];
	}
	kfree_bulk(8, v);
	kmem_cache_free_bulk(c, 8, w);
	struct kasan_seen seen;
	arm(&seen);
	for (int i = 0; i < 8; i++) {
		if (!guarded[i])
			(void)((volatile uint8_t *)v[i])[16];
		(void)((volatile uint8_t *)w[i])[16];
	}
	kasan_expect(NULL);
	KEXPECT_EQ(seen.reports, shadowed);
	KEXPECT(!strcmp(seen.kind, "use-after-free"));
	KEXPECT(kmem_cache_destroy(c));
}

KTEST(kasan, off_reports_nothing)
{
	if (kasan_enabled())
		KTEST_SKIP("mm.kasan is on");
	struct kasan_seen seen;
	uint8_t *p = kmalloc(13, 0);
	KASSERT(p != NULL);
	arm(&seen);
	(void)((volatile uint8_t *)p)[13]; /* its class's slack: memory */
	kasan_expect(NULL);
	kfree(p);
	KEXPECT_EQ(seen.reports, 0u);
}

#ifdef KTEST_FAIL_DEMO
/* With mm.kasan: each panics at its access (tools/test-harness). */
KTEST(demo, kasan_read_past_13_bytes)
{
	uint8_t *p = kmalloc(13, 0);
	KASSERT(p != NULL);
	ktest_diag("object at %p", p);
	(void)((volatile uint8_t *)p)[13];
	ktest_fail_at(__FILE__, __LINE__, "the read past the end went unseen");
}

KTEST(demo, kasan_write_after_free)
{
	uint8_t *p = kmalloc(64, 0);
	KASSERT(p != NULL);
	ktest_diag("object at %p", p);
	kfree(p);
	((volatile uint8_t *)p)[40] = 1;
	ktest_fail_at(__FILE__, __LINE__, "the write after free went unseen");
}

KTEST(demo, kasan_read_never_allocated)
{
	void *q;
	uint8_t *u = never_used(&q);
	KASSERT(u != NULL);
	ktest_diag("never used at %p", u);
	(void)((volatile uint8_t *)u)[0];
	ktest_fail_at(__FILE__, __LINE__, "the read went unseen");
}
#endif

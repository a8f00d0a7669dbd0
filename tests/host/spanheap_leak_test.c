/*
 * The leak scan (spanheap_leak_scan, mm/spanheap_leak.c; Linux's
 * kmemleak): from a root array, objects pointed to (at their start or
 * inside), objects reached only through other objects, through a large
 * object and through a guarded one, are kept; an unreferenced object
 * (a guarded one too), the object only it points to and an unreferenced
 * cycle are the leaks, each with its size, class and allocating stack;
 * freed objects are not judged; young objects are spared by min_age_ns;
 * a short list still counts every leak; a work area too small asks for
 * a retry (whichever part of it does not fit, writing nothing past it); a heap
 * without records is refused; and the scan's work memory may be an object of
 * the scanned heap, neither scanned nor judged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "leak_scan_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* The roots: a static array, as a kernel's data. */
static uintptr_t roots_arr[8];

static bool fresh(unsigned guard_slots)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	sc.guard_slots = (uint8_t)guard_slots;
	sc.guard_interval = 1000;
	return sh_heap_fresh_with(&heap, &sh, &sc);
}

static void release(void)
{
	if (sh.guard.base) {
		spanheap_guard_drain(&sh);
		mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	}
	sh_heap_release(&heap, &sh);
}

/* The leak allocation site, named by the records' stacks. */
SH_SITE static void **leak_site(size_t size)
{
	void **p = spanheap_alloc(&sh, size, MM_ZERO);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

/* A scan of roots_arr (leak_scan_util.h). */
static struct scan_out scan(uint64_t min_age_ns, size_t max)
{
	return leak_scan_roots(&sh, roots_arr, 8, min_age_ns, max);
}

/* True if p is among the first n of list. */
static bool listed(const struct spanheap_leak *list, long n, const void *p)
{
	for (long i = 0; i < n; i++)
		if (list[i].addr == (uintptr_t)p)
			return true;
	return false;
}

KTEST(spanheap_leak, finds_what_nothing_reaches)
{
	KASSERT(fresh(0));
	void **a = leak_site(64), **b = leak_site(64), **c = leak_site(100);
	void **d = leak_site(32), **e = leak_site(48), **g = leak_site(16);
	void **h = leak_site(80), **i = leak_site(80), **freed = leak_site(64);
	void **big = leak_site(100 << 10); /* large: read, not judged */
	KASSERT(a && b && c && d && e && g && h && i && freed && big);
	roots_arr[0] = (uintptr_t)a; /* a, and b through it */
	a[3] = b;
	roots_arr[1] = (uintptr_t)d + 20; /* inside d keeps d */
	roots_arr[2] = (uintptr_t)big;    /* g through the large one */
	big[5000] = g;
	c[0] = e; /* c leaks, and e with it */
	h[1] = i; /* a cycle nothing reaches */
	i[2] = h;
	roots_arr[3] = (uintptr_t)freed; /* freed: not judged */
	spanheap_free(&sh, freed);
	struct scan_out o = scan(0, 16);
	KEXPECT_EQ(o.n, 4);
	KEXPECT_EQ(o.r.leaks, 4);
	KEXPECT(listed(o.list, 4, c) && listed(o.list, 4, e) &&
	        listed(o.list, 4, h) && listed(o.list, 4, i));
	KEXPECT_EQ(o.r.objects, 8);
	KEXPECT_EQ(o.r.reachable, 4);
	KEXPECT_EQ(o.r.young, 0);
	for (long k = 0; k < 4 && o.n == 4; k++) {
		const struct spanheap_leak *l = &o.list[k];
		KEXPECT_EQ(l->asked, l->addr == (uintptr_t)c   ? 100
		                     : l->addr == (uintptr_t)e ? 48
		                                               : 80);
		KEXPECT_EQ(l->sizeclass,
		           spanheap_class_serving(&sh, l->asked, 16));
		KEXPECT(l->alloc.ns != 0 && l->alloc.npcs > 0);
		KEXPECT_EQ(l->owner, 0);
	}
	/* Once a root points at c, nothing leaks but the cycle. */
	roots_arr[4] = (uintptr_t)c;
	o = scan(0, 16);
	KEXPECT(o.n == 2 && listed(o.list, 2, h) && listed(o.list, 2, i));
	/* Young objects are spared; a short list counts them all. */
	o = scan(UINT64_MAX / 2, 16);
	KEXPECT(o.n == 0 && o.r.young == 2);
	o = scan(0, 1);
	KEXPECT(o.n == 2 && o.r.leaks == 2 &&
	        listed(o.list, 1, h) != listed(o.list, 1, i));
	memset(roots_arr, 0, sizeof(roots_arr));
	void **all[] = {a, b, c, d, e, g, h, i, big};
	for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
		spanheap_free(&sh, all[k]);
	o = scan(0, 16);
	KEXPECT(o.n == 0 && o.r.objects == 0);
	release();
}

/* The guarded pool's live objects are judged as the spans' are, by
 * their slots' records: one a root points to (its start or inside) is
 * kept, with what only it points to; unreferenced, or pointed to just
 * past its end, it is a leak, listed after the spans' objects with its
 * size, class and allocation's time, even if the heap itself is read
 * (its slot points to it); freed, it is not judged. */
KTEST(spanheap_leak, guarded_objects_are_judged)
{
	KASSERT(fresh(4));
	void **gd = spanheap_guard_alloc(&sh, 40, 16, 0, sizeclass_of(40));
	void **kept = leak_site(64), **lost = leak_site(64);
	KASSERT(gd && kept && lost);
	KASSERT(spanheap_guard_owns(&sh.guard, gd));
	gd[2] = kept;
	uintptr_t at[] = {(uintptr_t)gd, (uintptr_t)gd + 39};
	for (size_t k = 0; k < 2; k++) {
		roots_arr[0] = at[k];
		struct scan_out o = scan(0, 16);
		KEXPECT(o.n == 1 && o.list[0].addr == (uintptr_t)lost);
		KEXPECT_EQ(o.r.objects, 3);
		KEXPECT_EQ(o.r.reachable, 2);
	}
	roots_arr[0] = (uintptr_t)gd + 40; /* past its bytes: keeps nothing */
	struct scan_out o = scan(0, 16);
	KEXPECT(o.n == 3 && listed(o.list, 3, kept) && listed(o.list, 3, lost));
	KEXPECT(o.list[2].addr == (uintptr_t)gd);
	KEXPECT_EQ(o.list[2].asked, 40);
	KEXPECT_EQ(o.list[2].sizeclass, sizeclass_of(40));
	KEXPECT(o.list[2].alloc.ns != 0);
	/* The heap itself among the roots, as a kernel's is in its bss:
	 * its pool slot's pointer to the object keeps nothing. */
	struct spanheap_leak_range both[] = {
	        {(uintptr_t)roots_arr, (uintptr_t)(roots_arr + 8)},
	        {(uintptr_t)&sh, (uintptr_t)(&sh + 1)}};
	size_t bytes = spanheap_leak_work_bytes(&sh, 16);
	void *work = calloc(1, bytes);
	KASSERT(work);
	struct spanheap_leak_result r;
	KEXPECT_EQ(spanheap_leak_scan(&sh, work, bytes, both, 2, 0, 16, &r), 3);
	free(work);
	roots_arr[0] = 0;
	spanheap_free(&sh, gd);
	o = scan(0, 16);
	KEXPECT(o.n == 2 && listed(o.list, 2, kept) && listed(o.list, 2, lost));
	KEXPECT_EQ(o.r.objects, 2);
	spanheap_free(&sh, kept);
	spanheap_free(&sh, lost);
	release();
}

/* A guarded object of 0 bytes asked (calloc(n, 0) sampled into the
 * pool) is kept by a pointer to its start, as a span's object of 0 bytes
 * asked is: until this test the scan counted a word as the guarded
 * object's only inside its bytes asked, none, and reported the object a
 * leak while a root held it (found by the span heap harness's leak check:
 * spanheap_diff.caches_and_pools_poison, seed 0x30c387, and the fuzz
 * seed leak_guarded_calloc_zero). */
KTEST(spanheap_leak, guarded_object_of_no_bytes_kept_by_its_start)
{
	KASSERT(fresh(4));
	void *gd = spanheap_guard_alloc(&sh, 0, 16, 0, sizeclass_of(0));
	void *sp = leak_site(0);
	KASSERT(gd && sp && spanheap_guard_owns(&sh.guard, gd));
	roots_arr[0] = (uintptr_t)gd;
	roots_arr[1] = (uintptr_t)sp;
	struct scan_out o = scan(0, 16);
	KEXPECT_EQ(o.n, 0);
	KEXPECT_EQ(o.r.objects, 2);
	KEXPECT_EQ(o.r.reachable, 2);
	roots_arr[0] = roots_arr[1] = 0;
	o = scan(0, 16);
	KEXPECT_EQ(o.n, 2);
	spanheap_free(&sh, gd);
	spanheap_free(&sh, sp);
	release();
}

/* The heaps' structs among the roots, as a kernel's are in its bss:
 * their records of the arena's bounds (the span heap's arena_base, the
 * page heap's base and its palloc's search addresses) keep nothing, so
 * an object at the arena's very base, which they point at, still leaks.
 * Since the metadata heap the first span starts there. A mutation audit
 * found the page heap's struct left out of the scan's holes unpinned:
 * read, it kept that object. */
KTEST(spanheap_leak, the_heaps_own_bounds_keep_nothing)
{
	KASSERT(fresh(0));
	void **first = leak_site(64);
	KASSERT(first);
	KASSERT((uintptr_t)first == heap.arena_base);
	struct spanheap_leak_range roots[] = {
	        {(uintptr_t)roots_arr, (uintptr_t)(roots_arr + 8)},
	        {(uintptr_t)&sh, (uintptr_t)(&sh + 1)},
	        {(uintptr_t)&heap, (uintptr_t)(&heap + 1)}};
	size_t bytes = spanheap_leak_work_bytes(&sh, 16);
	void *work = calloc(1, bytes);
	KASSERT(work);
	struct spanheap_leak_result r;
	long n = spanheap_leak_scan(&sh, work, bytes, roots, 3, 0, 16, &r);
	KEXPECT_EQ(n, 1);
	KEXPECT(n == 1 && spanheap_leak_list(work)[0].addr == (uintptr_t)first);
	free(work);
	spanheap_free(&sh, first);
	release();
}

/* The work area may be the heap's own object: it is neither read (its
 * spans' addresses would keep every span's first object) nor judged; too
 * small, the scan asks for a retry and reports nothing. */
KTEST(spanheap_leak, work_from_the_heap_and_too_small)
{
	KASSERT(fresh(0));
	void **lost = leak_site(64);
	KASSERT(lost);
	size_t bytes = spanheap_leak_work_bytes(&sh, 4);
	void *work = spanheap_alloc(&sh, bytes, 0);
	KASSERT(work);
	roots_arr[0] = (uintptr_t)work;
	struct spanheap_leak_range root = {(uintptr_t)roots_arr,
	                                   (uintptr_t)(roots_arr + 8)};
	struct spanheap_leak_result r;
	long n = spanheap_leak_scan(&sh, work, bytes, &root, 1, 0, 4, &r);
	KEXPECT(n == 1 && spanheap_leak_list(work)[0].addr == (uintptr_t)lost);
	/* Unreached, the work object is no leak either: it is skipped. */
	roots_arr[0] = 0;
	n = spanheap_leak_scan(&sh, work, bytes, &root, 1, 0, 4, &r);
	KEXPECT(n == 1 && spanheap_leak_list(work)[0].addr == (uintptr_t)lost);
	KEXPECT_EQ(spanheap_leak_scan(&sh, work, 64, &root, 1, 0, 4, &r),
	           SPANHEAP_LEAK_RETRY);
	KEXPECT_EQ(r.leaks, 0);
	spanheap_free(&sh, work);
	spanheap_free(&sh, lost);
	release();
}

/*
 * A work area of any size short of what the scan needs gets a retry and
 * nothing reported, and the scan writes no byte past it, whichever part
 * does not fit: the leak records, the spans (several: small ones of
 * three classes and a large one), or the marks and the stack after them
 * (the heap grew since spanheap_leak_work_bytes). Each area is a C heap
 * block of exactly its bytes, so that AddressSanitizer sees a write past
 * it. From the first size that fits on, the scan finds the one leak.
 */
KTEST(spanheap_leak, every_short_work_area_retries_and_stays_inside)
{
	KASSERT(fresh(0));
	void **lost = leak_site(64), **kept = leak_site(200);
	void **other = leak_site(1000), **big = leak_site(100 << 10);
	KASSERT(lost && kept && other && big);
	roots_arr[0] = (uintptr_t)kept;
	kept[1] = other;
	roots_arr[1] = (uintptr_t)big;
	struct spanheap_leak_range root = {(uintptr_t)roots_arr,
	                                   (uintptr_t)(roots_arr + 8)};
	size_t full = spanheap_leak_work_bytes(&sh, 2), fits = 0, retries = 0;
	for (size_t bytes = 8; bytes <= full && !fits; bytes += 8) {
		void *work = malloc(bytes);
		KASSERT(work);
		struct spanheap_leak_result r;
		memset(&r, 0xa5, sizeof(r));
		long n = spanheap_leak_scan(&sh, work, bytes, &root, 1, 0, 2,
		                            &r);
		if (n == SPANHEAP_LEAK_RETRY) {
			retries++;
			if (r.leaks != 0 || r.objects != 0)
				ktest_fail_at(__FILE__, __LINE__,
				              "%zu bytes: a retry reported %zu "
				              "leaks of %zu objects",
				              bytes, r.leaks, r.objects);
		} else {
			fits = bytes;
			KEXPECT_EQ(n, 1);
			KEXPECT(n == 1 && spanheap_leak_list(work)[0].addr ==
			                          (uintptr_t)lost);
			KEXPECT_EQ(r.objects, 3);
			KEXPECT_EQ(r.reachable, 2);
		}
		free(work);
	}
	ktest_diag("first fit %zu of %zu bytes, %zu retries before", fits, full,
	           retries);
	/* Past the records, room for the spans' entries, the marks and the
	 * stack: more than the records' bytes alone. */
	KEXPECT(fits > 2 * sizeof(struct spanheap_leak) + 64);
	KEXPECT_EQ(retries, fits / 8 - 1);
	/* Any bigger area finds the same. */
	for (size_t bytes = fits; bytes < fits + 256; bytes += 8) {
		void *work = malloc(bytes);
		KASSERT(work);
		struct spanheap_leak_result r;
		KEXPECT_EQ(spanheap_leak_scan(&sh, work, bytes, &root, 1, 0, 2,
		                              &r),
		           1);
		free(work);
	}
	memset(roots_arr, 0, sizeof(roots_arr));
	void **all[] = {lost, kept, other, big};
	for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
		spanheap_free(&sh, all[k]);
	release();
}

KTEST(spanheap_leak, needs_records)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, false));
	char work[4096];
	struct spanheap_leak_result r;
	KEXPECT_EQ(
	        spanheap_leak_scan(&sh, work, sizeof(work), NULL, 0, 0, 1, &r),
	        SPANHEAP_LEAK_NO_RECORDS);
	sh_heap_release(&heap, &sh);
}

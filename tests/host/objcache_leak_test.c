/*
 * The leak scan (mm/spanheap_leak.c) over the caches with slabs of their
 * own (mm/objcache_own.c, mm/objcache_leak.c), whose slabs are large
 * spans: an object of such a cache that nothing reaches is reported, with
 * its size, its cache and its allocating stack (poison mode's records,
 * which such a slab keeps after its objects);
 * one pointed to from a root, at its start or inside, or through another
 * object (a small one, or one of the cache), is kept, and its words are
 * read (a small object only it points to is kept); an object free in its
 * slab or in a CPU's stash is not judged; a pointer into a slab's header
 * keeps nothing; spanheap_leak_work_bytes counts a slab's objects, and a
 * scan whose work was sized before the slabs grew asks for a retry.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_internal.h"
#include "leak_scan_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* The roots: a static array, as a kernel's data. */
static uintptr_t roots_arr[8];

struct thing {
	uint64_t magic; /* the ctor's */
	void *ptr[3];
	char rest[8];
};

static void thing_ctor(void *p)
{
	struct thing *t = p;
	t->magic = 0x7417;
	memset(t->ptr, 0, sizeof(t->ptr));
}

static void word_ctor(void *p)
{
	*(uint64_t *)p = 0x7417;
}

/* The allocation site the records must name. */
SH_SITE static void *thing_site(struct objcache *c)
{
	void *p = objcache_alloc(c, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

static void ktest_fn_objcache_leak_own_slab_objects_are_judged(void);

/* Whether one of t's return addresses lies in thing_site: between its
 * start and the next function the stack may hold (or 512 bytes). */
static bool named_site(const struct spanheap_track *t)
{
	uintptr_t lo = (uintptr_t)thing_site, hi = lo + 512,
	          next = (uintptr_t)
	                  ktest_fn_objcache_leak_own_slab_objects_are_judged;
	if (next > lo && next < hi)
		hi = next;
	for (uint32_t i = 0; i < t->npcs; i++)
		if (t->pc[i] > lo && t->pc[i] < hi)
			return true;
	return false;
}

static bool fresh(void)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	return sh_heap_fresh_with(&heap, &sh, &sc);
}

/* A scan of roots_arr (leak_scan_util.h). */
static struct scan_out scan(size_t max)
{
	return leak_scan_roots(&sh, roots_arr, 8, 0, max);
}

static const struct spanheap_leak *find(const struct scan_out *o, const void *p)
{
	for (long i = 0; i < o->n && i < 16; i++)
		if (o->list[i].addr == (uintptr_t)p)
			return &o->list[i];
	return NULL;
}

/* l (not NULL) is a leak of thing_site's from c, as the scan gives it. */
static void expect_thing_leak(const struct spanheap_leak *l, struct objcache *c)
{
	KEXPECT(l);
	if (!l)
		return;
	char name[OBJCACHE_NAME_MAX + 1] = "";
	objcache_owner_name(&sh, l->owner, name);
	KEXPECT_EQ(l->asked, sizeof(struct thing));
	KEXPECT_EQ(l->sizeclass, 0); /* a slab of its own */
	KEXPECT_EQ(l->owner, c->owner);
	KEXPECT(strcmp(name, "leaky") == 0);
	KEXPECT(l->alloc.ns != 0 && l->alloc.npcs > 0);
	KEXPECT(named_site(&l->alloc));
}

KTEST(objcache_leak, own_slab_objects_are_judged)
{
	KASSERT(fresh());
	struct objcache *c = objcache_create_flags(
	        &sh, "leaky", sizeof(struct thing), 0, 0, thing_ctor);
	KASSERT(c && c->own && c->own->stash);
	struct thing *t[9];
	for (int i = 0; i < 9; i++)
		KASSERT(t[i] = i == 4 || i == 8 ? thing_site(c)
		                                : objcache_alloc(c, 0));
	void **small = spanheap_alloc(&sh, 64, MM_ZERO);
	void **only = spanheap_alloc(&sh, 32, MM_ZERO);
	KASSERT(small && only);
	roots_arr[0] = (uintptr_t)t[0];      /* t0 kept, */
	t[0]->ptr[1] = t[1];                 /* t1 through it, */
	t[1]->ptr[2] = only;                 /* and a small one through t1 */
	roots_arr[1] = (uintptr_t)t[2] + 20; /* inside t2 keeps it */
	roots_arr[2] = (uintptr_t)small;     /* t3 through a small one */
	small[4] = t[3];
	/* Freed, not judged: t6 into its slab's bitmap, t5 (pointed to)
	 * and t7 (not) into this CPU's stash. */
	objcache_free(c, t[6]);
	objcache_stash_drain_all(&c, 1);
	objcache_free(c, t[5]);
	objcache_free(c, t[7]);
	roots_arr[3] = (uintptr_t)t[5];
	roots_arr[5] = (uintptr_t)t[6];
	KEXPECT(t[7]->magic == 0x7417);
	/* t4 and t8 lost; a pointer into the slab's header (its cache's
	 * lists hold such) keeps nothing. */
	roots_arr[4] = ((uintptr_t)t[0] & ~(uintptr_t)(MM_PAGE_SIZE - 1)) + 8;
	struct scan_out o = scan(16);
	KEXPECT_EQ(o.n, 2);
	KEXPECT_EQ(o.r.leaks, 2);
	KEXPECT_EQ(o.r.objects, 6 + 2); /* t0-4, t8; the small ones */
	KEXPECT_EQ(o.r.reachable, 6);
	expect_thing_leak(find(&o, t[4]), c);
	expect_thing_leak(find(&o, t[8]), c);
	/* Once t1 no longer points to it, the small one leaks too, with
	 * its record. */
	t[1]->ptr[2] = NULL;
	o = scan(16);
	const struct spanheap_leak *lo = find(&o, only);
	KEXPECT(o.n == 3 && lo && lo->alloc.ns != 0 && lo->alloc.npcs > 0);
	memset(roots_arr, 0, sizeof(roots_arr));
	for (int i = 0; i < 9; i++)
		if (i < 5 || i == 8)
			objcache_free(c, t[i]);
	spanheap_free(&sh, small);
	spanheap_free(&sh, only);
	o = scan(16);
	KEXPECT(o.n == 0 && o.r.objects == 0);
	KEXPECT(objcache_destroy(c));
	sh_heap_release(&heap, &sh);
}

/* A typesafe cache's objects are judged the same way, and an object of a
 * cache with one object a slab (no stash) too. */
KTEST(objcache_leak, typesafe_and_unstashed_caches)
{
	KASSERT(fresh());
	struct objcache *ts = objcache_create_flags(
	        &sh, "ts", 24, 0, OBJCACHE_TYPESAFE_BY_RCU, NULL);
	struct objcache *big =
	        objcache_create_flags(&sh, "big", 20000, 0, 0, thing_ctor);
	KASSERT(ts && big && !big->own->stash);
	/* a from a new slab, b from the stash's refill, b2 popped from the
	 * stash: each way records (o->fast is off in poison mode; until then
	 * a typesafe cache's pop recorded nothing). */
	void **a = objcache_alloc(ts, 0), **b = objcache_alloc(ts, 0);
	void **b2 = objcache_alloc(ts, 0);
	void **x = objcache_alloc(big, 0), **y = objcache_alloc(big, 0);
	KASSERT(a && b && b2 && x && y);
	roots_arr[0] = (uintptr_t)x + 19000; /* x kept from inside, */
	x[100] = a;                          /* a through it */
	struct scan_out o = scan(16);
	KEXPECT(o.n == 3 && find(&o, b) && find(&o, b2) && find(&o, y));
	KEXPECT_EQ(o.r.objects, 5);
	for (int k = 0; k < 3 && o.n == 3; k++)
		KEXPECT(o.list[k].alloc.ns != 0 && o.list[k].alloc.npcs > 0);
	objcache_free(big, y);
	o = scan(16);
	KEXPECT(o.n == 2 && find(&o, b) && find(&o, b2) && o.r.objects == 4);
	memset(roots_arr, 0, sizeof(roots_arr));
	objcache_free(ts, a);
	objcache_free(ts, b);
	objcache_free(ts, b2);
	objcache_free(big, x);
	KEXPECT(objcache_destroy(ts) && objcache_destroy(big));
	sh_heap_release(&heap, &sh);
}

/* spanheap_leak_work_bytes counts up to a slab's objects for each slab
 * (counted as one large object, 36000 objects in slabs outgrew its
 * room); a work area sized before they were made gets a retry. */
KTEST(objcache_leak, work_counts_the_slabs_objects)
{
	KASSERT(fresh());
	struct objcache *c =
	        objcache_create_flags(&sh, "many", 16, 0, 0, word_ctor);
	KASSERT(c);
	size_t early = spanheap_leak_work_bytes(&sh, 4);
	/* Past the 64 * SC_MAX_NELEMS objects of room for growth. */
	size_t per = c->own->nobjs, n = (36000 / per + 1) * per;
	void **v = calloc(n, sizeof(void *));
	KASSERT(v);
	for (size_t i = 0; i < n; i++)
		KASSERT(v[i] = objcache_alloc(c, 0));
	void *work = calloc(1, early);
	struct spanheap_leak_result r;
	KEXPECT_EQ(spanheap_leak_scan(&sh, work, early, NULL, 0, 0, 4, &r),
	           SPANHEAP_LEAK_RETRY);
	free(work);
	struct scan_out o = scan(4);
	KEXPECT_EQ(o.n, (long)n); /* nothing reaches them: v is not a root */
	KEXPECT_EQ(o.r.objects, n);
	for (size_t i = 0; i < n; i++)
		objcache_free(c, v[i]);
	free(v);
	objcache_shrink(c);
	KEXPECT(objcache_destroy(c));
	sh_heap_release(&heap, &sh);
}

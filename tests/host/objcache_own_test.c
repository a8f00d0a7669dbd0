/*
 * Named caches with slabs of their own (mm/objcache_own.c): a constructor
 * runs once per object when its slab is made, never on an allocation,
 * and a freed object comes back as it was left; MM_ZERO on a ctor cache
 * is refused; with OBJCACHE_TYPESAFE_BY_RCU a freed object is reused at
 * once by the cache, and an emptied slab's pages go back only after the
 * grace period the test holds back (the POSIX port's fake,
 * mm_port_posix_rcu.c), and a destroy waits for them; misuse panics
 * naming the caches (a kfree or krealloc of such an object, a free to
 * another cache of either kind, kmalloc's object given to one, a double
 * free, an interior pointer); bad flags and alignments are refused with a
 * line; an allocation the heap refuses leaks nothing. The checker
 * (objcache_own_check) after each, and at the end the heap's pages as
 * they were.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_internal.h"
#include "../../mm/objcache_own.h"
#include "../../mm/spanheap_internal.h"
#include "mm_port_posix.h"
#include "objcache_test_util.h"
#include "spanheap_test_util.h"

#define MAGIC 0x0b1ec7ull

struct thing {
	uint64_t magic; /* the ctor's, never changed by users */
	uint64_t state; /* the users' */
	char rest[24];
};

static unsigned ctor_calls;

static void thing_ctor(void *p)
{
	struct thing *t = p;
	t->magic = MAGIC;
	t->state = 0;
	ctor_calls++;
}

static size_t per_slab(struct objcache *c)
{
	struct objcache_slabs s;
	objcache_slabs_info(c, &s);
	return s.objs_per_slab;
}

static size_t slabs_of(struct objcache *c, size_t *pending)
{
	struct objcache_slabs s;
	objcache_slabs_info(c, &s);
	if (pending)
		*pending = s.pending;
	return s.slabs;
}

/* c's stashes put back in their slabs (every CPU's, the spare empty
 * slabs released), so that the slabs say what the frees left. */
static void drain(struct objcache *c)
{
	objcache_stash_drain_all(&c, 1);
}

/* The caches' end: destroyed, every page back, the heap checked. */
static void finish(void)
{
	KEXPECT_EQ(objcache_list(&sh, NULL, 0), 0);
	KEXPECT_EQ(mm_port_posix_rcu_queued(), 0);
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

KTEST(objcache_own, ctor_runs_once_per_object_and_frees_keep_the_state)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	ctor_calls = 0;
	struct objcache *c = objcache_create_flags(
	        &sh, "thing", sizeof(struct thing), 0, 0, thing_ctor);
	KASSERT(c);
	size_t n = per_slab(c);
	KASSERT(n >= OBJSLAB_MIN_OBJS && n <= OBJSLAB_MAX_OBJS);
	KEXPECT_EQ(ctor_calls, 0); /* no slab yet */
	static struct thing *t[OBJSLAB_MAX_OBJS + 1];
	for (size_t i = 0; i < n; i++) {
		KASSERT(t[i] = objcache_alloc(c, 0));
		KEXPECT_EQ(t[i]->magic, MAGIC);
		KEXPECT_EQ(t[i]->state, 0);
		KEXPECT_EQ((uintptr_t)t[i] % 16, 0);
		t[i]->state = 1000 + i;
	}
	KEXPECT_EQ(ctor_calls, n); /* one slab's, at its making */
	KEXPECT_EQ(live(c), (int64_t)n);
	KEXPECT(objcache_own_check(c));
	/* Freed and taken again: the objects as they were left, no ctor. */
	for (size_t i = 0; i < n; i++)
		objcache_free(c, t[i]);
	KEXPECT(objcache_own_check(c));
	uint64_t seen = 0;
	for (size_t i = 0; i < n; i++) {
		KASSERT(t[i] = objcache_alloc(c, 0));
		KEXPECT_EQ(t[i]->magic, MAGIC);
		KEXPECT(t[i]->state >= 1000 && t[i]->state < 1000 + n);
		seen += t[i]->state;
	}
	KEXPECT_EQ(seen, n * 1000 + n * (n - 1) / 2); /* each state once */
	KEXPECT_EQ(ctor_calls, n);
	/* One more: a second slab, constructed whole. */
	KASSERT(t[n] = objcache_alloc(c, 0));
	KEXPECT_EQ(ctor_calls, 2 * n);
	KEXPECT_EQ(slabs_of(c, NULL), 2);
	/* MM_ZERO would undo the ctor: refused, nothing counted. */
	mm_port_set_quiet(true);
	KEXPECT(!objcache_alloc(c, MM_ZERO));
	mm_port_set_quiet(false);
	KEXPECT(strstr(mm_port_last_log(), "'thing' refused"));
	KEXPECT_EQ(live(c), (int64_t)n + 1);
	for (size_t i = 0; i <= n; i++)
		objcache_free(c, t[i]);
	drain(c);
	/* One empty slab kept, the other given back at once (no flag). */
	KEXPECT_EQ(slabs_of(c, NULL), 1);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	finish();
}

KTEST(objcache_own, typesafe_slab_pages_go_back_only_after_the_grace_period)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	ctor_calls = 0;
	struct objcache *c =
	        objcache_create_flags(&sh, "typesafe", sizeof(struct thing), 0,
	                              OBJCACHE_TYPESAFE_BY_RCU, thing_ctor);
	KASSERT(c);
	size_t n = per_slab(c), pending;
	static struct thing *t[2 * OBJSLAB_MAX_OBJS];
	/* Reuse by the cache itself is at once, no grace period. */
	struct thing *a = objcache_alloc(c, 0);
	KASSERT(a);
	a->state = 7;
	objcache_free(c, a);
	KEXPECT_EQ(objcache_alloc(c, 0), a);
	KEXPECT_EQ(a->state, 7);
	objcache_free(c, a);
	size_t base = sh_in_use_pages(&heap);
	for (size_t i = 0; i < 2 * n; i++)
		KASSERT(t[i] = objcache_alloc(c, 0));
	size_t two = sh_in_use_pages(&heap);
	KEXPECT(two > base);
	for (size_t i = 0; i < 2 * n; i++)
		objcache_free(c, t[i]);
	drain(c);
	/* Both slabs empty: one kept, the other waits for the grace period,
	 * its pages still the cache's and its objects still things. */
	KEXPECT_EQ(slabs_of(c, &pending), 1);
	KEXPECT_EQ(pending, 1);
	KEXPECT_EQ(mm_port_posix_rcu_queued(), 1);
	KEXPECT_EQ(sh_in_use_pages(&heap), two);
	for (size_t i = 0; i < 2 * n; i++)
		KEXPECT_EQ(t[i]->magic, MAGIC);
	KEXPECT(objcache_own_check(c));
	SH_CHECK(&sh, "with a slab waiting");
	/* The grace period ends: those pages go back. */
	KEXPECT_EQ(mm_port_posix_rcu_advance(), 1);
	slabs_of(c, &pending);
	KEXPECT_EQ(pending, 0);
	size_t one = sh_in_use_pages(&heap);
	KEXPECT(one < two);
	/* The kept one: shrink queues it, the destroy waits for it. */
	objcache_shrink(c);
	KEXPECT_EQ(slabs_of(c, &pending), 0);
	KEXPECT_EQ(pending, 1);
	KEXPECT_EQ(sh_in_use_pages(&heap), one);
	KEXPECT(objcache_destroy(c));
	KEXPECT_EQ(ctor_calls, 2 * n);
	finish();
}

KTEST(objcache_own, misuse_panics_naming_the_caches)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	struct objcache *a =
	        objcache_create_flags(&sh, "own-a", 64, 0, 0, thing_ctor);
	struct objcache *b = objcache_create_flags(
	        &sh, "own-b", 64, 0, OBJCACHE_TYPESAFE_BY_RCU, NULL);
	struct objcache *m = objcache_create(&sh, "merged", 64, 0);
	KASSERT(a && b && m);
	char *pa = objcache_alloc(a, 0), *pb = objcache_alloc(b, 0);
	void *pm = objcache_alloc(m, 0), *k = spanheap_alloc(&sh, 64, 0);
	KASSERT(pa && pb && pm && k);
	SH_EXPECT_PANIC(spanheap_free(&sh, pb), "an object of cache 'own-b'");
	SH_EXPECT_PANIC(spanheap_realloc(&sh, pa, 200, 0),
	                "an object of cache 'own-a'");
	SH_EXPECT_PANIC(objcache_free(a, pb), "is of cache 'own-b'");
	KEXPECT(strstr(mm_port_last_panic(), "to cache 'own-a'"));
	SH_EXPECT_PANIC(objcache_free(b, k), "kmalloc's or a merged cache's");
	KEXPECT(strstr(mm_port_last_panic(), "to cache 'own-b'"));
	SH_EXPECT_PANIC(objcache_free(b, pm), "to cache 'own-b'");
	SH_EXPECT_PANIC(objcache_free(m, pa), "an object of cache 'own-a'");
	SH_EXPECT_PANIC(objcache_free(a, pa + 8), "interior pointer");
	SH_EXPECT_PANIC(objcache_free(a, pa - 8), "interior pointer");
	int on_stack;
	SH_EXPECT_PANIC(objcache_free(a, &on_stack), "foreign pointer");
	KEXPECT_EQ(live(a), 1);
	KEXPECT_EQ(live(b), 1);
	objcache_free(a, pa);
	SH_EXPECT_PANIC(objcache_free(a, pa), "double free of");
	KEXPECT(strstr(mm_port_last_panic(), "cache 'own-a'"));
	objcache_free(b, pb);
	SH_EXPECT_PANIC(objcache_free(b, pb), "double free of");
	KEXPECT_EQ(live(a), 0);
	KEXPECT(objcache_own_check(a) && objcache_own_check(b));
	mm_port_set_quiet(false);
	objcache_free(m, pm);
	spanheap_free(&sh, k);
	KEXPECT(objcache_destroy(a) && objcache_destroy(b) &&
	        objcache_destroy(m));
	finish();
}

KTEST(objcache_own, bad_flags_and_no_memory_are_refused_leaking_nothing)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	KEXPECT(!objcache_create_flags(&sh, "bad", 64, 0, 1u << 7, NULL));
	KEXPECT(strstr(mm_port_last_log(), "unknown flags"));
	KEXPECT(!objcache_create_flags(&sh, "wide", 64, 2 * MM_PAGE_SIZE, 0,
	                               thing_ctor));
	KEXPECT(strstr(mm_port_last_log(), "an alignment above a page"));
	struct objcache *c = objcache_create_flags(
	        &sh, "typesafe", 100, 64, OBJCACHE_TYPESAFE_BY_RCU, NULL);
	KASSERT(c);
	KEXPECT(!objcache_create_flags(&sh, "typesafe", 8, 0, 0, thing_ctor));
	KEXPECT(strstr(mm_port_last_log(), "another cache's"));
	/* No memory for a slab: NULL, nothing counted, nothing kept. */
	struct spanheap_fail_attr all = {.interval = 1,
	                                 .probability = SPANHEAP_FAIL_PROB_ALL,
	                                 .times = -1,
	                                 .seed = 1};
	size_t before = sh_in_use_pages(&heap);
	KASSERT(spanheap_fail_arm(&sh, &all));
	KEXPECT(!objcache_alloc(c, 0));
	spanheap_fail_disarm(&sh);
	KEXPECT_EQ(live(c), 0);
	KEXPECT_EQ(slabs_of(c, NULL), 0);
	KEXPECT_EQ(sh_in_use_pages(&heap), before);
	/* Its alignment and MM_ZERO (no ctor: allowed) hold. */
	char *p = objcache_alloc(c, MM_ZERO);
	KASSERT(p);
	KEXPECT_EQ((uintptr_t)p % 64, 0);
	for (int i = 0; i < 100; i++)
		KEXPECT_EQ(p[i], 0);
	objcache_free(c, p);
	mm_port_set_quiet(false);
	KEXPECT(objcache_destroy(c));
	finish();
}

/* Poison mode: no poison is written into a free object of such a cache
 * (the ctor's state and a reader's view survive), and the checks still
 * catch a double free. */
KTEST(objcache_own, poison_mode_keeps_the_ctor_state_and_catches_misuse)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	ctor_calls = 0;
	struct objcache *c = objcache_create_flags(
	        &sh, "poisoned", sizeof(struct thing), 0, 0, thing_ctor);
	KASSERT(c);
	struct thing *t = objcache_alloc(c, 0);
	KASSERT(t);
	t->state = 42;
	objcache_free(c, t);
	KEXPECT_EQ(t->magic, MAGIC);
	KEXPECT_EQ(objcache_alloc(c, 0), t);
	KEXPECT_EQ(t->state, 42);
	objcache_free(c, t);
	mm_port_set_quiet(true);
	SH_EXPECT_PANIC(objcache_free(c, t), "double free of");
	SH_EXPECT_PANIC(spanheap_free(&sh, t), "an object of cache 'poisoned'");
	mm_port_set_quiet(false);
	KEXPECT(objcache_destroy(c));
	finish();
}

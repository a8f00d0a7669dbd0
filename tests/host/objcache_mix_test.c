/*
 * The named caches' features met by the heap's other features (rv118's
 * interaction review): the hardened copy check on an object of a cache
 * with slabs of its own (bounded by the cache's size, its header and its
 * free objects refused); kfree_bulk, ksize and kfree_rcu's check given
 * such an object, and pools over a constructor cache and a typesafe one
 * (their elements left as the cache keeps them, double frees told); a merged
 * cache's batches with the guarded pool sampling every object; failure
 * injection asking every allocation of a constructor cache, and a failure
 * injected in the middle of a batch in poison mode, which must leave no object
 * out, no count off and nothing for the leak scan; and the leak scan with
 * objects kept only by a percpu copy, a pool's reserve and a batch's array.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/objcache_bulk.h"
#include "../../mm/objcache_internal.h"
#include "../../mm/mempool.h"
#include "../../mm/objcache_own.h"
#include "../../mm/pcpu.h"
#include "../../mm/spanheap_bulk.h"
#include "../../mm/spanheap_copy.h"
#include "../../mm/spanheap_fail.h"
#include "../../mm/spanheap_usercopy.h"
#include "guard_test_util.h"
#include "leak_scan_util.h"
#include "objcache_test_util.h"
#include "spanheap_test_util.h"

static char log_buf[2048];

static void ctor(void *p)
{
	memset(p, 0x5c, 8);
}

static enum spanheap_copy_verdict check(const void *p, size_t n)
{
	return sh_copy_check_logged(&sh, p, n, log_buf, sizeof(log_buf));
}

static bool logged(const char *s)
{
	bool yes = strstr(log_buf, s) != NULL;
	if (!yes)
		printf("# no \"%s\" in: %s\n", s, log_buf);
	return yes;
}

/* The copy check on a constructor cache's 72-byte objects: a copy inside
 * one passes; one into the next object, one from the slab's header and
 * one at a freed object (stashed, and free in its slab) are refused
 * naming the cache. Until rv118 the check saw the slab as one large
 * object and passed them all: a copy could read or overwrite the
 * neighbours and the header's list pointers. */
KTEST(objcache_mix, usercopy_bounds_an_own_slab_object_by_its_cache)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(&sh, "uc", 72, 0, 0, ctor);
	KASSERT(c && c->own);
	char *p[3];
	for (int i = 0; i < 3; i++)
		KASSERT(p[i] = objcache_alloc(c, 0));
	KEXPECT_EQ(check(p[0], 72), SPANHEAP_COPY_INSIDE);
	KEXPECT_EQ(check(p[0] + 71, 1), SPANHEAP_COPY_INSIDE);
	KEXPECT_EQ(check(p[0], 73), SPANHEAP_COPY_BAD);
	KEXPECT(logged("of cache 'uc''s slab"));
	KEXPECT(logged("it runs 1 bytes past the object's 72 bytes"));
	KEXPECT_EQ(check(p[0] + 8, c->objsize), SPANHEAP_COPY_BAD);
	uintptr_t lowest = (uintptr_t)p[0];
	for (int i = 1; i < 3; i++)
		if ((uintptr_t)p[i] < lowest)
			lowest = (uintptr_t)p[i];
	char *base = (char *)lowest - c->own->first;
	KEXPECT_EQ(check(base, 8), SPANHEAP_COPY_BAD);
	KEXPECT(logged("in the header of cache 'uc''s slab"));
	objcache_free(c, p[1]); /* into this CPU's stash */
	KEXPECT_EQ(check(p[1], 8), SPANHEAP_COPY_BAD);
	KEXPECT(logged("which is free, in a CPU's stash"));
	objcache_shrink(c); /* back in its slab */
	KEXPECT_EQ(check(p[1], 8), SPANHEAP_COPY_BAD);
	KEXPECT(logged("which is free"));
	objcache_free(c, p[0]);
	objcache_free(c, p[2]);
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* kfree_bulk (spanheap_free_bulk), ksize and kfree_rcu's check given a
 * constructor cache's object: refused by design (kfree of such an object would
 * leave the cache's count high and skip its stash), each naming the cache; the
 * batch's entries before it were freed. */
KTEST(objcache_mix, kfree_bulk_and_ksize_of_an_own_slab_object_name_it)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(&sh, "kb", 48, 0, 0, ctor);
	KASSERT(c);
	void *o = objcache_alloc(c, 0);
	void *v[3] = {spanheap_alloc(&sh, 48, 0), o,
	              spanheap_alloc(&sh, 48, 0)};
	KASSERT(o && v[0] && v[2]);
	mm_port_set_quiet(true);
	log_buf[0] = '\0';
	mm_port_log_capture(log_buf, sizeof(log_buf));
	SH_EXPECT_PANIC(spanheap_free_bulk(&sh, 3, v), "cache 'kb'");
	mm_port_log_capture(NULL, 0);
	KEXPECT(logged("entry 1 of 3"));
	SH_EXPECT_PANIC(spanheap_usable_size(&sh, o), "cache 'kb'");
	/* kfree_rcu's check at the call (kernel/rcu.c): refused there, not
	 * a grace period later in the rcu thread. */
	SH_EXPECT_PANIC(spanheap_check_free_as(&sh, o, "kfree_rcu"),
	                "kfree_rcu of");
	mm_port_set_quiet(false);
	spanheap_free(&sh, v[2]);
	objcache_free(c, o);
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* A merged cache's batch with the guarded pool sampling every object
 * (spanheap_alloc_bulk's single path): the batch's guarded objects and
 * its span objects go back through the class-checked bulk free, the
 * cache's count is 0 and the pool's slots free again. */
KTEST(objcache_mix, a_merged_batch_with_guarded_objects)
{
	KASSERT(sh_guard_heap_fresh(&heap, &sh, 4, 1, false));
	struct objcache *c = objcache_create(&sh, "gm", 40, 0);
	KASSERT(c);
	static void *v[16];
	KEXPECT_EQ(objcache_alloc_bulk(c, 0, 16, v), 16);
	unsigned guarded = 0;
	for (int i = 0; i < 16; i++)
		guarded += spanheap_guard_owns(&sh.guard, v[i]);
	KEXPECT(guarded >= 1);
	void *five = v[5];
	v[5] = NULL; /* NULL entries: nothing, as Linux's */
	objcache_free_bulk(c, 16, v);
	objcache_free(c, five);
	KEXPECT_EQ(live(c), 0);
	KEXPECT(objcache_destroy(c));
	SH_GUARD_RELEASE(&heap, &sh, "after the guarded batch");
}

/* Poison mode (records, owners) with a failure injected in the middle of
 * a batch of a merged cache and of a constructor cache: 0, every count
 * at 0, and a leak scan with no roots finds nothing of the batches. */
KTEST(objcache_mix, an_injected_failure_mid_batch_leaves_no_leak)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	struct objcache *m = objcache_create(&sh, "fm", 40, 0);
	struct objcache *o = objcache_create_flags(&sh, "fo", 40, 0, 0, ctor);
	KASSERT(m && o);
	static void *v[100];
	/* The merged cache's 30th object; the constructor cache's second
	 * slab (its objects come from a slab, each new slab one call). */
	struct objcache *which[2] = {m, o};
	uint32_t interval[2] = {30, 2};
	for (int k = 0; k < 2; k++) {
		struct spanheap_fail_attr a = {.interval = interval[k],
		                               .probability =
		                                       SPANHEAP_FAIL_PROB_ALL,
		                               .times = 1};
		KASSERT(spanheap_fail_arm(&sh, &a));
		mm_port_set_quiet(true);
		KEXPECT_EQ(objcache_alloc_bulk(which[k], 0, 100, v), 0);
		mm_port_set_quiet(false);
		KEXPECT(spanheap_fail_get(&sh, &a));
		KEXPECT_EQ(a.times, 0); /* the failure was taken */
		spanheap_fail_disarm(&sh);
	}
	KEXPECT_EQ(live(m), 0);
	KEXPECT_EQ(live(o), 0);
	memset(v, 0, sizeof(v));
	uintptr_t none = 0;
	struct scan_out s = leak_scan_roots(&sh, &none, 1, 0, 16);
	KEXPECT_EQ(s.n, 0);
	KEXPECT(objcache_destroy(m));
	KEXPECT(objcache_destroy(o));
	SH_CHECK(&sh, "after the injections");
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* The reserve's element e, as the constructor left it: 8 bytes of 0x5c. */
static bool constructed(const unsigned char *e)
{
	for (int i = 0; i < 8; i++)
		if (!e || e[i] != 0x5c)
			return false;
	return true;
}

/* mempool_alloc(p, MM_ZERO), its lines into log_buf. */
static void *zeroed_alloc(struct mempool *p)
{
	mm_port_set_quiet(true);
	log_buf[0] = '\0';
	mm_port_log_capture(log_buf, sizeof(log_buf));
	void *e = mempool_alloc(p, MM_ZERO);
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
	return e;
}

/* Every allocation of the heap (an own-slab cache's too) fails. */
static void fail_every_allocation(void)
{
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1,
	                               .seed = 1};
	KASSERT(spanheap_fail_arm(&sh, &a));
}

/* A pool over an OBJCACHE_TYPESAFE_BY_RCU cache without a constructor:
 * what a caller writes into an element (an RCU reader may still read it
 * after its free) is what the next taker of it finds, in the reserve or
 * not; MM_ZERO is the cache's to give, and zeroes; a double free is told.
 * Until rv120 the pool was refused. */
KTEST(objcache_mix, a_pool_over_a_typesafe_cache_leaves_its_bytes)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(
	        &sh, "ts", 48, 0, OBJCACHE_TYPESAFE_BY_RCU, NULL);
	KASSERT(c && c->own);
	static struct mempool pool;
	KASSERT(mempool_init_cache_in(&pool, &sh, c, "over-ts", 2));
	fail_every_allocation();
	uint64_t *e = mempool_alloc(&pool, MM_ATOMIC);
	KASSERT(e);
	e[0] = 0x7a7a7a7a;      /* an identity a reader rechecks */
	mempool_free(&pool, e); /* back into the reserve */
	KEXPECT(e[0] == 0x7a7a7a7a);
	EXPECT_MISUSE(mempool_free(&pool, e), "mempool over-ts: double free of",
	              e);
	uint64_t *z = mempool_alloc(&pool, MM_ATOMIC | MM_ZERO);
	spanheap_fail_disarm(&sh);
	KEXPECT(z == e && z[0] == 0);
	mempool_free(&pool, z);
	KEXPECT(mempool_destroy(&pool));
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* A pool over a constructor cache: the reserve serves every allocation
 * the heap refuses, each element as the constructor left it (the pool
 * keeps its membership in its array alone, not in a marker in the
 * element), a double free is told naming the pool with the reserve short
 * and full, MM_ZERO is refused as the cache refuses it, and the destroy
 * gives everything back. Until rv120 the pool was refused ('not made:
 * cache 'mp' has slabs of its own'); before rv118's refusal, made, its
 * elements came back with the first word 0 and its first free panicked. */
KTEST(objcache_mix, a_pool_over_a_constructor_cache_keeps_its_elements_whole)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(&sh, "mp", 64, 0, 0, ctor);
	KASSERT(c && c->own);
	static struct mempool pool;
	KASSERT(mempool_init_cache(&pool, c, "over-own", 3));
	unsigned char *e[4];
	fail_every_allocation();
	for (int i = 0; i < 3; i++) {
		e[i] = mempool_alloc(&pool, MM_ATOMIC);
		KEXPECT(constructed(e[i]));
	}
	KEXPECT(!mempool_alloc(&pool, MM_ATOMIC)); /* the reserve is empty */
	spanheap_fail_disarm(&sh);
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.from_reserve, 3);
	mempool_free(&pool, e[0]); /* into the short reserve */
	KEXPECT(constructed(e[0]));
	EXPECT_MISUSE(mempool_free(&pool, e[0]),
	              "mempool over-own: double free of", e[0]);
	KEXPECT(strstr(mm_port_last_panic(), "in the pool's reserve already"));
	mempool_free(&pool, e[1]);
	mempool_free(&pool, e[2]);               /* the reserve is full */
	KASSERT(e[3] = mempool_alloc(&pool, 0)); /* the cache's */
	KEXPECT(constructed(e[3]));
	mempool_free(&pool, e[3]); /* to the cache */
	fail_every_allocation();
	KEXPECT(constructed(e[0] = mempool_alloc(&pool, MM_ATOMIC)));
	spanheap_fail_disarm(&sh);
	/* The reserve short, e[3] would be kept: the cache says it is free. */
	EXPECT_MISUSE(mempool_free(&pool, e[3]),
	              "mempool over-own: double free of", e[3]);
	KEXPECT(strstr(mm_port_last_panic(), "freed to the pool's source"));
	mempool_free(&pool, e[0]);
	EXPECT_MISUSE(mempool_free(&pool, e[1]),
	              "mempool over-own: double free of", e[1]);
	mempool_check(&pool);
	KEXPECT(!zeroed_alloc(&pool));
	KEXPECT(logged("mempool over-own: allocation refused: MM_ZERO on "
	               "cache 'mp'"));
	/* A shrink and a growth: the surplus and the new elements pass
	 * through arrays, not chains through the elements' first words. */
	KEXPECT(mempool_resize(&pool, 1));
	KEXPECT(mempool_resize(&pool, 4));
	fail_every_allocation();
	for (int i = 0; i < 4; i++)
		KEXPECT(constructed(e[i] = mempool_alloc(&pool, MM_ATOMIC)));
	spanheap_fail_disarm(&sh);
	for (int i = 0; i < 4; i++)
		mempool_free(&pool, e[i]);
	KEXPECT(objcache_own_check(c));
	KEXPECT(mempool_destroy(&pool));
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	SH_CHECK(&sh, "after the pool's destroy");
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* The leak scan with objects held where only other features keep them:
 * a pointer in CPU 1's copy of an alloc_percpu variable (its chunk a
 * block of the heap the struct pcpu points to), in a kmalloc pool's
 * reserve (its array a metadata block), and a guarded object in a bulk
 * batch's array: none is a leak; the percpu copy's object, dropped, is
 * the one. */
KTEST(objcache_mix, objects_kept_by_percpu_memory_and_a_pool_are_no_leaks)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	sc.guard_slots = 16; /* every object here one */
	sc.guard_interval = 1;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	static struct pcpu pc;
	static struct mempool pool;
	KASSERT(pcpu_init(&pc, &sh, 2));
	KASSERT(mempool_init_heap(&pool, &sh, "mix", 2, 48));
	void **h = pcpu_alloc(&pc, sizeof(void *), sizeof(void *));
	KASSERT(h);
	void *held = spanheap_alloc(&sh, 40, 0);
	KASSERT(held);
	*(void **)pcpu_ptr(&pc, h, 1) = held;
	void **batch = spanheap_alloc(&sh, 4 * sizeof(void *), MM_ZERO);
	KASSERT(batch && spanheap_alloc_bulk(&sh, 24, 0, 4, batch) == 4);
	bool guarded = false;
	for (int i = 0; i < 4; i++)
		guarded |= spanheap_guard_owns(&sh.guard, batch[i]);
	KEXPECT(guarded);
	uintptr_t roots[3] = {(uintptr_t)&pc, (uintptr_t)&pool,
	                      (uintptr_t)batch};
	/* The structs' own words are roots: read them as the kernel's bss. */
	struct spanheap_leak_range r[3] = {
	        {(uintptr_t)&pc, (uintptr_t)(&pc + 1)},
	        {(uintptr_t)&pool, (uintptr_t)(&pool + 1)},
	        {(uintptr_t)roots, (uintptr_t)(roots + 3)}};
	size_t bytes = spanheap_leak_work_bytes(&sh, 16);
	void *work = calloc(1, bytes);
	struct spanheap_leak_result res;
	KEXPECT_EQ(spanheap_leak_scan(&sh, work, bytes, r, 3, 0, 16, &res), 0);
	/* Dropped from CPU 1's copy: the one leak, the 40 bytes asked. */
	*(void **)pcpu_ptr(&pc, h, 1) = NULL;
	KEXPECT_EQ(spanheap_leak_scan(&sh, work, bytes, r, 3, 0, 16, &res), 1);
	KEXPECT_EQ(spanheap_leak_list(work)[0].addr, (uintptr_t)held);
	free(work);
	spanheap_free(&sh, held);
	spanheap_free_bulk(&sh, 4, batch);
	spanheap_free(&sh, batch);
	pcpu_free(&pc, h);
	pcpu_trim(&pc);
	mempool_destroy(&pool);
	SH_GUARD_RELEASE(&heap, &sh, "after the kept objects' frees");
}

/* Failure injection on a constructor cache whose stash and slab hold
 * free objects: while armed, every allocation is asked (Linux's
 * failslab asks on every kmem_cache_alloc), a batch's too; disarmed, the
 * stash serves again. Until rv118 only a new slab was asked: the stash's
 * pop and the slab's free objects were served unasked, and a caller's
 * NULL path could not be reached while the slab had room. */
KTEST(objcache_mix, injection_asks_every_allocation_of_an_own_slab_cache)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(&sh, "fi", 64, 0, 0, ctor);
	KASSERT(c);
	static void *v[8];
	KASSERT(objcache_alloc_bulk(c, 0, 8, v) == 8);
	objcache_free_bulk(c, 4, v); /* 4 into this CPU's stash */
	struct spanheap_fail_attr a = {.interval = 2,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1};
	KASSERT(spanheap_fail_arm(&sh, &a));
	void *p1 = objcache_alloc(c, 0);
	void *p2 = objcache_alloc(c, 0); /* the 2nd call: fails */
	mm_port_set_quiet(true);
	KEXPECT_EQ(objcache_alloc_bulk(c, 0, 4, v), 0); /* its 2nd object */
	mm_port_set_quiet(false);
	KEXPECT(p1 != NULL);
	KEXPECT(p2 == NULL);
	KEXPECT(spanheap_fail_get(&sh, &a));
	KEXPECT(a.times == -1);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.fail_injected, 2);
	KEXPECT_EQ(live(c), 5); /* v[4..8) and p1 */
	spanheap_fail_disarm(&sh);
	KEXPECT_EQ(objcache_alloc_bulk(c, 0, 4, v), 4);
	objcache_free_bulk(c, 8, v);
	objcache_free(c, p1);
	KEXPECT_EQ(live(c), 0);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* Failure injection armed while a constructor cache is being made, after
 * its setup and before it is linked to the heap (the arm's switch walks
 * the linked caches only): the cache must still come out with its fast
 * ways off, every allocation asked. Until the switch's bit was set at
 * the link, under the heap's lock, the cache kept the setup's "fast" and
 * its stash served the armed heap's calls unasked. */
static void arm_in_window(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where != MHEAP_HOOK_OWN_CACHE_SET_UP)
		return;
	struct spanheap_fail_attr a = {.interval = 2,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1};
	KASSERT(spanheap_fail_arm(&sh, &a));
}

KTEST(objcache_mix, injection_armed_while_a_cache_is_made_asks_its_calls)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	/* The heap's counter area made now, not asked under the arm. */
	struct objcache *first = objcache_create(&sh, "first", 32, 0);
	KASSERT(first);
	mheap_test_hook = arm_in_window;
	struct objcache *c = objcache_create_flags(&sh, "fw", 64, 0, 0, ctor);
	mheap_test_hook = NULL;
	KASSERT(c);
	KEXPECT(!c->own->fast);
	void *p1 = objcache_alloc(c, 0); /* the 1st call: served */
	KASSERT(p1);
	objcache_free(c, p1);            /* into this CPU's stash */
	void *p2 = objcache_alloc(c, 0); /* the 2nd: fails, stash or not */
	KEXPECT(p2 == NULL);
	spanheap_fail_disarm(&sh);
	KEXPECT(c->own->fast);
	if (p2)
		objcache_free(c, p2);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	KEXPECT(objcache_destroy(first));
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

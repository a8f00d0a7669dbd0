/*
 * The per-CPU stashes of caches with slabs of their own
 * (mm/objcache_stash.c): a free goes to its CPU's stash and the next
 * allocation there takes it back, an empty stash takes a batch from the
 * slabs; a double free of a stashed object panics naming the cache, on
 * its CPU and on another, and one of an object free in its slab too;
 * objcache_shrink reaches every CPU's stash (those the port reaches) and
 * the destroy every one; objcache_shrink_all gives back every cache's
 * spare objects and slabs (memory pressure); the checker catches a
 * broken stash; a refill takes a partial slab before an empty one; the
 * fast free takes no large object whose header names the cache, nor a
 * stale pointer into a slab gone back or made another cache's. The POSIX
 * port's CPUs stand for the kernel's: the main thread moves between them
 * (mm_port_set_cpu), the last slot too.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_internal.h"
#include "../../mm/objcache_own.h"
#include "mm_port_posix.h"
#include "objcache_test_util.h"
#include "spanheap_test_util.h"

enum { NCPUS = 4 };

static void ctor(void *p)
{
	*(uint64_t *)p = 0x0b1ec7;
}

static struct objcache_slabs info(struct objcache *c)
{
	struct objcache_slabs s;
	objcache_slabs_info(c, &s);
	return s;
}

static void finish(void)
{
	mm_port_set_cpu(0);
	KEXPECT_EQ(objcache_list(&sh, NULL, 0), 0);
	sh_flush_cpus(&sh, NCPUS);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

KTEST(objcache_stash, a_free_stays_on_its_cpu_for_the_next_allocation)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c =
	        objcache_create_flags(&sh, "stashy", 40, 0, 0, ctor);
	KASSERT(c);
	struct objcache_slabs s = info(c);
	KEXPECT_EQ(c->own->stash_max, OBJSTASH_MAX);
	/* The first: from a new slab, under the lock (no stash to fill). */
	void *a = objcache_alloc(c, 0);
	KASSERT(a);
	s = info(c);
	KEXPECT_EQ(s.free_objs, s.objs_per_slab - 1);
	/* Freed into the stash: the slab still counts it out. */
	objcache_free(c, a);
	s = info(c);
	KEXPECT_EQ(s.stashed, 1);
	KEXPECT_EQ(s.free_objs, s.objs_per_slab - 1);
	KEXPECT(objcache_own_check(c));
	KEXPECT_EQ(objcache_alloc(c, 0), a);
	KEXPECT_EQ(info(c).stashed, 0);
	/* An empty stash takes a batch from the slab. */
	void *b = objcache_alloc(c, 0);
	KASSERT(b);
	s = info(c);
	KEXPECT_EQ(s.stashed, OBJSTASH_BATCH - 1);
	KEXPECT_EQ(s.free_objs, s.objs_per_slab - 1 - OBJSTASH_BATCH);
	KEXPECT(objcache_own_check(c));
	/* A full stash spills a batch back before it takes the free. */
	static void *p[OBJSTASH_MAX + 1];
	size_t n = OBJSTASH_MAX + 1 - (OBJSTASH_BATCH - 1);
	for (size_t i = 0; i < n; i++)
		KASSERT(p[i] = objcache_alloc(c, 0));
	for (size_t i = 0; i < n; i++)
		objcache_free(c, p[i]);
	KEXPECT(info(c).stashed <= OBJSTASH_MAX);
	KEXPECT(objcache_own_check(c));
	objcache_free(c, a);
	objcache_free(c, b);
	KEXPECT(objcache_own_check(c));
	KEXPECT_EQ(live(c), 0);
	KEXPECT(objcache_destroy(c));
	finish();
}

KTEST(objcache_stash, a_double_free_through_the_stash_panics_naming_the_cache)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c =
	        objcache_create_flags(&sh, "twice", 40, 0, 0, ctor);
	KASSERT(c);
	char *p = objcache_alloc(c, 0), *q = objcache_alloc(c, 0);
	KASSERT(p && q);
	objcache_free(c, p); /* in CPU 0's stash */
	size_t stashed = info(c).stashed;
	mm_port_set_quiet(true);
	SH_EXPECT_PANIC(objcache_free(c, p), "in a CPU's stash already");
	KEXPECT(strstr(mm_port_last_panic(), "double free of"));
	KEXPECT(strstr(mm_port_last_panic(), "to cache 'twice'"));
	/* From another CPU: the stash is CPU 0's, the bit the slab's. */
	mm_port_set_cpu(1);
	SH_EXPECT_PANIC(objcache_free(c, p), "in a CPU's stash already");
	mm_port_set_cpu(0);
	KEXPECT_EQ(info(c).stashed, stashed); /* nothing changed */
	KEXPECT(objcache_own_check(c));
	/* Put back in its slab (q keeps the slab): free there, refused too,
	 * and left as it was. */
	objcache_shrink(c);
	KEXPECT_EQ(info(c).stashed, 0);
	SH_EXPECT_PANIC(objcache_free(c, p), "free already");
	KEXPECT(strstr(mm_port_last_panic(), "to cache 'twice'"));
	mm_port_set_quiet(false);
	KEXPECT(objcache_own_check(c));
	KEXPECT_EQ(info(c).stashed, 0);
	objcache_free(c, q);
	KEXPECT_EQ(live(c), 0); /* the refused frees not counted */
	KEXPECT(objcache_destroy(c));
	finish();
}

/* On each of NCPUS CPUs, k objects allocated there and freed there
 * (into its stash); p gets them. */
static void stash_on_each_cpu(struct objcache *c, void **p, size_t k)
{
	for (unsigned cpu = 0; cpu < NCPUS; cpu++) {
		mm_port_set_cpu(cpu);
		for (size_t i = 0; i < k; i++)
			KASSERT(p[cpu * k + i] = objcache_alloc(c, 0));
		for (size_t i = 0; i < k; i++)
			objcache_free(c, p[cpu * k + i]);
	}
	mm_port_set_cpu(0);
}

KTEST(objcache_stash, shrink_and_destroy_reach_every_cpus_stash)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t base = sh_in_use_pages(&heap);
	struct objcache *c =
	        objcache_create_flags(&sh, "spread", 40, 0, 0, ctor);
	KASSERT(c);
	static void *p[NCPUS * 4];
	stash_on_each_cpu(c, p, 4);
	for (unsigned cpu = 0; cpu < NCPUS; cpu++)
		KEXPECT(c->own->stash[cpu].n >= 4);
	KEXPECT(objcache_own_check(c));
	KEXPECT(sh_in_use_pages(&heap) > base);
	objcache_shrink(c);
	KEXPECT_EQ(info(c).stashed, 0);
	KEXPECT_EQ(info(c).slabs, 0);
	/* A port that reaches no other CPU: this one's only. */
	stash_on_each_cpu(c, p, 4);
	size_t others = info(c).stashed - c->own->stash[0].n;
	mm_port_refuse_each_other_cpu(true);
	objcache_shrink(c);
	KEXPECT(objcache_own_check(c));
	mm_port_refuse_each_other_cpu(false);
	KEXPECT_EQ(c->own->stash[0].n, 0);
	KEXPECT_EQ(info(c).stashed, others);
	/* The destroy needs no port: no call uses the cache. */
	mm_port_refuse_each_other_cpu(true);
	KEXPECT(objcache_destroy(c));
	mm_port_refuse_each_other_cpu(false);
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_in_use_pages(&heap), base);
	finish();
}

KTEST(objcache_stash, shrink_all_gives_back_every_caches_spare)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t base = sh_in_use_pages(&heap);
	struct objcache *a =
	        objcache_create_flags(&sh, "spare-a", 40, 0, 0, ctor);
	struct objcache *b = objcache_create_flags(
	        &sh, "spare-b", 500, 0, OBJCACHE_TYPESAFE_BY_RCU, NULL);
	struct objcache *m = objcache_create(&sh, "merged", 40, 0);
	KASSERT(a && b && m);
	KEXPECT_EQ(objcache_spare(&sh), 0);
	static void *p[NCPUS * 8];
	stash_on_each_cpu(a, p, 8);
	stash_on_each_cpu(b, p, 2);
	size_t spare = objcache_spare(&sh);
	KEXPECT(spare >= NCPUS * 8 + NCPUS * 2);
	KEXPECT(sh_in_use_pages(&heap) > base);
	KEXPECT(objcache_shrink_all(&sh) >= NCPUS * 10);
	KEXPECT_EQ(objcache_spare(&sh), 0);
	KEXPECT_EQ(info(a).slabs + info(a).stashed, 0);
	KEXPECT_EQ(info(b).slabs + info(b).stashed, 0);
	KEXPECT(objcache_own_check(a) && objcache_own_check(b));
	/* b's slabs after their grace period. */
	mm_port_posix_rcu_advance();
	KEXPECT_EQ(info(b).pending, 0);
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_in_use_pages(&heap), base);
	KEXPECT(objcache_destroy(a) && objcache_destroy(b) &&
	        objcache_destroy(m));
	finish();
}

KTEST(objcache_stash, the_checker_catches_a_broken_stash)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c =
	        objcache_create_flags(&sh, "broken", 40, 0, 0, ctor);
	KASSERT(c);
	void *a = objcache_alloc(c, 0), *b = objcache_alloc(c, 0);
	KASSERT(a && b);
	objcache_free(c, a);
	objcache_free(c, b);
	/* On top of CPU 0's stash (below them, the refill's batch): b, then
	 * a. */
	struct objstash *st = &c->own->stash[0];
	uint32_t top = st->n - 1, idx;
	KASSERT(st->n >= 2 &&
	        objslab_obj(c,
	                    (void *)(st->ent[top - 1] &
	                             ~(uintptr_t)(MM_PAGE_SIZE - 1)),
	                    st->ent[top - 1] % MM_PAGE_SIZE) == a);
	struct objslab *sl = objcache_slab_of(c, a, &idx);
	uint64_t bit = (uint64_t)1 << (idx % 64);
	mm_port_set_quiet(true);
	sl->stashed[idx] = 0;
	KEXPECT(!objcache_own_check(c));
	KEXPECT(strstr(mm_port_last_log(), "not marked stashed"));
	sl->stashed[idx] = 1;
	sl->free[idx / 64] |= bit;
	KEXPECT(!objcache_own_check(c));
	KEXPECT(strstr(mm_port_last_log(), "both free and stashed"));
	sl->free[idx / 64] &= ~bit;
	uintptr_t keep = st->ent[top];
	st->ent[top] = st->ent[top - 1];
	KEXPECT(!objcache_own_check(c));
	KEXPECT(strstr(mm_port_last_log(), "twice in the stash"));
	st->ent[top] = keep + 10; /* an object free in its slab */
	KEXPECT(!objcache_own_check(c));
	st->ent[top] = keep;
	mm_port_set_quiet(false);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	finish();
}

/* The fast free's owner-number test: a large object laid out as one of
 * c's slabs (its header's cache word naming c, as a buffer of pointers
 * may) is still no slab. Without the test the free stashed the pointer. */
KTEST(objcache_stash, a_large_object_whose_header_names_the_cache_is_no_slab)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c =
	        objcache_create_flags(&sh, "forged", 40, 0, 0, ctor);
	KASSERT(c && c->own->fast);
	unsigned char *k = spanheap_alloc(&sh, 40 << 10, MM_ZERO);
	KASSERT(k && (uintptr_t)k % MM_PAGE_SIZE == 0); /* a span's base */
	((struct objslab *)k)->cache = c;
	mm_port_set_quiet(true);
	SH_EXPECT_PANIC(objcache_free(c, k + c->own->first), "interior");
	mm_port_set_quiet(false);
	KEXPECT_EQ(info(c).stashed, 0);
	spanheap_free(&sh, k);
	KEXPECT(objcache_destroy(c));
	finish();
}

/* The destroy drains every CPU's stash, the last one's too (the port's
 * CPUs are MM_MAX_CPUS slots: a kernel's CPU numbers may be sparse). */
KTEST(objcache_stash, the_destroy_drains_the_last_cpus_stash)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t base = sh_in_use_pages(&heap);
	struct objcache *c = objcache_create_flags(&sh, "last", 40, 0, 0, ctor);
	KASSERT(c);
	mm_port_set_cpu(MM_MAX_CPUS - 1);
	void *p = objcache_alloc(c, 0);
	KASSERT(p);
	objcache_free(c, p);
	KEXPECT_EQ(c->own->stash[MM_MAX_CPUS - 1].n, 1);
	mm_port_set_cpu(0);
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_in_use_pages(&heap), base);
	finish();
}

/* A refill takes a partial slab's objects before an empty slab's, as the
 * locked way does: the empty one stays whole, to go back. */
KTEST(objcache_stash, a_refill_takes_a_partial_slab_before_an_empty_one)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c =
	        objcache_create_flags(&sh, "refill", 40, 0, 0, ctor);
	KASSERT(c);
	uint32_t n = c->own->nobjs, idx;
	static void *p[2 * OBJSLAB_MAX_OBJS];
	for (uint32_t i = 0; i < 2 * n; i++) /* slab a, then slab b */
		KASSERT(p[i] = objcache_alloc(c, 0));
	struct objslab *a = objcache_slab_of(c, p[0], &idx);
	struct objslab *b = objcache_slab_of(c, p[2 * n - 1], &idx);
	KASSERT(a != b && info(c).slabs == 2);
	/* b wholly free, a with a batch free: back in the slabs. */
	for (uint32_t i = 0; i < 2 * n; i++)
		if (objcache_slab_of(c, p[i], &idx) == b || i < OBJSTASH_BATCH)
			objcache_free(c, p[i]);
	objcache_stash_drain_all(&c, 1);
	KEXPECT_EQ(c->own->nslabs[LIST_EMPTY], 1);
	void *q = objcache_alloc(c, 0);
	KASSERT(q);
	KEXPECT(objcache_slab_of(c, q, &idx) == a);
	KEXPECT_EQ(c->own->nslabs[LIST_EMPTY], 1);
	KEXPECT(objcache_own_check(c));
	objcache_free(c, q);
	for (uint32_t i = OBJSTASH_BATCH; i < 2 * n; i++)
		if (objcache_slab_of(c, p[i], &idx) == a)
			objcache_free(c, p[i]);
	KEXPECT(objcache_destroy(c));
	finish();
}

/* A free of an object of a slab gone back to the page heap: its span
 * carries no owner number now, so the fast way leaves it to the slow
 * one, which names it; the same once the pages are another cache's. */
KTEST(objcache_stash, a_free_into_a_released_or_reused_slab_is_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(&sh, "gone", 40, 0, 0, ctor);
	KASSERT(c && c->own->fast);
	void *p = objcache_alloc(c, 0);
	KASSERT(p);
	objcache_free(c, p);
	objcache_shrink(c);
	KEXPECT_EQ(info(c).slabs, 0);
	KEXPECT_EQ(objcache_stash_ent_of(c, p), 0);
	mm_port_set_quiet(true);
	SH_EXPECT_PANIC(objcache_free(c, p), "freed since");
	/* The pages made another cache's slab (the same object size): its
	 * owner number sends the stale free to the slow way, naming it. */
	struct objcache *d = objcache_create_flags(&sh, "anew", 40, 0, 0, ctor);
	KASSERT(d);
	static void *q;
	q = objcache_alloc(d, 0);
	KASSERT(q == p); /* a fresh heap's lowest pages again */
	SH_EXPECT_PANIC(objcache_free(c, p), "is of cache 'anew'");
	mm_port_set_quiet(false);
	KEXPECT_EQ(info(c).stashed + info(d).stashed, 0);
	objcache_free(d, q);
	KEXPECT(objcache_destroy(c) && objcache_destroy(d));
	finish();
}

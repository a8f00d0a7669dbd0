/*
 * Named object caches (mm/objcache.c): objects of the class for the
 * cache's size and alignment, counted per cache across CPUs; listed in
 * creation order; destruction refused while objects are out (or more
 * came in than went out) and done once they are back, giving every page
 * back; bad names, sizes and alignments, a duplicate and one cache too
 * many refused with a line saying why, leaking nothing, and so are a
 * cache and counters the heap has no memory for; a free to the
 * wrong cache, a double free and a foreign pointer panicking with
 * their messages; thousands of creates and destroys leave the heap's
 * pages where they were. Poison mode's caches: objcache_poison_test.c.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_internal.h"
#include "fault_touch_util.h"
#include "objcache_test_util.h"
#include "spanheap_test_util.h"

KTEST(objcache, counts_objects_across_cpus_and_destroys_when_all_are_back)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create(&sh, "node", 40, 0);
	KASSERT(c);
	static char *p[100];
	for (int i = 0; i < 100; i++) {
		KASSERT(p[i] = objcache_alloc(c, 0));
		KEXPECT_EQ((uintptr_t)p[i] % 16, 0);
		KEXPECT_EQ(spanheap_usable_size(&sh, p[i]), 48);
		memset(p[i], i, 40);
	}
	for (int i = 0; i < 100; i++)
		KEXPECT(all_bytes(p[i], 40, (unsigned char)i));
	mm_port_set_cpu(3); /* frees on another CPU: its counter goes < 0 */
	for (int i = 0; i < 30; i++)
		objcache_free(c, p[i]);
	mm_port_set_cpu(0);
	struct objcache_info in;
	objcache_info(c, &in);
	KEXPECT_EQ(in.live, 70);
	KEXPECT(!strcmp(in.name, "node"));
	KEXPECT_EQ(in.size, 40);
	KEXPECT_EQ(in.align, 16);
	KEXPECT_EQ(in.sizeclass, sizeclass_of(40));
	KEXPECT_EQ(in.objsize, 48);

	KEXPECT(!objcache_destroy(c));
	KEXPECT(strstr(mm_port_last_log(), "'node' not destroyed"));
	KEXPECT(strstr(mm_port_last_log(), "still allocated: 70"));
	for (int i = 30; i < 100; i++)
		objcache_free(c, p[i]);
	KEXPECT_EQ(live(c), 0);
	KEXPECT(objcache_destroy(c));
	KEXPECT_EQ(objcache_list(&sh, NULL, 0), 0);
	KEXPECT(objcache_destroy(NULL));
	/* The struct and the counters (the metadata heap's) went back with
	 * the objects. */
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "after the destroy");
	sh_heap_release(&heap, &sh);
}

KTEST(objcache, lists_caches_in_creation_order_and_reuses_slots)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *a = objcache_create(&sh, "a", 16, 0);
	struct objcache *b = objcache_create(&sh, "b-aligned", 40, 64);
	struct objcache *big = objcache_create(&sh, "big", 100000, 0);
	KASSERT(a && b && big);
	void *pa = objcache_alloc(a, 0), *pb[3], *pl = objcache_alloc(big, 0);
	KASSERT(pa && pl);
	for (int i = 0; i < 3; i++) {
		KASSERT(pb[i] = objcache_alloc(b, MM_ZERO));
		KEXPECT_EQ((uintptr_t)pb[i] % 64, 0);
		KEXPECT(all_bytes(pb[i], 40, 0));
	}
	struct objcache_info in[4];
	KASSERT_EQ(objcache_list(&sh, in, 4), 3);
	KEXPECT(!strcmp(in[0].name, "a") && in[0].live == 1);
	KEXPECT(!strcmp(in[1].name, "b-aligned") && in[1].live == 3);
	KEXPECT_EQ(in[1].align, 64);
	KEXPECT_EQ(in[1].objsize % 64, 0);
	KEXPECT(!strcmp(in[2].name, "big") && in[2].live == 1);
	KEXPECT_EQ(in[2].sizeclass, 0);
	KEXPECT_EQ(in[2].objsize, 25 * MM_PAGE_SIZE);
	/* A table too small still gets the count. */
	KEXPECT_EQ(objcache_list(&sh, in, 1), 3);
	objcache_free(a, pa);
	KEXPECT(objcache_destroy(a));
	/* a's slot again: its counters start at 0. */
	struct objcache *a2 = objcache_create(&sh, "a", 16, 0);
	KASSERT(a2);
	KEXPECT_EQ(live(a2), 0);
	KASSERT_EQ(objcache_list(&sh, in, 4), 3);
	KEXPECT(!strcmp(in[2].name, "a"));
	for (int i = 0; i < 3; i++)
		objcache_free(b, pb[i]);
	objcache_free(big, pl);
	KEXPECT(objcache_destroy(b) && objcache_destroy(big) &&
	        objcache_destroy(a2));
	SH_CHECK(&sh, "after the caches");
	sh_heap_release(&heap, &sh);
}

/* In the heap made fresh: a second destroy of a cache panics saying so,
 * before it reads the cache's counters or walks off the end of the heap's
 * list; so do an allocation from a destroyed cache and a free to it,
 * until its struct is reused (not a count stored through its freed
 * fields). The heap's list and the other cache stay as they were. */
static void destroyed_cache_calls_panic(const char *mode)
{
	mm_port_set_quiet(true);
	struct objcache *a = objcache_create(&sh, "a", 16, 0);
	struct objcache *b = objcache_create(&sh, "b", 16, 0);
	KASSERT(a && b);
	KEXPECT(objcache_destroy(a));
	SH_EXPECT_PANIC(objcache_destroy(a),
	                "no cache of the heap's (a cache destroyed already?)");
	void *volatile p = objcache_alloc(b, 0);
	KASSERT(p);
	SH_EXPECT_PANIC(objcache_alloc(a, 0), "destroyed");
	SH_EXPECT_PANIC(objcache_free(a, p), "destroyed");
	/* A pool over it: before the pool reads the struct's heap, which
	 * the free made no heap's address (the metadata block's free chain;
	 * when the struct was an object, poison mode's poison: until a review
	 * the init followed it, a fault). */
	static struct mempool pool;
	SH_EXPECT_PANIC(mempool_init_cache(&pool, a, "over-a", 2),
	                "over-a: made over cache");
	objcache_free(b, p);
	struct objcache_info in[2];
	KEXPECT_EQ(objcache_list(&sh, in, 2), 1);
	KEXPECT(objcache_destroy(b));
	mm_port_set_quiet(false);
	SH_CHECK(&sh, mode);
	sh_heap_release(&heap, &sh);
}

KTEST(objcache, destroying_a_destroyed_cache_panics_saying_so)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	destroyed_cache_calls_panic("after the destroyed cache's calls");
}

/* The same in poison mode, where the calls of a small cache all go out
 * of line: each still panics saying "destroyed". When the struct was an
 * object of the heap its free filled its fields with the poison, and
 * until a review the inline paths read the poison as a class and the
 * heap's address, and followed it; a metadata block is not poisoned. */
KTEST(objcache, a_destroyed_caches_calls_panic_saying_so_in_poison_mode)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	destroyed_cache_calls_panic("after the poisoned cache's calls");
}

/* True if objcache_create(name, size, align) is refused with a line
 * holding why. */
/* Bytes of objects sh has out, all classes. */
static size_t bytes_out(void)
{
	static struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.bytes_in_use;
}

static bool refused(const char *name, size_t size, size_t align,
                    const char *why)
{
	if (objcache_create(&sh, name, size, align))
		return false;
	return strstr(mm_port_last_log(), "refused") &&
	       strstr(mm_port_last_log(), why);
}

KTEST(objcache, bad_requests_are_refused_saying_why_and_leak_nothing)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	KEXPECT(refused(NULL, 16, 0, "no name"));
	KEXPECT(refused("", 16, 0, "no name"));
	KEXPECT(refused("0123456789abcdef0123456789abcdef", 16, 0,
	                "longer than"));
	KEXPECT(refused("zero", 0, 0, "size 0"));
	KEXPECT(refused("huge", SH_ARENA_BYTES + 1, 0, "larger than"));
	KEXPECT(refused("odd", 16, 24, "alignment"));
	KEXPECT(refused("odd2", 16, 3 * MM_PAGE_SIZE / 2, "alignment"));
	KEXPECT(refused("far", 16, (size_t)1 << 62, "no arena holds"));
	KEXPECT(refused("far2", SH_ARENA_BYTES - 16, 2 * MM_PAGE_SIZE,
	                "no arena holds"));
	/* A heap never set up (a kernel's cache made before heap_init), or
	 * none: until a review, a fault on its page heap's NULL. */
	static struct spanheap never;
	KEXPECT(objcache_create(&never, "early", 16, 0) == NULL);
	KEXPECT(strstr(mm_port_last_log(), "no heap (spanheap_init") != NULL);
	KEXPECT(objcache_create(NULL, "early", 16, 0) == NULL);
	/* The longest name is fine; a page multiple is an alignment. */
	struct objcache *longest =
	        objcache_create(&sh, "0123456789abcdef0123456789abcde", 8, 0);
	struct objcache *paged =
	        objcache_create(&sh, "paged", 100, 2 * MM_PAGE_SIZE);
	KASSERT(longest && paged);
	void *pp = objcache_alloc(paged, 0);
	KASSERT(pp);
	KEXPECT_EQ((uintptr_t)pp % (2 * MM_PAGE_SIZE), 0);
	objcache_free(paged, pp);
	size_t bytes = bytes_out();
	KEXPECT(refused("paged", 100, 0, "another cache's"));
	KEXPECT_EQ(bytes_out(), bytes);
	/* 62 more make 64; the 65th is refused. */
	static struct objcache *more[OBJCACHE_MAX];
	char name[16];
	for (int i = 0; i < OBJCACHE_MAX - 2; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		KASSERT(more[i] = objcache_create(&sh, name, 32, 0));
	}
	bytes = bytes_out();
	KEXPECT(refused("one-too-many", 32, 0, "OBJCACHE_MAX"));
	KEXPECT_EQ(bytes_out(), bytes);
	for (int i = 0; i < OBJCACHE_MAX - 2; i++)
		KEXPECT(objcache_destroy(more[i]));
	KEXPECT(objcache_destroy(longest) && objcache_destroy(paged));
	mm_port_set_quiet(false);
	/* With the last cache gone, the counters went too. */
	KEXPECT_EQ(bytes_out(), 0);
	SH_CHECK(&sh, "after the refusals");
	sh_heap_release(&heap, &sh);
}

/* Fails the heap's allocations: every one from the first-th on, times
 * of them (-1: all). */
static bool fail_from(uint32_t first, int64_t times)
{
	struct spanheap_fail_attr a = {.interval = first,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = times,
	                               .seed = 1};
	return spanheap_fail_arm(&sh, &a);
}

/*
 * No memory for the cache itself, or (the heap's first cache) for the
 * counters after it: refused with a line saying so, the cache's memory
 * given back, no slot or name kept. With memory back, the same create
 * works.
 */
KTEST(objcache, create_without_memory_is_refused_and_leaks_nothing)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(fail_from(1, -1));
	mm_port_set_quiet(true); /* after every KASSERT: none leaves it on */
	KEXPECT(objcache_create(&sh, "dry", 40, 0) == NULL);
	KEXPECT(strstr(mm_port_last_log(), "objcache: cache 'dry' of 40 bytes "
	                                   "(aligned to 16) refused: no "
	                                   "memory for the cache") != NULL);
	spanheap_fail_disarm(&sh);
	KEXPECT_EQ(bytes_out(), 0);
	/* The cache's struct comes, the counters (the second call) not. */
	KEXPECT(fail_from(2, 1));
	KEXPECT(objcache_create(&sh, "dry", 40, 0) == NULL);
	KEXPECT(strstr(mm_port_last_log(), "cache 'dry' refused: no memory for "
	                                   "the counters") != NULL);
	spanheap_fail_disarm(&sh);
	mm_port_set_quiet(false);
	KEXPECT_EQ(bytes_out(), 0);
	KEXPECT(sh.objcaches == NULL && sh.objcache_slots == 0 &&
	        sh.objcache_counts == NULL);
	struct objcache *c = objcache_create(&sh, "dry", 40, 0);
	KASSERT(c);
	void *p = objcache_alloc(c, 0);
	KASSERT(p);
	KEXPECT_EQ(live(c), 1);
	objcache_free(c, p);
	KEXPECT(objcache_destroy(c));
	KEXPECT_EQ(bytes_out(), 0);
	SH_CHECK(&sh, "after the creates without memory");
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

KTEST(objcache, misuse_panics_naming_the_cache_and_the_object)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	struct objcache *small = objcache_create(&sh, "small", 48, 0);
	struct objcache *mid = objcache_create(&sh, "mid", 256, 0);
	struct objcache *big = objcache_create(&sh, "big", 50000, 0);
	KASSERT(small && mid && big);
	void *s = objcache_alloc(small, 0), *l = objcache_alloc(big, 0);
	KASSERT(s && l);
	/* Another cache's object, of another class. */
	SH_EXPECT_PANIC(objcache_free(mid, s), "to cache 'mid'");
	KEXPECT(strstr(mm_port_last_panic(), "another cache's or kmalloc's"));
	SH_EXPECT_PANIC(objcache_free(small, l), "to cache 'small'");
	SH_EXPECT_PANIC(objcache_free(big, s), "to cache 'big'");
	/* A kmalloc object of another class. */
	void *k = spanheap_alloc(&sh, 1000, 0);
	KASSERT(k);
	SH_EXPECT_PANIC(objcache_free(small, k), "size class");
	/* Nothing was freed or counted by the refused frees. */
	KEXPECT_EQ(live(small), 1);
	KEXPECT_EQ(live(big), 1);
	/* The heap's own checks: a double free, a foreign pointer. */
	objcache_free(small, s);
	SH_EXPECT_PANIC(objcache_free(small, s), "double free");
	KEXPECT_EQ(live(small), 0);
	int on_stack;
	SH_EXPECT_PANIC(objcache_free(small, &on_stack), "foreign pointer");
	/* A kmalloc object of the cache's own class goes unseen at the
	 * free, but the count falls below zero and the destroy says so. */
	void *same = spanheap_alloc(&sh, 40, 0);
	KASSERT(same);
	objcache_free(small, same);
	KEXPECT(!objcache_destroy(small));
	KEXPECT(strstr(mm_port_last_log(), "more frees than allocations"));
	spanheap_free(&sh, k);
	objcache_free(big, l);
	KEXPECT(objcache_destroy(mid) && objcache_destroy(big));
	mm_port_set_quiet(false);
	SH_CHECK(&sh, "after the misuse");
	sh_heap_release(&heap, &sh);
}

/* Flushes every CPU's cache and gives every free page back; the pages in
 * use then, of the object heap and of the metadata heap (the caches'
 * structs and counters, the reserves' arrays: until a review only the
 * object heap's were counted, where those were objects). */
static size_t pages_settled(void)
{
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	return sh_in_use_pages(&heap) + sh_in_use_pages(&sh.meta);
}

/* One round of the cycle test: a cache made, used on two CPUs, emptied
 * and destroyed; the heap's first cache (counters made) and last
 * (counters freed) unless another stays. */
static void cycle_once(unsigned i)
{
	static const size_t sizes[] = {8, 40, 200, 3000, 40000};
	size_t size = sizes[i % 5];
	struct objcache *c =
	        objcache_create(&sh, "cycling", size, i % 3 ? 0 : 64);
	KASSERT(c);
	void *p[4];
	for (int k = 0; k < 4; k++) {
		mm_port_set_cpu((unsigned)k % 2);
		KASSERT(p[k] = objcache_alloc(c, MM_ZERO));
	}
	for (int k = 0; k < 4; k++) {
		mm_port_set_cpu((unsigned)(k + 1) % 2);
		objcache_free(c, p[k]);
	}
	mm_port_set_cpu(0);
	KEXPECT(objcache_destroy(c));
}

/*
 * Thousands of caches made and destroyed, each used, alone in the heap
 * (its counters made and freed each time) and beside one that stays:
 * the heap's pages in use come back to where one round left them (span
 * structs, magazine slabs and poison mode's stack depot made once), no
 * byte stays allocated and no slot is kept. In both modes: poison's
 * caches own their objects and publish their names.
 */
static void cycles(bool poison)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, poison));
	for (unsigned i = 0; i < 10; i++)
		cycle_once(i);
	size_t settled = pages_settled();
	for (unsigned i = 0; i < 2000; i++)
		cycle_once(i);
	KEXPECT_EQ(pages_settled(), settled);
	KEXPECT(sh.objcaches == NULL && sh.objcache_slots == 0 &&
	        sh.objcache_counts == NULL);
	struct objcache *stays = objcache_create(&sh, "stays", 24, 0);
	KASSERT(stays);
	for (unsigned i = 0; i < 2000; i++)
		cycle_once(i);
	KEXPECT(objcache_destroy(stays));
	KEXPECT_EQ(pages_settled(), settled);
	KEXPECT_EQ(bytes_out(), 0);
	KEXPECT(sh.objcaches == NULL && sh.objcache_slots == 0);
	SH_CHECK(&sh, "after the cycles");
	sh_heap_release(&heap, &sh);
}

KTEST(objcache, thousands_of_creates_and_destroys_give_everything_back)
{
	cycles(false);
	cycles(true);
}

/*
 * A cache alone on its struct's page of metadata blocks: its destroy
 * gives the page back, and a release-all unmaps it. A second destroy
 * given the heap (objcache_destroy_in, the kernel's kmem_cache_destroy)
 * looks for the cache on the heap's list before it reads the struct, and
 * panics saying so; objcache_destroy, which reads the struct for its
 * heap, faulted there (found by review, a SIGSEGV in objcache_destroy).
 */
KTEST(objcache, a_second_destroy_given_the_heap_panics_with_the_page_gone)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *a = objcache_create(&sh, "lone", 24, 0);
	KASSERT(a);
	KEXPECT(objcache_destroy_in(&sh, a));
	spanheap_release_all(&sh);
	KEXPECT(touch_faults((char *)a)); /* the page is gone */
	SH_EXPECT_PANIC(objcache_destroy_in(&sh, a),
	                "no cache of the heap's (a cache destroyed already?)");
	KEXPECT(objcache_destroy_in(&sh, NULL));
	SH_CHECK(&sh, "after the second destroy");
	sh_heap_release(&heap, &sh);
}

/*
 * A pool over a cache, given the heap (mempool_init_cache_in): a live
 * cache of the heap's makes one; a destroyed cache whose struct's page
 * went back and was unmapped panics naming the pool, found missing from
 * the heap's list before the struct is read (mempool_init_cache, which
 * reads the struct's slot, faults there: found by review).
 */
KTEST(objcache, a_pool_over_a_destroyed_cache_given_the_heap_panics)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static struct mempool pool;
	struct objcache *a = objcache_create(&sh, "lone", 24, 0);
	KASSERT(a);
	KASSERT(mempool_init_cache_in(&pool, &sh, a, "over-lone", 2));
	void *e = mempool_alloc(&pool, 0);
	KEXPECT(e && spanheap_usable_size(&sh, e) >= 24);
	mempool_free(&pool, e);
	KEXPECT(mempool_destroy(&pool));
	KEXPECT(!mempool_init_cache_in(&pool, &sh, NULL, "nocache", 2));
	KEXPECT(strstr(mm_port_last_log(), "nocache: not made: no cache"));
	KEXPECT(!mempool_init_cache_in(&pool, NULL, a, "noheap", 2));
	KEXPECT(strstr(mm_port_last_log(), "noheap: not made: no heap"));
	KEXPECT(objcache_destroy_in(&sh, a));
	spanheap_release_all(&sh);
	KEXPECT(touch_faults((char *)a)); /* the page is gone */
	SH_EXPECT_PANIC(mempool_init_cache_in(&pool, &sh, a, "over-gone", 2),
	                "over-gone: made over cache");
	SH_EXPECT_PANIC(mempool_init_cache_in(&pool, &sh, a, "over-gone", 2),
	                "no cache of the heap's (a cache destroyed?)");
	SH_CHECK(&sh, "after the pool over a destroyed cache");
	sh_heap_release(&heap, &sh);
}

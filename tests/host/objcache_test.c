/*
 * Named object caches (mm/objcache.c): objects of the class for the
 * cache's size and alignment, counted per cache across CPUs; listed in
 * creation order; destruction refused while objects are out (or more
 * came in than went out) and done once they are back, giving every page
 * back; bad names, sizes and alignments, a duplicate and one cache too
 * many refused with a line saying why, leaking nothing, and so are a
 * cache and counters the heap has no memory for; a free to the
 * wrong cache, a double free and a foreign pointer panicking with
 * their messages; poison mode's classes, and its owners: each object
 * told from another cache's and kmalloc's of the same class, at every
 * free and realloc, and a cache's live objects listed by their stacks;
 * the checker finds a free object that kept an owner; thousands of
 * creates and destroys leave the heap's pages where they were.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

static int64_t live(struct objcache *c)
{
	struct objcache_info in;
	objcache_info(c, &in);
	return in.live;
}

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
	/* The struct and the counters went back with the objects. */
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
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
	 * poison mode's poison makes no heap's address (until a review the
	 * init followed it, a fault). */
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

/* The same in poison mode, where the free of the destroyed struct fills
 * its fields with the poison: each call still panics saying
 * "destroyed", not a fault on the poison taken for the cache's heap
 * (until a review the inline paths read the poison as a class and the
 * heap's address, and followed it). */
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
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
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

KTEST(objcache, poison_mode_serves_a_class_with_a_red_zone)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	struct objcache *c = objcache_create(&sh, "exact", 48, 0);
	KASSERT(c);
	struct objcache_info in;
	objcache_info(c, &in);
	KEXPECT_EQ(in.sizeclass, sizeclass_of(49));
	KEXPECT(in.objsize > 48);
	char *p = objcache_alloc(c, 0);
	KASSERT(p);
	memset(p, 1, 48);
	objcache_free(c, p);
	p = objcache_alloc(c, 0);
	KASSERT(p);
	p[48] = 7; /* one byte past the size asked */
	SH_EXPECT_PANIC(objcache_free(c, p), "past the end");
	/* The free panicked before its count. */
	KEXPECT_EQ(live(c), 1);
	KEXPECT(!objcache_destroy(c));
	sh_heap_release(&heap, &sh);
}

/* One stack for the traces below (noinline: its own return address). */
static __attribute__((noinline)) void *from_here(struct objcache *c)
{
	void *p = objcache_alloc(c, 0);
	__asm__ volatile("" ::: "memory"); /* not a tail call */
	return p;
}

static size_t owned(struct objcache *c, size_t *objects)
{
	struct objcache_info in;
	objcache_info(c, &in);
	struct spanheap_trace t[4];
	size_t rest, n = spanheap_alloc_traces_owned(&sh, in.sizeclass,
	                                             in.owner, t, 4, &rest);
	*objects = rest;
	for (size_t i = 0; i < n; i++)
		*objects += t[i].objects;
	return n;
}

/* What an address is names its object's cache: inode's c, not kmalloc's
 * k. */
static void where_names_the_cache(const char *c, const void *k)
{
	static char where[1024];
	sh_where_log(&sh, c + 8, where, sizeof(where));
	KEXPECT(strstr(where, "(allocated) of span"));
	KEXPECT(strstr(where, ", cache 'inode''s"));
	sh_where_log(&sh, k, where, sizeof(where));
	KEXPECT(strstr(where, "(allocated) of span"));
	KEXPECT(!strstr(where, "cache '"));
}

/* Five objects of c from from_here's one call site, so one stack: clang
 * -O3 unrolled a loop of calls into five sites, and a check inside the
 * loop may peel its first call off. */
static bool five_from_here(struct objcache *c, void **out)
{
#pragma GCC unroll 1
	for (int i = 0; i < 5; i++)
		out[i] = from_here(c);
	for (int i = 0; i < 5; i++)
		if (!out[i])
			return false;
	return true;
}

KTEST(objcache, poison_mode_tells_each_objects_owner)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	mm_port_set_quiet(true);
	/* Two caches and kmalloc's objects, all of one class. */
	struct objcache *a = objcache_create(&sh, "inode", 40, 0);
	struct objcache *b = objcache_create(&sh, "dentry", 40, 0);
	KASSERT(a && b);
	char *pa = objcache_alloc(a, 0), *pb = objcache_alloc(b, 0);
	char *k = spanheap_alloc(&sh, 40, 0);
	KASSERT(pa && pb && k);
	memset(pa, 0x5a, 40);
	where_names_the_cache(pa, k);
	mm_port_set_quiet(true);
	SH_EXPECT_PANIC(objcache_free(b, pa), "is cache 'inode''s");
	KEXPECT(strstr(mm_port_last_panic(), "to cache 'dentry'"));
	SH_EXPECT_PANIC(objcache_free(a, k), "is kmalloc's, of no cache");
	SH_EXPECT_PANIC(spanheap_free(&sh, pa), "free of");
	KEXPECT(strstr(mm_port_last_panic(), "is cache 'inode''s"));
	/* Resized in place or moved: either way refused before anything. */
	SH_EXPECT_PANIC(spanheap_realloc(&sh, pb, 20, 0), "realloc of");
	SH_EXPECT_PANIC(spanheap_realloc(&sh, pb, 4000, 0), "'dentry''s");
	/* Nothing was freed, moved or counted by the refused calls. */
	KEXPECT_EQ(live(a), 1);
	KEXPECT_EQ(live(b), 1);
	for (int i = 0; i < 40; i++)
		KEXPECT_EQ((unsigned char)pa[i], 0x5a);

	/* Each cache's live objects by their stacks, and kmalloc's. */
	static void *more[5];
	KASSERT(five_from_here(a, more));
	size_t objects;
	KEXPECT_EQ(owned(a, &objects), 2); /* this test's, from_here's */
	KEXPECT_EQ(objects, 6);
	KEXPECT_EQ(owned(b, &objects), 1);
	KEXPECT_EQ(objects, 1);
	struct spanheap_trace t[4];
	size_t rest;
	KEXPECT_EQ(spanheap_alloc_traces_owned(&sh, sizeclass_of(41), 0, t, 4,
	                                       &rest),
	           1);
	KEXPECT_EQ(t[0].objects, 1); /* k */
	KEXPECT(!objcache_destroy(a));

	/* Freed to their own: accepted; a second free is the heap's. */
	for (int i = 0; i < 5; i++)
		objcache_free(a, more[i]);
	objcache_free(a, pa);
	SH_EXPECT_PANIC(objcache_free(a, pa), "double free");
	objcache_free(b, pb);
	spanheap_free(&sh, k);
	KEXPECT_EQ(owned(a, &objects), 0);
	KEXPECT(objcache_destroy(a) && objcache_destroy(b));
	mm_port_set_quiet(false);
	SH_CHECK(&sh, "after the owners' misuse");
	sh_heap_release(&heap, &sh);
}

/* A large object of kmalloc's freed to a cache in poison mode: it has no
 * side-table entry (a large span keeps no owners), so only the class
 * test refuses it (a mutation review found the free took it silently
 * without that test). Nothing is freed. */
KTEST(objcache, poison_mode_refuses_a_large_object_of_kmalloc)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	mm_port_set_quiet(true);
	struct objcache *c = objcache_create(&sh, "small", 64, 0);
	KASSERT(c);
	void *big = spanheap_alloc(&sh, 3 * MM_PAGE_SIZE, 0);
	KASSERT(big);
	SH_EXPECT_PANIC(objcache_free(c, big), "to cache 'small'");
	KEXPECT(strstr(mm_port_last_panic(), "another cache's or kmalloc's"));
	KEXPECT_EQ(spanheap_usable_size(&sh, big), 3 * MM_PAGE_SIZE);
	spanheap_free(&sh, big);
	KEXPECT(objcache_destroy(c));
	mm_port_set_quiet(false);
	SH_CHECK(&sh, "after the refused free");
	sh_heap_release(&heap, &sh);
}

/* The heap's checker holds a free object's side-table entry to a free
 * one's: no owner, no bytes asked. */
KTEST(objcache, poison_mode_checker_finds_a_free_object_with_an_owner)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	struct objcache *c = objcache_create(&sh, "inode", 40, 0);
	KASSERT(c);
	char *keep = objcache_alloc(c, 0), *gone = objcache_alloc(c, 0);
	KASSERT(keep && gone);
	objcache_free(c, gone);
	spanheap_flush_cache(&sh); /* its span on a central list */
	SH_CHECK(&sh, "with a free object");
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)gone);
	KASSERT(mheap_span_is_span(s) && s->redzone);
	struct spanheap_redzone *e = (struct spanheap_redzone *)s->redzone +
	                             ((uintptr_t)gone - s->base) / s->elemsize;
	KEXPECT_EQ(e->owner, 0);
	e->owner = 3; /* as if its free had not cleared it */
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(),
	               "has an allocated object's side-table entry"));
	e->owner = 0;
	SH_CHECK(&sh, "with the entry mended");
	/* The other half: bytes asked in a free object's entry. */
	uint32_t asked = e->asked;
	KEXPECT_EQ(asked, SPANHEAP_REDZONE_FREE);
	e->asked = 40; /* as if its free had not cleared it */
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(),
	               "has an allocated object's side-table entry"));
	e->asked = asked;
	SH_CHECK(&sh, "with the asked bytes mended");
	objcache_free(c, keep);
	KEXPECT(objcache_destroy(c));
	sh_heap_release(&heap, &sh);
}

/* Flushes every CPU's cache and gives every free page back; the page
 * heap's pages in use then. */
static size_t pages_settled(void)
{
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	return sh_in_use_pages(&heap);
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

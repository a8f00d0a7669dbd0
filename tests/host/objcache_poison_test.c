/*
 * Named object caches in poison mode (mm/objcache.c, "Poison mode"):
 * each cache's class serves it with a red zone; its owners: each object
 * told from another cache's and kmalloc's of the same class, at every
 * free and realloc, and a cache's live objects listed by their stacks;
 * the checker finds a free object that kept an owner. The rest of the
 * caches' tests: objcache_test.c.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_copy.h"
#include "../../mm/spanheap_internal.h"
#include "objcache_test_util.h"
#include "spanheap_test_util.h"

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
	/* kfree_rcu's check at its call (rv98: it passed a cache's object,
	 * which the kfree in the rcu thread refused later). */
	SH_EXPECT_PANIC(spanheap_check_free_as(&sh, pa, "kfree_rcu"),
	                "kfree_rcu of");
	KEXPECT(strstr(mm_port_last_panic(), "is cache 'inode''s"));
	spanheap_check_free_as(&sh, k, "kfree_rcu"); /* kmalloc's: fine */
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

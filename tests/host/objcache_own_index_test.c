/*
 * The free's object index without a division (objcache_stash.c's
 * ent_of_obj: a multiply by the inverse of objsize's odd part and a
 * rotation): over sizes whose odd parts and powers of two differ, every
 * byte of a full slab. The fast check takes exactly the objects' starts,
 * each as its own index, and refuses every other byte (the slow way's
 * to name); objcache_free then panics for those as an interior pointer
 * naming the cache (for the two largest sizes, on a sample: those near
 * an object's edge and one byte in 61), and frees each start as its own
 * object (the checker and a second round of allocations find every
 * object once).
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_internal.h"
#include "mm_port_posix.h"
#include "objcache_test_util.h"
#include "spanheap_panic_util.h"
#include "spanheap_test_util.h"

static void nop_ctor(void *p)
{
	(void)p;
}

/* Fills one slab of a cache of size bytes aligned to align, gives each
 * of its bytes to the fast check, and to the free (whose panic is the
 * slow way's, not under test here) the bytes within 8 of an object's
 * edge and one in every `every` of the others; then frees the objects. */
static void every_byte(size_t size, size_t align, size_t every)
{
	static unsigned char *obj[OBJSLAB_MAX_OBJS];
	struct objcache *c =
	        objcache_create_flags(&sh, "index", size, align, 0, nop_ctor);
	KASSERT(c);
	struct objcache_own *o = c->own;
	KASSERT(o->stash); /* the fast way's cache */
	for (uint32_t i = 0; i < o->nobjs; i++)
		KASSERT(obj[i] = objcache_alloc(c, 0));
	/* A new cache's first slab gives its objects out in order. */
	unsigned char *base = obj[0] - o->first;
	KASSERT(o->slabs == 1);
	mm_port_set_quiet(true);
	for (size_t k = 0; k < (size_t)o->npages * MM_PAGE_SIZE; k++) {
		size_t j = (k - o->first) / c->objsize;
		bool start = k >= o->first &&
		             (k - o->first) % c->objsize == 0 && j < o->nobjs;
		/* The fast check alone: what it takes is that object. */
		uintptr_t e = objcache_stash_ent_of(c, base + k);
		KEXPECT_EQ(e, start ? (uintptr_t)base | j : 0);
		if (start)
			continue; /* an object's start, out */
		size_t in = k < o->first ? o->first - k
		                         : (k - o->first) % c->objsize;
		if (in > 8 && c->objsize - in > 8 && k % every)
			continue;
		SH_EXPECT_PANIC(objcache_free(c, base + k),
		                "cache 'index': an interior pointer");
	}
	mm_port_set_quiet(false);
	KEXPECT(objcache_own_check(c));
	for (uint32_t i = 0; i < o->nobjs; i++) {
		KEXPECT_EQ(obj[i], base + o->first + (size_t)i * c->objsize);
		objcache_free(c, obj[i]);
	}
	KEXPECT(objcache_own_check(c));
	/* Each free went to its own object: all nobjs come back once. */
	for (uint32_t i = 0; i < o->nobjs; i++)
		KASSERT(obj[i] = objcache_alloc(c, 0));
	for (uint32_t i = 0; i < o->nobjs; i++)
		for (uint32_t j = i + 1; j < o->nobjs; j++)
			KEXPECT(obj[i] != obj[j]);
	for (uint32_t i = 0; i < o->nobjs; i++)
		objcache_free(c, obj[i]);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
}

KTEST(objcache_own, every_byte_of_a_slab_but_the_objects_starts_is_refused)
{
	static const struct {
		size_t size, align, every;
	} cases[] = {
	        {1, 1, 1},
	        {3, 1, 1},
	        {8, 8, 1},
	        {24, 8, 1},
	        {24, 0, 1},
	        {40, 8, 1},
	        {56, 8, 1},
	        {100, 4, 1},
	        {112, 0, 1},
	        {200, 0, 1},
	        {328, 8, 1},
	        {1000, 0, 1},
	        {1544, 8, 1},
	        {3000, 0, 1},
	        /* The largest with a stash (two objects, a stash of one) and
	         * whole pages after a page of header: 8 and 7 pages, the
	         * slow way's panic on a sample. */
	        {16000, 0, 61},
	        {12288, 4096, 61},
	};
	KASSERT(sh_heap_fresh(&heap, &sh));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		every_byte(cases[i].size, cases[i].align, cases[i].every);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

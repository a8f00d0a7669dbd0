/*
 * The geometry of a slab of a cache with slabs of its own
 * (mm/objcache_own.c), over every alignment the API takes and sizes
 * around the header, a page and 32 KiB: each object aligned, inside its
 * slab, after the header and apart from every other (a ctor and then its
 * user write every byte of it, and the checker reads the header after);
 * and the header's own address, the slab's base, given to the heap's
 * calls (kfree, krealloc), which must name the cache and not free the
 * slab under its objects.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_internal.h"
#include "mm_port_posix.h"
#include "objcache_test_util.h"
#include "spanheap_panic_util.h"
#include "spanheap_test_util.h"

static size_t fill_size;
static unsigned ctor_calls;

static void fill_ctor(void *p)
{
	memset(p, 0xc5, fill_size);
	ctor_calls++;
}

/* Two slabs and one more object of a cache of size bytes aligned to
 * align: each object where it should be, none overlapping. */
static void one_geometry(size_t size, size_t align)
{
	enum { MAX = 2 * OBJSLAB_MAX_OBJS + 1 };
	static unsigned char *p[MAX];
	fill_size = size;
	ctor_calls = 0;
	struct objcache *c =
	        objcache_create_flags(&sh, "geom", size, align, 0, fill_ctor);
	KASSERT(c);
	struct objcache_own *o = c->own;
	size_t want = align < 16 ? 16 : align, n = 2 * o->nobjs + 1;
	KEXPECT(o->first >= sizeof(struct objslab));
	for (size_t i = 0; i < n; i++) {
		KASSERT(p[i] = objcache_alloc(c, 0));
		struct mspan *s = objslab_span(&sh, p[i]);
		uintptr_t at = (uintptr_t)p[i];
		KEXPECT_EQ(at % want, 0);
		KEXPECT(all_bytes(p[i], size,
		                  0xc5)); /* the ctor's, untouched */
		/* After the header, on an object's start, inside the slab. */
		KEXPECT(at >= s->base + o->first);
		KEXPECT_EQ((at - s->base - o->first) % c->objsize, 0);
		KEXPECT(at + size <=
		        s->base + (uintptr_t)o->npages * MM_PAGE_SIZE);
		KEXPECT_EQ(s->npages, o->npages);
		memset(p[i], (int)(i & 0xff), size);
	}
	KEXPECT_EQ(ctor_calls, 3 * o->nobjs);
	for (size_t i = 0; i < n; i++)
		KEXPECT(all_bytes(p[i], size, (unsigned char)(i & 0xff)));
	KEXPECT(objcache_own_check(c)); /* the headers, intact */
	for (size_t i = 0; i < n; i++)
		objcache_free(c, p[i]);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
}

KTEST(objcache_own, every_alignment_and_size_keeps_objects_off_the_header)
{
	static const size_t sizes[] = {
	        1,    24,   88,    100,   120,   4000,  4096,
	        4097, 8192, 32767, 32768, 32769, 70000,
	};
	KASSERT(sh_heap_fresh(&heap, &sh));
	for (size_t a = 0; a <= MM_PAGE_SIZE; a = a ? 2 * a : 1)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			one_geometry(sizes[i], a);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

KTEST(objcache_own, the_slab_base_given_to_kfree_names_the_cache)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	/* 64 bytes: a size whose objects leave a tail in the slab's page. */
	fill_size = 64;
	struct objcache *c =
	        objcache_create_flags(&sh, "based", 64, 0, 0, fill_ctor);
	KASSERT(c);
	unsigned char *obj = objcache_alloc(c, 0);
	KASSERT(obj);
	void *base = obj - c->own->first; /* the lowest object: the header */
	mm_port_set_quiet(true);
	SH_EXPECT_PANIC(spanheap_free(&sh, base), "an object of cache 'based'");
	SH_EXPECT_PANIC(spanheap_realloc(&sh, base, 8, 0),
	                "an object of cache 'based'");
	/* Past the last object, inside the slab's pages: no object. */
	struct objcache_own *o = c->own;
	unsigned char *past = obj + (size_t)o->nobjs * c->objsize;
	KASSERT((size_t)(past - (unsigned char *)base) <
	        (size_t)MM_PAGE_SIZE * o->npages);
	SH_EXPECT_PANIC(objcache_free(c, past), "interior pointer");
	mm_port_set_quiet(false);
	/* The slab is still the cache's. */
	KEXPECT(objcache_own_check(c));
	memset(obj, 1, 64);
	objcache_free(c, obj);
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

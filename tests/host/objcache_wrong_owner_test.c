/*
 * tests/host/objcache_wrong_owner_test.c: in poison mode, a free to a
 * cache of an object another cache of the same class owns panics naming
 * the object's span by its address (mm/objcache.c, wrong_owner): the
 * misuse matrix checks only that the words "span" and "size class"
 * appear, which a wrong or zero address passes.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_where.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

KTEST(objcache_wrong_owner, names_the_objects_span)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	struct objcache *a = objcache_create(&sh, "wa", 60, 0);
	struct objcache *b = objcache_create(&sh, "wb", 56, 0);
	KASSERT(a && b && a->sizeclass == b->sizeclass);
	void *p = objcache_alloc(b, 0);
	KASSERT(p != NULL);
	struct spanheap_where w;
	spanheap_where(&sh, p, &w);
	KASSERT(w.span_base != 0);
	char span[40];
	snprintf(span, sizeof(span), "of span %#lx,",
	         (unsigned long)w.span_base);
	bool fired = MM_PORT_PANICS(objcache_free(a, p));
	sh_unpin_after_panic();
	KEXPECT(fired);
	if (fired && !strstr(mm_port_last_panic(), span))
		ktest_fail_at(__FILE__, __LINE__, "panic \"%s\" lacks \"%s\"",
		              mm_port_last_panic(), span);
	objcache_free(b, p);
	objcache_destroy(a);
	objcache_destroy(b);
	sh_heap_release(&heap, &sh);
}

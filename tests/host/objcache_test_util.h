/* What the named-cache tests share (objcache_test.c,
 * objcache_poison_test.c): a heap and its span heap of the including
 * file's own, and a cache's live count. */
#ifndef TESTS_HOST_OBJCACHE_TEST_UTIL_H
#define TESTS_HOST_OBJCACHE_TEST_UTIL_H

#include <stdint.h>

#include "../../mm/objcache.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

static inline int64_t live(struct objcache *c)
{
	struct objcache_info in;
	objcache_info(c, &in);
	return in.live;
}

#endif

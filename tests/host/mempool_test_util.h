/* What the reserved-element pool tests share (mempool_test.c,
 * mempool_source_test.c, mempool_check_test.c, mempool_wait_test.c,
 * mempool_stress_test.c): a heap, its span heap and a pool of the
 * including file's own, and helpers over them. */
#ifndef TESTS_HOST_MEMPOOL_TEST_UTIL_H
#define TESTS_HOST_MEMPOOL_TEST_UTIL_H

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static struct mempool pool;

/* Every allocation of the heap fails until disarm. */
static inline bool fail_all(void)
{
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1,
	                               .seed = 1};
	return spanheap_fail_arm(&sh, &a);
}

static inline struct mempool_info info(void)
{
	struct mempool_info in;
	mempool_info(&pool, &in);
	return in;
}

/* Gives everything back and checks the heap holds no span after, and its
 * metadata heap only what the span heap keeps (no reserve's array). */
static inline void release_and_check(const char *what)
{
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, what);
	sh_heap_release(&heap, &sh);
}

#endif

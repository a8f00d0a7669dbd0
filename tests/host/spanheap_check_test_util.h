/*
 * tests/host/spanheap_check_test_util.h: what the checker's test files
 * (spanheap_check_test.c, spanheap_check_bits_test.c) share: each file's
 * own heap (static: a copy per file, as each test makes it afresh), a
 * fresh one, and the span of a pointer in it.
 */
#ifndef TESTS_HOST_SPANHEAP_CHECK_TEST_UTIL_H
#define TESTS_HOST_SPANHEAP_CHECK_TEST_UTIL_H

#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

static bool fresh_heap(void)
{
	return sh_heap_fresh(&heap, &sh);
}

static struct mspan *span_at(const void *p)
{
	return mheap_span_lookup(&heap, (uintptr_t)p);
}

#endif

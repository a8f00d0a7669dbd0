/*
 * tests/host/spanheap_check_test_util.h: what the checker's test files
 * (spanheap_check_test.c, spanheap_check_bits_test.c,
 * spanheap_check_list_test.c, spanheap_check_mag_test.c) share: each
 * file's own heap (static: a copy per file, as each test makes it afresh),
 * a fresh one, the span of a pointer in it, and the expectation that the
 * check fails saying so.
 */
#ifndef TESTS_HOST_SPANHEAP_CHECK_TEST_UTIL_H
#define TESTS_HOST_SPANHEAP_CHECK_TEST_UTIL_H

#include <stdarg.h>

#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

static bool fresh_heap(void)
{
	return sh_heap_fresh(&heap, &sh);
}

/* Sets CPU cpu's cache up as its first allocation or free would (pinned
 * there), with no slab made; the calling thread stays on cpu. */
__attribute__((unused)) static void set_up_cpu(unsigned cpu)
{
	mm_port_set_cpu(cpu);
	struct mm_pin pin = mm_port_pin();
	spanheap_cache_set_up(&sh, pin.cpu);
	mm_port_unpin(pin);
}

static struct mspan *span_at(const void *p)
{
	return mheap_span_lookup(&heap, (uintptr_t)p);
}

/* Expects spanheap_check to panic with a message that holds the fragment
 * printf would make of fmt; leaves no lock or pin behind. */
#define EXPECT_CHECK_FAILS(...) expect_check_fails(__LINE__, __VA_ARGS__)

__attribute__((format(printf, 2, 3), unused)) static void
expect_check_fails(int line, const char *fmt, ...)
{
	bool fired = sh_check_panics(&sh);
	if (mm_lock_held(&heap.lock)) /* mheap_check panics under it */
		mm_lock_release(&heap.lock, 0);
	sh_unpin_after_panic();
	va_list ap;
	va_start(ap, fmt);
	mh_expect_panic_saying(__FILE__, line, fired, fmt, ap);
	va_end(ap);
}

#endif

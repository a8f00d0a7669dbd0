/*
 * tests/host/leak_scan_util.h: the leak scan tests' one scan
 * (spanheap_leak_test.c, objcache_leak_test.c): a scan of an array of
 * root words with a work area of the size the heap asks for, from the C
 * heap (outside the heap scanned), freed by the next call.
 */
#ifndef TESTS_HOST_LEAK_SCAN_UTIL_H
#define TESTS_HOST_LEAK_SCAN_UTIL_H

#include <stdint.h>
#include <stdlib.h>

#include "../../mm/spanheap.h"

struct scan_out {
	long n;
	struct spanheap_leak_result r;
	const struct spanheap_leak *list;
};

static inline struct scan_out leak_scan_roots(struct spanheap *sh,
                                              const uintptr_t *roots,
                                              size_t nroots,
                                              uint64_t min_age_ns, size_t max)
{
	static void *work;
	free(work);
	size_t bytes = spanheap_leak_work_bytes(sh, max);
	work = calloc(1, bytes);
	struct spanheap_leak_range root = {(uintptr_t)roots,
	                                   (uintptr_t)(roots + nroots)};
	struct scan_out o;
	o.n = spanheap_leak_scan(sh, work, bytes, &root, 1, min_age_ns, max,
	                         &o.r);
	o.list = spanheap_leak_list(work);
	return o;
}

#endif

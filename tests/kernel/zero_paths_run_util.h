/*
 * The rest of zero_paths_util.h's paths (realloc with MM_ZERO, an object
 * cache's zeroed objects) and zp_run, which takes every path reused and
 * after a release: what the host and the kernel tests call.
 */
#ifndef TESTS_KERNEL_ZERO_PATHS_RUN_UTIL_H
#define TESTS_KERNEL_ZERO_PATHS_RUN_UTIL_H

#include "tests/kernel/zero_paths_util.h"

/* p (from MM_ZERO, its first keep bytes ZP_KEEP) resized to n with
 * MM_ZERO: the kept bytes carried over, zeros after them. */
static inline void zp_resize(struct zero_paths *z, const char *what, uint8_t *p,
                             size_t keep, size_t n)
{
	KEXPECT(p != NULL);
	if (!p)
		return;
	uint8_t *q = spanheap_realloc(z->sh, p, n, MM_ZERO);
	KEXPECT(q != NULL);
	if (!q) {
		spanheap_free(z->sh, p);
		return;
	}
	KEXPECT_EQ(zp_count_not(q, keep, ZP_KEEP), 0);
	zp_check_from(z, what, n, q, keep);
}

/* realloc with MM_ZERO of an object allocated with it: moving to a
 * larger class over a dirty object, growing a large object in place over
 * dirty pages, and growing back after a shrink (small and large). */
static inline void zp_realloc(struct zero_paths *z)
{
	zp_dirty_free(z, spanheap_alloc(z->sh, 5000, 0));
	zp_between(z);
	uint8_t *p = spanheap_alloc(z->sh, 100, MM_ZERO);
	if (p)
		__builtin_memset(p, ZP_KEEP, 100);
	zp_resize(z, "realloc moving", p, 100, 5000);

	zp_dirty_free(z, spanheap_alloc(z->sh, 400 << 10, 0));
	zp_between(z);
	p = spanheap_alloc(z->sh, 40 << 10, MM_ZERO);
	if (p)
		__builtin_memset(p, ZP_KEEP, 40 << 10);
	zp_resize(z, "realloc growing large", p, 40 << 10, 300 << 10);

	static const size_t big[] = {1000, 200 << 10},
	                    small[] = {600, 50 << 10};
	for (unsigned i = 0; i < 2; i++) {
		p = spanheap_alloc(z->sh, big[i], MM_ZERO);
		KEXPECT(p != NULL);
		if (!p)
			continue;
		__builtin_memset(p, ZP_KEEP, big[i]);
		uint8_t *q = spanheap_realloc(z->sh, p, small[i], MM_ZERO);
		zp_between(z);
		zp_resize(z, "realloc regrowing", q, small[i], big[i]);
	}
}

/* An object cache's zeroed objects (kmem_cache_zalloc), after its own
 * objects were dirtied and freed. */
static inline void zp_objcache(struct zero_paths *z, size_t size, size_t align)
{
	enum { N = 64 };
	struct objcache *c = objcache_create(z->sh, "zero_paths", size, align);
	KASSERT(c != NULL);
	void *o[N];
	for (unsigned i = 0; i < N; i++) {
		o[i] = objcache_alloc(c, 0);
		if (o[i])
			__builtin_memset(o[i], ZP_FILL, size);
	}
	for (unsigned i = 0; i < N; i++)
		if (o[i])
			objcache_free(c, o[i]);
	zp_between(z);
	size_t bad = 0;
	for (unsigned i = 0; i < N; i++) {
		o[i] = objcache_alloc(c, MM_ZERO);
		KEXPECT(o[i] != NULL);
		if (o[i])
			bad += zp_count_not(o[i], size, 0);
	}
	for (unsigned i = 0; i < N; i++)
		if (o[i])
			objcache_free(c, o[i]);
	if (bad)
		ktest_diag("objcache of %zu bytes: %zu bytes not zero", size,
		           bad);
	z->bad += bad;
	z->checked += N;
	KEXPECT(objcache_destroy(c));
}

/* Every path, reused and after a release; expects no byte but zero. */
static inline void zp_run(struct spanheap *sh, void (*dirty_frames)(void))
{
	for (int b = ZP_REUSE; b <= ZP_RELEASE; b++) {
		struct zero_paths z = {sh, dirty_frames, (enum zp_between)b, 0,
		                       0};
		zp_plain(&z);
		zp_aligned(&z);
		zp_realloc(&z);
		zp_objcache(&z, 200, 0);
		zp_objcache(&z, 3000, 64);
		ktest_diag("%s: %u zeroed allocations checked, %zu bytes not "
		           "zero",
		           b == ZP_RELEASE ? "after a release" : "reused",
		           z.checked, z.bad);
		KEXPECT_EQ(z.bad, 0);
	}
}

#endif

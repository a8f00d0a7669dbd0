/*
 * Every way the span heap hands out zeroed memory (MM_ZERO, calloc, an
 * aligned allocation, realloc growing in place or moving, an object
 * cache), each taken right after the same memory was filled with a
 * pattern and freed, and either reused as it is (ZP_REUSE: a magazine's
 * object, a span's, backed pages the page heap keeps) or after a
 * release of everything (ZP_RELEASE: pages given back, then mapped again
 * with whatever frames the port finds; the kernel dirties the frame
 * pool's first frames there, so those frames held someone's data). Every
 * byte of the usable size is checked. Shared by the host test (POSIX
 * port: given-back pages read zero by madvise) and the kernel one (frame
 * pool: the port zeroes each frame it maps), over the same mm/ calls.
 * The realloc and object cache paths, and zp_run, which runs them all,
 * are in zero_paths_run_util.h.
 */
#ifndef TESTS_KERNEL_ZERO_PATHS_UTIL_H
#define TESTS_KERNEL_ZERO_PATHS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kernel/ktest.h"
#include "mm/objcache.h"
#include "mm/spanheap.h"

#define ZP_FILL 0xa5u /* what a freed object held */
#define ZP_KEEP 0x77u /* what a realloc must carry over */

enum zp_between { ZP_REUSE, ZP_RELEASE };

struct zero_paths {
	struct spanheap *sh;
	/* Fills frames the next mapping may be given (NULL: none). */
	void (*dirty_frames)(void);
	enum zp_between between;
	unsigned checked; /* allocations checked */
	size_t bad;       /* bytes that were not zero, over all of them */
};

static inline size_t zp_count_not(const uint8_t *p, size_t n, uint8_t v)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += p[i] != v;
	return bad;
}

/* Fills p's usable size with ZP_FILL and frees it. */
static inline void zp_dirty_free(struct zero_paths *z, void *p)
{
	if (!p)
		return;
	__builtin_memset(p, ZP_FILL, spanheap_usable_size(z->sh, p));
	spanheap_free(z->sh, p);
}

static inline void zp_between(struct zero_paths *z)
{
	if (z->between != ZP_RELEASE)
		return;
	spanheap_release_all(z->sh);
	if (z->dirty_frames)
		z->dirty_frames();
}

/* Expects q (what, size bytes) to read zero over [from, its usable size),
 * and frees it. */
static inline void zp_check_from(struct zero_paths *z, const char *what,
                                 size_t size, uint8_t *q, size_t from)
{
	KEXPECT(q != NULL);
	if (!q)
		return;
	size_t n = spanheap_usable_size(z->sh, q);
	size_t bad = zp_count_not(q + from, n - from, 0);
	if (bad)
		ktest_diag("%s of %zu bytes (%s): %zu of %zu bytes not zero",
		           what, size,
		           z->between == ZP_RELEASE ? "after a release"
		                                    : "reused",
		           bad, n - from);
	z->checked++;
	z->bad += bad;
	spanheap_free(z->sh, q);
}

static const size_t zp_sizes[] = {16,    48,    200,   1024,      4000,    4096,
                                  12000, 32768, 40000, 65 * 4096, 1u << 20};
#define ZP_NSIZES (sizeof(zp_sizes) / sizeof(zp_sizes[0]))

/* MM_ZERO and calloc, each size. */
static inline void zp_plain(struct zero_paths *z)
{
	for (size_t i = 0; i < ZP_NSIZES; i++) {
		size_t n = zp_sizes[i];
		zp_dirty_free(z, spanheap_alloc(z->sh, n, 0));
		zp_between(z);
		zp_check_from(z, "MM_ZERO", n,
		              spanheap_alloc(z->sh, n, MM_ZERO), 0);
		zp_dirty_free(z, spanheap_alloc(z->sh, n, 0));
		zp_between(z);
		zp_check_from(z, "calloc", n,
		              spanheap_calloc(z->sh, n / 8, 8, 0), 0);
	}
}

/* Aligned, page-multiple alignments too. */
static inline void zp_aligned(struct zero_paths *z)
{
	static const size_t aligns[] = {64,    4096,     8192,
	                                65536, 3 * 4096, 5 * 4096};
	static const size_t sizes[] = {100, 5000, 70000};
	for (size_t a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++)
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			size_t al = aligns[a], n = sizes[s];
			zp_dirty_free(z,
			              spanheap_alloc_aligned(z->sh, n, al, 0));
			zp_between(z);
			uint8_t *q =
			        spanheap_alloc_aligned(z->sh, n, al, MM_ZERO);
			KEXPECT(q == NULL || (uintptr_t)q % al == 0);
			zp_check_from(z, "aligned MM_ZERO", n, q, 0);
		}
}

#endif

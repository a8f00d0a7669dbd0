/*
 * mm/spanheap_copy.c: the span heap's arrays, copies, rounded sizes and
 * wiping free (spanheap_copy.h), over its allocation, realloc and free.
 *
 * Purpose: the calls a kernel's code reaches for beside malloc and free
 * (Linux's kmalloc_array, kmemdup, kstrndup, kfree_sensitive,
 * kmalloc_size_roundup), written once here so that each port's kernel
 * wraps them instead of repeating the checks at every caller.
 *
 * Representation: none of its own.
 *
 * Algorithm. The arrays multiply with an overflow check and refuse an
 * overflow before calling the allocator, so nothing is allocated, freed
 * or counted for it. The copies measure (a string to its NUL or to n,
 * never a byte further), allocate, copy, and terminate a string. The
 * rounded size is the size class's size, or the large span's pages, as
 * the allocation would pick them. The wiping free reads the usable size
 * (which checks the object as a free does), zeroes it, and keeps the
 * stores behind an empty asm that takes the pointer and clobbers memory:
 * a compiler that knew spanheap_free as a free (LTO, an attribute) could
 * otherwise drop stores to memory about to be freed.
 *
 * Invariants: those of the calls it makes.
 *
 * Locking: none of its own; contexts are those of the calls each wraps.
 *
 * Limits: a copy reads its source in the caller's context; a source that
 * faults there faults here.
 */
#include "spanheap_copy.h"
#include "spanheap_internal.h"

void *spanheap_alloc_array(struct spanheap *sh, size_t n, size_t size,
                           unsigned flags)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		mm_log("spanheap: alloc_array of %zu * %zu bytes refused: the "
		       "size overflows",
		       n, size);
		return NULL;
	}
	return spanheap_alloc(sh, total, flags);
}

void *spanheap_realloc_array(struct spanheap *sh, void *p, size_t n,
                             size_t size, unsigned flags)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		mm_log("spanheap: realloc_array of %p to %zu * %zu bytes "
		       "refused: the size overflows (the object is kept)",
		       p, n, size);
		return NULL;
	}
	return spanheap_realloc(sh, p, total, flags);
}

void *spanheap_memdup(struct spanheap *sh, const void *src, size_t len,
                      unsigned flags)
{
	if (!src) {
		if (len)
			mm_log("spanheap: memdup of %zu bytes from NULL "
			       "refused",
			       len);
		return NULL;
	}
	void *p = spanheap_alloc(sh, len, flags);
	if (p && len)
		mm_memcpy(p, src, len);
	return p;
}

char *spanheap_strndup(struct spanheap *sh, const char *s, size_t n,
                       unsigned flags)
{
	if (!s)
		return NULL;
	size_t len = 0;
	while (len < n && s[len])
		len++;
	/* len <= n and s holds len readable bytes, so len + 1 fits unless
	 * the string fills the address space; checked all the same. */
	size_t total;
	if (__builtin_add_overflow(len, (size_t)1, &total)) {
		mm_log("spanheap: strndup of %zu bytes refused: the size "
		       "overflows",
		       len);
		return NULL;
	}
	char *p = spanheap_alloc(sh, total, flags);
	if (!p)
		return NULL;
	mm_memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *spanheap_strdup(struct spanheap *sh, const char *s, unsigned flags)
{
	return spanheap_strndup(sh, s, SIZE_MAX, flags);
}

size_t spanheap_roundup_size(const struct spanheap *sh, size_t size)
{
	/* The classes are the same in every heap: sh is for the contract
	 * (a heap of other classes would answer for its own). */
	(void)sh;
	unsigned cls = sizeclass_of(size);
	if (cls != 0)
		return sizeclass_info[cls].size;
	size_t npages = spanheap_pages_for(size);
	if (npages > SPANHEAP_LARGE_MAX_PAGES)
		return 0;
	return npages * MM_PAGE_SIZE;
}

void spanheap_free_sensitive(struct spanheap *sh, void *p)
{
	if (!p)
		return;
	/* Checked as a usable size is, but a misuse is named as this call
	 * (a double wiping free said "usable size of an object already
	 * freed"). */
	size_t n = spanheap_usable_size_as(sh, p, "free_sensitive");
	mm_memset(p, 0, n);
	/* The stores must happen: the asm may read all of memory through p. */
	__asm__ volatile("" : : "r"(p) : "memory");
	mheap_hook(sh->heap, MHEAP_HOOK_FREE_WIPED);
	spanheap_free(sh, p);
}

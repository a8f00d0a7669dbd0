/*
 * mm/palloc_sum.h: packed summaries of runs of free pages.
 *
 * A summary describes a power-of-two sized, aligned region of pages (one
 * chunk at the leaf level of palloc's radix tree, 8 chunks one level up, and
 * so on) by three numbers:
 *
 *   start  free pages at the region's low end,
 *   max    the longest run of free pages anywhere in it,
 *   end    free pages at its high end.
 *
 * Representation: one 64-bit word, three 21-bit fields (start in bits 0-20,
 * max in 21-41, end in 42-62). A field counts up to 2^21 - 1; the one value
 * that needs 2^21, a region of 2^21 pages that is wholly free, has start =
 * max = end = 2^21 and is written as bit 63 alone. So a summary covers at
 * most 2^21 pages (8 GiB), which is what caps the radix tree's height (see
 * palloc.c). The value 0 means "no free page": a region that is wholly
 * allocated, or not grown yet, looks the same to a search.
 *
 * Merging: the summary of consecutive regions of equal size follows from
 * theirs alone. start grows while the regions are wholly free; a run may
 * straddle a boundary, so max also considers the previous end plus the next
 * start; end is reset by the first region from the top that is not wholly
 * free. Modelled on the Go runtime's pallocSum (mpagealloc.go).
 */
#ifndef MM_PALLOC_SUM_H
#define MM_PALLOC_SUM_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t palloc_sum_t;

#define PALLOC_SUM_BITS     21
#define PALLOC_SUM_MAX      ((uint64_t)1 << PALLOC_SUM_BITS)
#define PALLOC_SUM_MASK     (PALLOC_SUM_MAX - 1)
#define PALLOC_SUM_ALL_FREE ((palloc_sum_t)1 << 63)

_Static_assert(3 * PALLOC_SUM_BITS + 1 == 64,
               "three fields and the all-free bit fill one word");

/* Packs (start, max, end); start, end <= max <= PALLOC_SUM_MAX, and
 * max == PALLOC_SUM_MAX only if start == end == max. */
static inline palloc_sum_t palloc_sum_pack(uint64_t start, uint64_t max,
                                           uint64_t end)
{
	if (max == PALLOC_SUM_MAX)
		return PALLOC_SUM_ALL_FREE;
	return start | max << PALLOC_SUM_BITS | end << (2 * PALLOC_SUM_BITS);
}

static inline uint64_t palloc_sum_start(palloc_sum_t s)
{
	if (s & PALLOC_SUM_ALL_FREE)
		return PALLOC_SUM_MAX;
	return s & PALLOC_SUM_MASK;
}

static inline uint64_t palloc_sum_max(palloc_sum_t s)
{
	if (s & PALLOC_SUM_ALL_FREE)
		return PALLOC_SUM_MAX;
	return (s >> PALLOC_SUM_BITS) & PALLOC_SUM_MASK;
}

static inline uint64_t palloc_sum_end(palloc_sum_t s)
{
	if (s & PALLOC_SUM_ALL_FREE)
		return PALLOC_SUM_MAX;
	return (s >> (2 * PALLOC_SUM_BITS)) & PALLOC_SUM_MASK;
}

/* The summary of a wholly free region of 2^log_pages pages. */
static inline palloc_sum_t palloc_sum_free(unsigned log_pages)
{
	uint64_t n = (uint64_t)1 << log_pages;
	return palloc_sum_pack(n, n, n);
}

/*
 * Merges the summaries of n consecutive regions of 2^log_pages pages each
 * into the summary of their union (n << log_pages <= PALLOC_SUM_MAX).
 */
static inline palloc_sum_t palloc_sum_merge(const palloc_sum_t *sums, size_t n,
                                            unsigned log_pages)
{
	uint64_t full = (uint64_t)1 << log_pages;
	palloc_sum_t all_free = palloc_sum_free(log_pages);
	uint64_t start = palloc_sum_start(sums[0]);
	uint64_t max = palloc_sum_max(sums[0]);
	uint64_t end = palloc_sum_end(sums[0]);
	for (size_t i = 1; i < n; i++) {
		palloc_sum_t s = sums[i];
		/* Wholly allocated and wholly free children are the common
		 * case in a full or an empty region: no unpacking. */
		if (s == 0) {
			end = 0;
			continue;
		}
		if (s == all_free) {
			if (start == i * full)
				start += full;
			end += full;
			if (end > max)
				max = end;
			continue;
		}
		uint64_t si = s & PALLOC_SUM_MASK;
		uint64_t mi = (s >> PALLOC_SUM_BITS) & PALLOC_SUM_MASK;
		uint64_t ei = s >> (2 * PALLOC_SUM_BITS);
		if (start == i * full)
			start += si;
		if (end + si > max)
			max = end + si;
		if (mi > max)
			max = mi;
		end = ei;
	}
	return palloc_sum_pack(start, max, end);
}

#endif

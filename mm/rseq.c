/*
 * mm/rseq.c: the table of restartable sequences (rseq.h): sorted once at
 * init, searched by the port's interrupt entry.
 *
 * Purpose: tell an interrupt entry, in a few compares and without a lock,
 * whether the code it interrupted was inside a restartable sequence, and
 * if so where that sequence starts. Modelled on Linux's rseq (struct
 * rseq_cs's start and post-commit addresses), in kernel mode.
 *
 * Representation: the port's section mm_rseq itself, an array of
 * [start, end) ranges, one per copy of a sequence in the code (every
 * inlined fast path of spanheap_fast.h leaves its own), sorted in place;
 * plus the lowest start (lo) and the highest end (hi), and a count of
 * restarts.
 *
 * Algorithm.
 *   init      Insertion sort by start (the assembler emits each file's
 *             ranges in text order, so the table is mostly sorted), then
 *             one pass checks the invariants.
 *   restart   An address outside [lo, hi) is outside every sequence: one
 *             unsigned compare, the common case. Else a binary search for
 *             the last range whose start is at or below the address; the
 *             address is in it if it lies below its end. O(log n).
 *
 * Invariants, checked by mm_rseq_init (a broken table mm_panics, naming
 * the ranges; so do bounds that cannot hold a table, before it is read):
 *   1. the ranges are sorted by start;
 *   2. every range is non-empty (start < end);
 *   3. no two overlap, so at most one holds an address;
 *   4. lo and hi are the first range's start and the last one's end (both
 *      0 for an empty table, which then holds no address).
 *
 * Locking: none. The table is written once, by mm_rseq_init, before the
 * first interrupt that may search it, and only read after; the restart
 * count is one relaxed atomic.
 *
 * Limits: the sequences are x86-64 assembly (spanheap_fast.h,
 * spanheap.c); mm_rseq_restart runs with interrupts off. The table is
 * sorted once: no sequence can be added after mm_rseq_init.
 */
#include "rseq.h"

#include <stdatomic.h>

#include "port.h"

/* Set once by mm_rseq_init, before any interrupt may search it. */
static struct mm_rseq_range *table;
static size_t ntable;
/* The lowest start and the highest end: most interrupts land outside. */
static uintptr_t lo, hi;

static _Atomic uint64_t restarts;

/* The ranges in [begin, end), a port's section bounds: mm_panics, naming
 * them, if they cannot bound a table (swapped, a NULL start, or not a
 * whole number of ranges apart), before anything in them is read. */
static size_t table_length(const struct mm_rseq_range *begin,
                           const struct mm_rseq_range *end)
{
	uintptr_t b = (uintptr_t)begin, e = (uintptr_t)end;
	if (e < b)
		mm_panic("mm_rseq_init: table [%#lx, %#lx) ends before it "
		         "starts",
		         (unsigned long)b, (unsigned long)e);
	if (b == 0 && e != 0)
		mm_panic("mm_rseq_init: table [%#lx, %#lx) starts at NULL",
		         (unsigned long)b, (unsigned long)e);
	if ((e - b) % sizeof(struct mm_rseq_range))
		mm_panic("mm_rseq_init: table [%#lx, %#lx) is not a whole "
		         "number of ranges (%zu bytes each)",
		         (unsigned long)b, (unsigned long)e,
		         sizeof(struct mm_rseq_range));
	return (e - b) / sizeof(struct mm_rseq_range);
}

void mm_rseq_init(struct mm_rseq_range *begin, struct mm_rseq_range *end)
{
	size_t n = table_length(begin, end);
	/* Insertion sort: a few hundred ranges, once, mostly in order
	 * already (the assembler emits them in text order per file). */
	for (size_t i = 1; i < n; i++) {
		struct mm_rseq_range r = begin[i];
		size_t j = i;
		for (; j > 0 && begin[j - 1].start > r.start; j--)
			begin[j] = begin[j - 1];
		begin[j] = r;
	}
	for (size_t i = 0; i < n; i++) {
		if (begin[i].start >= begin[i].end)
			mm_panic("mm_rseq_init: sequence %zu, [%#lx, %#lx), is "
			         "empty",
			         i, (unsigned long)begin[i].start,
			         (unsigned long)begin[i].end);
		if (i > 0 && begin[i].start < begin[i - 1].end)
			mm_panic("mm_rseq_init: sequences [%#lx, %#lx) and "
			         "[%#lx, %#lx) overlap",
			         (unsigned long)begin[i - 1].start,
			         (unsigned long)begin[i - 1].end,
			         (unsigned long)begin[i].start,
			         (unsigned long)begin[i].end);
	}
	table = begin;
	ntable = n;
	lo = n ? begin[0].start : 0;
	hi = n ? begin[n - 1].end : 0;
}

bool mm_rseq_restart(uintptr_t *ip)
{
	uintptr_t a = *ip;
	if (a - lo >= hi - lo)
		return false;
	/* The last range whose start is at or below a. */
	size_t l = 0, r = ntable;
	while (r - l > 1) {
		size_t m = l + (r - l) / 2;
		if (table[m].start <= a)
			l = m;
		else
			r = m;
	}
	if (a >= table[l].end)
		return false;
	*ip = table[l].start;
	atomic_fetch_add_explicit(&restarts, 1, memory_order_relaxed);
	return true;
}

uint64_t mm_rseq_restarts(void)
{
	return atomic_load_explicit(&restarts, memory_order_relaxed);
}

#ifdef MM_TEST_HOOKS
_Atomic bool mm_rseq_test_hide_count;
#endif

size_t mm_rseq_count(void)
{
#ifdef MM_TEST_HOOKS
	if (atomic_load_explicit(&mm_rseq_test_hide_count,
	                         memory_order_relaxed))
		return 0;
#endif
	return ntable;
}

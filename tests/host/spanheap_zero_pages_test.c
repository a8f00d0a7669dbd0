/*
 * Which pages a large object's zeroing and shrinking write and keep
 * (mm/spanheap_realloc.c, mm/spanheap_large.c), through the POSIX port:
 * a zeroed large allocation and a zeroing realloc into a large object
 * write only the pages that held data, and an atomic shrink gives its
 * tail back. Resident pages are counted with mincore(2), the arena kept
 * in small pages.
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

/* Pages of [p, p + n) resident in memory (mincore). */
static size_t resident_pages(const void *p, size_t n)
{
	size_t np = n / 4096;
	unsigned char *v = calloc(np, 1);
	if (!v || mincore((void *)p, n, v) != 0) {
		free(v);
		return SIZE_MAX;
	}
	size_t r = 0;
	for (size_t i = 0; i < np; i++)
		r += v[i] & 1;
	free(v);
	return r;
}

/*
 * A large zeroed object: the page heap writes only the pages that held
 * data (a freed object's); pages it gave back to the system (or never
 * touched) read as zero and stay untouched, so calloc of a large block of
 * fresh memory costs neither the time nor the memory of writing it.
 */
KTEST(spanheap, large_zeroed_writes_only_dirty_pages)
{
	enum { N = 4 << 20 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned char *p = spanheap_alloc(&sh, N, 0);
	KASSERT(p);
	memset(p, 0xaa, N);
	spanheap_free(&sh, p);
	unsigned char *q = spanheap_alloc(&sh, N, MM_ZERO);
	KASSERT(q == p); /* the dirty pages again */
	KEXPECT(all_bytes(q, N, 0));
	spanheap_free(&sh, q);
	spanheap_release_all(&sh); /* every free page given back */
	unsigned char *r = spanheap_alloc(&sh, N, MM_ZERO);
	KASSERT(r);
	size_t touched = resident_pages(r, N);
	KEXPECT_EQ(touched, 0);
	KEXPECT(all_bytes(r, N, 0));
	ktest_diag("%zu of %d pages of a zeroed allocation of given-back "
	           "memory resident before it was read",
	           touched, N / 4096);
	spanheap_free(&sh, r);
	sh_heap_release(&heap, &sh);
}

/* The arena in small pages, whatever the host's transparent huge pages
 * setting: with "always", a page touched brings 2 MiB in, and the counts
 * of resident pages below say nothing of what the heap wrote. */
static void no_huge_pages(void)
{
	madvise((void *)heap.arena_base, heap.arena_pages * MM_PAGE_SIZE,
	        MADV_NOHUGEPAGE);
}

/* The same for a zeroing realloc that moves an object into a new large
 * one: until a review the move wrote zeros over the whole new object (a
 * 100-byte object to 64 MiB: every page resident, 745 ms for 256 MiB),
 * where the allocation's zeroing writes only pages that held data. */
KTEST(spanheap, realloc_zero_to_large_writes_only_dirty_pages)
{
	enum { N = 4 << 20 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	no_huge_pages();
	spanheap_release_all(&sh); /* every free page given back */
	unsigned char *p = spanheap_alloc(&sh, 100, MM_ZERO);
	KASSERT(p);
	memset(p, 0x5a, 100);
	unsigned char *q = spanheap_realloc(&sh, p, N, MM_ZERO);
	KASSERT(q && q != p);
	size_t usable = spanheap_usable_size(&sh, q);
	size_t touched = resident_pages(q, usable);
	KEXPECT(touched <= 1); /* the page the 100 bytes went to */
	KEXPECT(all_bytes(q, 100, 0x5a));
	KEXPECT(all_bytes(q + 100, usable - 100, 0));
	ktest_diag("%zu of %zu pages resident after the move", touched,
	           usable / 4096);
	spanheap_free(&sh, q);
	sh_heap_release(&heap, &sh);
}

/* An MM_ATOMIC shrink of a large object gives its tail back as a large
 * free does (any context): until a review it kept every page and, with
 * MM_ZERO, wrote zeros over the whole tail (63 MiB of 64 in a reviewer's
 * probe), in what may be an interrupt handler. */
KTEST(spanheap, an_atomic_shrink_gives_the_tail_back)
{
	enum { N = 4 << 20, M = 1 << 20 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	no_huge_pages();
	spanheap_release_all(&sh);
	unsigned char *p = spanheap_alloc(&sh, N, MM_ZERO);
	KASSERT(p);
	memset(p, 0x5a, 100);
	mm_port_set_atomic(true); /* as from an interrupt handler */
	unsigned char *q = spanheap_realloc(&sh, p, M, MM_ATOMIC | MM_ZERO);
	mm_port_set_atomic(false);
	KEXPECT(q == p);
	KEXPECT_EQ(spanheap_usable_size(&sh, q), M);
	KEXPECT(resident_pages(q, M) <= 1);
	KEXPECT(all_bytes(q, 100, 0x5a) && all_bytes(q + 100, M - 100, 0));
	spanheap_free(&sh, q);
	SH_CHECK(&sh, "after the shrink");
	sh_heap_release(&heap, &sh);
}

/* A zeroing realloc that grows a large object in place: the pages it
 * grows into read as zero and only those that held data are written.
 * Until this version the realloc wrote zeros over every page it grew
 * into (a 1 MiB object grown to 4 MiB of given-back memory: 768 pages
 * made resident). Both kinds here: given back first, then dirty. */
KTEST(spanheap, a_zeroing_growth_in_place_writes_only_dirty_pages)
{
	enum { M = 1 << 20, N = 4 << 20 };
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	no_huge_pages();
	/* Grown first: an extension takes only pages of the grown heap. */
	void *big = spanheap_alloc(&sh, 2 * N, 0);
	KASSERT(big);
	spanheap_free(&sh, big);
	spanheap_release_all(&sh); /* every free page given back */
	unsigned char *p = spanheap_alloc(&sh, M, MM_ZERO);
	KASSERT(p);
	memset(p, 0x5a, M);
	size_t before = resident_pages(p + M, N - M);
	unsigned char *q = spanheap_realloc(&sh, p, N, MM_ZERO);
	KASSERT(q == p); /* the pages after it were free */
	KEXPECT_EQ(spanheap_usable_size(&sh, q), N);
	size_t touched = resident_pages(q + M, N - M);
	KEXPECT_EQ(before, 0);
	KEXPECT_EQ(touched, 0);
	KEXPECT(all_bytes(q, M, 0x5a) && all_bytes(q + M, N - M, 0));
	ktest_diag("%zu of %d grown pages resident before they were read",
	           touched, (N - M) / 4096);
	/* Dirty pages after it: the same growth must zero them. */
	memset(q, 0xa5, N);
	KEXPECT(spanheap_realloc(&sh, q, M, MM_ZERO) == q); /* tail freed */
	unsigned char *r = spanheap_realloc(&sh, q, N, MM_ZERO);
	KASSERT(r == q);
	KEXPECT(all_bytes(r, M, 0xa5) && all_bytes(r + M, N - M, 0));
	spanheap_free(&sh, r);
	SH_CHECK(&sh, "after the growths");
	sh_heap_release(&heap, &sh);
}

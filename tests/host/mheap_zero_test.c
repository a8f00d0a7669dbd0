/*
 * The page heap's zeroed allocations (MHEAP_ZERO, mm/mheap_alloc.c's
 * zero_backed) through the POSIX port: only the pages that were not
 * scavenged are written (scavenged ones read as zero once mapped), which
 * the host shows as resident memory (/proc/self/statm), for runs of over
 * 64 pages (the backed runs palloc notes) and of 64 or fewer (the run's
 * mask).
 */
#include <string.h>
#include <sys/mman.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* one at a time */

/* Frees pages [from, to) of the run at p one page at a time. */
static void free_each(char *p, size_t from, size_t to, size_t step)
{
	for (size_t i = from; i < to; i += step)
		mheap_free_pages(&heap, p + i * PG, 1);
}

/*
 * A zeroed allocation of over 64 pages writes only its pages that were
 * not scavenged (scavenged ones read as zero): here three runs of dirty
 * backed pages among scavenged ones, at the start of a 32 MiB request. It
 * wrote the whole run whenever a page of it was backed, which a growth
 * makes common (it extends the free run at the heap's top): 32 MiB made
 * resident for 80 dirty pages. A run with more stretches of backed pages
 * than the heap notes (20 here) is still zeroed whole.
 */
KTEST(mheap, zeroed_large_alloc_writes_only_backed_pages)
{
	enum { N = 8192 }; /* 32 MiB */
	KASSERT(mh_new(&heap, 64, 0, 0));
	char *x = mheap_alloc_pages(&heap, N, 0);
	KASSERT(x);
	mheap_free_pages(&heap, x, N);
	mheap_release_all(&heap);
	char *y = mheap_alloc_pages(&heap, 100, 0);
	KASSERT_EQ(y, x);
	memset(y, 0xcd, 100 * PG);
	free_each(y, 10, 20, 1);
	free_each(y, 50, 60, 1);
	mheap_release_all(&heap); /* 10-19 and 50-59 scavenged */
	free_each(y, 0, 10, 1);
	free_each(y, 20, 50, 1);
	free_each(y, 60, 100, 1); /* 80 dirty pages in three runs */
	size_t before = mh_resident_pages();
	char *z = mheap_alloc_pages(&heap, N, MHEAP_ZERO);
	size_t after = mh_resident_pages();
	KASSERT_EQ(z, x);
	ktest_diag("resident %zu -> %zu pages", before, after);
	KEXPECT(after < before + N / 2);
	KEXPECT(mh_all_bytes(z, (size_t)N * PG, 0));
	/* Every other page of the first 40 backed and dirty. */
	memset(z, 0xef, 40 * PG);
	free_each(z, 0, 40, 2);
	mheap_release_all(&heap);
	free_each(z, 1, 40, 2);
	mheap_free_pages(&heap, z + 40 * PG, N - 40);
	z = mheap_alloc_pages(&heap, N, MHEAP_ZERO);
	KASSERT_EQ(z, x);
	KEXPECT(mh_all_bytes(z, (size_t)N * PG, 0));
	MH_CHECK(&heap, "after the zeroed allocations");
	mh_release(&heap);
}

/*
 * Zeroed runs of 64 pages, each with one backed dirty page (its first)
 * among 63 scavenged ones: each run's mask says which to write, so only
 * the dirty pages are zeroed and the scavenged ones stay untouched (not
 * resident). 16 runs: 1008 scavenged pages that a zeroing of whole runs
 * would make resident.
 */
KTEST(mheap, zeroed_small_allocs_write_only_backed_pages)
{
	enum { RUN = 64, RUNS = 16, N = RUN * RUNS };
	_Static_assert(RUN <= 64, "runs of the mask path");
	KASSERT(mh_new(&heap, 64, 0, 0));
	char *x = mheap_alloc_pages(&heap, N, 0);
	KASSERT(x);
	mheap_free_pages(&heap, x, N);
	mheap_release_all(&heap);
	char *y = mheap_alloc_pages(&heap, N, 0);
	KASSERT_EQ(y, x);
	for (size_t k = 0; k < RUNS; k++) {
		memset(y + k * RUN * PG, 0xcd, PG);
		free_each(y, k * RUN + 1, (k + 1) * RUN, 1);
	}
	mheap_release_all(&heap); /* all but each run's first page */
	free_each(y, 0, N, RUN);  /* 16 dirty backed pages */
	char *z[RUNS];
	size_t before = mh_resident_pages();
	for (size_t k = 0; k < RUNS; k++)
		z[k] = mheap_alloc_pages(&heap, RUN, MHEAP_ZERO);
	size_t after = mh_resident_pages();
	ktest_diag("resident %zu -> %zu pages", before, after);
	KEXPECT(after < before + RUNS * (RUN - 1) / 2);
	for (size_t k = 0; k < RUNS; k++) {
		KASSERT_EQ(z[k], y + k * RUN * PG);
		KEXPECT(mh_all_bytes(z[k], RUN * PG, 0));
	}
	for (size_t k = 0; k < RUNS; k++)
		mheap_free_pages(&heap, z[k], RUN);
	MH_CHECK(&heap, "after the zeroed allocations");
	mh_release(&heap);
}

/* How many of the n pages at p are resident (mincore), or n + 1. */
static size_t resident_in(const void *p, size_t n)
{
	unsigned char v[64];
	if (n > sizeof(v) || mincore((void *)p, n * PG, v) != 0)
		return n + 1;
	size_t r = 0;
	for (size_t i = 0; i < n; i++)
		r += v[i] & 1;
	return r;
}

/*
 * A zeroed extension (mheap_extend_pages with MHEAP_ZERO: a realloc's
 * growth in place) writes the pages it takes as an allocation does: the
 * backed ones, found from the runs palloc notes, whatever the length
 * (here 40 pages, under the mask path's 64), and all of them when there
 * are more stretches of backed pages than palloc notes (every other
 * page). Scavenged pages stay untouched.
 */
KTEST(mheap, zeroed_extension_writes_only_backed_pages)
{
	enum { N = 2048, EXTRA = 40 };
	KASSERT(mh_new(&heap, 64, 0, 0));
	char *x = mheap_alloc_pages(&heap, N, 0);
	KASSERT(x);
	mheap_free_pages(&heap, x, N);
	mheap_release_all(&heap);
	char *y = mheap_alloc_pages(&heap, 1 + EXTRA, 0);
	KASSERT_EQ(y, x);
	memset(y, 0xcd, (1 + EXTRA) * PG);
	free_each(y, 11, 31, 1);
	mheap_release_all(&heap); /* pages 11-30 scavenged */
	free_each(y, 1, 11, 1);
	free_each(y, 31, 1 + EXTRA, 1); /* 1-10 and 31-40 dirty */
	KASSERT(mheap_extend_pages(&heap, y, 1, EXTRA, MHEAP_ZERO));
	/* The scavenged pages' own residency (the heap's growth for its
	 * reserve makes metadata resident meanwhile). */
	KEXPECT_EQ(resident_in(y + 11 * PG, 20), 0);
	KEXPECT(mh_all_bytes(y + PG, EXTRA * PG, 0));
	/* Every other page backed and dirty: more runs than noted. */
	memset(y + PG, 0xef, EXTRA * PG);
	free_each(y, 1, 1 + EXTRA, 2);
	mheap_release_all(&heap);
	free_each(y, 2, 1 + EXTRA, 2);
	KASSERT(mheap_extend_pages(&heap, y, 1, EXTRA, MHEAP_ZERO));
	KEXPECT(mh_all_bytes(y + PG, EXTRA * PG, 0));
	mheap_free_pages(&heap, y, 1 + EXTRA);
	MH_CHECK(&heap, "after the zeroed extensions");
	mh_release(&heap);
}

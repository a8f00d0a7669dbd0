/*
 * tests/real/malloc_api_edges.c: malloc-api-test's edges of the entry
 * points' conventions (malloc_api_test.h) and of the production port
 * that a mutation review of malloc/malloc.c, slots.c and port_prod.c
 * found untested: each test here fails with
 * one deliberate change to one of them and passes as the code is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"
#include "proc_read.h"

enum { ERRNO_SENTINEL = 4242 };

/* Sizes the compiler cannot see, so that it does not warn about them. */
static volatile size_t size_max = SIZE_MAX;

/* Counts that the compiler cannot see: their products with 16 wrap past
 * SIZE_MAX to exactly 16 (2^60 + 1 times 16 is 2^64 + 16). */
static volatile size_t wrap_n = ((size_t)1 << 60) + 1;

/* calloc and reallocarray whose n * size overflows to a small number
 * fail with ENOMEM and leave the old block alone; they never hand out
 * the wrapped size (the existing overflow checks wrapped to sizes too
 * large to allocate anyway). */
const char *test_overflow_wraps_small(void)
{
	errno = 0;
	void *p = calloc(wrap_n, 16);
	CHECK(!p && errno == ENOMEM,
	      "calloc(2^60 + 1, 16) = %p, errno %d: the product wrapped to "
	      "16 bytes",
	      p, errno);
	unsigned char *q = malloc(32);
	CHECK(q, "malloc(32)");
	memset(q, 5, 32);
	errno = 0;
	p = reallocarray(q, wrap_n, 16);
	CHECK(!p && errno == ENOMEM,
	      "reallocarray(q, 2^60 + 1, 16) = %p, errno %d: the product "
	      "wrapped to 16 bytes",
	      p, errno);
	CHECK(q[31] == 5, "a failed reallocarray kept q");
	free(q);
	return NULL;
}

/* memalign takes alignments up to SIZE_MAX / 2 + 1 (EINVAL above): at
 * 2^63 itself the request is valid and fails for want of memory, ENOMEM,
 * as glibc's does. */
const char *test_memalign_top_alignment(void)
{
	const size_t top = size_max / 2 + 1;
	errno = 0;
	void *p = memalign(top, 8);
	CHECK(!p && errno == ENOMEM, "memalign(2^63, 8) = %p, errno %d", p,
	      errno);
	errno = 0;
	p = aligned_alloc(top, 8);
	CHECK(!p && errno == ENOMEM, "aligned_alloc(2^63, 8) = %p, errno %d", p,
	      errno);
	return NULL;
}

/* realloc(NULL, 0) is malloc(0): a unique object, not NULL; realloc(p, 0)
 * frees p and returns NULL without touching errno (nothing failed). */
const char *test_realloc_zero(void)
{
	errno = ERRNO_SENTINEL;
	void *a = realloc(NULL, 0), *b = realloc(NULL, 0);
	CHECK(a && b && a != b, "realloc(NULL, 0) gives unique objects: %p %p",
	      a, b);
	CHECK(errno == ERRNO_SENTINEL, "realloc(NULL, 0) set errno to %d",
	      errno);
	CHECK(realloc(a, 0) == NULL, "realloc(a, 0) returns NULL");
	CHECK(errno == ERRNO_SENTINEL, "realloc(p, 0) set errno to %d", errno);
	void *p = malloc(1000);
	CHECK(realloc(p, 0) == NULL && errno == ERRNO_SENTINEL,
	      "realloc(p of 1000, 0): errno %d", errno);
	free(b);
	return NULL;
}

/* calloc of large objects (over the span heap's 32 KiB classes) zeroes
 * memory a freed object left dirty, whatever its size: each calloc
 * follows a malloc of the same size whose block was written all over and
 * freed, so it is most likely given the same pages. */
const char *test_calloc_large_dirty(void)
{
	static const size_t sizes[] = {32769, 40000, 100000, 1 << 20,
	                               (3 << 20) + 5};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		for (int round = 0; round < 4; round++) {
			unsigned char *d = malloc(n);
			CHECK(d, "malloc(%zu)", n);
			memset(d, 0xa5, n);
			free(d);
			unsigned char *z = calloc(n, 1);
			CHECK(z, "calloc(%zu, 1)", n);
			for (size_t k = 0; k < n; k++)
				CHECK(z[k] == 0,
				      "calloc(%zu, 1) byte %zu is %#x after a "
				      "dirty free",
				      n, k, z[k]);
			free(z);
		}
	}
	return NULL;
}

/* pvalloc rounds the size up to whole pages, no further: pvalloc of a
 * whole number of pages gets less than a page more (glibc's: 8 bytes).
 * Sizes the span heap serves as they are: one and two pages (size
 * classes), and large objects (spans of whole pages). */
const char *test_pvalloc_whole_pages(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	static const size_t npages[] = {1, 2, 16, 64};
	for (size_t i = 0; i < sizeof(npages) / sizeof(npages[0]); i++) {
		size_t n = npages[i] * page;
		void *p = pvalloc(n);
		CHECK(p && (uintptr_t)p % page == 0, "pvalloc(%zu) = %p", n, p);
		size_t u = malloc_usable_size(p);
		CHECK(u >= n && u < n + page,
		      "pvalloc(%zu): %zu usable, not %zu rounded to pages", n,
		      u, n);
		free(p);
	}
	return NULL;
}

/*
 * A program whose heap stays small (under 8 MiB grown) gets no
 * background threads: the many short-lived processes of a shell or a
 * build would pay for two thread starts each, and for stopping them at
 * every fork. In a fresh process: a few thousand small objects and one of
 * a MiB, then 2 s of looking for the threads (they would have started
 * with the allocation that allowed them).
 */
int scenario_small_heap(void)
{
	enum { N = 4000 };
	static void *v[N];
	for (int i = 0; i < N; i++)
		v[i] = malloc(16 + (size_t)(i % 200));
	void *big = malloc(1 << 20);
	for (int i = 0; i < N; i++)
		free(v[i]);
	free(big);
	free(malloc(100));
	for (int tries = 0; tries < 100; tries++) {
		int found = background_threads_raw();
		if (found) {
			fprintf(stderr,
			        "background threads (mask %d) in a "
			        "heap of about 1 MiB\n",
			        found);
			return 3;
		}
		usleep(20000);
	}
	return 0;
}

const char *test_small_heap_no_threads(void)
{
	int st = run_scenario("small-heap", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a heap of about 1 MiB: status %#x (3: background threads "
	      "started)",
	      st);
	return NULL;
}

/* calloc of 64 MiB that reuses a freed object's pages, written and not
 * yet given back (no background threads: MM_MALLOC_BACKGROUND=0), reads
 * zero and leaves them out of memory, as glibc's calloc of a chunk it
 * maps does: the heap zeroed such pages by writing them, and a calloc of
 * a huge array the program then used sparsely kept all of it resident.
 * Exits 10 if the calloc got other pages (nothing to tell). */
int scenario_calloc_reused(void)
{
	const size_t n = (size_t)64 << 20, np = n / 4096;
	unsigned char *p = malloc(n), *v = malloc(np);
	if (!p || !v)
		return 2;
	memset(p, 0xab, n);
	free(p);
	unsigned char *c = calloc(1, n);
	if (!c)
		return 3;
	if (c != p)
		return 10;
	size_t resident = 0, nonzero = 0;
	if (mincore(c, n, v) != 0)
		return 4;
	for (size_t i = 0; i < np; i++)
		resident += v[i] & 1;
	for (size_t i = 0; i < n; i += 512)
		nonzero += c[i] != 0 || c[i + 511] != 0;
	free(c);
	free(v);
	if (nonzero)
		return 5;
	if (resident >= np / 8) {
		fprintf(stderr, "%zu of %zu pages resident after calloc\n",
		        resident, np);
		return 6;
	}
	return 0;
}

const char *test_calloc_large_reused(void)
{
	int st = run_scenario("calloc-reused", "MM_MALLOC_BACKGROUND", "0", 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 10) {
		printf("# calloc_large_reused: the calloc took other pages, "
		       "nothing to tell\n");
		return NULL;
	}
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "calloc of 64 MiB over a freed, written object: status %#x "
	      "(5: not zero; 6: its pages written, resident)",
	      st);
	return NULL;
}

/* The mapping of /proc/self/maps that holds addr: its end into *end and
 * its permissions ("rw-p") into perm; false if none does. Allocates
 * nothing: the heap may not be able to grow. */
static bool mapping_of(uintptr_t addr, uintptr_t *end, char perm[5])
{
	static char maps[1 << 16];
	proc_read("/proc/self/maps", maps, sizeof(maps));
	for (const char *l = maps; *l;) {
		unsigned long lo, hi;
		if (sscanf(l, "%lx-%lx %4s", &lo, &hi, perm) == 3 &&
		    lo <= addr && addr < hi) {
			*end = hi;
			return true;
		}
		const char *nl = strchr(l, '\n');
		l = nl ? nl + 1 : l + strlen(l);
	}
	return false;
}

/*
 * A growth whose mprotect fails part way (Linux changes the mappings up
 * to a hole, then fails) takes the change back: the arena's pages before
 * the hole stay inaccessible (---p), as the rest of the arena not grown.
 * Only the VMA limit makes such a failure in a program; here a page 1
 * MiB into the arena's ungrown part is unmapped. Without the undo they
 * were left read-write, memory the heap does not count. Exits 0, 3 if
 * they were, 10 if the heap's pages or the arena were not found, 11 if
 * the growth went through (nothing to tell).
 */
int scenario_partial_mprotect(void)
{
	void *p = malloc(64 << 10);
	uintptr_t end, rest_end;
	char perm[5];
	if (!p || !mapping_of((uintptr_t)p, &end, perm) ||
	    !mapping_of(end, &rest_end, perm) || strcmp(perm, "---p") != 0 ||
	    rest_end - end <= (8u << 20) ||
	    munmap((void *)(end + (1 << 20)), 4096) != 0)
		return 10;
	if (malloc(4 << 20))
		return 11;
	if (!mapping_of(end, &rest_end, perm) || strcmp(perm, "---p") != 0) {
		fprintf(stderr,
		        "the arena past the heap is %s after a failed "
		        "growth\n",
		        perm);
		return 3;
	}
	return 0;
}

const char *test_partial_mprotect(void)
{
	int st = run_scenario("partial-mprotect", "MM_MALLOC_BACKGROUND", "0",
	                      0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a growth whose mprotect failed part way: status %#x (3: pages "
	      "left accessible, on stderr; 10: no arena found; 11: the "
	      "growth went through)",
	      st);
	return NULL;
}

/*
 * The span heap's allocation calls (mm/spanheap.c) through the POSIX
 * port: every size class (alignment, usable size), large spans, aligned
 * allocation, calloc and realloc, impossible requests, MM_NO_GROW and
 * MM_ZERO. spanheap_check runs at every quiet point. The free paths,
 * sweeping and statistics are in spanheap_sweep_test.c, misuse in
 * spanheap_misuse_test.c, failed set-up and out of memory in
 * spanheap_fail_test.c, the fold queues in spanheap_queue_test.c, the
 * per-CPU caches' refills across cycles in spanheap_cache_test.c, the
 * sweeper thread's triggers and wake-ups in spanheap_sweeper_test.c,
 * boundaries a mutation review found untested in spanheap_edge_test.c.
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

static bool all_bytes(const void *p, size_t n, unsigned char v)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != v)
			return false;
	return true;
}

static bool is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

/* ---- Size classes -------------------------------------------------------- */

/* Objects of one request size: 16-aligned, size-aligned for powers of two
 * up to a page, usable size the class's size, all distinct and writable.
 * by_class: through spanheap_alloc_class, as a caller that knows the class
 * at compile time allocates. */
static void one_class_by(unsigned cls, size_t size, bool by_class)
{
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	size_t n = ci->nelems + 3u; /* a second span */
	char *p[SC_MAX_NELEMS + 3];
	for (size_t i = 0; i < n; i++) {
		p[i] = by_class ? spanheap_alloc_class(&sh, cls, size, 0)
		                : spanheap_alloc(&sh, size, 0);
		if (!p[i]) {
			ktest_fail_at(__FILE__, __LINE__,
			              "class %u: alloc %zu of %zu bytes failed",
			              cls, i, size);
			n = i;
			break;
		}
		uintptr_t a = (uintptr_t)p[i];
		if (a % 16 ||
		    (is_pow2(ci->size) && ci->size <= PG && a % ci->size) ||
		    spanheap_usable_size(&sh, p[i]) != ci->size)
			ktest_fail_at(
			        __FILE__, __LINE__,
			        "class %u (%u bytes), request %zu: object "
			        "%p, usable size %zu",
			        cls, ci->size, size, p[i],
			        spanheap_usable_size(&sh, p[i]));
		memset(p[i], (int)i, ci->size);
	}
	for (size_t i = 0; i < n; i++) {
		if (!all_bytes(p[i], ci->size, (unsigned char)i))
			ktest_fail_at(__FILE__, __LINE__,
			              "class %u: object %zu (%p) overwritten",
			              cls, i, p[i]);
		spanheap_free(&sh, p[i]);
	}
}

static void one_class(unsigned cls, size_t size)
{
	one_class_by(cls, size, false);
}

KTEST(spanheap, every_class)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		one_class(cls, sizeclass_info[cls].size);
		one_class(cls, sizeclass_info[cls - 1].size + 1);
		KEXPECT_EQ(sizeclass_of(sizeclass_info[cls].size), cls);
	}
	SH_CHECK(&sh, "after every class");
	/* Size 0: a unique minimal object each time. */
	void *a = spanheap_alloc(&sh, 0, 0), *b = spanheap_alloc(&sh, 0, 0);
	KEXPECT(a && b && a != b);
	KEXPECT_EQ(spanheap_usable_size(&sh, a), sizeclass_info[1].size);
	spanheap_free(&sh, a);
	spanheap_free(&sh, b);
	spanheap_free(&sh, NULL);
	SH_CHECK(&sh, "after size 0");
	sh_heap_release(&heap);
}

/* spanheap_alloc_class, the inline path for a class known at compile
 * time: spans' objects at first (its refill), then the magazine's (the
 * objects just freed, newest first), each class up to SC_LINEAR_MAX with
 * the class spanheap_class_linear gives. */
KTEST(spanheap, alloc_class_inline)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	for (size_t size = 0; size <= SC_LINEAR_MAX; size += 8) {
		unsigned cls = spanheap_class_linear(size);
		KASSERT_EQ(cls, sizeclass_of(size));
		one_class_by(cls, size, true); /* from the spans */
		one_class_by(cls, size, true); /* the magazine's, then spans */
		void *a = spanheap_alloc_class(&sh, cls, size, 0);
		KASSERT(a);
		spanheap_free(&sh, a);
		KEXPECT_EQ(spanheap_alloc_class(&sh, cls, size, 0), a);
		spanheap_free(&sh, a);
	}
	SH_CHECK(&sh, "after the inline path");
	sh_heap_release(&heap);
}

/* ---- Large spans --------------------------------------------------------- */

KTEST(spanheap, large_spans)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	/* Warm up: the span-struct allocator's first page. */
	spanheap_free(&sh, spanheap_alloc(&sh, SC_MAX_SIZE + 1, 0));
	static const size_t sizes[] = {SC_MAX_SIZE + 1, 40960, 65536,
	                               (1 << 20) + 1, 16 << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t size = sizes[i], npages = (size + PG - 1) / PG;
		size_t before = sh_in_use_pages(&heap);
		char *p = spanheap_alloc(&sh, size, 0);
		KASSERT(p);
		KEXPECT_EQ((uintptr_t)p % PG, 0);
		KEXPECT_EQ(spanheap_usable_size(&sh, p), npages * PG);
		KEXPECT_EQ(sh_in_use_pages(&heap), before + npages);
		memset(p, 0x5a, npages * PG);
		struct spanheap_stats st;
		spanheap_stats(&sh, &st);
		KEXPECT_EQ(st.cls[0].objects_in_use, 1);
		KEXPECT_EQ(st.large_pages, npages);
		SH_CHECK(&sh, "a large span held");
		/* Freed at once: no sweep needed. */
		spanheap_free(&sh, p);
		KEXPECT_EQ(sh_in_use_pages(&heap), before);
		spanheap_stats(&sh, &st);
		KEXPECT_EQ(st.cls[0].objects_in_use, 0);
		KEXPECT_EQ(st.large_pages, 0);
	}
	SH_CHECK(&sh, "after large spans");
	sh_heap_release(&heap);
}

/* ---- Aligned allocation -------------------------------------------------- */

KTEST(spanheap, aligned)
{
	static const size_t sizes[] = {0, 1, 16, 100, 1000, 3000, 5000, 40000};
	static const size_t big_aligns[] = {8192, 12288, 65536};
	static const size_t bad_aligns[] = {0,    3,    24,   48,    1000,
	                                    4097, 6144, 8193, 12289, 20000};
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	size_t aligns[16], na = 0;
	for (size_t a = 1; a <= PG; a *= 2)
		aligns[na++] = a;
	for (size_t i = 0; i < 3; i++)
		aligns[na++] = big_aligns[i];
	for (size_t i = 0; i < na; i++) {
		size_t align = aligns[i];
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			size_t size = sizes[k];
			void *p[3];
			for (int j = 0; j < 3; j++) {
				p[j] = spanheap_alloc_aligned(&sh, size, align,
				                              0);
				if (!p[j] || (uintptr_t)p[j] % align ||
				    spanheap_usable_size(&sh, p[j]) < size)
					ktest_fail_at(
					        __FILE__, __LINE__,
					        "size %zu align %zu: got %p",
					        size, align, p[j]);
				else
					memset(p[j], 0x77, size);
			}
			for (int j = 0; j < 3; j++)
				spanheap_free(&sh, p[j]);
		}
	}
	for (size_t i = 0; i < sizeof(bad_aligns) / sizeof(bad_aligns[0]);
	     i++) {
		void *p = spanheap_alloc_aligned(&sh, 64, bad_aligns[i], 0);
		if (p)
			ktest_fail_at(__FILE__, __LINE__,
			              "align %zu: got %p, not NULL",
			              bad_aligns[i], p);
	}
	SH_CHECK(&sh, "after aligned allocations");
	sh_heap_release(&heap);
}

/* ---- calloc and realloc -------------------------------------------------- */

KTEST(spanheap, calloc_zeroes)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	/* Dirty some objects of the class, free them, fold them (flush) and
	 * sweep, so that calloc gets memory that held the pattern. */
	enum { N = 16 };
	void *dirty[N];
	for (int i = 0; i < N; i++) {
		dirty[i] = spanheap_alloc(&sh, 1000, 0);
		KASSERT(dirty[i]);
		memset(dirty[i], 0xff, 1000);
	}
	void *keep = spanheap_alloc(&sh, 1000, 0); /* keeps the span */
	for (int i = 0; i < N; i++)
		spanheap_free(&sh, dirty[i]);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	int reused = 0;
	void *clean[N];
	for (int i = 0; i < N; i++) {
		char *p = spanheap_calloc(&sh, 10, 100, 0);
		KASSERT(p);
		KEXPECT(all_bytes(p, 1000, 0));
		for (int j = 0; j < N; j++)
			reused += p == dirty[j];
		clean[i] = p;
	}
	ktest_diag("%d of %d calloc'd objects reused dirty ones", reused, N);
	KEXPECT(reused > 0);
	for (int i = 0; i < N; i++)
		spanheap_free(&sh, clean[i]);
	spanheap_free(&sh, keep);
	/* Large, and the overflow. */
	char *big = spanheap_calloc(&sh, 3, 100000, 0);
	KEXPECT(big && all_bytes(big, 300000, 0));
	spanheap_free(&sh, big);
	KEXPECT(spanheap_calloc(&sh, SIZE_MAX / 2, 3, 0) == NULL);
	KEXPECT(spanheap_calloc(&sh, 3, SIZE_MAX / 2, 0) == NULL);
	void *z = spanheap_calloc(&sh, 0, 100, 0);
	KEXPECT(z != NULL);
	spanheap_free(&sh, z);
	SH_CHECK(&sh, "after calloc");
	sh_heap_release(&heap);
}

/* Fills [0, n) of p with a pattern seeded by seed, or checks it. */
static void pattern_fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7 + seed);
}

static bool pattern_ok(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(i * 7 + seed))
			return false;
	return true;
}

/* pattern_fill's bytes [from, to) of p. */
static void pattern_fill_range(unsigned char *p, size_t from, size_t to,
                               unsigned seed)
{
	for (size_t i = from; i < to; i++)
		p[i] = (unsigned char)(i * 7 + seed);
}

/* pattern_ok on every 61st byte of [0, n) and the last. */
static bool pattern_sampled_ok(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 61)
		if (p[i] != (unsigned char)(i * 7 + seed))
			return false;
	return n == 0 || p[n - 1] == (unsigned char)((n - 1) * 7 + seed);
}

KTEST(spanheap, realloc_keeps_contents)
{
	static const size_t steps[] = {10,    100,   17,   2000, 33000,
	                               40000, 70000, 1000, 5,    300000,
	                               4097,  24,    0};
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned char *p = spanheap_realloc(&sh, NULL, 1, 0);
	KASSERT(p);
	size_t have = 1;
	pattern_fill(p, have, 3);
	for (size_t i = 0; steps[i]; i++) {
		size_t size = steps[i];
		unsigned char *q = spanheap_realloc(&sh, p, size, 0);
		KASSERT(q);
		size_t keep = have < size ? have : size;
		if (!pattern_ok(q, keep, 3))
			ktest_fail_at(__FILE__, __LINE__,
			              "realloc %zu -> %zu lost the contents",
			              have, size);
		KEXPECT(spanheap_usable_size(&sh, q) >= size);
		p = q;
		have = size;
		pattern_fill(p, have, 3);
	}
	/* MM_ZERO zeroes the growth, beyond the old object's usable size. */
	size_t old = spanheap_usable_size(&sh, p);
	pattern_fill(p, old, 3);
	unsigned char *z = spanheap_realloc(&sh, p, 50000, MM_ZERO);
	KASSERT(z);
	KEXPECT(pattern_ok(z, old, 3));
	KEXPECT(all_bytes(z + old, 50000 - old, 0));
	p = z;
	have = old;
	/* A failed realloc leaves p untouched. */
	mm_port_set_quiet(true);
	KEXPECT(spanheap_realloc(&sh, p, SIZE_MAX, 0) == NULL);
	KEXPECT(spanheap_realloc(&sh, p, SH_ARENA_BYTES + 1, 0) == NULL);
	mm_port_set_quiet(false);
	KEXPECT(pattern_ok(p, have, 3));
	/* realloc(p, 0) frees p. */
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	size_t in_use = st.cls[0].objects_in_use;
	KEXPECT_EQ(in_use, 1); /* 50000 bytes: a large span */
	KEXPECT(spanheap_realloc(&sh, p, 0, 0) == NULL);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[0].objects_in_use, 0);
	/* The same for a small object. */
	void *s = spanheap_realloc(&sh, NULL, 200, 0);
	KASSERT(s);
	unsigned cls = sizeclass_of(200);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].objects_in_use, 1);
	KEXPECT(spanheap_realloc(&sh, s, 0, 0) == NULL);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].objects_in_use, 0);
	SH_CHECK(&sh, "after realloc");
	sh_heap_release(&heap);
}

/* Counts how often growing p (a large object) step bytes at a time up to
 * limit moved it; *pp is the final pointer. Checks the contents. */
static unsigned grow_moves(void **pp, size_t from, size_t step, size_t limit,
                           unsigned seed)
{
	unsigned char *p = *pp;
	unsigned moves = 0;
	for (size_t size = from + step; size <= limit; size += step) {
		unsigned char *q = spanheap_realloc(&sh, p, size, 0);
		if (!q)
			return ~0u;
		moves += q != p;
		/* A move copied every byte: all are checked. In place, none
		 * should have been touched: every 61st is (each page's
		 * bytes at other offsets), and the last. Checking them all
		 * at every step took this test 36 s under ASan. */
		if (q != p ? !pattern_ok(q, size - step, seed)
		           : !pattern_sampled_ok(q, size - step, seed))
			return ~0u;
		pattern_fill_range(q, size - step, size, seed);
		p = q;
	}
	*pp = p;
	return moves;
}

/*
 * A large object grows in place into the free pages after it, and when it
 * cannot (another object right after it) it moves with room to spare, so
 * a buffer grown a little at a time is copied a logarithmic number of
 * times: growing by 4 KiB steps from 64 KiB to 4 MiB (1008 steps) copied
 * at every step before. A shrink gives the tail back in place.
 */
KTEST(spanheap, realloc_large_grows_in_place)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	enum { FROM = 64 << 10, STEP = 4 << 10, LIMIT = 4 << 20 };
	void *a = spanheap_alloc(&sh, FROM, 0);
	KASSERT(a);
	pattern_fill(a, FROM, 5);
	/* In place but where it reaches the end of the grown heap (the
	 * heap grows by chunks; growing past them moves it). */
	unsigned alone = grow_moves(&a, FROM, STEP, LIMIT, 5);
	KEXPECT(alone <= 4);
	/* Two buffers growing in turn: each stands in the other's way. */
	void *b = spanheap_alloc(&sh, FROM, 0),
	     *c = spanheap_alloc(&sh, FROM, 0);
	KASSERT(b && c);
	pattern_fill(b, FROM, 6);
	pattern_fill(c, FROM, 7);
	unsigned moves = 0;
	for (size_t size = FROM; size < LIMIT; size += STEP) {
		unsigned mb = grow_moves(&b, size, STEP, size + STEP, 6);
		unsigned mc = grow_moves(&c, size, STEP, size + STEP, 7);
		KASSERT(mb != ~0u && mc != ~0u);
		moves += mb + mc;
	}
	/* At most about 2 * log(64) / log(9/8) = 71; 2016 steps. */
	KEXPECT(moves <= 80);
	ktest_diag("alone: %u moves; two in turn: %u moves in %u steps", alone,
	           moves, 2 * (LIMIT - FROM) / STEP);
	/* A shrink keeps the place and gives back the tail. */
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	size_t pages0 = st->large_pages;
	KEXPECT(spanheap_realloc(&sh, a, 100 << 10, 0) == a);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(pages0 - st->large_pages, (LIMIT - (100 << 10)) / 4096);
	KEXPECT_EQ(spanheap_usable_size(&sh, a), (size_t)100 << 10);
	KEXPECT(pattern_ok(a, 100 << 10, 5));
	SH_CHECK(&sh, "after the resizes");
	spanheap_free(&sh, a);
	spanheap_free(&sh, b);
	spanheap_free(&sh, c);
	free(st);
	sh_heap_release(&heap);
}

/* True if page-heap page of address a is in use (allocated). */
static bool page_in_use(uintptr_t a)
{
	size_t pi = (a - heap.arena_base) / PG;
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	if (!mheap_chunk_bits(&heap, pi / PALLOC_CHUNK_PAGES, alloc, scav))
		return false;
	size_t i = pi % PALLOC_CHUNK_PAGES;
	return alloc[i / 64] >> (i % 64) & 1;
}

/*
 * Where a realloc puts the object: a small object shrunk to less than
 * half its class moves to the smaller class (its usable size is that
 * class's), one shrunk to half or more stays; a large object that cannot
 * grow in place (the page after it is in use) moves to a block an eighth
 * larger than asked, so that growing it a little at a time moves it a
 * logarithmic number of times.
 */
KTEST(spanheap, realloc_picks_the_new_size)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned char *p = spanheap_alloc(&sh, 1024, 0);
	KASSERT(p && spanheap_usable_size(&sh, p) == 1024);
	pattern_fill(p, 1024, 8);
	KEXPECT(spanheap_realloc(&sh, p, 600, 0) == p);
	unsigned char *q = spanheap_realloc(&sh, p, 100, 0);
	KASSERT(q);
	KEXPECT(q != p);
	KEXPECT_EQ(spanheap_usable_size(&sh, q),
	           sizeclass_info[sizeclass_of(100)].size);
	KEXPECT(pattern_ok(q, 100, 8));
	spanheap_free(&sh, q);

	enum { FROM = 64 << 10, TO = 200 << 10 };
	void *a = spanheap_alloc(&sh, FROM, 0);
	void *b = spanheap_alloc(&sh, FROM, 0);
	KASSERT(a && b);
	KASSERT(page_in_use((uintptr_t)a + FROM));
	pattern_fill(a, FROM, 9);
	unsigned char *n = spanheap_realloc(&sh, a, TO, 0);
	KASSERT(n);
	KEXPECT(n != a);
	KEXPECT(pattern_ok(n, FROM, 9));
	KEXPECT(spanheap_usable_size(&sh, n) >= TO + TO / 8);
	SH_CHECK(&sh, "after the reallocs");
	spanheap_free(&sh, n);
	spanheap_free(&sh, b);
	sh_heap_release(&heap);
}

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
	sh_heap_release(&heap);
}

/*
 * MM_ZERO: after a realloc every byte up to the usable size past the size
 * asked for is zero, whatever the memory held before: the small object's
 * tail past the 100 bytes a zeroed allocation asked for, and the pages a
 * large one grows into in place.
 */
KTEST(spanheap, realloc_zero_reads_no_stale_bytes)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned char *d = spanheap_alloc(&sh, 112, 0);
	KASSERT(d);
	memset(d, 0xaa, 112);
	spanheap_free(&sh, d);
	unsigned char *p = spanheap_alloc(&sh, 100, MM_ZERO);
	KASSERT(p == d); /* the same object, from the magazine */
	KEXPECT(all_bytes(p, 112, 0));
	memset(p, 1, 100);
	KEXPECT(spanheap_realloc(&sh, p, 112, MM_ZERO) == p);
	KEXPECT(all_bytes(p + 100, 12, 0));
	/* A large object, and dirty free pages right after it. */
	unsigned char *a = spanheap_alloc(&sh, 64 << 10, MM_ZERO);
	unsigned char *b = spanheap_alloc(&sh, 64 << 10, 0);
	KASSERT(a && b && b == a + (64 << 10));
	memset(b, 0xaa, 64 << 10);
	spanheap_free(&sh, b);
	memset(a, 1, 64 << 10);
	KEXPECT(spanheap_realloc(&sh, a, 128 << 10, MM_ZERO) == a);
	KEXPECT(all_bytes(a, 64 << 10, 1));
	KEXPECT(all_bytes(a + (64 << 10), 64 << 10, 0));
	/* Shrunk with MM_ZERO and grown again in place: zeros. */
	KEXPECT(spanheap_realloc(&sh, a, 100 << 10, MM_ZERO) == a);
	KEXPECT(spanheap_realloc(&sh, a, 128 << 10, MM_ZERO) == a);
	KEXPECT(all_bytes(a + (100 << 10), 28 << 10, 0));
	spanheap_free(&sh, a);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap);
}

/* ---- Impossible requests, MM_NO_GROW, MM_ZERO ---------------------------- */

KTEST(spanheap, impossible_sizes)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_quiet(true); /* the page heap logs its refusals */
	KEXPECT(spanheap_alloc(&sh, SIZE_MAX, 0) == NULL);
	KEXPECT(spanheap_alloc(&sh, SIZE_MAX - PG + 2, 0) == NULL);
	KEXPECT(spanheap_alloc(&sh, SH_ARENA_BYTES + 1, 0) == NULL);
	KEXPECT(spanheap_alloc(&sh, SH_ARENA_BYTES * 4, MM_ZERO) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SIZE_MAX, 16, 0) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SIZE_MAX, 65536, 0) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SH_ARENA_BYTES - PG, 65536, 0) ==
	        NULL);
	KEXPECT(spanheap_calloc(&sh, SH_ARENA_BYTES, 2, 0) == NULL);
	/* Atomic callers get at most MHEAP_ATOMIC_MAX_PAGES pages. */
	KEXPECT(spanheap_alloc(&sh, (MHEAP_ATOMIC_MAX_PAGES + 1) * PG,
	                       MM_ATOMIC) == NULL);
	mm_port_set_quiet(false);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.n.atomic_fails, 1);
	KEXPECT_EQ(st.spans, 0);
	KEXPECT_EQ(st.n.large_allocs, 0);
	SH_CHECK(&sh, "after impossible requests");
	sh_heap_release(&heap);
}

KTEST(spanheap, no_grow)
{
	enum { MAX = 1000 };
	/* With the default reserve: the page heap used to refill it by
	 * growing after an allocation that left it short, MHEAP_NO_GROW or
	 * not (all 1000 allocations succeeded, the heap grew 11-fold). */
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	KASSERT(sh_heap_new_with(&heap, &sh, &hc, NULL));
	struct mheap_stats hs0, hs;
	mheap_stats(&heap, &hs0);
	mm_port_set_quiet(true);
	/* More than the heap has grown: refused. */
	KEXPECT(spanheap_alloc(&sh, hs0.grown_pages * PG + 1, MM_NO_GROW) ==
	        NULL);
	/* What was grown is used, then the allocations fail. */
	void *p[MAX];
	int n = 0;
	while (n < MAX && (p[n] = spanheap_alloc(&sh, 20000, MM_NO_GROW)))
		n++;
	mm_port_set_quiet(false);
	mheap_stats(&heap, &hs);
	ktest_diag("%d objects of 20000 bytes in %zu grown pages", n,
	           hs.grown_pages);
	KEXPECT(n > 0 && n < MAX);
	KEXPECT_EQ(hs.grown_pages, hs0.grown_pages);
	KEXPECT(spanheap_alloc(&sh, 16, MM_NO_GROW) != NULL ||
	        hs.in_use_pages == hs.grown_pages);
	/* Without the flag the heap grows. */
	void *q = spanheap_alloc(&sh, 20000, 0);
	KEXPECT(q != NULL);
	mheap_stats(&heap, &hs);
	KEXPECT(hs.grown_pages > hs0.grown_pages);
	spanheap_free(&sh, q);
	for (int i = 0; i < n; i++)
		spanheap_free(&sh, p[i]);
	SH_CHECK(&sh, "after MM_NO_GROW");
	sh_heap_release(&heap);
}

KTEST(spanheap, zero_reused_object)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(300);
	size_t size = sizeclass_info[cls].size;
	/* a keeps the span alive (so b's memory stays an object of the
	 * class); b is dirtied and freed. */
	char *a = spanheap_alloc(&sh, 300, 0);
	char *b = spanheap_alloc(&sh, 300, 0);
	KASSERT(a && b);
	memset(b, 0xab, size);
	spanheap_free(&sh, b);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	char *c = spanheap_alloc(&sh, 300, MM_ZERO);
	KASSERT(c);
	KEXPECT(c == b); /* the free slot of the span is b's */
	KEXPECT(all_bytes(c, 300, 0));
	/* Without MM_ZERO the old contents may show: the flag did it. */
	memset(c, 0xcd, size);
	spanheap_free(&sh, c);
	spanheap_flush_cache(&sh);
	char *d = spanheap_alloc(&sh, 300, 0);
	KEXPECT(d == b);
	/* (A freed object's first 16 bytes are the magazine's: its link
	 * and its free marker.) */
	KEXPECT(d && all_bytes(d + 16, size - 16, 0xcd));
	spanheap_free(&sh, d);
	spanheap_free(&sh, a);
	SH_CHECK(&sh, "after MM_ZERO");
	sh_heap_release(&heap);
}

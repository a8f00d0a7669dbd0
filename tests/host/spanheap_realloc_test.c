/*
 * The span heap's calloc and realloc (mm/spanheap_realloc.c) through the
 * POSIX port: calloc's zeroing of reused objects, realloc keeping the
 * contents, growing a large object in place, picking the new size,
 * realloc reading no stale bytes, and a realloc carrying no free marker
 * back to where it was written. Which pages a zeroed or shrunk large
 * object writes and keeps: spanheap_zero_pages_test.c. The other
 * allocation calls are in spanheap_test.c, whose opening comment lists
 * where the rest of the span heap's tests are.
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
	sh_heap_release(&heap, &sh);
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
	sh_heap_release(&heap, &sh);
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
	sh_heap_release(&heap, &sh);
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
	sh_heap_release(&heap, &sh);
}

/*
 * A realloc to no more than the usable size needs no memory, so it never
 * fails: where the object cannot move (MM_ATOMIC, whose path serves no
 * object over 64 pages; a full arena) it stays, and MM_ZERO zeroes past
 * the size. A growth still fails and leaves the object as it was.
 */
KTEST(spanheap, realloc_within_the_usable_size_never_fails)
{
	KASSERT(sh_heap_tight(&heap, &sh, 1));
	mm_port_set_cpu(0);
	unsigned char *p = spanheap_alloc(&sh, 1024, 0);
	unsigned char *big = spanheap_alloc(&sh, 100 * PG, 0);
	KASSERT(p && big);
	pattern_fill(p, 1024, 3);
	pattern_fill(big, 100 * PG, 4);
	KEXPECT(spanheap_realloc(&sh, big, 70 * PG, MM_ATOMIC) == big);
	KEXPECT(pattern_ok(big, 70 * PG, 4));
	/* Every page taken: no span can be made for a smaller class. */
	void *fill[PALLOC_CHUNK_BYTES / PG];
	size_t n = 0;
	while (n < PALLOC_CHUNK_BYTES / PG &&
	       (fill[n] = spanheap_alloc(&sh, 2 * PG, 0)) != NULL)
		n++;
	KASSERT(n > 0 && n < PALLOC_CHUNK_BYTES / PG);
	KEXPECT(spanheap_realloc(&sh, p, 2000, 0) == NULL);
	KEXPECT(spanheap_realloc(&sh, p, 100, 0) == p);
	KEXPECT(spanheap_realloc(&sh, p, 50, MM_ZERO) == p);
	KEXPECT(pattern_ok(p, 50, 3));
	size_t zeros = 0, usable = spanheap_usable_size(&sh, p);
	for (size_t i = 50; i < usable; i++)
		zeros += p[i] == 0;
	KEXPECT(usable == 1024 && zeros == usable - 50);
	KEXPECT(spanheap_realloc(&sh, big, 3 * PG, 0) == big);
	SH_CHECK(&sh, "after the reallocs kept");
	while (n)
		spanheap_free(&sh, fill[--n]);
	spanheap_free(&sh, p);
	spanheap_free(&sh, big);
	sh_heap_release(&heap, &sh);
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
	sh_heap_release(&heap, &sh);
}

/*
 * A freed small object's marker (its second word) stays in memory when
 * its span goes back to the page heap, so a large object made over those
 * pages held it at its own second word, which its owner never wrote. A
 * realloc copies what the object holds: moved to a bigger object, and
 * back down to a small one at the first address, a new span's first
 * object, it made that object carry its own free marker. Its usable
 * size then panicked "of an object already freed", and its free as a
 * double free (kmalloc's storm at -smp 8 crashed so, once).
 */
KTEST(spanheap, realloc_carries_no_free_marker_back)
{
	enum { SMALL = 1200, LARGE = 9 * PG };
	KASSERT(sh_heap_fresh(&heap, &sh));
	/* The magazines' slab first (made at the first free), and a span
	 * below a's that stays (until the metadata heap, the slab was the
	 * run below a's span). */
	void *keep = spanheap_alloc(&sh, 16, 0);
	spanheap_free(&sh, spanheap_alloc(&sh, 16, 0));
	/* A span whose first object is freed, then the span freed. */
	unsigned char *a = spanheap_alloc(&sh, SMALL, 0);
	KASSERT(a);
	spanheap_free(&sh, a);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	KASSERT(mheap_span_lookup(&heap, (uintptr_t)a) == NULL);
	/* A large object over its pages, a neighbour so that it moves. */
	unsigned char *l = spanheap_alloc(&sh, LARGE, 0);
	unsigned char *nb = spanheap_alloc(&sh, LARGE, 0);
	KASSERT(l == a && nb == l + LARGE);
	memset(l + 16, 0x5a, LARGE - 16); /* all but its first 16 bytes */
	unsigned char *l2 = spanheap_realloc(&sh, l, 2 * LARGE, 0);
	KASSERT(l2 && l2 != l);
	/* Down to a small object: a new span at a, its first object. */
	unsigned char *p = spanheap_realloc(&sh, l2, SMALL, 0);
	KASSERT(p == a);
	size_t got = 0;
	bool panicked = MM_PORT_PANICS(got = spanheap_usable_size(&sh, p));
	sh_unpin_after_panic();
	KEXPECT(!panicked);
	if (panicked)
		ktest_diag("usable size: %s", mm_port_last_panic());
	KEXPECT(got >= SMALL);
	KEXPECT(all_bytes(p + 16, SMALL - 16, 0x5a));
	KEXPECT(!MM_PORT_PANICS(spanheap_free(&sh, p)));
	sh_unpin_after_panic();
	spanheap_free(&sh, nb);
	spanheap_free(&sh, keep);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

/*
 * A large object resized across the small/large boundary stays where it
 * is when the small size's class gives each object a span of its own
 * (28545 to 32768 bytes, 8 pages), giving its tail back and growing
 * into it again: until a review the shrink always moved it to its class,
 * and a buffer resized between 32 KiB - 64 and 32 KiB + 1 copied 32 KiB
 * at every call. A size of a class of two objects a span (20000: class
 * 20480, 10 pages) still moves to it.
 */
KTEST(spanheap, realloc_across_the_large_boundary_stays_in_place)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	enum { BELOW = SC_MAX_SIZE - 64, ABOVE = SC_MAX_SIZE + 1 };
	unsigned char *p = spanheap_alloc(&sh, ABOVE, 0);
	KASSERT(p);
	pattern_fill(p, ABOVE, 11);
	unsigned moves = 0;
	for (int i = 0; i < 100; i++) {
		unsigned char *q = spanheap_realloc(&sh, p, BELOW, 0);
		KASSERT(q);
		moves += q != p;
		KEXPECT_EQ(spanheap_usable_size(&sh, q), (size_t)SC_MAX_SIZE);
		p = spanheap_realloc(&sh, q, ABOVE, 0);
		KASSERT(p);
		moves += p != q;
		pattern_fill_range(p, BELOW, ABOVE, 11);
	}
	ktest_diag("%u moves in 200 reallocs", moves);
	KEXPECT_EQ(moves, 0u);
	KEXPECT(pattern_ok(p, ABOVE, 11));
	/* Two objects a span: to the class, as before. */
	KASSERT(sizeclass_info[sizeclass_of(20000)].nelems == 2);
	unsigned char *r = spanheap_realloc(&sh, p, 20000, 0);
	KASSERT(r);
	KEXPECT(r != p);
	KEXPECT_EQ(spanheap_usable_size(&sh, r),
	           sizeclass_info[sizeclass_of(20000)].size);
	KEXPECT(pattern_ok(r, 20000, 11));
	SH_CHECK(&sh, "after the reallocs");
	spanheap_free(&sh, r);
	sh_heap_release(&heap, &sh);
}

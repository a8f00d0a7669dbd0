/*
 * The committed size class table (mm/sizeclasses.c) against the properties
 * mm/sizeclasses.h promises, each recomputed here from the table's own
 * numbers rather than by running tools/gen-sizeclasses.c again: a table
 * edited by hand, or a generator that checks less than it claims, fails
 * here.
 */
#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/sizeclasses.h"
#include "../../mm/spanheap.h"

static const struct sizeclass_info *sc(unsigned c)
{
	return &sizeclass_info[c];
}

static unsigned span_bytes(unsigned c)
{
	return sc(c)->npages * SC_PAGE_SIZE;
}

/* Whether npages pages hold objects of size with at most 1/8 left over. */
static bool tail_ok(unsigned size, unsigned npages)
{
	return npages * SC_PAGE_SIZE % size * 8 <= npages * SC_PAGE_SIZE;
}

/* The fewest pages holding 32 KiB or 512 objects (whichever is less)
 * with at most 1/8 left over: property 3 of sizeclasses.h. */
static unsigned fewest_pages(unsigned size)
{
	unsigned floor = 512 * size < 32768 ? 512 * size : 32768;
	unsigned n = (floor + SC_PAGE_SIZE - 1) / SC_PAGE_SIZE;
	while (!tail_ok(size, n))
		n++;
	return n;
}

/* The smallest class that fits size, by a linear search. */
static unsigned naive_class(size_t size)
{
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		if (sc(c)->size >= size)
			return c;
	return 0;
}

KTEST(sizeclass, sizes_grow_to_max)
{
	KASSERT(SC_NCLASSES >= 2 && SC_NCLASSES <= 256);
	KEXPECT_EQ(sc(0)->size, 0);
	KEXPECT_EQ(sc(0)->npages, 0);
	KEXPECT_EQ(sc(0)->nelems, 0);
	KEXPECT_EQ(sc(0)->divmul, 0);
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		KEXPECT_EQ(sc(c)->size % 16, 0);
		if (c > 1)
			KEXPECT(sc(c)->size > sc(c - 1)->size);
		/* The 128-byte lookup table can only stop on its steps. */
		if (sc(c)->size > SC_SMALL_MAX)
			KEXPECT_EQ(sc(c)->size % 128, 0);
	}
	KEXPECT_EQ(sc(SC_NCLASSES - 1)->size, SC_MAX_SIZE);
	KEXPECT_EQ(SC_MAX_SIZE, 32768);
	KEXPECT_EQ(SC_SMALL_MAX, 1024);
}

KTEST(sizeclass, powers_of_two_are_classes)
{
	for (unsigned p = 16; p <= SC_PAGE_SIZE; p *= 2) {
		unsigned c = naive_class(p);
		KEXPECT_EQ(sc(c)->size, p);
		/* Objects sit at page-aligned base + i * size. */
		KEXPECT_EQ(SC_PAGE_SIZE % sc(c)->size, 0);
	}
}

KTEST(sizeclass, spans)
{
	unsigned max_nelems = 0, max_npages = 0;
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		const struct sizeclass_info *i = sc(c);
		KASSERT(i->size >= 16); /* divided by below */
		KEXPECT(i->npages >= 1);
		KEXPECT(i->nelems >= 1);
		KEXPECT_EQ(i->nelems, span_bytes(c) / i->size);
		KEXPECT(tail_ok(i->size, i->npages));
		KEXPECT_EQ(i->npages, fewest_pages(i->size));
		KEXPECT(i->nelems <= SC_MAX_NELEMS);
		KEXPECT(i->npages <= SC_MAX_NPAGES);
		max_nelems = i->nelems > max_nelems ? i->nelems : max_nelems;
		max_npages = i->npages > max_npages ? i->npages : max_npages;
	}
	KEXPECT_EQ(SC_MAX_NELEMS, max_nelems);
	KEXPECT_EQ(SC_MAX_NPAGES, max_npages);
	KEXPECT(SC_MAX_NELEMS <= 512);
	KEXPECT(SC_MAX_NPAGES <= MHEAP_ATOMIC_MAX_PAGES);
	KEXPECT(SC_BITMAP_WORDS * 64 >= SC_MAX_NELEMS);
	KEXPECT((SC_BITMAP_WORDS - 1) * 64 < SC_MAX_NELEMS);
	KEXPECT_EQ(SC_PAGE_SIZE, MM_PAGE_SIZE);
}

/* 16-byte steps up to 256; above, at most 1/8 of the object unused by
 * the worst request, unless every size in between (on the lookup tables'
 * grid) would have this class's span anyway. No two neighbours share a
 * span shape (the smaller would be useless). */
KTEST(sizeclass, spacing)
{
	for (unsigned c = 2; c < SC_NCLASSES; c++) {
		unsigned prev = sc(c - 1)->size, size = sc(c)->size;
		KASSERT(size > prev && prev >= 16);
		KEXPECT(sc(c)->npages != sc(c - 1)->npages ||
		        sc(c)->nelems != sc(c - 1)->nelems);
		if (size <= 256) {
			KEXPECT_EQ(size - prev, 16);
			continue;
		}
		if ((size - (prev + 1)) * 8 <= size)
			continue;
		unsigned step = prev < SC_SMALL_MAX ? 16 : 128;
		for (unsigned s = prev + step; s < size; s += step) {
			unsigned n = fewest_pages(s);
			KEXPECT_EQ(n, sc(c)->npages);
			KEXPECT_EQ(n * SC_PAGE_SIZE / s, sc(c)->nelems);
			step = s < SC_SMALL_MAX ? 16 : 128;
		}
	}
}

KTEST(sizeclass, divmul_exact_over_every_span)
{
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		uint32_t divmul = sc(c)->divmul, size = sc(c)->size;
		KASSERT(size > 0);
		for (uint32_t off = 0; off < span_bytes(c); off++) {
			KASSERT_EQ((uint32_t)(((uint64_t)off * divmul) >> 32),
			           off / size);
		}
	}
}

/* The free's object-start test (property 5): the size's odd part times
 * dinv is 1, and (off * dinv) rotated right by dshift is the index at an
 * object's start and at least SC_MAX_NELEMS anywhere else. */
KTEST(sizeclass, start_test_exact_over_every_span)
{
	for (unsigned c = 1; c < SC_NCLASSES; c++) {
		uint32_t size = sc(c)->size, dinv = sc(c)->dinv;
		unsigned r = sc(c)->dshift;
		KASSERT_EQ(size >> r << r, size);
		KASSERT_EQ(size >> r & 1, 1);
		KASSERT_EQ((size >> r) * dinv, 1);
		for (uint32_t off = 0; off < span_bytes(c); off++) {
			uint32_t x = off * dinv;
			uint32_t q = r ? x >> r | x << (32 - r) : x;
			if (off % size == 0)
				KASSERT_EQ(q, off / size);
			else
				KASSERT(q >= SC_MAX_NELEMS);
		}
	}
}

/* Property 7: up to SC_LINEAR_MAX the class is (size + 15) / 16, as
 * spanheap_class_linear computes it for sizes known at compile time. */
KTEST(sizeclass, linear_up_to_linear_max)
{
	for (unsigned k = 1; k <= SC_LINEAR_MAX / 16; k++)
		KEXPECT_EQ(sc(k)->size, 16 * k);
	for (size_t size = 0; size <= SC_LINEAR_MAX; size++)
		KASSERT_EQ(spanheap_class_linear(size), sizeclass_of(size));
}

KTEST(sizeclass, of_every_size)
{
	KEXPECT_EQ(sizeclass_of(0), 1);
	KEXPECT_EQ(sizeclass_by16[0], 1);
	for (size_t size = 1; size <= SC_MAX_SIZE; size++)
		KASSERT_EQ(sizeclass_of(size), naive_class(size));
	KEXPECT_EQ(sizeclass_of(SC_MAX_SIZE + 1), 0);
	KEXPECT_EQ(sizeclass_of((size_t)-1), 0);
}

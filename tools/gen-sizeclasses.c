/*
 * tools/gen-sizeclasses.c: computes the span heap's size classes and prints
 * mm/sizeclasses.h (`gen-sizeclasses h`) or mm/sizeclasses.c
 * (`gen-sizeclasses c`). `make sizeclasses` regenerates both in place;
 * `make test-sizeclasses` fails when the committed files differ from what
 * this program prints. A host program: C11, no dependencies. This file
 * computes and checks the table; gen-sizeclasses-emit.c prints it.
 *
 * Algorithm:
 *   1. Candidates: every multiple of 16 up to SMALL_MAX and every multiple
 *      of 128 above, up to MAX_SIZE (sizeclass_of must find the smallest
 *      class that fits).
 *   2. Each candidate gets the fewest pages, no fewer than it takes to
 *      hold MIN_SPAN bytes or MAX_NELEMS objects (whichever is less),
 *      whose tail (the bytes after the last whole object) is at most 1/8
 *      of the span. The floor keeps a span from running out after a few
 *      objects (every span change is a trip to the slow path) and keeps
 *      the span structs few: a free reads its object's span struct, and
 *      with 4 KiB spans of 64-byte objects, 10^6 live objects had 15625
 *      of them, a 1 MiB working set of first cache lines; 32 KiB spans
 *      took the random-order free of those objects from 72 to 62 ns. One
 *      whose span breaks MAX_NELEMS or MAX_NPAGES is dropped; a required
 *      size (a power of two up to PAGE_SIZE, or MAX_SIZE) may not be.
 *   3. Merge: a candidate whose span has as many pages and objects as the
 *      next candidate's is useless, since the next one fits the same
 *      objects in the same pages and takes bigger requests; it goes.
 *   4. Select: class 1 is the smallest candidate; each next class is the
 *      largest candidate within next_limit() of the class below (16-byte
 *      steps up to 256, then at most 1/8 of rounding for the worst
 *      request), never skipping a required size. Where no candidate is
 *      within the limit, every size in the gap has the span of the next
 *      candidate (step 3), so no class there would use less memory: the
 *      next candidate is taken, and the table shows the larger rounding.
 *   5. divmul = UINT32_MAX / size + 1, checked exact for every offset of
 *      every span as an index ((off * divmul) >> 32). And with size =
 *      d << dshift (d odd), dinv = the inverse of d modulo 2^32: rotating
 *      (uint32_t)(off * dinv) right by dshift gives off / size at a
 *      multiple of size and at least MAX_NELEMS anywhere else (Granlund
 *      and Montgomery's divisibility test), checked for every offset of
 *      every span: one comparison with an object count tells whether off
 *      starts one of the first objects.
 *   6. The lookup table, checked against a linear search for every size.
 *
 * Every property the header promises is checked here before anything is
 * printed; a failed check prints what broke and exits 1. The output is in
 * the form clang-format leaves alone, so `make format-check` passes on it.
 * Modelled on the Go runtime's size classes (sizeclasses.go), written
 * afresh from the rules above.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen-sizeclasses.h"

/* The table, filled by choose_classes, compute_divmul and fill_tables. */
struct sizeclass classes[MAX_CLASSES];
unsigned nclasses;
uint8_t by16[BY16_LEN];

_Noreturn void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("gen-sizeclasses: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static bool is_pow2(unsigned x)
{
	return x && (x & (x - 1)) == 0;
}

/* A size that may not be dropped or merged away. */
static bool required(unsigned size)
{
	return (is_pow2(size) && size <= PAGE_SIZE) || size == MAX_SIZE;
}

unsigned tail_bytes(unsigned size, unsigned npages)
{
	return npages * PAGE_SIZE % size;
}

/* The pages it takes to hold MIN_SPAN bytes or MAX_NELEMS objects,
 * whichever is less. */
static unsigned floor_npages(unsigned size)
{
	unsigned bytes =
	        MAX_NELEMS * size < MIN_SPAN ? MAX_NELEMS * size : MIN_SPAN;
	return (bytes + PAGE_SIZE - 1) / PAGE_SIZE;
}

/* The fewest pages (floor_npages up to MAX_NPAGES) whose tail is at most
 * 1/8 of the span; 0 if there is none. */
static unsigned span_npages(unsigned size)
{
	for (unsigned n = floor_npages(size); n <= MAX_NPAGES; n++)
		if (tail_bytes(size, n) * 8 <= n * PAGE_SIZE)
			return n;
	return 0;
}

/* The largest class size allowed after a class of size prev: 16-byte
 * steps up to 256; above, the worst rounding (a request of prev + 1 bytes)
 * may waste at most 1/8 of the object: size - (prev + 1) <= size / 8. */
static unsigned next_limit(unsigned prev)
{
	return prev < 256 ? prev + ALIGN : 8 * (prev + 1) / 7;
}

/* The step from size to the next candidate size: 16 bytes up to
 * SMALL_MAX, 128 above. */
static unsigned granule(unsigned size)
{
	return size < SMALL_MAX ? 16 : 128;
}

/* Steps 1 to 3: the sizes that may become classes, with their spans, in
 * increasing order; returns how many. */
static unsigned candidates(struct sizeclass *out, unsigned cap)
{
	unsigned n = 0;
	for (unsigned size = ALIGN; size <= MAX_SIZE; size += granule(size)) {
		unsigned npages = span_npages(size);
		unsigned nelems = npages ? npages * PAGE_SIZE / size : 0;
		if (npages == 0 || nelems > MAX_NELEMS) {
			if (required(size))
				die("size %u: no span of at most %u pages with "
				    "at most %u objects wastes <= 1/8",
				    size, MAX_NPAGES, MAX_NELEMS);
			continue;
		}
		/* The one before holds as many objects in as many pages. */
		if (n && out[n - 1].npages == npages &&
		    out[n - 1].nelems == nelems) {
			if (required(out[n - 1].size))
				die("size %u would merge into size %u",
				    out[n - 1].size, size);
			n--;
		}
		if (n == cap)
			die("more than %u candidate sizes", cap);
		out[n++] = (struct sizeclass){
		        .size = size, .npages = npages, .nelems = nelems};
	}
	return n;
}

/* Step 4: fills classes[1..nclasses-1] from the candidates. */
static void choose_classes(void)
{
	static struct sizeclass cand[MAX_SIZE / ALIGN];
	unsigned ncand = candidates(cand, MAX_SIZE / ALIGN);

	nclasses = 1;
	for (unsigned i = 0; i < ncand;) {
		/* The largest candidate within the limit, but no required
		 * size skipped; the next one if none is within the limit. */
		unsigned limit =
		        nclasses == 1 ? cand[0].size
		                      : next_limit(classes[nclasses - 1].size);
		unsigned pick = i;
		while (pick + 1 < ncand && cand[pick + 1].size <= limit &&
		       !required(cand[pick].size))
			pick++;
		if (nclasses == MAX_CLASSES)
			die("more than %u classes", MAX_CLASSES - 1);
		/* Adjacent classes with one span shape: keep the larger. */
		struct sizeclass *prev = &classes[nclasses - 1];
		if (nclasses > 1 && prev->npages == cand[pick].npages &&
		    prev->nelems == cand[pick].nelems) {
			if (required(prev->size))
				die("size %u would merge into size %u",
				    prev->size, cand[pick].size);
			nclasses--;
		}
		classes[nclasses++] = cand[pick];
		i = pick + 1;
	}
}

static uint32_t rotr32(uint32_t x, unsigned r)
{
	return r ? x >> r | x << (32 - r) : x;
}

/* Step 5: divmul, dinv and dshift for every class, proven exact over the
 * whole span. */
static void compute_divmul(void)
{
	for (unsigned i = 1; i < nclasses; i++) {
		struct sizeclass *c = &classes[i];
		c->divmul = UINT32_MAX / c->size + 1;
		c->dshift = (unsigned)__builtin_ctz(c->size);
		uint32_t d = c->size >> c->dshift, inv = d;
		/* Newton's iteration: each step doubles the correct low
		 * bits, from 3 (d * d == 1 mod 8 for odd d). */
		for (int k = 0; k < 4; k++)
			inv *= 2 - d * inv;
		if (d * inv != 1)
			die("size %u: no inverse of %u", c->size, d);
		c->dinv = inv;
		uint32_t span = c->npages * PAGE_SIZE;
		for (uint32_t off = 0; off < span; off++) {
			uint32_t q =
			        (uint32_t)(((uint64_t)off * c->divmul) >> 32);
			if (q != off / c->size)
				die("size %u: divmul %u gives %u for offset "
				    "%u, not %u",
				    c->size, c->divmul, q, off, off / c->size);
			/* The free's test for an object's start. */
			uint32_t r = rotr32(off * c->dinv, c->dshift);
			if (off % c->size == 0 ? r != off / c->size
			                       : r < MAX_NELEMS)
				die("size %u: dinv %#x's start test gives %u "
				    "at offset %u",
				    c->size, c->dinv, r, off);
		}
	}
}

/* The smallest class whose size is at least size (a linear search). */
static unsigned class_for(unsigned size)
{
	for (unsigned i = 1; i < nclasses; i++)
		if (classes[i].size >= size)
			return i;
	die("no class for size %u", size);
}

/* Step 6: the lookup table, checked for every size it answers. */
static void fill_tables(void)
{
	for (unsigned i = 0; i < BY16_LEN; i++)
		by16[i] = (uint8_t)class_for(i ? i * 16 : 1);
	for (unsigned size = 1; size <= MAX_SIZE; size++) {
		unsigned got = by16[(size + 15) / 16];
		if (got != class_for(size))
			die("the tables give class %u for size %u, not %u", got,
			    size, class_for(size));
	}
}

/* Class i's span is the fewest pages for its size, and it is no further
 * above class i - 1 than next_limit() unless no size in between has a
 * span of its own (step 4). */
static void check_gap(unsigned i)
{
	const struct sizeclass *c = &classes[i];
	if (c->npages != span_npages(c->size))
		die("class %u: %u pages, not the fewest (%u)", i, c->npages,
		    span_npages(c->size));
	if (c->size <= next_limit(classes[i - 1].size))
		return;
	for (unsigned s = classes[i - 1].size + granule(classes[i - 1].size);
	     s < c->size; s += granule(s)) {
		unsigned npages = span_npages(s);
		if (npages != c->npages || npages * PAGE_SIZE / s != c->nelems)
			die("class %u: size %u is too far above %u: size %u "
			    "has a span of its own",
			    i, c->size, classes[i - 1].size, s);
	}
}

/* Everything the header promises, checked once more on the final table. */
static void check_classes(void)
{
	if (nclasses < 2 || classes[nclasses - 1].size != MAX_SIZE)
		die("the last class is not %u bytes", MAX_SIZE);
	for (unsigned i = 1; i < nclasses; i++) {
		const struct sizeclass *c = &classes[i];
		if (c->size % ALIGN ||
		    (i > 1 && c->size <= classes[i - 1].size))
			die("class %u: size %u is not a multiple of %u above "
			    "the previous class",
			    i, c->size, ALIGN);
		if (c->size > SMALL_MAX && c->size % 128)
			die("class %u: size %u above %u is not a multiple of "
			    "128 (property 6)",
			    i, c->size, SMALL_MAX);
		if (c->npages < 1 || c->npages > MAX_NPAGES || c->nelems < 1 ||
		    c->nelems > MAX_NELEMS ||
		    c->nelems != c->npages * PAGE_SIZE / c->size ||
		    tail_bytes(c->size, c->npages) * 8 > c->npages * PAGE_SIZE)
			die("class %u: size %u has a bad span (%u pages, "
			    "%u objects)",
			    i, c->size, c->npages, c->nelems);
	}
	for (unsigned p = ALIGN; p <= PAGE_SIZE; p *= 2)
		if (classes[class_for(p)].size != p)
			die("power of two %u is not a class", p);
	for (unsigned k = 1; k <= LINEAR_MAX / 16; k++)
		if (k >= nclasses || classes[k].size != 16 * k)
			die("class %u is not %u bytes (property 7)", k, 16 * k);
	for (unsigned i = 2; i < nclasses; i++)
		check_gap(i);
}

int main(int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[1], "h") && strcmp(argv[1], "c")))
		die("usage: gen-sizeclasses h|c (prints mm/sizeclasses.h or "
		    "mm/sizeclasses.c)");
	choose_classes();
	compute_divmul();
	fill_tables();
	check_classes();
	if (argv[1][0] == 'h')
		emit_h();
	else
		emit_c();
	if (fflush(stdout) || ferror(stdout))
		die("cannot write the output");
	return 0;
}

/*
 * tools/gen-sizeclasses.c: computes the span heap's size classes and prints
 * mm/sizeclasses.h (`gen-sizeclasses h`) or mm/sizeclasses.c
 * (`gen-sizeclasses c`). `make sizeclasses` regenerates both in place;
 * `make test-sizeclasses` fails when the committed files differ from what
 * this program prints. A host program: C11, no dependencies.
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

#define PAGE_SIZE   4096u  /* MM_PAGE_SIZE; the header asserts they agree */
#define ALIGN       16u    /* every object's alignment */
#define SMALL_MAX   1024u  /* classes above are multiples of 128 */
#define LINEAR_MAX  256u   /* class k is 16 * k bytes up to this */
#define MAX_SIZE    32768u /* the largest class */
#define MAX_NELEMS  512u   /* per-span bitmaps: at most 8 words */
#define MAX_NPAGES  64u    /* MHEAP_ATOMIC_MAX_PAGES */
#define MIN_SPAN    32768u /* a span holds this many bytes, or MAX_NELEMS */
#define MAX_CLASSES 256u   /* classes are stored in uint8_t */

#define BY16_LEN (MAX_SIZE / 16 + 1)

struct sizeclass {
	unsigned size;
	unsigned npages;
	unsigned nelems;
	uint32_t divmul;
	uint32_t dinv;
	unsigned dshift;
};

/* classes[0] is the reserved "large object" class, all zero. */
static struct sizeclass classes[MAX_CLASSES];
static unsigned nclasses;
static uint8_t by16[BY16_LEN];

_Noreturn static void die(const char *fmt, ...)
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

static unsigned tail_bytes(unsigned size, unsigned npages)
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

static unsigned max_nelems(void)
{
	unsigned m = 0;
	for (unsigned i = 1; i < nclasses; i++)
		m = classes[i].nelems > m ? classes[i].nelems : m;
	return m;
}

static unsigned max_npages(void)
{
	unsigned m = 0;
	for (unsigned i = 1; i < nclasses; i++)
		m = classes[i].npages > m ? classes[i].npages : m;
	return m;
}

static const char generated[] =
        "/*\n"
        " * Generated by tools/gen-sizeclasses.c; do not edit. Regenerate "
        "with\n"
        " * `make sizeclasses`; `make test-sizeclasses` checks that this "
        "file is\n"
        " * what the generator prints.\n"
        " *\n";

static void emit_h(void)
{
	printf("%s", generated);
	fputs(" * mm/sizeclasses.h: the span heap's size classes.\n"
	      " *\n"
	      " * A small object (at most SC_MAX_SIZE bytes) is rounded up "
	      "to the size of\n"
	      " * its class and carved out of a span of npages pages that "
	      "holds nelems\n"
	      " * objects at base + i * size; the rest of the span (the "
	      "tail) is unused.\n"
	      " * Class 0 is no class: a larger object gets pages of its "
	      "own.\n"
	      " *\n"
	      " * Properties (tools/gen-sizeclasses.c checks them, and so "
	      "does\n"
	      " * tests/host/sizeclass_test.c):\n"
	      " *   1. Sizes grow strictly from class 1 to SC_NCLASSES - 1, "
	      "whose size is\n"
	      " *      SC_MAX_SIZE; every size is a multiple of 16, so every "
	      "object is\n"
	      " *      16-byte aligned.\n"
	      " *   2. Every power of two from 16 to SC_PAGE_SIZE is a "
	      "class: spans are\n"
	      " *      page aligned, so those objects are aligned to their "
	      "size.\n"
	      " *   3. npages is the fewest pages, no fewer than it takes to "
	      "hold 32 KiB\n"
	      " *      or 512 objects, whose tail is at most 1/8 of the "
	      "span;\n"
	      " *      nelems = npages * SC_PAGE_SIZE / size.\n"
	      " *   4. nelems <= SC_MAX_NELEMS <= 512 (a span's bitmap is "
	      "SC_BITMAP_WORDS\n"
	      " *      words) and npages <= SC_MAX_NPAGES <= 64 (an atomic "
	      "caller may\n"
	      " *      allocate a span: MHEAP_ATOMIC_MAX_PAGES).\n"
	      " *   5. For every offset off in [0, npages * SC_PAGE_SIZE),\n"
	      " *      (off * divmul) >> 32 == off / size: an object's index "
	      "without a\n"
	      " *      division. And size == d << dshift with d odd and d * "
	      "dinv == 1\n"
	      " *      (mod 2^32): (uint32_t)(off * dinv) rotated right by "
	      "dshift is\n"
	      " *      off / size where off is a multiple of size and at "
	      "least\n"
	      " *      SC_MAX_NELEMS elsewhere, so one comparison with an "
	      "object count\n"
	      " *      tells an object's start among the first objects "
	      "(Granlund and\n"
	      " *      Montgomery's divisibility test).\n"
	      " *   6. Sizes above SC_SMALL_MAX are multiples of 128. Above "
	      "256, a class's\n"
	      " *      worst request (one byte over the class below) leaves "
	      "at most 1/8 of\n"
	      " *      its object unused, unless every size in between that "
	      "the steps of\n"
	      " *      step 1 can tell apart would get the class's own span "
	      "(as many\n"
	      " *      objects in as many pages): a class there could not use "
	      "less memory.\n"
	      " *   7. Class k is 16 * k bytes for 16 * k <= SC_LINEAR_MAX: "
	      "the class of a\n"
	      " *      size there is (size + 15) / 16 (1 for size 0), which a "
	      "compiler folds\n"
	      " *      for a constant size.\n"
	      " */\n"
	      "#ifndef MM_SIZECLASSES_H\n"
	      "#define MM_SIZECLASSES_H\n"
	      "\n"
	      "#include <stddef.h>\n"
	      "#include <stdint.h>\n"
	      "\n"
	      "#include \"port.h\"\n"
	      "\n",
	      stdout);
	printf("#define SC_PAGE_SIZE    %u\n", PAGE_SIZE);
	printf("#define SC_NCLASSES     %u /* class 0 is \"large\"; 1..%u are "
	       "classes */\n",
	       nclasses, nclasses - 1);
	printf("#define SC_MAX_SIZE     %u\n", MAX_SIZE);
	printf("#define SC_SMALL_MAX    %u\n", SMALL_MAX);
	printf("#define SC_LINEAR_MAX   %u\n", LINEAR_MAX);
	printf("#define SC_MAX_NELEMS   %u\n", max_nelems());
	printf("#define SC_MAX_NPAGES   %u\n", max_npages());
	fputs("#define SC_BITMAP_WORDS ((SC_MAX_NELEMS + 63) / 64)\n"
	      "\n"
	      "_Static_assert(SC_PAGE_SIZE == MM_PAGE_SIZE,\n"
	      "               \"the classes were computed for this page "
	      "size\");\n"
	      "_Static_assert(SC_MAX_NELEMS <= 512, \"a span's bitmap is at "
	      "most 8 words\");\n"
	      "_Static_assert(SC_MAX_NPAGES <= 64, \"an atomic caller can "
	      "allocate any span\");\n"
	      "_Static_assert(SC_NCLASSES <= 256, \"the lookup table holds "
	      "uint8_t\");\n"
	      "_Static_assert(SC_SMALL_MAX % 16 == 0 && SC_MAX_SIZE % 128 "
	      "== 0,\n"
	      "               \"the steps divide their ranges\");\n"
	      "\n"
	      "struct sizeclass_info {\n"
	      "\tuint32_t size;   /* bytes per object; 0 for class 0 */\n"
	      "\tuint16_t npages; /* pages per span */\n"
	      "\tuint16_t nelems; /* objects per span */\n"
	      "\tuint32_t divmul; /* off / size == (off * divmul) >> 32 */\n"
	      "\tuint32_t dinv;   /* size >> dshift is odd; its inverse */\n"
	      "\tuint8_t dshift;  /* the trailing zero bits of size */\n"
	      "};\n"
	      "\n"
	      "extern const struct sizeclass_info sizeclass_info[SC_NCLASSES];"
	      "\n"
	      "/* Index (size + 15) / 16, for size <= SC_MAX_SIZE: one table "
	      "of 2 KiB, so\n"
	      " * that the lookup takes one comparison (with a second table "
	      "above 1 KiB\n"
	      " * it took three instructions more). */\n"
	      "extern const uint8_t sizeclass_by16[SC_MAX_SIZE / 16 + 1];\n"
	      "\n"
	      "/*\n"
	      " * The class for size: the smallest class whose size is at "
	      "least size, for\n"
	      " * 0 < size <= SC_MAX_SIZE; size 0 gets class 1, and a size "
	      "above\n"
	      " * SC_MAX_SIZE gets 0 (large). Any context.\n"
	      " */\n"
	      "static inline unsigned sizeclass_of(size_t size)\n"
	      "{\n"
	      "\tif (size <= SC_MAX_SIZE)\n"
	      "\t\treturn sizeclass_by16[(size + 15) / 16];\n"
	      "\treturn 0;\n"
	      "}\n"
	      "\n"
	      "#endif\n",
	      stdout);
}

/* Percent with two decimals, as an integer number of hundredths. */
static unsigned hundredths(uint64_t part, uint64_t whole)
{
	return (unsigned)((part * 10000 + whole / 2) / whole);
}

/* The worst request of class i is one byte above the class below. Its
 * rounding: the bytes it does not use, of the object. Its waste: the bytes
 * it does not use, of the span's bytes per object (rounding and tail). */
static unsigned round_waste(unsigned i)
{
	unsigned worst = classes[i - 1].size + 1;
	return hundredths(classes[i].size - worst, classes[i].size);
}

static unsigned max_waste(unsigned i)
{
	const struct sizeclass *c = &classes[i];
	unsigned worst = classes[i - 1].size + 1, span = c->npages * PAGE_SIZE;
	return hundredths(span - worst * c->nelems, span);
}

/* Prints t (len entries; entry i answers the sizes in ((i - 1) * step,
 * i * step], entry 0 size 0) as a C array, PER_LINE entries to a line,
 * each line saying its sizes, aligned as clang-format aligns them. */
#define PER_LINE 8
static void emit_table(const char *decl, const uint8_t *t, unsigned len,
                       unsigned step)
{
	printf("\nconst uint8_t %s = {\n", decl);
	for (unsigned i = 0; i < len; i += PER_LINE) {
		unsigned n = len - i < PER_LINE ? len - i : PER_LINE;
		/* As clang-format aligns it: "N," in 4 columns. */
		printf("        ");
		for (unsigned k = 0; k < PER_LINE; k++) {
			char e[8] = "";
			if (k < n)
				snprintf(e, sizeof(e), "%u,", t[i + k]);
			printf("%-4s", e);
		}
		unsigned lo = i ? (i - 1) * step + 1 : 0;
		printf("/* sizes %u to %u */\n", lo, (i + n - 1) * step);
	}
	printf("};\n");
}

static void emit_c(void)
{
	printf("%s", generated);
	fputs(" * mm/sizeclasses.c: the size class table and the lookup "
	      "table that maps a\n"
	      " * request to its class (see sizeclasses.h).\n"
	      " *\n"
	      " * Purpose: give the span heap, in constant data, each "
	      "class's object size,\n"
	      " * span size and division constants, and a request's class "
	      "in one load.\n"
	      " * Modelled on the Go runtime's sizeclasses.go, computed "
	      "afresh by the\n"
	      " * generator from the rules in its opening comment.\n"
	      " *\n"
	      " * Representation. sizeclass_info[SC_NCLASSES] is indexed by "
	      "class; entry 0\n"
	      " * (no class: a large object) is all zero. sizeclass_by16 has "
	      "one byte per\n"
	      " * 16 bytes of request: entry i is the class of the sizes in "
	      "(16 * (i - 1),\n"
	      " * 16 * i], entry 0 that of size 0. The generator prints both, "
	      "and this table\n"
	      " * of what each class costs.\n"
	      " *\n"
	      " * Algorithm: none at run time. sizeclass_of (sizeclasses.h) "
	      "reads\n"
	      " * sizeclass_by16[(size + 15) / 16] for a size up to "
	      "SC_MAX_SIZE.\n"
	      " *\n"
	      " * Invariants (the generator checks each before it prints, "
	      "and\n"
	      " * tests/host/sizeclass_test.c checks them again):\n"
	      " *   1. The classes have sizeclasses.h's properties 1 to 7.\n"
	      " *   2. sizeclass_by16[i] is the smallest class whose size is "
	      "at least\n"
	      " *      16 * i (class 1 for i = 0), so no entry is 0.\n"
	      " *\n"
	      " * Locking: none; both tables are const, read from any "
	      "context.\n"
	      " * Limits: classes up to SC_MAX_SIZE bytes and SC_MAX_NPAGES "
	      "pages; a larger\n"
	      " * request is class 0, pages of its own.\n"
	      " *\n"
	      " * tail: the bytes of the span after the last object. "
	      "round: what the worst\n"
	      " * request (one byte above the class below) leaves unused of "
	      "its object.\n"
	      " * waste: what it leaves unused of the span's bytes per "
	      "object (round and\n"
	      " * tail together).\n"
	      " *\n"
	      " * class   size  npages  nelems    tail   round   waste\n",
	      stdout);
	for (unsigned i = 1; i < nclasses; i++) {
		const struct sizeclass *c = &classes[i];
		unsigned t = hundredths(tail_bytes(c->size, c->npages),
		                        c->npages * PAGE_SIZE);
		unsigned r = round_waste(i), w = max_waste(i);
		printf(" * %5u  %5u  %6u  %6u  %2u.%02u%%  %2u.%02u%%  "
		       "%2u.%02u%%\n",
		       i, c->size, c->npages, c->nelems, t / 100, t % 100,
		       r / 100, r % 100, w / 100, w % 100);
	}
	printf(" */\n"
	       "#include \"sizeclasses.h\"\n"
	       "\n"
	       "const struct sizeclass_info sizeclass_info[SC_NCLASSES] = {\n"
	       "        [0] = {0, 0, 0, 0, 0, 0},\n");
	for (unsigned i = 1; i < nclasses; i++)
		printf("        [%u] = {%u, %u, %u, 0x%08x, 0x%08x, %u},\n", i,
		       classes[i].size, classes[i].npages, classes[i].nelems,
		       classes[i].divmul, classes[i].dinv, classes[i].dshift);
	printf("};\n");
	emit_table("sizeclass_by16[SC_MAX_SIZE / 16 + 1]", by16, BY16_LEN, 16);
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

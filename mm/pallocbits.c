/*
 * mm/pallocbits.c: searches and summaries over one chunk's 512-bit bitmap.
 *
 * Purpose: answer "where are n clear bits in a row, lowest first" and "what
 * is this chunk's (start, max, end)" in a few word operations, since palloc
 * asks one of them on every allocation and the other on every change.
 *
 * Representation: struct pallocbits, 8 words, bit i of the chunk at bit
 * i % 64 of word i / 64 (pallocbits.h). Set means allocated.
 *
 * Algorithm:
 *   find, n == 1    the first word that is not all ones; count its trailing
 *                   ones.
 *   find, n <= 64   per word: a run may start in the free top of the previous
 *                   word and end in this word's free bottom (trailing zeros);
 *                   else it lies inside the word, found by pallocbits_run64,
 *                   which shrinks every run of ones by a doubling shift.
 *   find, n > 64    a run spans whole free words: carry its start and length
 *                   across words, reset by any word that is not all free.
 *   summarize       start from trailing zero words, end from leading ones;
 *                   max over runs that cross word boundaries (the previous
 *                   word's leading zeros plus this word's trailing zeros) and
 *                   runs inside one word (pallocbits_longest64, asked only if
 *                   the word could beat the best run so far).
 *   resummarize     after a contiguous change, find the free run around it
 *                   (the old start and end runs often say where it is) and
 *                   adjust the old summary; only an allocation that may have
 *                   cut the longest run needs a full summarize.
 *
 * Invariants: every index returned is < 512 or PALLOCBITS_NONE; a search
 * never reports bits below its from argument.
 *
 * Locking: none; the caller owns the bitmap (palloc holds its owner's lock).
 * Limits: one chunk; runs across chunks are palloc's business (summaries).
 * Modelled on the Go runtime's pallocBits (mpallocbits.go).
 */
#include "pallocbits.h"

unsigned pallocbits_longest64(uint64_t x)
{
	if (x == 0)
		return 0;
	if (x == ~0ull)
		return 64;
	/* Double len while a run of 2 * len exists, keeping "bit i set iff
	 * bits [i, i + len) are"; then add the halves back one by one. */
	unsigned len = 1;
	while (len < 64) {
		uint64_t t = x & (x >> len);
		if (t == 0)
			break;
		x = t;
		len *= 2;
	}
	for (unsigned step = len / 2; step; step /= 2) {
		uint64_t t = x & (x >> step);
		if (t) {
			x = t;
			len += step;
		}
	}
	return len;
}

/* The number of bits of [i, i + n) that lie in i's word. */
static inline unsigned piece(unsigned i, unsigned n)
{
	unsigned room = 64 - i % 64;
	return n < room ? n : room;
}

void pallocbits_set(struct pallocbits *b, unsigned i, unsigned n)
{
	for (unsigned k; n; i += k, n -= k) {
		k = piece(i, n);
		b->w[i / 64] |= pallocbits_mask(i % 64, k);
	}
}

void pallocbits_clear(struct pallocbits *b, unsigned i, unsigned n)
{
	for (unsigned k; n; i += k, n -= k) {
		k = piece(i, n);
		b->w[i / 64] &= ~pallocbits_mask(i % 64, k);
	}
}

unsigned pallocbits_count(const struct pallocbits *b, unsigned i, unsigned n)
{
	unsigned total = 0;
	for (unsigned k; n; i += k, n -= k) {
		k = piece(i, n);
		total += pallocbits_popcount(b->w[i / 64] &
		                             pallocbits_mask(i % 64, k));
	}
	return total;
}

/* The first bit of [i, i + n) whose value, XORed with flip, is set. */
static unsigned first_in(const struct pallocbits *b, unsigned i, unsigned n,
                         uint64_t flip)
{
	for (unsigned k; n; i += k, n -= k) {
		k = piece(i, n);
		uint64_t x = (b->w[i / 64] ^ flip) & pallocbits_mask(i % 64, k);
		if (x)
			return i / 64 * 64 + pallocbits_ctz(x);
	}
	return PALLOCBITS_NONE;
}

unsigned pallocbits_first_clear(const struct pallocbits *b, unsigned i,
                                unsigned n)
{
	return first_in(b, i, n, ~0ull);
}

unsigned pallocbits_first_set(const struct pallocbits *b, unsigned i,
                              unsigned n)
{
	return first_in(b, i, n, 0);
}

unsigned pallocbits_last_set_below(const struct pallocbits *b, unsigned i)
{
	uint64_t x = b->w[i / 64] & ((1ull << (i % 64)) - 1);
	for (unsigned w = i / 64;; x = b->w[--w]) {
		if (x)
			return w * 64 + 63 - pallocbits_clz(x);
		if (w == 0)
			return PALLOCBITS_NONE;
	}
}

unsigned pallocbits_last_set(const struct pallocbits *b, unsigned i, unsigned n)
{
	unsigned end = i + n - 1; /* below 512, as last_set_below wants */
	if (n == 0)
		return PALLOCBITS_NONE;
	if (b->w[end / 64] >> (end % 64) & 1)
		return end;
	unsigned j = pallocbits_last_set_below(b, end);
	return j != PALLOCBITS_NONE && j >= i ? j : PALLOCBITS_NONE;
}

/* Word w of b, with the bits below from counted as allocated. */
static inline uint64_t word_from(const struct pallocbits *b, unsigned w,
                                 unsigned from)
{
	uint64_t x = b->w[w];
	if (w == from / 64)
		x |= (1ull << (from % 64)) - 1;
	return x;
}

static unsigned find1(const struct pallocbits *b, unsigned from)
{
	for (unsigned w = from / 64; w < PALLOCBITS_WORDS; w++) {
		uint64_t x = word_from(b, w, from);
		if (~x)
			return w * 64 + pallocbits_ctz(~x);
	}
	return PALLOCBITS_NONE;
}

static unsigned find_small(const struct pallocbits *b, unsigned npages,
                           unsigned from, unsigned *first_free)
{
	unsigned run = 0; /* free bits at the top of the previous word */
	for (unsigned w = from / 64; w < PALLOCBITS_WORDS; w++) {
		uint64_t x = word_from(b, w, from);
		if (x == ~0ull) {
			run = 0;
			continue;
		}
		if (*first_free == PALLOCBITS_NONE)
			*first_free = w * 64 + pallocbits_ctz(~x);
		unsigned lead = x ? pallocbits_ctz(x) : 64;
		if (run + lead >= npages)
			return w * 64 - run;
		unsigned j = pallocbits_run64(~x, npages);
		if (j < 64)
			return w * 64 + j;
		run = pallocbits_clz(x); /* x != 0: lead < npages <= 64 */
	}
	return PALLOCBITS_NONE;
}

static unsigned find_large(const struct pallocbits *b, unsigned npages,
                           unsigned from, unsigned *first_free)
{
	unsigned run = 0, run_start = 0;
	for (unsigned w = from / 64; w < PALLOCBITS_WORDS; w++) {
		uint64_t x = word_from(b, w, from);
		if (x == 0) {
			if (*first_free == PALLOCBITS_NONE)
				*first_free = w * 64;
			if (run == 0)
				run_start = w * 64;
			run += 64;
			if (run >= npages)
				return run_start;
			continue;
		}
		if (*first_free == PALLOCBITS_NONE && x != ~0ull)
			*first_free = w * 64 + pallocbits_ctz(~x);
		/* lead < 64 < npages: a fit here must continue a run. */
		if (run + pallocbits_ctz(x) >= npages)
			return run_start;
		run = pallocbits_clz(x);
		run_start = w * 64 + 64 - run;
	}
	return PALLOCBITS_NONE;
}

unsigned pallocbits_find(const struct pallocbits *b, unsigned npages,
                         unsigned from, unsigned *first_free)
{
	unsigned ff = PALLOCBITS_NONE, i;
	if (from >= PALLOC_CHUNK_PAGES) {
		i = PALLOCBITS_NONE;
	} else if (npages == 1) {
		i = ff = find1(b, from);
	} else if (npages <= 64) {
		i = find_small(b, npages, from, &ff);
	} else {
		i = find_large(b, npages, from, &ff);
	}
	if (first_free)
		*first_free = ff;
	return i;
}

palloc_sum_t pallocbits_summarize(const struct pallocbits *b)
{
	unsigned start = 0, end = 0, i;
	for (i = 0; i < PALLOCBITS_WORDS && b->w[i] == 0; i++)
		start += 64;
	if (i == PALLOCBITS_WORDS)
		return palloc_sum_free(PALLOC_CHUNK_PAGES_LOG);
	start += pallocbits_ctz(b->w[i]);
	for (i = PALLOCBITS_WORDS; b->w[i - 1] == 0; i--)
		end += 64;
	end += pallocbits_clz(b->w[i - 1]);

	unsigned max = start > end ? start : end, run = 0;
	for (i = 0; i < PALLOCBITS_WORDS; i++) {
		uint64_t x = b->w[i];
		if (x == 0) {
			run += 64;
			continue;
		}
		unsigned lead = pallocbits_ctz(x), top = pallocbits_clz(x);
		if (run + lead > max)
			max = run + lead;
		/* Between the lowest and highest set bit lie at most
		 * 62 - lead - top clear bits; measure them only if a run
		 * longer than max is there (rare in a fragmented word). */
		if (lead + top + 2 < 64 && max < 62 - lead - top &&
		    pallocbits_run64(~x, max + 1) < 64)
			max = pallocbits_longest64(~x);
		run = top;
	}
	if (run > max)
		max = run;
	return palloc_sum_pack(start, max, end);
}

/* The lowest set bit at or above i (i < 512), or 512. */
static unsigned next_set(const struct pallocbits *b, unsigned i)
{
	uint64_t x = b->w[i / 64] & (~0ull << (i % 64));
	for (unsigned w = i / 64;; x = b->w[++w]) {
		if (x)
			return w * 64 + pallocbits_ctz(x);
		if (w == PALLOCBITS_WORDS - 1)
			return PALLOC_CHUNK_PAGES;
	}
}

palloc_sum_t pallocbits_resummarize(const struct pallocbits *b,
                                    palloc_sum_t old, unsigned i, unsigned n,
                                    bool alloc)
{
	const unsigned all = PALLOC_CHUNK_PAGES;
	uint64_t start = palloc_sum_start(old), max = palloc_sum_max(old);
	uint64_t end = palloc_sum_end(old);
	/* [l, r): the free run the range was cut from or now joins. The
	 * old start and end runs often say where it lies without a scan. */
	unsigned l, r;
	if (alloc && i < start)
		l = 0, r = (unsigned)start;
	else if (alloc && i + n > all - end)
		l = all - (unsigned)end, r = all;
	else {
		unsigned below = i == start ? PALLOCBITS_NONE
		                            : pallocbits_last_set_below(b, i);
		l = below == PALLOCBITS_NONE ? 0 : below + 1;
		r = i + n == all - end || i + n == all ? all
		                                       : next_set(b, i + n);
	}
	if (alloc) {
		if (l == 0 && r == all) /* the only run: two pieces now */
			return palloc_sum_pack(
			        i, i > all - i - n ? i : all - i - n,
			        all - i - n);
		if (r - l >= max)
			return pallocbits_summarize(b); /* maybe the longest */
		if (l == 0)
			start = i;
		if (r == all)
			end = all - i - n;
	} else {
		if (r - l > max)
			max = r - l;
		if (l == 0)
			start = r;
		if (r == all)
			end = all - l;
	}
	return palloc_sum_pack(start, max, end);
}

/*
 * Bit-level searches over one chunk (pallocbits) and packed summaries
 * (palloc_sum): fixed edge cases, then randomized comparisons against
 * naive per-bit versions written here (and of resummarize against a
 * full summarize).
 */
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/pallocbits.h"
#include "../../mm/palloc_sum.h"

static bool naive_bit(const struct pallocbits *b, unsigned i)
{
	return (b->w[i / 64] >> (i % 64)) & 1;
}

static unsigned naive_find(const struct pallocbits *b, unsigned n,
                           unsigned from)
{
	for (unsigned i = from; i + n <= PALLOC_CHUNK_PAGES; i++) {
		unsigned k = 0;
		while (k < n && !naive_bit(b, i + k))
			k++;
		if (k == n)
			return i;
	}
	return PALLOCBITS_NONE;
}

static palloc_sum_t naive_summary(const struct pallocbits *b, unsigned npages)
{
	unsigned start = 0, end = 0, max = 0, run = 0;
	while (start < npages && !naive_bit(b, start))
		start++;
	while (end < npages && !naive_bit(b, npages - 1 - end))
		end++;
	for (unsigned i = 0; i < npages; i++) {
		run = naive_bit(b, i) ? 0 : run + 1;
		if (run > max)
			max = run;
	}
	return palloc_sum_pack(start, max, end);
}

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Random bitmaps with runs of every length: each word is all free, all
 * allocated, or random with a bias. */
static void random_bits(struct pallocbits *b, uint64_t *s)
{
	for (unsigned w = 0; w < PALLOCBITS_WORDS; w++) {
		uint64_t r = rng(s);
		switch (r % 5) {
		case 0:
			b->w[w] = 0;
			break;
		case 1:
			b->w[w] = ~0ull;
			break;
		case 2:
			b->w[w] = rng(s) & rng(s) & rng(s);
			break;
		case 3:
			b->w[w] = rng(s) | rng(s) | rng(s);
			break;
		default:
			b->w[w] = rng(s);
		}
	}
}

static struct pallocbits bits_of(unsigned start, unsigned n)
{
	struct pallocbits b = {{0}};
	pallocbits_set(&b, start, n);
	return b;
}

KTEST(pallocbits, run64_edges)
{
	KEXPECT_EQ(pallocbits_run64(0, 1), 64);
	KEXPECT_EQ(pallocbits_run64(~0ull, 64), 0);
	KEXPECT_EQ(pallocbits_run64(~0ull >> 1, 64), 64);
	KEXPECT_EQ(pallocbits_run64(~0ull >> 1, 63), 0);
	KEXPECT_EQ(pallocbits_run64(1ull << 63, 1), 63);
	KEXPECT_EQ(pallocbits_run64(1ull << 63, 2), 64); /* no wrap-around */
	KEXPECT_EQ(pallocbits_run64(0xf0f0ull, 4), 4);
	KEXPECT_EQ(pallocbits_run64(0xf0f0ull, 5), 64);
	KEXPECT_EQ(pallocbits_run64(0x7ull << 61 | 0x3, 3), 61);
	KEXPECT_EQ(pallocbits_run64(0x00ff00000000000full, 8), 48);
}

KTEST(pallocbits, run64_and_longest64_random)
{
	uint64_t s = 0x1234567;
	for (int t = 0; t < 20000; t++) {
		struct pallocbits b = {{0}};
		random_bits(&b, &s);
		uint64_t x = b.w[t % 8];
		unsigned longest = 0, run = 0;
		for (unsigned i = 0; i < 64; i++) {
			run = (x >> i) & 1 ? run + 1 : 0;
			longest = run > longest ? run : longest;
		}
		KASSERT_EQ(pallocbits_longest64(x), longest);
		unsigned n = 1 + rng(&s) % 64, want = 64;
		for (unsigned i = 0; i + n <= 64 && want == 64; i++)
			if (((x >> i) & pallocbits_mask(0, n)) ==
			    pallocbits_mask(0, n))
				want = i;
		KASSERT_EQ(pallocbits_run64(x, n), want);
	}
}

KTEST(pallocbits, range_ops)
{
	struct pallocbits b = {{0}};
	pallocbits_set(&b, 60, 10); /* across a word boundary */
	KEXPECT_EQ(b.w[0], 0xfull << 60);
	KEXPECT_EQ(b.w[1], 0x3full);
	KEXPECT_EQ(pallocbits_count(&b, 0, 512), 10);
	KEXPECT_EQ(pallocbits_count(&b, 62, 100), 8);
	KEXPECT_EQ(pallocbits_first_set(&b, 0, 512), 60);
	KEXPECT_EQ(pallocbits_first_set(&b, 70, 442), PALLOCBITS_NONE);
	KEXPECT_EQ(pallocbits_first_clear(&b, 60, 20), 70);
	KEXPECT_EQ(pallocbits_first_clear(&b, 60, 10), PALLOCBITS_NONE);
	pallocbits_clear(&b, 63, 2);
	KEXPECT_EQ(pallocbits_count(&b, 0, 512), 8);
	KEXPECT_EQ(pallocbits_first_clear(&b, 60, 10), 63);
	pallocbits_set(&b, 0, 512);
	KEXPECT_EQ(pallocbits_count(&b, 0, 512), 512);
	KEXPECT_EQ(pallocbits_first_clear(&b, 0, 512), PALLOCBITS_NONE);
	pallocbits_clear(&b, 511, 1);
	KEXPECT_EQ(pallocbits_first_clear(&b, 0, 512), 511);
	KEXPECT_EQ(b.w[7], ~0ull >> 1);
}

KTEST(pallocbits, find_edges)
{
	struct pallocbits empty = {{0}}, full, b;
	unsigned ff;
	for (unsigned w = 0; w < PALLOCBITS_WORDS; w++)
		full.w[w] = ~0ull;
	KEXPECT_EQ(pallocbits_find(&empty, 512, 0, &ff), 0);
	KEXPECT_EQ(ff, 0);
	KEXPECT_EQ(pallocbits_find(&empty, 1, 511, &ff), 511);
	KEXPECT_EQ(pallocbits_find(&empty, 2, 511, &ff), PALLOCBITS_NONE);
	KEXPECT_EQ(ff, 511);
	KEXPECT_EQ(pallocbits_find(&empty, 1, 512, &ff), PALLOCBITS_NONE);
	KEXPECT_EQ(pallocbits_find(&full, 1, 0, &ff), PALLOCBITS_NONE);
	KEXPECT_EQ(ff, PALLOCBITS_NONE);
	KEXPECT_EQ(pallocbits_find(&full, 100, 0, &ff), PALLOCBITS_NONE);

	/* A run of 10 across the first word boundary, [60, 70). */
	b = full;
	pallocbits_clear(&b, 60, 10);
	KEXPECT_EQ(pallocbits_find(&b, 10, 0, &ff), 60);
	KEXPECT_EQ(ff, 60);
	KEXPECT_EQ(pallocbits_find(&b, 11, 0, &ff), PALLOCBITS_NONE);
	KEXPECT_EQ(pallocbits_find(&b, 5, 62, &ff), 62); /* from inside */
	KEXPECT_EQ(pallocbits_find(&b, 9, 62, &ff), PALLOCBITS_NONE);

	/* A run of 130 spanning three words, [100, 230), at the top. */
	b = full;
	pallocbits_clear(&b, 100, 130);
	pallocbits_clear(&b, 400, 112); /* and [400, 512) at the chunk's end */
	KEXPECT_EQ(pallocbits_find(&b, 130, 0, &ff), 100);
	KEXPECT_EQ(pallocbits_find(&b, 131, 0, &ff), PALLOCBITS_NONE);
	KEXPECT_EQ(pallocbits_find(&b, 112, 0, &ff), 100);
	KEXPECT_EQ(pallocbits_find(&b, 112, 101, &ff), 101);
	KEXPECT_EQ(pallocbits_find(&b, 112, 119, &ff), 400);
	KEXPECT_EQ(ff, 119);
	KEXPECT_EQ(pallocbits_find(&b, 64, 448, &ff), 448);

	/* A small run that only fits across words, later than a too-small
	 * hole inside a word. */
	b = full;
	pallocbits_clear(&b, 10, 3);
	pallocbits_clear(&b, 190, 4);
	KEXPECT_EQ(pallocbits_find(&b, 4, 0, &ff), 190);
	KEXPECT_EQ(ff, 10);
	KEXPECT_EQ(pallocbits_find(&b, 3, 0, &ff), 10);
}

KTEST(pallocbits, find_random_against_naive)
{
	uint64_t s = 0xfeedface;
	for (int t = 0; t < 4000; t++) {
		struct pallocbits b;
		random_bits(&b, &s);
		unsigned r = (unsigned)rng(&s);
		unsigned n = r % 4 == 0   ? 1 + rng(&s) % 512
		             : r % 4 == 1 ? 1 + rng(&s) % 64
		                          : 1 + rng(&s) % 8;
		unsigned from = rng(&s) % 3 ? 0 : rng(&s) % 512, ff;
		unsigned got = pallocbits_find(&b, n, from, &ff);
		if (got != naive_find(&b, n, from)) {
			ktest_diag("n %u from %u: got %u want %u", n, from, got,
			           naive_find(&b, n, from));
			KASSERT(false);
		}
		KASSERT_EQ(ff, naive_find(&b, 1, from));
	}
}

KTEST(pallocbits, summarize)
{
	struct pallocbits b = {{0}};
	KEXPECT_EQ(pallocbits_summarize(&b), palloc_sum_pack(512, 512, 512));
	pallocbits_set(&b, 0, 512);
	KEXPECT_EQ(pallocbits_summarize(&b), 0);
	b = bits_of(0, 1);
	KEXPECT_EQ(pallocbits_summarize(&b), palloc_sum_pack(0, 511, 511));
	b = bits_of(511, 1);
	KEXPECT_EQ(pallocbits_summarize(&b), palloc_sum_pack(511, 511, 0));
	b = bits_of(64, 384); /* free 64 at each end */
	KEXPECT_EQ(pallocbits_summarize(&b), palloc_sum_pack(64, 64, 64));
	b = bits_of(3, 500);
	pallocbits_clear(&b, 100, 70); /* an inner run crossing two words */
	KEXPECT_EQ(pallocbits_summarize(&b), palloc_sum_pack(3, 70, 9));
	/* A word allocated only at its two ends holds the longest inner run
	 * a word can (62), one more than the end run: the bound that lets
	 * summarize skip a word must not skip it. Random words rarely have
	 * exactly two set bits. */
	b = bits_of(0, 512);
	b.w[0] = 1ull | 1ull << 63;
	b.w[7] = 7; /* end run 61 */
	KEXPECT_EQ(pallocbits_summarize(&b), palloc_sum_pack(0, 62, 61));
	uint64_t s = 99;
	for (int t = 0; t < 5000; t++) {
		random_bits(&b, &s);
		KASSERT_EQ(pallocbits_summarize(&b), naive_summary(&b, 512));
	}
}

/* The run of pages around page i whose bits all equal i's: [*lo, *hi). */
static void run_around(const struct pallocbits *b, unsigned i, unsigned *lo,
                       unsigned *hi)
{
	bool v = naive_bit(b, i);
	for (*lo = i; *lo > 0 && naive_bit(b, *lo - 1) == v; --*lo)
		;
	for (*hi = i + 1; *hi < 512 && naive_bit(b, *hi) == v; ++*hi)
		;
}

/* resummarize takes its shortcuts from the old start and end runs and the
 * run around the change: cut or join a whole run, either end of one, or
 * its inside, on random bitmaps and on wholly free or allocated ones. */
KTEST(pallocbits, resummarize_random_against_summarize)
{
	uint64_t s = 0x5eed;
	for (int t = 0; t < 40000; t++) {
		struct pallocbits b;
		bool alloc = rng(&s) & 1;
		random_bits(&b, &s);
		/* Every 8th chunk wholly free (allocated), every 16th with
		 * the page at one end flipped: start or end 511. */
		if (t % 8 == 0)
			for (unsigned w = 0; w < PALLOCBITS_WORDS; w++)
				b.w[w] = alloc ? 0 : ~0ull;
		if (t % 16 == 0)
			b.w[t % 32 ? 7 : 0] ^= t % 32 ? 1ull << 63 : 1;
		unsigned i = rng(&s) % 512, lo, hi;
		if (naive_bit(&b, i) == alloc)
			continue; /* no free (allocated) page to change */
		run_around(&b, i, &lo, &hi);
		unsigned mode = rng(&s) % 4;
		unsigned a = mode < 2 ? lo : lo + rng(&s) % (hi - lo);
		unsigned z = mode % 2 == 0 ? hi : a + 1 + rng(&s) % (hi - a);
		palloc_sum_t old = pallocbits_summarize(&b);
		if (alloc)
			pallocbits_set(&b, a, z - a);
		else
			pallocbits_clear(&b, a, z - a);
		palloc_sum_t got =
		        pallocbits_resummarize(&b, old, a, z - a, alloc);
		palloc_sum_t want = pallocbits_summarize(&b);
		if (got != want) {
			ktest_diag("%s [%u, %u) of run [%u, %u): got (%lu %lu "
			           "%lu) want (%lu %lu %lu)",
			           alloc ? "alloc" : "free", a, z, lo, hi,
			           (unsigned long)palloc_sum_start(got),
			           (unsigned long)palloc_sum_max(got),
			           (unsigned long)palloc_sum_end(got),
			           (unsigned long)palloc_sum_start(want),
			           (unsigned long)palloc_sum_max(want),
			           (unsigned long)palloc_sum_end(want));
			KASSERT(false);
		}
	}
}

/* Set and clear over bits already so, and the single-bit searches, at
 * random offsets and lengths against the naive versions. */
KTEST(pallocbits, range_ops_random_against_naive)
{
	uint64_t s = 0xb175;
	for (int t = 0; t < 4000; t++) {
		struct pallocbits b, was;
		random_bits(&b, &s);
		unsigned i = rng(&s) % 512, n = 1 + rng(&s) % (512 - i);
		unsigned count = 0, fset = PALLOCBITS_NONE;
		unsigned fclear = PALLOCBITS_NONE, below = PALLOCBITS_NONE;
		unsigned lset = PALLOCBITS_NONE;
		for (unsigned k = i + n; k-- > i;) {
			count += naive_bit(&b, k);
			if (lset == PALLOCBITS_NONE && naive_bit(&b, k))
				lset = k;
			fset = naive_bit(&b, k) ? k : fset;
			fclear = naive_bit(&b, k) ? fclear : k;
		}
		for (unsigned k = 0; k < i; k++)
			below = naive_bit(&b, k) ? k : below;
		KASSERT_EQ(pallocbits_count(&b, i, n), count);
		KASSERT_EQ(pallocbits_first_set(&b, i, n), fset);
		KASSERT_EQ(pallocbits_first_clear(&b, i, n), fclear);
		KASSERT_EQ(pallocbits_last_set_below(&b, i), below);
		KASSERT_EQ(pallocbits_last_set(&b, i, n), lset);
		was = b;
		if (t % 2)
			pallocbits_set(&b, i, n);
		else
			pallocbits_clear(&b, i, n);
		for (unsigned k = 0; k < 512; k++)
			KASSERT_EQ(naive_bit(&b, k),
			           k >= i && k < i + n ? t % 2 == 1
			                               : naive_bit(&was, k));
	}
}

KTEST(palloc_sum, packing)
{
	KEXPECT_EQ(palloc_sum_pack(0, 0, 0), 0);
	palloc_sum_t s = palloc_sum_pack(3, 2000000, 1234567);
	KEXPECT_EQ(palloc_sum_start(s), 3);
	KEXPECT_EQ(palloc_sum_max(s), 2000000);
	KEXPECT_EQ(palloc_sum_end(s), 1234567);
	s = palloc_sum_pack(PALLOC_SUM_MAX - 1, PALLOC_SUM_MAX - 1,
	                    PALLOC_SUM_MAX - 1);
	KEXPECT_EQ(palloc_sum_start(s), PALLOC_SUM_MAX - 1);
	KEXPECT_EQ(palloc_sum_end(s), PALLOC_SUM_MAX - 1);
	KEXPECT_EQ(s & PALLOC_SUM_ALL_FREE, 0);
	s = palloc_sum_pack(PALLOC_SUM_MAX, PALLOC_SUM_MAX, PALLOC_SUM_MAX);
	KEXPECT_EQ(s, PALLOC_SUM_ALL_FREE);
	KEXPECT_EQ(palloc_sum_start(s), PALLOC_SUM_MAX);
	KEXPECT_EQ(palloc_sum_max(s), PALLOC_SUM_MAX);
	KEXPECT_EQ(palloc_sum_end(s), PALLOC_SUM_MAX);
	KEXPECT_EQ(palloc_sum_free(21), PALLOC_SUM_ALL_FREE);
	KEXPECT_EQ(palloc_sum_free(9), palloc_sum_pack(512, 512, 512));
}

KTEST(palloc_sum, merge_edges)
{
	palloc_sum_t f18 = palloc_sum_free(18), z = 0, s[8];
	/* Eight wholly free 2^18-page regions: the all-free 2^21 value. */
	for (int i = 0; i < 8; i++)
		s[i] = f18;
	KEXPECT_EQ(palloc_sum_merge(s, 8, 18), PALLOC_SUM_ALL_FREE);
	/* All allocated. */
	for (int i = 0; i < 8; i++)
		s[i] = z;
	KEXPECT_EQ(palloc_sum_merge(s, 8, 9), 0);
	/* A run across three children: end 10 + full 512 + start 20. */
	s[2] = palloc_sum_pack(0, 30, 10);
	s[3] = palloc_sum_free(9);
	s[4] = palloc_sum_pack(20, 20, 0);
	KEXPECT_EQ(palloc_sum_merge(s, 8, 9), palloc_sum_pack(0, 542, 0));
	/* start grows across full children and stops at the first that is
	 * not; end likewise from the top. */
	for (int i = 0; i < 8; i++)
		s[i] = palloc_sum_free(9);
	s[2] = palloc_sum_pack(7, 100, 5);
	s[6] = palloc_sum_pack(3, 3, 40);
	KEXPECT_EQ(palloc_sum_merge(s, 8, 9),
	           palloc_sum_pack(1031, 5 + 3 * 512 + 3, 40 + 512));
	/* A larger max inside one child wins over the seams. */
	s[4] = palloc_sum_pack(0, 511, 0);
	KEXPECT_EQ(palloc_sum_max(palloc_sum_merge(s, 8, 9)), 1024 + 7);
}

KTEST(palloc_sum, merge_random_against_naive)
{
	uint64_t s = 4242;
	static struct {
		struct pallocbits c[8];
	} big;
	for (int t = 0; t < 300; t++) {
		palloc_sum_t sums[8];
		for (int i = 0; i < 8; i++) {
			random_bits(&big.c[i], &s);
			if (rng(&s) % 3 == 0)
				big.c[i] = (struct pallocbits){{0}};
			sums[i] = pallocbits_summarize(&big.c[i]);
		}
		/* The eight chunks as one 4096-page bitmap. */
		unsigned start = 0, end = 0, max = 0, run = 0, n = 4096;
		const uint64_t *w = big.c[0].w;
#define BIT(i) ((w[(i) / 64] >> ((i) % 64)) & 1)
		while (start < n && !BIT(start))
			start++;
		while (end < n && !BIT(n - 1 - end))
			end++;
		for (unsigned i = 0; i < n; i++) {
			run = BIT(i) ? 0 : run + 1;
			max = run > max ? run : max;
		}
#undef BIT
		KASSERT_EQ(palloc_sum_merge(sums, 8, 9),
		           palloc_sum_pack(start, max, end));
	}
}

/*
 * mm/pallocbits.h: one chunk's 512-bit bitmap and the searches over it.
 *
 * Bit i of a chunk's bitmap stands for page i of the chunk; it lives in word
 * i / 64 at bit i % 64. In the allocation bitmap a set bit is an allocated
 * page; in the scavenged bitmap a set bit is a free page whose memory was
 * given back to the system. Searches look for clear bits of the allocation
 * bitmap, lowest index first. Modelled on the Go runtime's pallocBits
 * (mpallocbits.go). No state, no locks: callers own the bitmaps.
 */
#ifndef MM_PALLOCBITS_H
#define MM_PALLOCBITS_H

#include <stdbool.h>
#include <stdint.h>

#include "palloc_sum.h"

#define PALLOC_CHUNK_PAGES_LOG 9
#define PALLOC_CHUNK_PAGES     (1u << PALLOC_CHUNK_PAGES_LOG)
#define PALLOCBITS_WORDS       (PALLOC_CHUNK_PAGES / 64)
#define PALLOCBITS_NONE        (~0u) /* "no such index" */

_Static_assert(PALLOCBITS_WORDS * 64 == PALLOC_CHUNK_PAGES,
               "a chunk's bitmap is a whole number of words");
_Static_assert(PALLOC_CHUNK_PAGES < PALLOC_SUM_MAX,
               "a summary can count a chunk's pages");

struct pallocbits {
	uint64_t w[PALLOCBITS_WORDS];
};

static inline unsigned pallocbits_ctz(uint64_t x) /* x != 0 */
{
	return (unsigned)__builtin_ctzll(x);
}

static inline unsigned pallocbits_clz(uint64_t x) /* x != 0 */
{
	return (unsigned)__builtin_clzll(x);
}

/* Bits set in x, without the compiler's libgcc call (the kernel has none).
 */
static inline unsigned pallocbits_popcount(uint64_t x)
{
	x = x - ((x >> 1) & 0x5555555555555555ull);
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

/* n bits set from bit off up; off + n <= 64, n >= 1. */
static inline uint64_t pallocbits_mask(unsigned off, unsigned n)
{
	return (n >= 64 ? ~0ull : ((1ull << n) - 1)) << off;
}

/*
 * The lowest i such that bits [i, i + n) of x are all set, or 64 if there
 * is none; 1 <= n <= 64. Runs end at bit 63: nothing wraps around.
 */
static inline unsigned pallocbits_run64(uint64_t x, unsigned n)
{
	/* Keep "bit i set iff bits [i, i + have) of the input are": each
	 * step ANDs in a copy shifted by at most have, which can only
	 * lengthen the window, so have doubles until it reaches n. */
	unsigned have = 1;
	while (have < n && x) {
		unsigned step = n - have < have ? n - have : have;
		x &= x >> step;
		have += step;
	}
	return x ? pallocbits_ctz(x) : 64;
}

/* The length of the longest run of set bits in x. */
unsigned pallocbits_longest64(uint64_t x);

/* Sets, clears or counts the bits [i, i + n) (i + n <= 512). */
void pallocbits_set(struct pallocbits *b, unsigned i, unsigned n);
void pallocbits_clear(struct pallocbits *b, unsigned i, unsigned n);
unsigned pallocbits_count(const struct pallocbits *b, unsigned i, unsigned n);

/* The first clear (or set) bit in [i, i + n), or PALLOCBITS_NONE. */
unsigned pallocbits_first_clear(const struct pallocbits *b, unsigned i,
                                unsigned n);
unsigned pallocbits_first_set(const struct pallocbits *b, unsigned i,
                              unsigned n);

/* The highest set bit below i (i < 512), or PALLOCBITS_NONE; and the
 * highest in [i, i + n) (i + n <= 512), or PALLOCBITS_NONE. */
unsigned pallocbits_last_set_below(const struct pallocbits *b, unsigned i);
unsigned pallocbits_last_set(const struct pallocbits *b, unsigned i,
                             unsigned n);

/*
 * Address-ordered first fit inside one chunk: returns the lowest index i >=
 * from such that the bits [i, i + npages) are all clear, or PALLOCBITS_NONE
 * (1 <= npages <= 512). If first_free is not NULL it receives the first
 * clear bit at or after from (PALLOCBITS_NONE if there is none), which
 * callers use as a search hint. Bits below from count as set.
 */
unsigned pallocbits_find(const struct pallocbits *b, unsigned npages,
                         unsigned from, unsigned *first_free);

/* The summary (start, max, end) of the clear bits of b. */
palloc_sum_t pallocbits_summarize(const struct pallocbits *b);

/*
 * b's summary after the bits [i, i + n) were all set (alloc) or all cleared
 * (!alloc), given old, its summary before: worked out from the run around
 * the range instead of the whole bitmap, unless an allocation may have cut
 * the longest run.
 */
palloc_sum_t pallocbits_resummarize(const struct pallocbits *b,
                                    palloc_sum_t old, unsigned i, unsigned n,
                                    bool alloc);

#endif

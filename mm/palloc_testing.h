/*
 * mm/palloc_testing.h: test hooks into palloc, built only for tests
 * (mm/palloc_testing.c is in MM_HOST_SRCS, never in MM_SRCS).
 *
 * Tests are written as tables: a chunk's state is a list of bit ranges
 * that are allocated and a list that are scavenged; palloc_test_build
 * grows the chunks named and sets their bitmaps to exactly that, and
 * palloc_test_read gives both bitmaps back for comparison. The rest opens
 * the representation for tests that corrupt it on purpose or compare every
 * word of it before and after a refused call. Modelled on the Go runtime's
 * export_test.go (NewPageAlloc, BitRange, PallocData).
 */
#ifndef MM_PALLOC_TESTING_H
#define MM_PALLOC_TESTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "palloc.h"

#define PALLOC_TEST_RANGES 8

/* Pages [start, start + npages) of one chunk; npages == 0 ends a list. */
struct palloc_bit_range {
	uint16_t start, npages;
};

struct palloc_test_chunk {
	size_t chunk; /* index from the arena's base */
	struct palloc_bit_range alloc[PALLOC_TEST_RANGES];
	struct palloc_bit_range scav[PALLOC_TEST_RANGES];
};

/*
 * Grows each chunk in chunks[0 .. n) (p must be fresh from palloc_init, or
 * those chunks not grown yet) and sets its bitmaps to exactly the listed
 * ranges; recomputes the summaries, the counts and the search hint (the
 * first free page). Returns false if a chunk is outside the arena, a range
 * leaves its chunk, a page is both allocated and scavenged, or growing
 * failed. Takes the owner's lock itself if p has one.
 */
bool palloc_test_build(struct palloc *p, const struct palloc_test_chunk *chunks,
                       size_t n);

/* Expands a range list into a chunk bitmap; false if a range leaves it. */
bool palloc_test_bits(const struct palloc_bit_range *ranges,
                      struct pallocbits *out);

/* True if chunk c of the arena has been grown. */
bool palloc_test_grown(const struct palloc *p, size_t chunk);

/* Copies chunk c's bitmaps (scav all clear with PALLOC_NO_SCAV). */
void palloc_test_read(const struct palloc *p, size_t chunk,
                      struct pallocbits *alloc, struct pallocbits *scav);

/* The summary at level l, entry i (to read, or to corrupt on purpose);
 * NULL if out of range or not mapped. */
palloc_sum_t *palloc_test_summary(struct palloc *p, unsigned l, size_t i);

/* Chunk c's allocation bitmap, writable (to corrupt on purpose). */
struct pallocbits *palloc_test_alloc_bits(struct palloc *p, size_t chunk);

size_t palloc_test_search_pi(const struct palloc *p);
void palloc_test_set_search_pi(struct palloc *p, size_t pi);

/* Bytes of metadata mapped so far (the whole region if supplied). */
size_t palloc_test_mapped_bytes(const struct palloc *p);

/*
 * Copies everything palloc_check_locked reads (grown bitmap, every mapped
 * summary, grown chunks' bitmaps, hint, stats) into out[0 .. cap) and
 * returns how many words that takes; call with cap 0 to size the buffer.
 * Two equal snapshots mean nothing changed.
 */
size_t palloc_test_snapshot(const struct palloc *p, uint64_t *out, size_t cap);

#endif

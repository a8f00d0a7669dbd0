/*
 * mm/palloc_testing.c: the test hooks of palloc_testing.h. Compiled only
 * into test binaries (MM_HOST_SRCS); nothing in mm/ calls it.
 *
 * Purpose: let table-driven tests put a palloc in a described state and
 * read back what it holds, without a long series of allocations. Modelled
 * on the Go runtime's pageAlloc test hooks (export_test.go).
 *
 * Representation: no state of its own. A test describes a chunk as a
 * struct palloc_test_chunk: up to PALLOC_TEST_RANGES allocated and
 * scavenged page ranges each; the readers hand out struct palloc's fields
 * (bitmaps, summaries, hint) or copy them into a snapshot of words.
 *
 * Algorithm. palloc_test_build reaches the state a table describes
 * directly, through the same grow path as production and then by writing
 * the bitmaps and adjusting the free and scavenged counts, and lets
 * palloc_update_locked derive everything else, so that a table test
 * exercises the real summaries rather than a copy of them; the search
 * hint is set to the first free page.
 *
 * Invariants:
 *   1. A state build writes keeps palloc.c's invariants: it refuses
 *      (returns false) a range past its chunk, a page both allocated and
 *      scavenged, scavenged pages without a scavenged bitmap, and a free
 *      page 0 in an arena at address 0. Chunks before a refused one keep
 *      their new bitmaps; the refused one and later ones stay as grown.
 *   2. A snapshot covers everything palloc_check_locked reads, so two
 *      equal snapshots mean nothing changed.
 *
 * Locking: build takes the owner's lock if there is one; the other hooks
 * expect the test to be the only user of p.
 * Limits: PALLOC_TEST_RANGES ranges per bitmap; build's chunks must not
 * be grown yet (p fresh from palloc_init, as palloc_testing.h says).
 */
#include "palloc_testing.h"

#include "palloc_internal.h"

bool palloc_test_bits(const struct palloc_bit_range *ranges,
                      struct pallocbits *out)
{
	for (unsigned w = 0; w < PALLOCBITS_WORDS; w++)
		out->w[w] = 0;
	for (unsigned i = 0; i < PALLOC_TEST_RANGES && ranges[i].npages; i++) {
		if (ranges[i].start + ranges[i].npages > PALLOC_CHUNK_PAGES)
			return false;
		pallocbits_set(out, ranges[i].start, ranges[i].npages);
	}
	return true;
}

/* Sets chunk t->chunk's bitmaps from t and fixes the counts. */
static bool apply(struct palloc *p, const struct palloc_test_chunk *t)
{
	struct pallocbits a, s;
	size_t c = t->chunk;
	if (!palloc_test_bits(t->alloc, &a) || !palloc_test_bits(t->scav, &s))
		return false;
	for (unsigned w = 0; w < PALLOCBITS_WORDS; w++)
		if ((a.w[w] & s.w[w]) || (p->scav == NULL && s.w[w]))
			return false;
	if (p->arena_base == 0 && c == 0 && !(a.w[0] & 1))
		return false;
	unsigned old_free =
	        PALLOC_CHUNK_PAGES -
	        pallocbits_count(&p->alloc[c], 0, PALLOC_CHUNK_PAGES);
	unsigned new_free = PALLOC_CHUNK_PAGES -
	                    pallocbits_count(&a, 0, PALLOC_CHUNK_PAGES);
	palloc_free_pages_add(p, (size_t)new_free - old_free);
	p->alloc[c] = a;
	if (p->scav) {
		p->stats.scav_pages -=
		        pallocbits_count(&p->scav[c], 0, PALLOC_CHUNK_PAGES);
		p->stats.scav_pages +=
		        pallocbits_count(&s, 0, PALLOC_CHUNK_PAGES);
		p->scav[c] = s;
	}
	palloc_update_locked(p, c * PALLOC_CHUNK_PAGES, PALLOC_CHUNK_PAGES, 0);
	return true;
}

static size_t first_free(const struct palloc *p)
{
	for (size_t c = 0; c < p->arena_chunks; c++) {
		if (!palloc_chunk_grown(p, c))
			continue;
		unsigned k = pallocbits_first_clear(&p->alloc[c], 0,
		                                    PALLOC_CHUNK_PAGES);
		if (k != PALLOCBITS_NONE)
			return c * PALLOC_CHUNK_PAGES + k;
	}
	return p->arena_pages;
}

bool palloc_test_build(struct palloc *p, const struct palloc_test_chunk *chunks,
                       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (chunks[i].chunk >= p->arena_chunks)
			return false;
		uintptr_t base =
		        p->arena_base + (chunks[i].chunk << PALLOC_CHUNK_SHIFT);
		if (!palloc_grow(p, base, PALLOC_CHUNK_BYTES))
			return false;
	}
	unsigned long irq = p->owner_lock ? mm_lock_acquire(p->owner_lock) : 0;
	bool ok = true;
	for (size_t i = 0; i < n && ok; i++)
		ok = apply(p, &chunks[i]);
	p->search_pi = first_free(p);
	if (p->owner_lock)
		mm_lock_release(p->owner_lock, irq);
	return ok;
}

bool palloc_test_grown(const struct palloc *p, size_t chunk)
{
	return chunk < p->arena_chunks && palloc_chunk_grown(p, chunk);
}

void palloc_test_read(const struct palloc *p, size_t chunk,
                      struct pallocbits *alloc, struct pallocbits *scav)
{
	*alloc = p->alloc[chunk];
	for (unsigned w = 0; w < PALLOCBITS_WORDS; w++)
		scav->w[w] = p->scav ? p->scav[chunk].w[w] : 0;
}

palloc_sum_t *palloc_test_summary(struct palloc *p, unsigned l, size_t i)
{
	if (l >= p->levels || i >= palloc_level_entries(p, l) ||
	    !palloc_meta_mapped(p, &p->summary[l][i], sizeof(palloc_sum_t)))
		return NULL;
	return &p->summary[l][i];
}

struct pallocbits *palloc_test_alloc_bits(struct palloc *p, size_t chunk)
{
	return &p->alloc[chunk];
}

size_t palloc_test_search_pi(const struct palloc *p)
{
	return p->search_pi;
}

void palloc_test_set_search_pi(struct palloc *p, size_t pi)
{
	p->search_pi = pi;
}

size_t palloc_test_mapped_bytes(const struct palloc *p)
{
	if (!p->mapped)
		return p->meta_bytes;
	size_t n = 0;
	for (size_t pg = 0; pg < p->meta_bytes / MM_PAGE_SIZE; pg++)
		n += (p->mapped[pg / 64] >> (pg % 64)) & 1;
	return n * MM_PAGE_SIZE;
}

static void put(uint64_t *out, size_t cap, size_t *n, uint64_t v)
{
	if (*n < cap)
		out[*n] = v;
	(*n)++;
}

size_t palloc_test_snapshot(const struct palloc *p, uint64_t *out, size_t cap)
{
	size_t n = 0;
	put(out, cap, &n, p->search_pi);
	put(out, cap, &n, p->stats.grown_pages);
	put(out, cap, &n, p->stats.free_pages);
	put(out, cap, &n, p->stats.scav_pages);
	for (size_t i = 0; i < (p->arena_chunks + 63) / 64; i++)
		put(out, cap, &n, p->grown[i]);
	for (unsigned l = 0; l < p->levels; l++) {
		size_t end = palloc_level_entries(p, l);
		for (size_t i = 0; i < end;) {
			/* A page at a time: the levels are packed, so a page
			 * need not start at a multiple of its count. */
			uintptr_t a = (uintptr_t)&p->summary[l][i];
			size_t next =
			        i + (MM_PAGE_SIZE - (a & (MM_PAGE_SIZE - 1))) /
			                    sizeof(palloc_sum_t);
			if (next > end)
				next = end;
			if (palloc_meta_mapped(p, &p->summary[l][i], 8))
				for (size_t j = i; j < next; j++)
					put(out, cap, &n, p->summary[l][j]);
			i = next;
		}
	}
	for (size_t c = 0; c < p->arena_chunks; c++) {
		if (p->grown[c / 64] == 0) {
			c |= 63;
			continue;
		}
		if (!palloc_chunk_grown(p, c))
			continue;
		for (unsigned w = 0; w < PALLOCBITS_WORDS; w++) {
			put(out, cap, &n, p->alloc[c].w[w]);
			put(out, cap, &n, p->scav ? p->scav[c].w[w] : 0);
		}
	}
	return n;
}

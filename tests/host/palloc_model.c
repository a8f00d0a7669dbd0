/*
 * tests/host/palloc_model.c: the naive model of the page allocator that
 * palloc_harness.c runs side by side with a real palloc.
 *
 * The model knows nothing of chunks beyond "grown or not", of summaries or
 * of hints: first fit scans the page bitmap from page 0. The page caches
 * are modelled by what they must do, not how: refill takes the free pages
 * of the 64-page block holding the first free page.
 */
#include "palloc_model.h"

#include <stdlib.h>
#include <string.h>

#define CP PALLOC_CHUNK_PAGES

bool model_bit(const uint64_t *b, size_t i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

static void set_bit(uint64_t *b, size_t i, bool v)
{
	if (v)
		b[i / 64] |= 1ull << (i % 64);
	else
		b[i / 64] &= ~(1ull << (i % 64));
}

bool model_init(struct model *m, size_t chunks, bool zero_based,
                bool track_scav)
{
	m->nchunks = chunks;
	m->npages = chunks * CP;
	m->zero_based = zero_based;
	m->track_scav = track_scav;
	m->grown = calloc(chunks, 1);
	m->alloc = calloc(m->npages / 64, 8);
	m->scav = calloc(m->npages / 64, 8);
	return m->grown && m->alloc && m->scav;
}

void model_destroy(struct model *m)
{
	free(m->grown);
	free(m->alloc);
	free(m->scav);
}

void model_grow(struct model *m, size_t c0, size_t c1)
{
	for (size_t c = c0; c < c1; c++) {
		if (m->grown[c])
			continue;
		m->grown[c] = 1;
		for (size_t pi = c * CP; pi < (c + 1) * CP; pi++) {
			set_bit(m->alloc, pi, false);
			set_bit(m->scav, pi, m->track_scav);
		}
		if (m->zero_based && c == 0) {
			set_bit(m->alloc, 0, true);
			set_bit(m->scav, 0, false);
		}
	}
}

bool model_page_free(const struct model *m, size_t pi)
{
	return m->grown[pi / CP] && !model_bit(m->alloc, pi);
}

/* First fit: the lowest pi with [pi, pi + n) free, or MODEL_NONE. Walks
 * stretches of equal bits, a word at most at a time, skipping chunks that
 * are not grown. */
size_t model_find(const struct model *m, size_t n)
{
	size_t run = 0, start = 0, pi = 0;
	while (pi < m->npages) {
		size_t c = pi / CP;
		if (!m->grown[c]) {
			const uint8_t *g = c + 1 < m->nchunks
			                           ? memchr(m->grown + c + 1, 1,
			                                    m->nchunks - c - 1)
			                           : NULL;
			run = 0;
			pi = g ? (size_t)(g - m->grown) * CP : m->npages;
			continue;
		}
		unsigned left = 64 - pi % 64, len;
		uint64_t w = m->alloc[pi / 64] >> (pi % 64);
		if (w & 1) { /* allocated from pi on */
			len = ~w ? (unsigned)__builtin_ctzll(~w) : 64;
			run = 0;
		} else {
			len = w ? (unsigned)__builtin_ctzll(w) : left;
			if (run == 0)
				start = pi;
			run += len;
			if (run >= n)
				return start;
		}
		pi += len < left ? len : left;
	}
	return MODEL_NONE;
}

size_t model_first_free(const struct model *m)
{
	return model_find(m, 1);
}

/* Marks [pi, pi + n) allocated; returns how many were scavenged. */
size_t model_alloc(struct model *m, size_t pi, size_t n)
{
	size_t nscav = 0;
	for (size_t i = pi; i < pi + n; i++) {
		nscav += model_bit(m->scav, i);
		set_bit(m->scav, i, false);
		set_bit(m->alloc, i, true);
	}
	return nscav;
}

void model_free(struct model *m, size_t pi, size_t n)
{
	for (size_t i = pi; i < pi + n; i++)
		set_bit(m->alloc, i, false);
}

bool model_range_free(const struct model *m, size_t pi, size_t n)
{
	for (size_t i = pi; i < pi + n; i++)
		if (!model_page_free(m, i))
			return false;
	return n > 0;
}

bool model_range_allocated(const struct model *m, size_t pi, size_t n)
{
	if (n == 0 || pi >= m->npages || n > m->npages - pi ||
	    (m->zero_based && pi == 0))
		return false;
	for (size_t i = pi; i < pi + n; i++)
		if (!m->grown[i / CP] || !model_bit(m->alloc, i))
			return false;
	return true;
}

void model_cache_flush(struct model *m, struct model_cache *mc)
{
	for (unsigned i = 0; mc->has_window && i < 64; i++) {
		if ((mc->cache >> i) & 1)
			set_bit(m->alloc, mc->base_pi + i, false);
		if ((mc->scav >> i) & 1)
			set_bit(m->scav, mc->base_pi + i, true);
	}
	*mc = (struct model_cache){0};
}

bool model_cache_refill(struct model *m, struct model_cache *mc)
{
	model_cache_flush(m, mc);
	size_t f = model_first_free(m);
	if (f == MODEL_NONE)
		return false;
	mc->has_window = true;
	mc->base_pi = f & ~(size_t)63;
	for (unsigned i = 0; i < 64; i++) {
		size_t pi = mc->base_pi + i;
		if (!model_page_free(m, pi))
			continue;
		mc->cache |= 1ull << i;
		if (model_bit(m->scav, pi))
			mc->scav |= 1ull << i;
		model_alloc(m, pi, 1);
	}
	return true;
}

/* The lowest run of n pages in the cache, taken; MODEL_NONE if none. */
size_t model_cache_alloc(struct model_cache *mc, size_t n, size_t *nscav)
{
	if (n == 0 || n > PAGECACHE_MAX_NPAGES)
		return MODEL_NONE;
	for (unsigned i = 0; i + n <= 64; i++) {
		uint64_t mask = (((1ull << n) - 1)) << i;
		if ((mc->cache & mask) != mask)
			continue;
		*nscav = (size_t)__builtin_popcountll(mc->scav & mask);
		mc->cache &= ~mask;
		mc->scav &= ~mask;
		return mc->base_pi + i;
	}
	return MODEL_NONE;
}

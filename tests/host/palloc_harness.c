/*
 * tests/host/palloc_harness.c: runs each operation on a real palloc (with
 * two page caches) and on the naive model (palloc_model.c), and compares
 * them bit for bit; see palloc_model.h. Every result is predicted by the
 * model before the real call; refused and bad calls must also leave the
 * allocator word for word as it was (palloc_test_snapshot). The bad calls
 * themselves are palloc_harness_misuse.c's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../mm/palloc_testing.h"
#include "mm_port_posix.h"
#include "palloc_harness_internal.h"
#include "palloc_model.h"

#define CP PALLOC_CHUNK_PAGES

bool harness_fail(struct harness *h, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(h->err, sizeof(h->err), "step %lu: ", h->steps);
	va_start(ap, fmt);
	vsnprintf(h->err + n, sizeof(h->err) - n, fmt, ap);
	va_end(ap);
	return false;
}

unsigned long harness_lock(struct harness *h)
{
	return h->cfg.use_lock ? mm_lock_acquire(&h->lock) : 0;
}

void harness_unlock(struct harness *h, unsigned long irq)
{
	if (h->cfg.use_lock)
		mm_lock_release(&h->lock, irq);
}

/* After a caught panic: the lock the call ran under is still ours. */
void harness_unlock_after_panic(struct harness *h)
{
	if (h->cfg.use_lock && mm_lock_held(&h->lock))
		mm_lock_release(&h->lock, 0);
}

uintptr_t harness_addr(const struct harness *h, size_t pi)
{
	return h->cfg.base + pi * MM_PAGE_SIZE;
}

static bool live_add(struct harness *h, size_t pi, size_t n)
{
	if (h->nlive == h->live_cap) {
		size_t cap = h->live_cap ? 2 * h->live_cap : 256;
		struct harness_run *l = realloc(h->live, cap * sizeof(*l));
		if (!l)
			return harness_fail(h, "out of memory");
		h->live = l;
		h->live_cap = cap;
	}
	h->live[h->nlive++] = (struct harness_run){pi, n};
	return true;
}

bool harness_snap(struct harness *h, int k, size_t *len)
{
	size_t n = palloc_test_snapshot(&h->p, h->snap[k], h->snap_cap);
	if (n > h->snap_cap) {
		for (int i = 0; i < 2; i++) {
			uint64_t *s = realloc(h->snap[i], n * 8);
			if (!s)
				return harness_fail(h, "out of memory");
			h->snap[i] = s;
		}
		h->snap_cap = n;
		palloc_test_snapshot(&h->p, h->snap[k], h->snap_cap);
	}
	*len = n;
	return true;
}

bool harness_unchanged(struct harness *h, size_t len0, const char *what)
{
	size_t len1;
	if (!harness_snap(h, 1, &len1))
		return false;
	if (len0 != len1 || memcmp(h->snap[0], h->snap[1], len0 * 8) != 0)
		return harness_fail(h, "%s changed the allocator", what);
	return true;
}

bool harness_init(struct harness *h, const struct harness_config *cfg)
{
	memset(h, 0, sizeof(*h));
	h->cfg = *cfg;
	struct palloc_config pc = {
	        .arena_base = cfg->base,
	        .arena_bytes = cfg->chunks * PALLOC_CHUNK_BYTES,
	        .flags = cfg->flags,
	};
	if (cfg->use_lock) {
		mm_lock_init(&h->lock, "harness", MM_RANK_HEAP);
		pc.owner_lock = &h->lock;
	}
	if (cfg->supplied) {
		size_t n = palloc_metadata_bytes(pc.arena_bytes, cfg->flags);
		h->supplied = aligned_alloc(MM_PAGE_SIZE, n);
		if (!h->supplied)
			return harness_fail(h, "out of memory");
		memset(h->supplied, 0xa5, n); /* init must clear what matters */
		pc.metadata = h->supplied;
	}
	if (!palloc_init(&h->p, &pc))
		return harness_fail(h, "palloc_init: %s", mm_port_last_log());
	if (!model_init(&h->m, cfg->chunks, cfg->base == 0,
	                !(cfg->flags & PALLOC_NO_SCAV)))
		return harness_fail(h, "out of memory");
	if (cfg->grow_all) {
		if (!palloc_grow(&h->p, cfg->base, pc.arena_bytes))
			return harness_fail(h, "grow: %s", mm_port_last_log());
		model_grow(&h->m, 0, cfg->chunks);
	}
	return true;
}

void harness_destroy(struct harness *h)
{
	if (h->supplied)
		free(h->supplied);
	else if (h->p.meta_base)
		mm_port_release((void *)h->p.meta_base, h->p.meta_bytes);
	model_destroy(&h->m);
	free(h->live);
	free(h->snap[0]);
	free(h->snap[1]);
}

static bool op_grow(struct harness *h, uint64_t a, uint64_t b)
{
	size_t c0 = a % h->m.nchunks, room = h->m.nchunks - c0;
	size_t n = 1 + b % (room < 8 ? room : 8);
	if (h->cfg.max_grown && h->ngrown + n > h->cfg.max_grown)
		return true;
	for (size_t c = c0; c < c0 + n; c++)
		h->ngrown += !h->m.grown[c];
	if (!palloc_grow(&h->p, harness_addr(h, c0 * CP),
	                 n * PALLOC_CHUNK_BYTES))
		return harness_fail(h, "grow chunks [%zu, %zu) refused: %s", c0,
		                    c0 + n, mm_port_last_log());
	model_grow(&h->m, c0, c0 + n);
	return true;
}

static size_t alloc_size(const struct harness *h, uint64_t a)
{
	uint64_t r = a >> 4;
	switch (a % 16) {
	case 8:
	case 9:
	case 10:
	case 11:
		return 1 + r % 64;
	case 12:
	case 13:
		return 1 + r % (3 * CP);
	case 14:
		return 1 + r % h->m.npages;
	case 15:
		return 1;
	default:
		return 1 + r % 4;
	}
}

static bool op_alloc(struct harness *h, uint64_t a)
{
	size_t n = alloc_size(h, a), want = model_find(&h->m, n), nscav = 77;
	struct palloc_refusal r;
	unsigned long irq = harness_lock(h);
	uintptr_t got = palloc_alloc_locked(&h->p, n, &nscav);
	bool refused = palloc_take_refusal_locked(&h->p, &r);
	harness_unlock(h, irq);
	if (refused != (n > h->m.npages))
		return harness_fail(
		        h, "alloc %zu: refused %d (%s), arena of %zu pages", n,
		        refused, refused ? r.reason : "-", h->m.npages);
	if (want == MODEL_NONE) {
		if (got != 0 || nscav != 0)
			return harness_fail(
			        h,
			        "alloc %zu: got 0x%lx (%zu scavenged), "
			        "the model has no room",
			        n, got, nscav);
		return true;
	}
	if (got != harness_addr(h, want))
		return harness_fail(h,
		                    "alloc %zu: got 0x%lx, first fit is 0x%lx",
		                    n, got, harness_addr(h, want));
	size_t mscav = model_alloc(&h->m, want, n);
	if (nscav != mscav)
		return harness_fail(
		        h, "alloc %zu at 0x%lx: %zu scavenged, model %zu", n,
		        got, nscav, mscav);
	return live_add(h, want, n);
}

static bool op_free(struct harness *h, uint64_t a, uint64_t b)
{
	if (h->nlive == 0)
		return true;
	size_t idx = a % h->nlive;
	struct harness_run r = h->live[idx];
	size_t n = r.npages;
	if (b % 4 == 0 && n >= 2)
		n /= 2; /* free the first half, keep the rest live */
	unsigned k = (b >> 2) % HARNESS_CACHES;
	struct model_cache *mc = &h->mc[k];
	bool freed = false;
	if (b & 16) {
		bool want = mc->has_window && r.pi >= mc->base_pi &&
		            r.pi + n <= mc->base_pi + 64;
		freed = pagecache_free(&h->pc[k], harness_addr(h, r.pi), n);
		if (freed != want)
			return harness_fail(
			        h,
			        "pagecache_free [0x%lx, +%zu): %d, model "
			        "%d",
			        harness_addr(h, r.pi), n, freed, want);
		for (size_t i = 0; freed && i < n; i++)
			mc->cache |= 1ull << (r.pi + i - mc->base_pi);
	}
	if (!freed) {
		unsigned long irq = harness_lock(h);
		palloc_free_locked(&h->p, harness_addr(h, r.pi), n);
		harness_unlock(h, irq);
		model_free(&h->m, r.pi, n);
	}
	if (n < r.npages)
		h->live[idx] = (struct harness_run){r.pi + n, r.npages - n};
	else
		h->live[idx] = h->live[--h->nlive];
	return true;
}

static bool op_alloc_range(struct harness *h, uint64_t a, uint64_t b)
{
	size_t pi = a % h->m.npages, n = 1 + b % 700, nscav = 77;
	if (n > h->m.npages - pi)
		n = h->m.npages - pi;
	bool want = model_range_free(&h->m, pi, n);
	struct palloc_refusal r;
	unsigned long irq = harness_lock(h);
	bool ok = palloc_alloc_range_locked(&h->p, harness_addr(h, pi), n,
	                                    &nscav);
	bool refused = palloc_take_refusal_locked(&h->p, &r);
	harness_unlock(h, irq);
	if (ok != want || refused == ok)
		return harness_fail(
		        h,
		        "alloc_range [0x%lx, +%zu): %d (refusal %d), "
		        "model %d",
		        harness_addr(h, pi), n, ok, refused, want);
	if (!ok)
		return true;
	size_t mscav = model_alloc(&h->m, pi, n);
	if (nscav != mscav)
		return harness_fail(h,
		                    "alloc_range [0x%lx, +%zu): %zu scavenged, "
		                    "model %zu",
		                    harness_addr(h, pi), n, nscav, mscav);
	return live_add(h, pi, n);
}

static bool op_cache_alloc(struct harness *h, uint64_t a, uint64_t b)
{
	unsigned k = b % HARNESS_CACHES;
	size_t n = 1 + a % 16, mscav = 0, nscav = 77;
	size_t want = model_cache_alloc(&h->mc[k], n, &mscav);
	uintptr_t got = pagecache_alloc(&h->pc[k], n, &nscav);
	if (want == MODEL_NONE ? got != 0 : got != harness_addr(h, want))
		return harness_fail(
		        h,
		        "pagecache_alloc %zu from cache %u: got 0x%lx, "
		        "model 0x%lx",
		        n, k, got,
		        want == MODEL_NONE ? 0 : harness_addr(h, want));
	if (want == MODEL_NONE)
		return true;
	if (nscav != mscav)
		return harness_fail(
		        h, "pagecache_alloc %zu: %zu scavenged, model %zu", n,
		        nscav, mscav);
	return live_add(h, want, n);
}

static bool op_cache_refill(struct harness *h, uint64_t b, bool flush_only)
{
	unsigned k = b % HARNESS_CACHES;
	bool want = false, ok = false;
	unsigned long irq = harness_lock(h);
	if (flush_only)
		pagecache_flush_locked(&h->pc[k], &h->p);
	else
		ok = pagecache_refill_locked(&h->pc[k], &h->p);
	harness_unlock(h, irq);
	if (flush_only)
		model_cache_flush(&h->m, &h->mc[k]);
	else
		want = model_cache_refill(&h->m, &h->mc[k]);
	if (ok != want)
		return harness_fail(h,
		                    "pagecache_refill cache %u: %d, model %d",
		                    k, ok, want);
	return true;
}

bool harness_step(struct harness *h, enum harness_op op, uint64_t a, uint64_t b)
{
	h->steps++;
	switch (op) {
	case H_GROW:
		return op_grow(h, a, b);
	case H_ALLOC:
		return op_alloc(h, a);
	case H_FREE:
		return op_free(h, a, b);
	case H_ALLOC_RANGE:
		return op_alloc_range(h, a, b);
	case H_CACHE_ALLOC:
		return op_cache_alloc(h, a, b);
	case H_CACHE_REFILL:
		return op_cache_refill(h, b, false);
	case H_CACHE_FLUSH:
		return op_cache_refill(h, b, true);
	case H_BAD_FREE:
		return harness_bad_free(h, a, b);
	case H_BAD_CALL:
		return harness_bad_call(h, a, b);
	default:
		return true;
	}
}

static bool compare_chunks(struct harness *h, struct palloc_stats *want)
{
	for (size_t c = 0; c < h->m.nchunks; c++) {
		if (palloc_test_grown(&h->p, c) != (h->m.grown[c] != 0))
			return harness_fail(h, "chunk %zu grown %d, model %d",
			                    c, palloc_test_grown(&h->p, c),
			                    h->m.grown[c]);
		if (!h->m.grown[c])
			continue;
		struct pallocbits a, s;
		palloc_test_read(&h->p, c, &a, &s);
		for (unsigned w = 0; w < PALLOCBITS_WORDS; w++) {
			uint64_t ma = h->m.alloc[c * 8 + w];
			uint64_t ms = h->m.scav[c * 8 + w];
			if (a.w[w] != ma || s.w[w] != ms)
				return harness_fail(
				        h,
				        "chunk %zu word %u: alloc %016lx "
				        "scav %016lx, model %016lx "
				        "%016lx",
				        c, w, a.w[w], s.w[w], ma, ms);
			want->free_pages += 64 - __builtin_popcountll(ma);
			want->scav_pages += __builtin_popcountll(ms);
		}
		want->grown_pages += CP;
	}
	return true;
}

bool harness_compare(struct harness *h)
{
	struct palloc_stats want = {0, 0, 0}, have;
	if (!compare_chunks(h, &want))
		return false;
	unsigned long irq = harness_lock(h);
	palloc_stats_locked(&h->p, &have);
	harness_unlock(h, irq);
	if (memcmp(&have, &want, sizeof(have)) != 0)
		return harness_fail(
		        h,
		        "stats grown %zu free %zu scav %zu, model %zu %zu "
		        "%zu",
		        have.grown_pages, have.free_pages, have.scav_pages,
		        want.grown_pages, want.free_pages, want.scav_pages);
	for (unsigned k = 0; k < HARNESS_CACHES; k++) {
		const struct pagecache *pc = &h->pc[k];
		const struct model_cache *mc = &h->mc[k];
		if (pc->has_window != mc->has_window ||
		    (mc->has_window &&
		     (pc->base != harness_addr(h, mc->base_pi) ||
		      pc->cache != mc->cache || pc->scav != mc->scav)))
			return harness_fail(
			        h,
			        "cache %u: window 0x%lx bits %016lx "
			        "scav %016lx; model 0x%lx %016lx %016lx",
			        k, pc->base, pc->cache, pc->scav,
			        harness_addr(h, mc->base_pi), mc->cache,
			        mc->scav);
	}
	if (MM_PORT_PANICS(palloc_check(&h->p))) {
		harness_unlock_after_panic(h);
		return harness_fail(h, "%s", mm_port_last_panic());
	}
	return true;
}

bool harness_drain(struct harness *h)
{
	for (unsigned k = 0; k < HARNESS_CACHES; k++)
		if (!op_cache_refill(h, k, true))
			return false;
	while (h->nlive) {
		struct harness_run r = h->live[--h->nlive];
		palloc_free(&h->p, harness_addr(h, r.pi), r.npages);
		model_free(&h->m, r.pi, r.npages);
	}
	if (!harness_compare(h))
		return false;
	size_t grown = 0, reserved = h->m.zero_based && h->m.grown[0];
	for (size_t c = 0; c < h->m.nchunks; c++)
		grown += h->m.grown[c] ? CP : 0;
	if (h->p.stats.free_pages != grown - reserved)
		return harness_fail(h, "after draining, %zu of %zu pages free",
		                    h->p.stats.free_pages, grown - reserved);
	return true;
}

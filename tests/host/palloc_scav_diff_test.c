/*
 * The scavenging calls against a naive model, at random: allocations that
 * report which pages were scavenged (the mask of a run of at most 64
 * pages, the backed runs of a longer one and the stretch of its scavenged
 * pages), frees that mark some pages
 * scavenged again (palloc_free_mask_locked), and scavenge takes and
 * returns. The differential test (palloc_diff_test.c) has none of these.
 * The model is one byte a page for each bitmap. A take must be a run of
 * free backed pages inside one chunk, no longer than asked, the highest
 * such pages of its chunk, and as long as it may be: cut only by max or a
 * page that is not a candidate. palloc_check runs after every operation.
 */
#include "../../mm/palloc_internal.h"
#include "palloc_test_util.h"

#define SD_CHUNKS 9 /* two summary levels, a block and one chunk more */
#define SD_PAGES  (SD_CHUNKS * PALLOC_CHUNK_PAGES)

struct sd {
	struct palloc p;
	unsigned char alloc[SD_PAGES], scav[SD_PAGES];
	uint64_t rng;
	int step;
};

static uint64_t sd_rand(struct sd *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

static bool sd_candidate(const struct sd *s, size_t pi)
{
	return !s->alloc[pi] && !s->scav[pi];
}

static size_t sd_first_fit(const struct sd *s, size_t n)
{
	for (size_t i = 0, run = 0; i < SD_PAGES; i++) {
		run = s->alloc[i] ? 0 : run + 1;
		if (run == n)
			return i + 1 - n;
	}
	return TP_FAIL;
}

/* Checks the backed runs palloc noted for [pi, pi + n) against the model:
 * they must be its unscavenged stretches, in order; and the stretch from
 * its first scavenged page to its last. */
static bool sd_backed_ok(const struct sd *s, size_t pi, size_t n,
                         const struct palloc_backed *b)
{
	size_t lo = pi + n, hi = pi;
	for (size_t i = pi; i < pi + n; i++)
		if (s->scav[i]) {
			lo = i < lo ? i : lo;
			hi = i + 1;
		}
	if (hi > pi ? b->scav.base != tp_addr(&s->p, lo) ||
	                      b->scav.npages != hi - lo
	            : b->scav.npages != 0)
		return false;
	size_t k = 0;
	for (size_t i = pi; i < pi + n && k <= PALLOC_BACKED_RUNS;) {
		if (s->scav[i]) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < pi + n && !s->scav[j])
			j++;
		if (k < PALLOC_BACKED_RUNS &&
		    (b->runs[k].base != tp_addr(&s->p, i) ||
		     b->runs[k].npages != j - i))
			return false;
		k++;
		i = j;
	}
	return b->n == k;
}

static bool sd_alloc(struct sd *s)
{
	size_t n = 1 + (sd_rand(s) % 4 ? sd_rand(s) % 70 : sd_rand(s) % 700);
	size_t want = sd_first_fit(s, n);
	uint64_t mask = 0;
	size_t nscav = 0;
	struct palloc_backed b = {0};
	bool masked = n <= 64 && sd_rand(s) % 2;
	uintptr_t a = masked ? palloc_alloc_mask_locked(&s->p, n, &mask)
	                     : palloc_alloc_backed_locked(&s->p, n, &nscav, &b);
	if (a != tp_addr(&s->p, want)) {
		ktest_diag("step %d: alloc of %zu pages at %#lx, model %#lx",
		           s->step, n, a, tp_addr(&s->p, want));
		return false;
	}
	if (!a)
		return true;
	size_t scav = 0;
	for (size_t k = 0; k < n; k++) {
		if (masked && (mask >> k & 1) != s->scav[want + k]) {
			ktest_diag("step %d: mask bit %zu of %zu", s->step, k,
			           n);
			return false;
		}
		scav += s->scav[want + k];
	}
	if (!masked && (nscav != scav || !sd_backed_ok(s, want, n, &b))) {
		ktest_diag("step %d: %zu pages at %zu: %zu scavenged (model "
		           "%zu) or backed runs wrong",
		           s->step, n, want, nscav, scav);
		return false;
	}
	memset(&s->alloc[want], 1, n);
	memset(&s->scav[want], 0, n);
	return true;
}

/* Frees up to 64 allocated pages from a random one, some as scavenged. */
static void sd_free(struct sd *s)
{
	size_t i = sd_rand(s) % SD_PAGES, n = 0;
	while (i + n < SD_PAGES && s->alloc[i + n] && n < 64)
		n++;
	if (n == 0)
		return;
	uint64_t all = n == 64 ? ~0ull : (1ull << n) - 1;
	uint64_t mask = sd_rand(s) % 2 ? sd_rand(s) & all : 0;
	palloc_free_mask_locked(&s->p, tp_addr(&s->p, i), n, mask);
	for (size_t k = 0; k < n; k++) {
		s->alloc[i + k] = 0;
		s->scav[i + k] = mask >> k & 1;
	}
}

static bool sd_take(struct sd *s)
{
	size_t max = 1 + sd_rand(s) % 300;
	unsigned flags = sd_rand(s) % 2 ? PALLOC_SCAV_FORCE : 0;
	struct palloc_run r;
	if (!palloc_scav_take_locked(&s->p, max, flags, &r))
		return true;
	size_t pi = (r.base - s->p.arena_base) >> MM_PAGE_SHIFT;
	size_t c = pi / PALLOC_CHUNK_PAGES, end = pi + r.npages;
	const char *why = NULL;
	if (r.npages == 0 || r.npages > max ||
	    (end - 1) / PALLOC_CHUNK_PAGES != c)
		why = "not a run of at most max pages in one chunk";
	for (size_t k = pi; !why && k < end; k++)
		if (!sd_candidate(s, k))
			why = "holds a page that is not free and backed";
	for (size_t k = end; !why && k < (c + 1) * PALLOC_CHUNK_PAGES; k++)
		if (sd_candidate(s, k))
			why = "is not the highest candidate of its chunk";
	if (!why && r.npages < max && pi % PALLOC_CHUNK_PAGES &&
	    sd_candidate(s, pi - 1))
		why = "stops short of a candidate below it";
	if (why) {
		ktest_diag("step %d: take of at most %zu: [%zu, +%zu) %s",
		           s->step, max, pi, r.npages, why);
		return false;
	}
	palloc_scav_return_locked(&s->p, r.base, r.npages);
	memset(&s->scav[pi], 1, r.npages);
	return true;
}

KTEST(palloc_scav, against_a_model_200k)
{
	struct sd *s = calloc(1, sizeof(*s));
	KASSERT(s);
	s->rng = 0x5ca7e11ed;
	KASSERT(tp_new(&s->p, TP_BASE, SD_CHUNKS, 0));
	KASSERT(palloc_grow(&s->p, TP_BASE, SD_CHUNKS * PALLOC_CHUNK_BYTES));
	memset(s->scav, 1, sizeof(s->scav));
	bool ok = true;
	for (s->step = 0; ok && s->step < 200000; s->step++) {
		unsigned op = sd_rand(s) % 10;
		if (op < 4)
			ok = sd_alloc(s);
		else if (op < 7)
			sd_free(s);
		else
			ok = sd_take(s);
		if (ok && tp_check_panics(&s->p)) {
			ktest_diag("step %d: %s", s->step,
			           mm_port_last_panic());
			ok = false;
		}
	}
	KEXPECT(ok);
	tp_release(&s->p);
	free(s);
}

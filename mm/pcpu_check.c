/*
 * mm/pcpu_check.c: the checker of the per-CPU allocator's invariants
 * (pcpu.c's numbered list), for tests and debug builds.
 *
 * Locking: the walk holds pc->lock (a leaf, so nothing is printed under
 * it): it notes the first broken invariant and copies that chunk's
 * struct, and the report and panic come after the lock is let go.
 */
#include "pcpu.h"

struct finding {
	const char *what; /* NULL: all held */
	unsigned chunk;   /* pc->nchunks: none in particular */
	uint64_t got, want;
	struct pcpu_chunk copy;
};

static unsigned popcount(uint64_t w)
{
	unsigned n = 0;
	for (; w; w &= w - 1)
		n++;
	return n;
}

static bool note(struct finding *f, const char *what, unsigned chunk,
                 uint64_t got, uint64_t want)
{
	*f = (struct finding){
	        .what = what, .chunk = chunk, .got = got, .want = want};
	return false;
}

/* Invariants 1 to 3 for chunk i, counting its used and start bits into
 * *used and *live. Locking: pc->lock held. */
static bool chunk_ok_locked(struct pcpu *pc, unsigned i, struct finding *f,
                            uint64_t *used, uint64_t *live)
{
	const struct pcpu_chunk *c = pc->chunks[i];
	if (!c)
		return note(f, "an empty slot below nchunks (1)", i, 0, 1);
	if (c->base % MM_PAGE_SIZE)
		return note(f, "a base not page-aligned (1)", i, c->base, 0);
	for (unsigned j = 0; j < i; j++)
		if (pc->chunks[j] &&
		    c->base < pc->chunks[j]->base + pc->chunk_bytes &&
		    pc->chunks[j]->base < c->base + pc->chunk_bytes)
			return note(f, "two chunks overlapping (1)", i, c->base,
			            pc->chunks[j]->base);
	unsigned nused = 0;
	for (unsigned w = 0; w < PCPU_MAP_WORDS; w++) {
		if (c->start[w] & ~c->used[w])
			return note(f, "a start bit on a free granule (3)", i,
			            w, c->start[w] & ~c->used[w]);
		/* Run heads: used granules after a free one (or the first). */
		uint64_t prev =
		        c->used[w] << 1 | (w ? c->used[w - 1] >> 63 : 0);
		if (c->used[w] & ~prev & ~c->start[w])
			return note(f, "a used run with no start bit (3)", i, w,
			            c->used[w] & ~prev & ~c->start[w]);
		nused += popcount(c->used[w]);
		*live += popcount(c->start[w]);
	}
	if (c->free_granules != PCPU_GRANULES - nused)
		return note(f, "free_granules not the clear used bits (2)", i,
		            c->free_granules, PCPU_GRANULES - nused);
	*used += nused;
	return true;
}

/* Every invariant. Locking: pc->lock held. */
static bool all_ok_locked(struct pcpu *pc, struct finding *f)
{
	if (pc->nchunks > pc->max_chunks || pc->max_chunks > PCPU_MAX_CHUNKS)
		return note(f, "more chunks than the limit (1)", pc->nchunks,
		            pc->nchunks, pc->max_chunks);
	uint64_t used = 0, live = 0;
	for (unsigned i = 0; i < pc->nchunks; i++)
		if (!chunk_ok_locked(pc, i, f, &used, &live)) {
			if (pc->chunks[i])
				f->copy = *pc->chunks[i];
			return false;
		}
	if (used != pc->used_granules)
		return note(f, "used_granules not the used bits (4)",
		            pc->nchunks, pc->used_granules, used);
	if (live != pc->nlive || pc->nallocs - pc->nfrees != pc->nlive)
		return note(f,
		            "nlive not the start bits, or allocations less "
		            "frees (4)",
		            pc->nchunks, pc->nlive, live);
	return true;
}

void pcpu_check(struct pcpu *pc)
{
	struct finding f = {0};
	unsigned long irq = mm_lock_acquire(&pc->lock);
	bool ok = all_ok_locked(pc, &f);
	unsigned nchunks = pc->nchunks;
	mm_lock_release(&pc->lock, irq);
	if (ok)
		return;
	mm_log("pcpu %p: %u chunks of %u units", (void *)pc, nchunks,
	       pc->nunits);
	if (f.chunk < nchunks) {
		mm_log("chunk %u: base %p, %lu free granules; used, start:",
		       f.chunk, (void *)f.copy.base,
		       (unsigned long)f.copy.free_granules);
		for (unsigned w = 0; w < PCPU_MAP_WORDS; w++)
			mm_log("  word %u: %016lx %016lx", w,
			       (unsigned long)f.copy.used[w],
			       (unsigned long)f.copy.start[w]);
	}
	mm_panic("pcpu_check: %s: chunk %u, %lu where %lu", f.what, f.chunk,
	         (unsigned long)f.got, (unsigned long)f.want);
}

/*
 * mm/palloc_scav.c: finding free pages to scavenge, on palloc's scavenged
 * bitmap.
 *
 * Purpose: pick the free pages whose memory the heap's owner gives back to
 * the system (mm_port_unused*), highest addresses first, and keep the
 * scavenged bitmap and counts true while it does. Modelled on the Go
 * runtime's pageAlloc.scavengeOne and findScavengeCandidate
 * (mgcscavenge.go). Unlike Go's scavenge(nbytes, locked), there is no
 * mode that marks pages scavenged while they stay free: a page that
 * another CPU may still reach through its TLB must not be handed out, so
 * every run is taken out of the free set until its shootdown is done.
 *
 * Representation. A free page is "backed" when its scavenged bit is clear
 * (its memory is mapped) and "scavenged" when it is set. A candidate is a
 * free backed page: ~alloc & ~scav. scav_top, a chunk index, is the
 * scavenge cursor: searches start at the chunk below it and go down.
 *
 * Algorithm.
 *   find     From the chunk below the cursor down to chunk 0, skip chunks
 *            not grown (64 at a time through the grown bitmap), with no
 *            free page (leaf summary 0), or, unless forced, with at least
 *            PALLOC_SCAV_DENSE_PAGES allocated (little to gain, and they
 *            are likely to be reused soon). In the first chunk left, take
 *            the highest candidate bit and extend the run downward, a word
 *            at a time, up to max pages. The cursor stays on that chunk.
 *            If nothing lies below the cursor, search once more from the
 *            top down to the cursor (frees above it are found this way);
 *            if that fails too, the cursor resets to "the top". The
 *            owner may search in stretches of a few chunks
 *            (palloc_scav_search_locked), keeping the search between
 *            holds of its lock: over a large arena the walk is long.
 *   take     marks the run allocated: nobody can allocate it while the
 *            owner unmaps it without the lock and shoots it down.
 *   return   frees a taken run as scavenged, after the shootdown.
 *   backed   for an allocation (palloc_alloc_backed_locked), before its
 *            scavenged bits are cleared: the runs of its pages whose bits
 *            are clear, up to PALLOC_BACKED_RUNS, for an owner that must
 *            zero those pages and only those (scavenged ones read as
 *            zero once mapped; writing them would make them resident).
 *
 * Invariants (palloc_check_locked verifies them with palloc.c's):
 *   1. A scavenged page is free (palloc.c invariant 3); take and return
 *      keep it.
 *   2. stats.scav_pages counts the scavenged pages; free_pages -
 *      scav_pages are the free backed pages.
 *   3. scav_top <= arena_chunks.
 *
 * Locking: every function needs the owner's lock (asserted).
 * Limits: a search that finds nothing (all candidates in dense chunks)
 * walks every grown chunk, in one hold of the lock unless its owner
 * searches in stretches (the heap does); with no free backed page at all
 * it returns at once (from the counts). Runs never cross a chunk. With
 * PALLOC_NO_SCAV nothing is ever found.
 */
#include "palloc_internal.h"

static inline uint64_t candidates(const struct palloc *p, size_t c, unsigned w)
{
	return ~(p->alloc[c].w[w] | p->scav[c].w[w]);
}

/* The highest run of candidates in chunk c, at most max pages: returns its
 * length (0 if none) and its first page in *start. */
static unsigned chunk_candidate(const struct palloc *p, size_t c, size_t max,
                                unsigned *start)
{
	for (unsigned w = PALLOCBITS_WORDS; w-- > 0;) {
		uint64_t x = candidates(p, c, w);
		if (!x)
			continue;
		unsigned top = 63 - pallocbits_clz(x);
		unsigned end = w * 64 + top + 1; /* the run's limit */
		/* Ones of x from bit top down: zeros of ~x shifted to the
		 * top of the word. */
		uint64_t y = ~x << (63 - top);
		unsigned lo = end - (y ? pallocbits_clz(y) : top + 1);
		/* The run reached bit 0 of a word: go on in the one below. */
		while (lo % 64 == 0 && lo > 0 && end - lo < max) {
			uint64_t z = candidates(p, c, lo / 64 - 1);
			unsigned k = ~z ? pallocbits_clz(~z) : 64;
			lo -= k;
			if (k < 64)
				break; /* the run starts in this word */
		}
		unsigned n = end - lo;
		if (n > max)
			n = (unsigned)max;
		*start = end - n;
		return n;
	}
	return 0;
}

/* Chunk k of the circle from top ([0, top) from the top down, then [top,
 * arena_chunks) from the top down) and, in *floor, the lowest of its half. */
static size_t circle_chunk(const struct palloc *p, size_t top, size_t k,
                           size_t *floor)
{
	*floor = k < top ? 0 : top;
	return k < top ? top - 1 - k : p->arena_chunks - 1 - (k - top);
}

/* The highest run of candidates in grown chunk c if it may be searched
 * (free pages, not dense unless forced): its length (0 if none), its
 * first page in *start. */
static unsigned chunk_look(const struct palloc *p, size_t c, size_t max,
                           unsigned flags, unsigned *start)
{
	if (!palloc_chunk_grown(p, c) || palloc_leaf(p)[c] == 0)
		return 0;
	if (!(flags & PALLOC_SCAV_FORCE) &&
	    pallocbits_count(&p->alloc[c], 0, PALLOC_CHUNK_PAGES) >=
	            PALLOC_SCAV_DENSE_PAGES)
		return 0;
	return chunk_candidate(p, c, max, start);
}

/* Searches on along s's circle, at most budget chunks (64 not grown count
 * as one); a run in *pi, *n when found. */
static enum palloc_scav_found find(struct palloc *p,
                                   struct palloc_scav_search *s, size_t max,
                                   unsigned flags, size_t budget, size_t *pi,
                                   size_t *n)
{
	s->searched = 0;
	if (!p->scav || max == 0 ||
	    p->stats.free_pages == p->stats.scav_pages) {
		p->scav_top = 0;
		s->started = false;
		return PALLOC_SCAV_NONE;
	}
	if (!s->started)
		*s = (struct palloc_scav_search){
		        .started = true,
		        .top = p->scav_top ? p->scav_top : p->arena_chunks};
	while (s->walked < p->arena_chunks) {
		if (s->searched == budget)
			return PALLOC_SCAV_MORE;
		s->searched++;
		size_t floor, c = circle_chunk(p, s->top, s->walked, &floor);
		if (p->grown[c / 64] == 0) {
			size_t low = c & ~(size_t)63;
			s->walked += c - (low > floor ? low : floor) + 1;
			continue;
		}
		s->walked++;
		unsigned start, k = chunk_look(p, c, max, flags, &start);
		if (k) {
			p->scav_top = c + 1;
			s->started = false;
			*pi = c * PALLOC_CHUNK_PAGES + start;
			*n = k;
			return PALLOC_SCAV_TAKEN;
		}
	}
	p->scav_top = 0;
	s->started = false;
	return PALLOC_SCAV_NONE;
}

enum palloc_scav_found palloc_scav_search_locked(struct palloc *p,
                                                 struct palloc_scav_search *s,
                                                 size_t max, unsigned flags,
                                                 size_t budget,
                                                 struct palloc_run *r)
{
	palloc_assert_locked(p, "palloc_scav_search_locked");
	size_t pi, n;
	enum palloc_scav_found f = find(p, s, max, flags, budget, &pi, &n);
	if (f != PALLOC_SCAV_TAKEN)
		return f;
	pallocbits_set(&p->alloc[pi / PALLOC_CHUNK_PAGES],
	               (unsigned)(pi & PALLOC_CHUNK_MASK), (unsigned)n);
	palloc_free_pages_add(p, -n);
	palloc_update_locked(p, pi, n,
	                     PALLOC_UPDATE_ALLOC | PALLOC_UPDATE_CONTIG);
	r->base = palloc_page_addr(p, pi);
	r->npages = n;
	return PALLOC_SCAV_TAKEN;
}

bool palloc_scav_take_locked(struct palloc *p, size_t max, unsigned flags,
                             struct palloc_run *r)
{
	palloc_assert_locked(p, "palloc_scav_take_locked");
	struct palloc_scav_search s = {0};
	return palloc_scav_search_locked(p, &s, max, flags, SIZE_MAX, r) ==
	       PALLOC_SCAV_TAKEN;
}

void palloc_scav_return_locked(struct palloc *p, uintptr_t base, size_t npages)
{
	palloc_assert_locked(p, "palloc_scav_return_locked");
	palloc_free_locked(p, base, npages); /* checks the range */
	if (!p->scav)
		return;
	size_t pi = (base - p->arena_base) >> MM_PAGE_SHIFT, left = npages;
	for (struct palloc_piece pc; palloc_next_piece(&pi, &left, &pc);)
		pallocbits_set(&p->scav[pc.c], pc.i, pc.n);
	p->stats.scav_pages += npages;
}

/* Notes a backed run [base, base + n pages) in b, joining it to the one
 * before if it goes on from there; false once b is full. */
static bool note_run(struct palloc_backed *b, uintptr_t base, size_t n)
{
	struct palloc_run *last = b->n ? &b->runs[b->n - 1] : NULL;
	if (last && last->base + (last->npages << MM_PAGE_SHIFT) == base) {
		last->npages += n;
		return true;
	}
	if (b->n == PALLOC_BACKED_RUNS) {
		b->n++; /* more than fit */
		return false;
	}
	b->runs[b->n++] = (struct palloc_run){base, n};
	return true;
}

void palloc_note_backed(const struct palloc *p, size_t pi, size_t npages,
                        struct palloc_backed *b)
{
	b->n = 0;
	for (struct palloc_piece pc; palloc_next_piece(&pi, &npages, &pc);) {
		const struct pallocbits *s = p->scav ? &p->scav[pc.c] : NULL;
		unsigned k = pc.i, end = pc.i + pc.n;
		while (k < end) {
			unsigned lo =
			        s ? pallocbits_first_clear(s, k, end - k) : k;
			if (lo == PALLOCBITS_NONE)
				break;
			unsigned hi = s ? pallocbits_first_set(s, lo, end - lo)
			                : PALLOCBITS_NONE;
			if (hi == PALLOCBITS_NONE)
				hi = end;
			if (!note_run(
			            b,
			            palloc_page_addr(
			                    p, pc.c * PALLOC_CHUNK_PAGES + lo),
			            hi - lo))
				return;
			k = hi;
		}
	}
}

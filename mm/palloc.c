/*
 * mm/palloc.c: the page allocator's searches, allocation and free.
 *
 * Purpose: hand out runs of pages from a growing arena, lowest address
 * first, in time that depends on the tree's height, not the heap's size.
 * Modelled on the Go runtime's pageAlloc (mpagealloc.go).
 *
 * Representation. The arena [arena_base, arena_limit) is cut into chunks
 * of 512 pages (2 MiB). Each chunk has an allocation bitmap and a scavenged
 * bitmap (pallocbits.h, 64 bytes each). Above the chunks sits a radix tree
 * of packed summaries (palloc_sum.h): the leaf level has one summary per
 * chunk, and each level up merges 8 summaries (one cache line) into one.
 *
 * Arithmetic (PALLOC_* in palloc.h):
 *   page            4 KiB = 2^12 bytes
 *   chunk           512 pages = 2^9 pages = 2 MiB = 2^21 bytes
 *   level l entry   covers 512 * 8^(L-1-l) pages; L levels, root l = 0
 *   summary field   21 bits: counts up to 2^21 pages, so a root entry may
 *                   cover at most 2^21 pages = 8 GiB, that is L <= 5
 *   L               the fewest levels (at most 5) leaving <= 8 root entries
 *   root entries    ceil(chunks / 8^(L-1)): the root level is sized for the
 *                   arena, 8 entries up to 64 GiB, then one per 8 GiB
 * Examples: a 2 MiB arena has 1 level (the root is the leaf); 1 GiB (512
 * chunks) has 3 levels with 8 root entries; 512 GiB (2^18 chunks) has 5
 * levels with 64 root entries, and 2^18 * 128 B = 32 MiB of bitmaps plus
 * 2^18 * 8 B * 8/7 = 2.3 MiB of summaries, mapped only as chunks are grown
 * (palloc_grow.c describes the metadata region).
 *
 * Algorithm.
 *   find       From the root, scan a block of entries (the whole root level,
 *              then the 8 children of the entry chosen above), starting at
 *              the entry that holds the search hint if it lies in the block.
 *              A run may be the previous entries' free end plus this entry's
 *              free start; if it reaches npages, it is the answer. Else, if
 *              the entry's max fits, descend into it. At a chunk, search its
 *              bitmap. Each level costs one block scan: O(levels) in all,
 *              with at most root_entries (64 for 512 GiB) at the root.
 *   alloc      Fast path: if the search hint's chunk can hold the run past
 *              the hint, search that chunk's bitmap alone. Else find. Then
 *              set the bits, count and clear the scavenged ones, update.
 *   update     Re-summarise the chunks that changed (a contiguous change
 *              inside one chunk from the free run around it, not the whole
 *              bitmap), then each level above from its 8 children, and
 *              stop at the first level where nothing changed.
 *   hint       search_pi is a page index below which nothing is free. A
 *              find learns a lower bound of the first free page on its way
 *              down (Go's firstFree) and alloc raises the hint to it; an
 *              allocation that starts at the hint moves it past itself.
 *              free and grow lower it. A search starts at the hint and so
 *              never rewalks the full region below it.
 *
 * Invariants (palloc_check_locked verifies each):
 *   1. A grown chunk's leaf summary is pallocbits_summarize of its bitmap;
 *      a chunk not grown has summary 0 (it looks wholly allocated).
 *   2. Every summary above the leaves is the merge of its 8 children.
 *   3. A scavenged page is free: scav & alloc == 0 in every chunk.
 *   4. No free page lies below search_pi; search_pi <= arena_pages.
 *   5. stats count exactly the grown, free and scavenged pages.
 *   6. In an arena based at address 0, page 0 is allocated once grown, so
 *      that 0 can mean failure.
 *
 * Locking: every _locked function needs the owner's lock (asserted when the
 * owner gave it to palloc_init); palloc never logs under it.
 * Limits: runs up to the whole arena (PALLOC_MAX_ARENA_BYTES); no page cache
 * (pagecache.c) and no scavenger here: the scavenged bitmap is only kept.
 */
#include "palloc_internal.h"

/* The window of page indices known to hold the first free page. */
struct first_free {
	size_t lo, hi;
};

static inline void found_free(struct first_free *ff, size_t base, size_t n)
{
	if (base >= ff->lo && base + n <= ff->hi) {
		ff->lo = base;
		ff->hi = base + n;
	}
}

enum scan { SCAN_NONE, SCAN_DESCEND, SCAN_FIT };

/*
 * Scans entries [j, hi) of level l for npages: SCAN_FIT with *out the run's
 * first page index, SCAN_DESCEND with *out the entry that holds a fit, or
 * SCAN_NONE.
 */
static enum scan scan_level(const struct palloc *p, unsigned l, size_t j,
                            size_t hi, size_t npages, struct first_free *ff,
                            size_t *out)
{
	const palloc_sum_t *sums = p->summary[l];
	unsigned log = palloc_level_log_pages(p, l);
	size_t full = (size_t)1 << log, run = 0, run_base = 0;
	for (; j < hi; j++) {
		palloc_sum_t s = sums[j];
		if (s == 0) {
			run = 0;
			continue;
		}
		size_t base = j << log;
		found_free(ff, base, full);
		size_t start = palloc_sum_start(s);
		if (run + start >= npages) {
			*out = run == 0 ? base : run_base;
			return SCAN_FIT;
		}
		if (palloc_sum_max(s) >= npages) {
			*out = j;
			return SCAN_DESCEND;
		}
		if (run == 0 || start < full) {
			run = palloc_sum_end(s);
			run_base = base + full - run;
		} else {
			run += full;
		}
	}
	return SCAN_NONE;
}

size_t palloc_find_locked(const struct palloc *p, size_t npages, size_t *hint)
{
	struct first_free ff = {0, p->arena_pages};
	size_t i = 0, lo = 0, hi = p->root_entries, out;
	for (unsigned l = 0; l < p->levels; l++) {
		size_t j = p->search_pi >> palloc_level_log_pages(p, l);
		if (j < lo || j >= hi)
			j = lo;
		enum scan r = scan_level(p, l, j, hi, npages, &ff, &out);
		if (r == SCAN_FIT) {
			*hint = ff.lo;
			return out;
		}
		if (r == SCAN_NONE) {
			if (l != 0)
				mm_panic("palloc: level %u entry %zu promised "
				         "%zu free pages that its children do "
				         "not have",
				         l - 1, i, npages);
			*hint = p->arena_pages;
			return PALLOC_NONE;
		}
		i = out;
		lo = i << PALLOC_LEVEL_BITS;
		hi = lo + ((size_t)1 << PALLOC_LEVEL_BITS);
	}
	/* i is a chunk whose max fits npages. */
	size_t base = i * PALLOC_CHUNK_PAGES;
	unsigned from = 0, first;
	if (p->search_pi >= base && p->search_pi < base + PALLOC_CHUNK_PAGES)
		from = p->search_pi & PALLOC_CHUNK_MASK;
	unsigned k = pallocbits_find(&p->alloc[i], npages, from, &first);
	if (k == PALLOCBITS_NONE)
		mm_panic("palloc: chunk %zu's summary promised %zu free pages "
		         "that its bitmap does not have",
		         i, npages);
	found_free(&ff, base + first, PALLOC_CHUNK_PAGES - first);
	*hint = ff.lo;
	return base + k;
}

/* The hint's chunk alone, when the run may fit there past the hint. */
static size_t find_fast(const struct palloc *p, size_t npages, size_t *hint)
{
	size_t c = p->search_pi / PALLOC_CHUNK_PAGES;
	unsigned from = p->search_pi & PALLOC_CHUNK_MASK, first;
	if (npages > PALLOC_CHUNK_PAGES - from || !palloc_chunk_grown(p, c) ||
	    palloc_sum_max(palloc_leaf(p)[c]) < npages)
		return PALLOC_NONE;
	unsigned k = pallocbits_find(&p->alloc[c], npages, from, &first);
	if (k == PALLOCBITS_NONE)
		return PALLOC_NONE;
	*hint = c * PALLOC_CHUNK_PAGES + first;
	return c * PALLOC_CHUNK_PAGES + k;
}

/* The scavenged bits of one piece, as the low pc->n bits (n <= 64). */
static uint64_t scav_bits(const struct palloc *p, const struct palloc_piece *pc)
{
	uint64_t bits = 0;
	for (unsigned k = 0; k < pc->n; k++)
		if (p->scav[pc->c].w[(pc->i + k) / 64] >> ((pc->i + k) % 64) &
		    1)
			bits |= 1ull << k;
	return bits;
}

/* Sets the allocation bits of [pi, pi + npages), clears their scavenged
 * bits, and returns how many were scavenged. For npages <= 64, *mask (if
 * not NULL) receives which: bit k for page pi + k; *scav (if not NULL)
 * the stretch from the first to the last (struct palloc_backed). */
static size_t mark_allocated(struct palloc *p, size_t pi, size_t npages,
                             uint64_t *mask, struct palloc_run *scav)
{
	size_t nscav = 0, left = npages, lo = 0, hi = 0; /* scav: [lo, hi) */
	unsigned shift = 0;
	if (mask)
		*mask = 0;
	palloc_free_pages_add(p, -npages);
	for (struct palloc_piece pc; palloc_next_piece(&pi, &left, &pc);) {
		pallocbits_set(&p->alloc[pc.c], pc.i, pc.n);
		if (!p->scav)
			continue;
		const struct pallocbits *s = &p->scav[pc.c];
		unsigned k = pallocbits_count(s, pc.i, pc.n);
		size_t at = (size_t)pc.c * PALLOC_CHUNK_PAGES;
		if (k && scav && hi == 0)
			lo = at + pallocbits_first_set(s, pc.i, pc.n);
		if (k && scav)
			hi = at + pallocbits_last_set(s, pc.i, pc.n) + 1;
		if (k && mask)
			*mask |= scav_bits(p, &pc) << shift;
		if (k)
			pallocbits_clear(&p->scav[pc.c], pc.i, pc.n);
		nscav += k;
		shift += pc.n;
	}
	p->stats.scav_pages -= nscav;
	if (scav)
		*scav = (struct palloc_run){hi ? palloc_page_addr(p, lo) : 0,
		                            hi - lo};
	return nscav;
}

static void mark_free(struct palloc *p, size_t pi, size_t npages)
{
	palloc_free_pages_add(p, npages);
	for (struct palloc_piece pc; palloc_next_piece(&pi, &npages, &pc);)
		pallocbits_clear(&p->alloc[pc.c], pc.i, pc.n);
}

/* palloc_alloc_locked, and for runs of at most 64 pages the mask of
 * palloc_alloc_mask_locked, or the backed runs of
 * palloc_alloc_backed_locked. */
static uintptr_t alloc_locked(struct palloc *p, size_t npages, size_t *nscav,
                              uint64_t *mask, struct palloc_backed *backed)
{
	p->refusal.op = NULL;
	if (nscav)
		*nscav = 0;
	if (npages == 0 || npages > p->arena_pages) {
		palloc_refuse(p, "alloc",
		              npages ? "larger than the arena"
		                     : "zero pages requested",
		              0, 0, npages);
		return 0;
	}
	if (p->search_pi >= p->arena_pages)
		return 0; /* nothing is free */
	size_t hint, pi = find_fast(p, npages, &hint);
	if (pi == PALLOC_NONE) {
		pi = palloc_find_locked(p, npages, &hint);
		if (pi == PALLOC_NONE) {
			if (npages == 1)
				p->search_pi = p->arena_pages;
			return 0;
		}
	}
	if (backed)
		palloc_note_backed(p, pi, npages, backed);
	size_t scav = mark_allocated(p, pi, npages, mask,
	                             backed ? &backed->scav : NULL);
	palloc_update_locked(p, pi, npages,
	                     PALLOC_UPDATE_ALLOC | PALLOC_UPDATE_CONTIG);
	if (hint > p->search_pi)
		p->search_pi = hint;
	if (p->search_pi == pi)
		p->search_pi = pi + npages;
	if (nscav)
		*nscav = scav;
	return palloc_page_addr(p, pi);
}

uintptr_t palloc_alloc_locked(struct palloc *p, size_t npages, size_t *nscav)
{
	palloc_assert_locked(p, "palloc_alloc_locked");
	return alloc_locked(p, npages, nscav, NULL, NULL);
}

uintptr_t palloc_alloc_backed_locked(struct palloc *p, size_t npages,
                                     size_t *nscav, struct palloc_backed *b)
{
	palloc_assert_locked(p, "palloc_alloc_backed_locked");
	b->n = 0;
	return alloc_locked(p, npages, nscav, NULL, b);
}

uintptr_t palloc_alloc_mask_locked(struct palloc *p, size_t npages,
                                   uint64_t *scav_mask)
{
	palloc_assert_locked(p, "palloc_alloc_mask_locked");
	*scav_mask = 0;
	if (npages > 64) {
		palloc_refuse(p, "alloc", "over 64 pages for a mask", 0, 0,
		              npages);
		return 0;
	}
	return alloc_locked(p, npages, NULL, scav_mask, NULL);
}

static bool alloc_range(struct palloc *p, uintptr_t base, size_t npages,
                        size_t *nscav, struct palloc_backed *backed)
{
	p->refusal.op = NULL;
	if (nscav)
		*nscav = 0;
	uintptr_t bad;
	const char *why = palloc_range_problem(p, base, npages, &bad);
	size_t pi = (base - p->arena_base) >> MM_PAGE_SHIFT;
	size_t at = pi, left = why ? 0 : npages;
	for (struct palloc_piece pc; palloc_next_piece(&at, &left, &pc);)
		if (pallocbits_first_set(&p->alloc[pc.c], pc.i, pc.n) !=
		    PALLOCBITS_NONE)
			why = "a page in it is allocated";
	if (why) {
		palloc_refuse(p, "alloc_range", why, base,
		              palloc_range_limit(base, npages), npages);
		return false;
	}
	if (backed)
		palloc_note_backed(p, pi, npages, backed);
	size_t scav = mark_allocated(p, pi, npages, NULL,
	                             backed ? &backed->scav : NULL);
	palloc_update_locked(p, pi, npages,
	                     PALLOC_UPDATE_ALLOC | PALLOC_UPDATE_CONTIG);
	if (p->search_pi == pi)
		p->search_pi = pi + npages;
	if (nscav)
		*nscav = scav;
	return true;
}

bool palloc_alloc_range_locked(struct palloc *p, uintptr_t base, size_t npages,
                               size_t *nscav)
{
	palloc_assert_locked(p, "palloc_alloc_range_locked");
	return alloc_range(p, base, npages, nscav, NULL);
}

bool palloc_alloc_range_backed_locked(struct palloc *p, uintptr_t base,
                                      size_t npages, size_t *nscav,
                                      struct palloc_backed *b)
{
	palloc_assert_locked(p, "palloc_alloc_range_backed_locked");
	b->n = 0;
	return alloc_range(p, base, npages, nscav, b);
}

void palloc_free_check_locked(struct palloc *p, uintptr_t base, size_t npages)
{
	palloc_assert_locked(p, "palloc_free_check_locked");
	uintptr_t bad;
	const char *why = palloc_range_problem(p, base, npages, &bad);
	if (why)
		palloc_bad_free(p, "free", base, npages, bad, why);
	size_t at = (base - p->arena_base) >> MM_PAGE_SHIFT, left = npages;
	for (struct palloc_piece pc; palloc_next_piece(&at, &left, &pc);) {
		unsigned k =
		        pallocbits_first_clear(&p->alloc[pc.c], pc.i, pc.n);
		if (k != PALLOCBITS_NONE)
			palloc_bad_free(
			        p, "free", base, npages,
			        palloc_page_addr(p,
			                         pc.c * PALLOC_CHUNK_PAGES + k),
			        "is not allocated");
	}
}

void palloc_free_locked(struct palloc *p, uintptr_t base, size_t npages)
{
	palloc_free_check_locked(p, base, npages);
	size_t pi = (base - p->arena_base) >> MM_PAGE_SHIFT;
	mark_free(p, pi, npages);
	palloc_update_locked(p, pi, npages, PALLOC_UPDATE_CONTIG);
	if (pi < p->search_pi)
		p->search_pi = pi;
}

void palloc_free_mask_locked(struct palloc *p, uintptr_t base, size_t npages,
                             uint64_t scav_mask)
{
	palloc_assert_locked(p, "palloc_free_mask_locked");
	if (npages > 64 || (npages < 64 && scav_mask >> npages))
		mm_panic("palloc: free_mask of %zu pages at %#lx with mask "
		         "%#lx",
		         npages, base, scav_mask);
	palloc_free_locked(p, base, npages); /* checks the range */
	if (!p->scav || !scav_mask)
		return;
	size_t pi = (base - p->arena_base) >> MM_PAGE_SHIFT;
	for (unsigned k = 0; k < npages; k++) {
		if (!(scav_mask >> k & 1))
			continue;
		size_t at = pi + k;
		pallocbits_set(&p->scav[at / PALLOC_CHUNK_PAGES],
		               (unsigned)(at & PALLOC_CHUNK_MASK), 1);
		p->stats.scav_pages++;
	}
}

size_t palloc_free_pages_hint(const struct palloc *p)
{
	return __atomic_load_n(&p->stats.free_pages, __ATOMIC_RELAXED);
}

size_t palloc_free_below_locked(const struct palloc *p, uintptr_t addr)
{
	palloc_assert_locked(p, "palloc_free_below_locked");
	if (addr <= p->arena_base || addr > p->arena_limit ||
	    (addr - p->arena_base) % PALLOC_CHUNK_BYTES)
		return 0;
	const palloc_sum_t *leaf = palloc_leaf(p);
	size_t n = 0;
	for (size_t c = (addr - p->arena_base) / PALLOC_CHUNK_BYTES; c-- > 0;) {
		if (!palloc_chunk_grown(p, c))
			break;
		uint64_t end = palloc_sum_end(leaf[c]);
		n += end;
		if (end < PALLOC_CHUNK_PAGES)
			break;
	}
	return n;
}

void palloc_update_locked(struct palloc *p, size_t pi, size_t npages,
                          unsigned how)
{
	size_t c0 = pi / PALLOC_CHUNK_PAGES;
	size_t c1 = (pi + npages - 1) / PALLOC_CHUNK_PAGES; /* inclusive */
	palloc_sum_t *leaf = palloc_leaf(p);
	if (c0 == c1) {
		palloc_sum_t s = how & PALLOC_UPDATE_CONTIG
		                         ? pallocbits_resummarize(
		                                   &p->alloc[c0], leaf[c0],
		                                   pi % PALLOC_CHUNK_PAGES,
		                                   (unsigned)npages,
		                                   how & PALLOC_UPDATE_ALLOC)
		                         : pallocbits_summarize(&p->alloc[c0]);
		if (s == leaf[c0])
			return;
		leaf[c0] = s;
	} else if (how & PALLOC_UPDATE_CONTIG) {
		palloc_sum_t whole =
		        how & PALLOC_UPDATE_ALLOC
		                ? 0
		                : palloc_sum_free(PALLOC_CHUNK_PAGES_LOG);
		leaf[c0] = pallocbits_summarize(&p->alloc[c0]);
		for (size_t c = c0 + 1; c < c1; c++)
			leaf[c] = whole;
		leaf[c1] = pallocbits_summarize(&p->alloc[c1]);
	} else {
		for (size_t c = c0; c <= c1; c++)
			leaf[c] = pallocbits_summarize(&p->alloc[c]);
	}
	for (unsigned l = p->levels - 1; l-- > 0;) {
		unsigned shift = palloc_level_shift(p, l);
		unsigned child_log = palloc_level_log_pages(p, l + 1);
		const palloc_sum_t *child = p->summary[l + 1];
		palloc_sum_t *sums = p->summary[l];
		bool changed = false;
		for (size_t i = c0 >> shift; i <= c1 >> shift; i++) {
			palloc_sum_t s = palloc_sum_merge(
			        &child[i << PALLOC_LEVEL_BITS],
			        (size_t)1 << PALLOC_LEVEL_BITS, child_log);
			if (s != sums[i]) {
				sums[i] = s;
				changed = true;
			}
		}
		if (!changed)
			return;
	}
}

uintptr_t palloc_alloc(struct palloc *p, size_t npages, size_t *nscav)
{
	struct palloc_refusal r;
	unsigned long irq = p->owner_lock ? mm_lock_acquire(p->owner_lock) : 0;
	uintptr_t base = palloc_alloc_locked(p, npages, nscav);
	bool refused = palloc_take_refusal_locked(p, &r);
	if (p->owner_lock)
		mm_lock_release(p->owner_lock, irq);
	if (refused)
		palloc_log_refusal(&r);
	return base;
}

void palloc_free(struct palloc *p, uintptr_t base, size_t npages)
{
	unsigned long irq = p->owner_lock ? mm_lock_acquire(p->owner_lock) : 0;
	palloc_free_locked(p, base, npages);
	if (p->owner_lock)
		mm_lock_release(p->owner_lock, irq);
}

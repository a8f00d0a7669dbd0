/*
 * mm/palloc_check.c: palloc's invariant checker and its error reports.
 *
 * Purpose: make every invariant of palloc.c executable (tests run
 * palloc_check_locked after each operation; a debug kernel can run it
 * live), and say precisely what went wrong when a caller errs: refusals
 * for the owner to log after unlocking, and bad frees dumped into mm_panic.
 * Modelled on the Go runtime's pageAlloc test hooks and its throw() sites.
 *
 * Representation: no state of its own beyond struct palloc's refusal
 * record, one slot holding the last refused call (op NULL when there is
 * none), overwritten by the next refusal. The checker reads struct palloc
 * (palloc_internal.h) and changes nothing.
 *
 * Algorithm (check): one pass over the chunks recomputes each leaf summary,
 * the scavenged-implies-free rule, page 0 of an arena at address 0 and the
 * page counts (palloc.c invariants 1, 3, 5, 6); one pass per level
 * recomputes each summary from its 8 children (2); then the pages below the
 * search hint are searched for a free one (4), and the scavenge cursor is
 * checked to lie inside the arena (palloc_scav.c invariant 3). Metadata
 * pages that were never mapped hold nothing: their summaries count as 0
 * and are not read, and a grown chunk or free child under one is an error;
 * so is a grown chunk any of whose metadata (bitmaps, summaries) is not
 * mapped (palloc_grow.c's invariant), checked before its bitmaps are read.
 *
 * Policy for errors (the port decides what mm_panic does: the kernel
 * panics, the host test port records the message and unwinds):
 *   refused   zero-page or larger-than-arena alloc, bad grow, alloc_range
 *             over pages that are not free: nothing changes, the record
 *             names the range, the owner logs it after unlocking.
 *   bad free  free of a page that is not allocated, not in a grown chunk,
 *             outside the arena or misaligned: mm_panic, with the bitmaps
 *             of the chunk around the offending page, before anything
 *             changed. A bad free means the caller's bookkeeping is broken,
 *             so carrying on would hand the same pages out twice.
 *   check     a broken invariant: mm_panic with the entry, what it holds
 *             and what it should hold.
 *
 * Invariants of this file:
 *   1. A check, a range test or a report changes nothing in struct palloc
 *      (they take it const); only palloc_refuse and
 *      palloc_take_refusal_locked write, and only the refusal record.
 *   2. Every mm_panic here names the range, page, entry or count at fault
 *      and why, before any state was changed.
 *
 * Locking: palloc_check takes the owner's lock (if palloc_init was given
 * one) around palloc_check_locked; palloc_log_refusal must run without it;
 * everything else needs it held. mm_panic is allowed under it (it does not
 * return), mm_log is not.
 * Limits: a check reads every mapped summary and every grown chunk's
 * bitmaps, so tests run it after each operation on small arenas; the kernel
 * calls it only from tests (frames_check) and, through mheap_check, from the
 * shell's stress command.
 */
#include "palloc_internal.h"

const char *palloc_range_problem(const struct palloc *p, uintptr_t base,
                                 size_t npages, uintptr_t *bad)
{
	*bad = base;
	if (npages == 0)
		return "starts an empty range";
	if (base & (MM_PAGE_SIZE - 1))
		return "is not page aligned";
	if (base < p->arena_base || base >= p->arena_limit)
		return "is outside the arena";
	size_t pi = (base - p->arena_base) >> MM_PAGE_SHIFT;
	if (npages > p->arena_pages - pi) {
		*bad = p->arena_limit;
		return "is past the arena's end";
	}
	if (p->arena_base == 0 && base == 0)
		return "is reserved (page 0 of an arena at address 0)";
	for (size_t c = pi / PALLOC_CHUNK_PAGES;
	     c <= (pi + npages - 1) / PALLOC_CHUNK_PAGES; c++) {
		if (!palloc_chunk_grown(p, c)) {
			size_t first = c * PALLOC_CHUNK_PAGES;
			*bad = palloc_page_addr(p, first > pi ? first : pi);
			return "is in a chunk that was never grown";
		}
	}
	return NULL;
}

void palloc_refuse(struct palloc *p, const char *op, const char *reason,
                   uintptr_t base, uintptr_t limit, size_t npages)
{
	p->refusal = (struct palloc_refusal){
	        .op = op,
	        .reason = reason,
	        .base = base,
	        .limit = limit,
	        .npages = npages,
	        .arena_base = p->arena_base,
	        .arena_limit = p->arena_limit,
	};
}

bool palloc_take_refusal_locked(struct palloc *p, struct palloc_refusal *r)
{
	palloc_assert_locked(p, "palloc_take_refusal_locked");
	if (p->refusal.op == NULL)
		return false;
	*r = p->refusal;
	p->refusal.op = NULL;
	return true;
}

void palloc_log_refusal(const struct palloc_refusal *r)
{
	if (r->base == 0 && r->limit == 0)
		mm_log("palloc: %s of %zu pages refused: %s; arena [0x%lx, "
		       "0x%lx)",
		       r->op, r->npages, r->reason, r->arena_base,
		       r->arena_limit);
	else
		mm_log("palloc: %s [0x%lx, 0x%lx) refused: %s; arena [0x%lx, "
		       "0x%lx)",
		       r->op, r->base, r->limit, r->reason, r->arena_base,
		       r->arena_limit);
}

void palloc_bad_free(const struct palloc *p, const char *op, uintptr_t base,
                     size_t npages, uintptr_t bad, const char *why)
{
	uintptr_t limit = palloc_range_limit(base, npages);
	size_t pi = (bad - p->arena_base) >> MM_PAGE_SHIFT;
	size_t c = pi / PALLOC_CHUNK_PAGES;
	if (bad < p->arena_base || bad >= p->arena_limit ||
	    !palloc_chunk_grown(p, c))
		mm_panic("palloc: %s [0x%lx, 0x%lx) (%zu pages): page 0x%lx "
		         "%s; arena [0x%lx, 0x%lx)",
		         op, base, limit, npages, bad, why, p->arena_base,
		         p->arena_limit);
	static const struct pallocbits none;
	const uint64_t *a = p->alloc[c].w,
	               *s = (p->scav ? &p->scav[c] : &none)->w;
	palloc_sum_t sum = palloc_leaf(p)[c];
	mm_panic("palloc: %s [0x%lx, 0x%lx) (%zu pages): page 0x%lx %s\n"
	         "palloc: its chunk [0x%lx, +2 MiB), page %zu of 512, bitmaps "
	         "from page 0 up, 64 pages a word:\n"
	         "palloc:   alloc %016lx %016lx %016lx %016lx %016lx %016lx "
	         "%016lx %016lx\n"
	         "palloc:   scav  %016lx %016lx %016lx %016lx %016lx %016lx "
	         "%016lx %016lx\n"
	         "palloc:   summary (start %lu, max %lu, end %lu); search hint "
	         "0x%lx",
	         op, base, limit, npages, bad, why,
	         palloc_page_addr(p, c * PALLOC_CHUNK_PAGES),
	         pi & PALLOC_CHUNK_MASK, a[0], a[1], a[2], a[3], a[4], a[5],
	         a[6], a[7], s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
	         palloc_sum_start(sum), palloc_sum_max(sum),
	         palloc_sum_end(sum), palloc_page_addr(p, p->search_pi));
}

void palloc_stats_locked(const struct palloc *p, struct palloc_stats *st)
{
	palloc_assert_locked(p, "palloc_stats_locked");
	*st = p->stats;
}

static void bad_sum(const struct palloc *p, unsigned l, size_t i,
                    palloc_sum_t have, palloc_sum_t want, const char *from)
{
	if (have == want)
		return;
	mm_panic("palloc: check: level %u entry %zu (pages from 0x%lx) is "
	         "(start %lu, max %lu, end %lu), but its %s say (%lu, %lu, "
	         "%lu)",
	         l, i, palloc_page_addr(p, i << palloc_level_log_pages(p, l)),
	         palloc_sum_start(have), palloc_sum_max(have),
	         palloc_sum_end(have), from, palloc_sum_start(want),
	         palloc_sum_max(want), palloc_sum_end(want));
}

/* Summaries from s to the end of its page: the levels are packed, 64-byte
 * aligned (palloc_grow.c), so a page's first need not be an index that is
 * a multiple of a page's count. */
static size_t sums_left_in_page(const palloc_sum_t *s)
{
	return (MM_PAGE_SIZE - ((uintptr_t)s & (MM_PAGE_SIZE - 1))) /
	       sizeof(*s);
}

/* True if s is the first summary of a page. */
static bool sum_starts_page(const palloc_sum_t *s)
{
	return ((uintptr_t)s & (MM_PAGE_SIZE - 1)) == 0;
}

/* Invariants 1, 3 and 6 for chunk c, whose leaf summary is mapped; adds
 * its pages to *n. */
static void check_chunk(const struct palloc *p, size_t c,
                        struct palloc_stats *n)
{
	palloc_sum_t want = 0;
	if (c < p->arena_chunks && palloc_chunk_grown(p, c)) {
		/* Else reading its bitmaps would fault, not report. */
		if (!palloc_chunk_meta_mapped(p, c))
			mm_panic("palloc: check: chunk %zu is grown but its "
			         "metadata is not mapped (bitmaps or "
			         "summaries)",
			         c);
		const struct pallocbits *a = &p->alloc[c];
		want = pallocbits_summarize(a);
		n->grown_pages += PALLOC_CHUNK_PAGES;
		n->free_pages += PALLOC_CHUNK_PAGES -
		                 pallocbits_count(a, 0, PALLOC_CHUNK_PAGES);
		for (unsigned w = 0; p->scav && w < PALLOCBITS_WORDS; w++) {
			uint64_t both = a->w[w] & p->scav[c].w[w];
			size_t pi = c * PALLOC_CHUNK_PAGES + w * 64;
			if (both)
				mm_panic("palloc: check: page 0x%lx is "
				         "allocated and scavenged",
				         palloc_page_addr(
				                 p, pi + pallocbits_ctz(both)));
			n->scav_pages += pallocbits_popcount(p->scav[c].w[w]);
		}
		if (p->arena_base == 0 && c == 0 && !(a->w[0] & 1))
			mm_panic("palloc: check: page 0 of an arena at address "
			         "0 is free");
	}
	bad_sum(p, p->levels - 1, c, palloc_leaf(p)[c], want, "bitmaps");
}

/* Invariants 1, 3, 5 and 6: leaves, scavenged pages, counts. A page of
 * leaf summaries at a time (a level need not start a page: the parts
 * are packed, palloc_grow.c), skipped if it was never mapped. */
static void check_chunks(const struct palloc *p)
{
	const palloc_sum_t *leaf = palloc_leaf(p);
	size_t end = palloc_level_entries(p, p->levels - 1);
	struct palloc_stats n = {0, 0, 0};
	for (size_t c = 0; c < end;) {
		size_t next = c + sums_left_in_page(&leaf[c]);
		if (next > end)
			next = end;
		if (!palloc_meta_mapped(p, &leaf[c], sizeof(*leaf))) {
			/* Never mapped: none of its chunks may be grown. */
			for (size_t k = c; k < next; k++)
				if (k < p->arena_chunks &&
				    palloc_chunk_grown(p, k))
					mm_panic("palloc: check: chunk %zu is "
					         "grown but its summary is not "
					         "mapped",
					         k);
		} else {
			for (size_t k = c; k < next; k++)
				check_chunk(p, k, &n);
		}
		c = next;
	}
	if (n.grown_pages != p->stats.grown_pages ||
	    n.free_pages != p->stats.free_pages ||
	    n.scav_pages != p->stats.scav_pages)
		mm_panic("palloc: check: counted %zu grown, %zu free, %zu "
		         "scavenged pages; stats say %zu, %zu, %zu",
		         n.grown_pages, n.free_pages, n.scav_pages,
		         p->stats.grown_pages, p->stats.free_pages,
		         p->stats.scav_pages);
}

/* Invariant 2: each level above the leaves against its children. */
static void check_levels(const struct palloc *p)
{
	for (unsigned l = 0; l + 1 < p->levels; l++) {
		const palloc_sum_t *child = p->summary[l + 1];
		unsigned log = palloc_level_log_pages(p, l + 1);
		bool own = false, kids = false;
		for (size_t i = 0; i < palloc_level_entries(p, l); i++) {
			const palloc_sum_t *block =
			        &child[i << PALLOC_LEVEL_BITS];
			if (i == 0 || sum_starts_page(&p->summary[l][i]))
				own = palloc_meta_mapped(p, &p->summary[l][i],
				                         sizeof(palloc_sum_t));
			if (i == 0 || sum_starts_page(block))
				kids = palloc_meta_mapped(p, block,
				                          sizeof(palloc_sum_t));
			palloc_sum_t want =
			        kids ? palloc_sum_merge(block, 8, log) : 0;
			if (own)
				bad_sum(p, l, i, p->summary[l][i], want,
				        "children");
			else if (want != 0)
				mm_panic("palloc: check: level %u entry %zu "
				         "is not mapped but its children are "
				         "free",
				         l, i);
		}
	}
}

/* Invariant 4: nothing free below the search hint; and the scavenge
 * cursor inside the arena (palloc_scav.c invariant 3). */
static void check_hint(const struct palloc *p)
{
	if (p->search_pi > p->arena_pages)
		mm_panic("palloc: check: search hint page %zu is past the "
		         "arena's %zu pages",
		         p->search_pi, p->arena_pages);
	if (p->scav_top > p->arena_chunks)
		mm_panic("palloc: check: scavenge cursor chunk %zu is past the "
		         "arena's %zu chunks",
		         p->scav_top, p->arena_chunks);
	for (size_t c = 0; c * PALLOC_CHUNK_PAGES < p->search_pi; c++) {
		if (p->grown[c / 64] == 0)
			c |= 63;
		if (!palloc_chunk_grown(p, c))
			continue;
		size_t n = p->search_pi - c * PALLOC_CHUNK_PAGES;
		unsigned k = pallocbits_first_clear(
		        &p->alloc[c], 0,
		        n < PALLOC_CHUNK_PAGES ? (unsigned)n
		                               : PALLOC_CHUNK_PAGES);
		if (k != PALLOCBITS_NONE)
			mm_panic("palloc: check: search hint 0x%lx is above "
			         "the free page 0x%lx",
			         palloc_page_addr(p, p->search_pi),
			         palloc_page_addr(p,
			                          c * PALLOC_CHUNK_PAGES + k));
	}
}

void palloc_check_locked(const struct palloc *p)
{
	palloc_assert_locked(p, "palloc_check_locked");
	check_chunks(p);
	check_levels(p);
	check_hint(p);
}

void palloc_check(struct palloc *p)
{
	unsigned long irq = p->owner_lock ? mm_lock_acquire(p->owner_lock) : 0;
	palloc_check_locked(p);
	if (p->owner_lock)
		mm_lock_release(p->owner_lock, irq);
}

size_t palloc_longest_free_locked(const struct palloc *p)
{
	palloc_assert_locked(p, "palloc_longest_free_locked");
	const palloc_sum_t *root = p->summary[0];
	uint64_t full = (uint64_t)1 << palloc_level_log_pages(p, 0);
	uint64_t best = 0, end = 0; /* end: the free run reaching entry i */
	for (size_t i = 0; i < p->root_entries; i++) {
		uint64_t st = palloc_sum_start(root[i]);
		uint64_t mx = palloc_sum_max(root[i]);
		end = mx == full ? end + full : end + st;
		best = end > best ? end : best;
		best = mx > best ? mx : best;
		if (mx != full)
			end = palloc_sum_end(root[i]);
	}
	return best;
}

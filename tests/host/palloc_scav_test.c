/*
 * palloc's scavenging primitives (mm/palloc_scav.c) as tables: the highest
 * free backed run first, runs across bitmap words, nearly full chunks
 * skipped unless forced, take and return keeping the bitmaps and
 * counts exact (palloc_check after every step), and the cursor staying
 * on its chunk, going down before it wraps around to find frees above it,
 * and going back to the top after a search that found nothing; masks of
 * runs up to the largest, 64 pages, and none naming a page past its run.
 */
#include "palloc_test_util.h"

#define TAKE 0
#define MARK 1 /* take, then return: free and scavenged */
#define NONE ((size_t)-1)

struct scav_step {
	int op;         /* TAKE or MARK */
	size_t max;     /* pages asked for */
	unsigned flags; /* enum palloc_scav_flags */
	size_t want_pi; /* first page of the run, or NONE */
	size_t want_n;
};

struct scav_case {
	const char *name;
	struct palloc_test_chunk chunks[4];
	size_t nchunks;
	struct scav_step steps[6];
	size_t nsteps;
};

static const struct scav_case scav_cases[] = {
        {"highest_first",
         {{.chunk = 0, .alloc = {{0, 100}}, .scav = {{200, 112}}},
          {.chunk = 1, .alloc = {{0, 512}}}},
         2,
         {{TAKE, 64, 0, P(0, 448), 64},
          {TAKE, 300, 0, P(0, 312), 136},
          {TAKE, 1000, 0, P(0, 100), 100},
          {TAKE, 1000, 0, NONE, 0}},
         4},
        {"across_words",
         {{.chunk = 0, .alloc = {{0, 10}, {500, 12}}}},
         1,
         {{MARK, 1000, 0, P(0, 10), 490}, {MARK, 1, 0, NONE, 0}},
         2},
        {"dense_skipped_unless_forced",
         {{.chunk = 0, .alloc = {{0, 100}}}, {.chunk = 1, .alloc = {{0, 500}}}},
         2,
         {{TAKE, 1000, 0, P(0, 100), 412},
          {TAKE, 1000, 0, NONE, 0},
          {MARK, 1000, PALLOC_SCAV_FORCE, P(1, 500), 12}},
         3},
        {"run_starts_on_a_word",
         {{.chunk = 0, .alloc = {{0, 128}, {300, 212}}},
          {.chunk = 1, .alloc = {{0, 64}, {192, 320}}}},
         2,
         {{TAKE, 1000, PALLOC_SCAV_FORCE, P(1, 64), 128},
          {TAKE, 1000, 0, P(0, 128), 172},
          {TAKE, 1000, 0, NONE, 0}},
         3},
        {"dense_from_496_allocated_pages",
         {{.chunk = 0, .alloc = {{0, 495}}}, {.chunk = 1, .alloc = {{0, 496}}}},
         2,
         {{TAKE, 1000, 0, P(0, 495), 17},
          {TAKE, 1000, 0, NONE, 0},
          {TAKE, 1000, PALLOC_SCAV_FORCE, P(1, 496), 16}},
         3},
        {"mark_leaves_pages_free",
         {{.chunk = 2, .alloc = {{0, 10}}, .scav = {{500, 12}}}},
         1,
         {{MARK, 50, 0, P(2, 450), 50}, {MARK, 50, 0, P(2, 400), 50}},
         2},
};

static bool run_step(struct palloc *p, const struct scav_step *s,
                     struct palloc_run *r)
{
	bool found = palloc_scav_take_locked(p, s->max, s->flags, r);
	/* MARK: what the heap does with a taken run once it is unmapped
	 * and shot down: it goes back free and scavenged. */
	if (found && s->op == MARK)
		palloc_scav_return_locked(p, r->base, r->npages);
	return found;
}

KTEST(palloc_scav, table)
{
	for (size_t t = 0; t < NELEM(scav_cases); t++) {
		const struct scav_case *c = &scav_cases[t];
		struct palloc p;
		KASSERT(tp_new(&p, TP_BASE, 8, 0));
		KASSERT(palloc_test_build(&p, c->chunks, c->nchunks));
		struct palloc_run taken[6];
		size_t ntaken = 0;
		for (size_t i = 0; i < c->nsteps; i++) {
			const struct scav_step *s = &c->steps[i];
			struct palloc_stats before, after;
			palloc_stats_locked(&p, &before);
			struct palloc_run r = {0, 0};
			bool found = run_step(&p, s, &r);
			palloc_stats_locked(&p, &after);
			if (found != (s->want_pi != NONE) ||
			    (found && (r.base != tp_addr(&p, s->want_pi) ||
			               r.npages != s->want_n)))
				ktest_fail_at(
				        __FILE__, __LINE__,
				        "%s step %zu: found %d at 0x%lx+%zu",
				        c->name, i, found, r.base, r.npages);
			size_t n = found ? r.npages : 0;
			if (s->op == TAKE) {
				KEXPECT_EQ(after.free_pages,
				           before.free_pages - n);
				if (found)
					taken[ntaken++] = r;
			} else {
				KEXPECT_EQ(after.scav_pages,
				           before.scav_pages + n);
			}
			TP_CHECK(&p, c->name);
		}
		for (size_t i = 0; i < ntaken; i++) {
			struct palloc_stats before, after;
			palloc_stats_locked(&p, &before);
			palloc_scav_return_locked(&p, taken[i].base,
			                          taken[i].npages);
			palloc_stats_locked(&p, &after);
			KEXPECT_EQ(after.free_pages,
			           before.free_pages + taken[i].npages);
			KEXPECT_EQ(after.scav_pages,
			           before.scav_pages + taken[i].npages);
			TP_CHECK(&p, "after return");
		}
		tp_release(&p);
	}
}

KTEST(palloc_scav, return_marks_scavenged)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk c0 = {.chunk = 0, .alloc = {{0, 256}}};
	KASSERT(palloc_test_build(&p, &c0, 1));
	struct palloc_run r;
	KASSERT(palloc_scav_take_locked(&p, 100, 0, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(0, 412)));
	palloc_scav_return_locked(&p, r.base, r.npages);
	struct palloc_test_chunk want = {
	        .chunk = 0, .alloc = {{0, 256}}, .scav = {{412, 100}}};
	KEXPECT(tp_chunk_is(&p, &want, "after take and return"));
	/* Reusing them reports them scavenged: the owner maps them. */
	size_t nscav;
	KEXPECT_EQ(palloc_alloc(&p, 256, &nscav), tp_addr(&p, P(0, 256)));
	KEXPECT_EQ(nscav, 100);
	TP_CHECK(&p, "after reuse");
	/* Returning pages that are not allocated is a bad free. */
	KEXPECT(MM_PORT_PANICS(
	        palloc_scav_return_locked(&p, tp_addr(&p, P(1, 0)), 1)));
	tp_release(&p);
}

/* A forced take of up to 64 pages, returned at once as the heap returns
 * a run after its shootdown. */
static bool take_and_return(struct palloc *p, struct palloc_run *r)
{
	if (!palloc_scav_take_locked(p, 64, PALLOC_SCAV_FORCE, r))
		return false;
	palloc_scav_return_locked(p, r->base, r->npages);
	return true;
}

KTEST(palloc_scav, cursor_wraps_to_frees_above)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk cs[] = {
	        {.chunk = 0, .alloc = {{0, 500}}},
	        {.chunk = 2, .alloc = {{0, 500}}},
	        {.chunk = 3, .alloc = {{0, 512}}},
	};
	KASSERT(palloc_test_build(&p, cs, NELEM(cs)));
	struct palloc_run r;
	KASSERT(take_and_return(&p, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(2, 500)));
	KASSERT(take_and_return(&p, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(0, 500)));
	/* A free above the cursor is found by wrapping to the top. */
	palloc_free(&p, tp_addr(&p, P(3, 0)), 32);
	KASSERT(take_and_return(&p, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(3, 0)));
	KEXPECT_EQ(r.npages, 32);
	KEXPECT(!take_and_return(&p, &r));
	TP_CHECK(&p, "after wrapping");
	tp_release(&p);
}

/* A take of up to 1000 pages with flags, returned at once. */
static bool take_flags(struct palloc *p, unsigned flags, struct palloc_run *r)
{
	if (!palloc_scav_take_locked(p, 1000, flags, r))
		return false;
	palloc_scav_return_locked(p, r->base, r->npages);
	return true;
}

/*
 * A search that finds nothing puts the cursor back at the top, both when
 * it walked the chunks (only a dense chunk had free backed pages) and when
 * the counts said at once that no free page is backed: the next search
 * then takes the highest run again, here one in chunk 3 above the old
 * cursor rather than one in a chunk below it.
 */
KTEST(palloc_scav, cursor_resets_to_the_top_after_finding_nothing)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk cs[] = {
	        {.chunk = 0, .alloc = {{0, 500}}}, /* dense */
	        {.chunk = 1, .alloc = {{0, 100}}},
	        {.chunk = 2, .alloc = {{0, 512}}},
	        {.chunk = 3, .alloc = {{0, 512}}},
	};
	KASSERT(palloc_test_build(&p, cs, NELEM(cs)));
	struct palloc_run r;
	KASSERT(take_flags(&p, 0, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(1, 100)));
	KEXPECT(!take_flags(&p, 0, &r)); /* walked: chunk 0 is dense */
	palloc_free(&p, tp_addr(&p, P(3, 0)), 32);
	palloc_free(&p, tp_addr(&p, P(1, 0)), 32);
	KASSERT(take_flags(&p, 0, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(3, 0)));
	KASSERT(take_flags(&p, 0, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(1, 0)));
	KASSERT(take_flags(&p, PALLOC_SCAV_FORCE, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(0, 500)));
	KEXPECT(!take_flags(&p, 0, &r)); /* no free backed page at all */
	palloc_free(&p, tp_addr(&p, P(3, 32)), 16);
	palloc_free(&p, tp_addr(&p, P(0, 0)), 16);
	KASSERT(take_flags(&p, 0, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(3, 32)));
	KEXPECT_EQ(r.npages, 16);
	TP_CHECK(&p, "after the resets");
	tp_release(&p);
}

KTEST(palloc_scav, no_scav_mode_finds_nothing)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, PALLOC_NO_SCAV));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	struct palloc_run r;
	KEXPECT(!palloc_scav_take_locked(&p, 64, PALLOC_SCAV_FORCE, &r));
	KEXPECT(!take_and_return(&p, &r));
	TP_CHECK(&p, "no-scav");
	tp_release(&p);
}

/*
 * A run of at most 64 pages across a chunk boundary, its mask: bit k for
 * its k-th page, the second chunk's pages after the first chunk's (the
 * page heap maps the pages of the mask and zeroes the others, and undoes
 * a run it could not map with it). Freed with the mask, every bitmap is
 * as it was. A mask with a bit past the run is refused before anything
 * changes, as is a masked request of over 64 pages.
 */
KTEST(palloc_scav, mask_of_a_run_across_chunks)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk cs[] = {
	        {.chunk = 0, .alloc = {{0, 500}}, .scav = {{505, 3}}},
	        {.chunk = 1, .alloc = {{20, 492}}, .scav = {{4, 16}}},
	};
	KASSERT(palloc_test_build(&p, cs, NELEM(cs)));
	struct tp_snap s = tp_snapshot(&p);
	uintptr_t base = tp_addr(&p, P(0, 500));
	uint64_t mask = 0;
	KASSERT_EQ(palloc_alloc_mask_locked(&p, 20, &mask), base);
	/* Pages 5-7 of the run (chunk 0's 505-507) and 16-19 (chunk 1's
	 * 4-7). */
	KEXPECT_EQ(mask, 0xe0ull | 0xf0000ull);
	TP_CHECK(&p, "after the masked alloc");
	struct tp_snap held = tp_snapshot(&p);
	KEXPECT(MM_PORT_PANICS(
	        palloc_free_mask_locked(&p, base, 20, mask | 1ull << 20)));
	KEXPECT(strstr(mm_port_last_panic(), "free_mask of 20 pages"));
	KEXPECT(tp_unchanged(&p, held));
	palloc_free_mask_locked(&p, base, 20, mask);
	KEXPECT(tp_unchanged(&p, s));
	KEXPECT_EQ(palloc_alloc_mask_locked(&p, 65, &mask), 0);
	KEXPECT_EQ(mask, 0);
	struct palloc_refusal r;
	KEXPECT(palloc_take_refusal_locked(&p, &r));
	KEXPECT(strcmp(r.reason, "over 64 pages for a mask") == 0);
	TP_CHECK(&p, "after the masked free");
	tp_release(&p);
}

/* A take of up to max pages, not forced, returned at once; its run (or
 * {0, 0}) in *r. */
static bool take_max(struct palloc *p, size_t max, struct palloc_run *r)
{
	*r = (struct palloc_run){0, 0};
	if (!palloc_scav_take_locked(p, max, 0, r))
		return false;
	palloc_scav_return_locked(p, r->base, r->npages);
	return true;
}

/*
 * The cursor stays on the chunk it found a run in (a take limited by max
 * goes on in that chunk next), and the chunks below it come before a free
 * above it, found only by wrapping. A cursor on the arena's top chunk
 * (one past it: the arena's chunk count) is valid.
 */
KTEST(palloc_scav, cursor_goes_down_before_wrapping)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk cs[] = {
	        {.chunk = 1, .alloc = {{0, 400}}},
	        {.chunk = 3, .alloc = {{0, 480}}},
	        {.chunk = 7, .alloc = {{0, 448}}},
	};
	KASSERT(palloc_test_build(&p, cs, NELEM(cs)));
	static const struct {
		size_t max, pi, n;
	} want[] = {
	        {32, P(7, 480), 32}, {32, P(7, 448), 32}, {64, P(3, 480), 32},
	        {64, P(1, 448), 64}, {64, P(1, 400), 48}, {64, P(7, 0), 16},
	        {64, NONE, 0},
	};
	for (size_t i = 0; i < NELEM(want); i++) {
		if (i == 3) /* above the cursor, now on chunk 3 */
			palloc_free(&p, tp_addr(&p, P(7, 0)), 16);
		struct palloc_run r;
		bool found = take_max(&p, want[i].max, &r);
		if (found != (want[i].pi != NONE) ||
		    (found && (r.base != tp_addr(&p, want[i].pi) ||
		               r.npages != want[i].n)))
			ktest_fail_at(__FILE__, __LINE__,
			              "take %zu: found %d at 0x%lx+%zu", i,
			              found, r.base, r.npages);
		TP_CHECK(&p, "after a take");
	}
	tp_release(&p);
}

/* The largest masked run, 64 pages across a chunk boundary: its mask has
 * every bit in use, and freed with it, nothing has changed. */
KTEST(palloc_scav, mask_of_64_pages)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk cs[] = {
	        {.chunk = 0, .alloc = {{0, 480}}, .scav = {{490, 4}}},
	        {.chunk = 1, .alloc = {{32, 480}}, .scav = {{0, 8}, {31, 1}}},
	};
	KASSERT(palloc_test_build(&p, cs, NELEM(cs)));
	struct tp_snap s = tp_snapshot(&p);
	uint64_t mask = 0;
	uintptr_t base = tp_addr(&p, P(0, 480));
	KASSERT_EQ(palloc_alloc_mask_locked(&p, 64, &mask), base);
	KEXPECT_EQ(mask, 0x3c00ull | 0xffull << 32 | 1ull << 63);
	TP_CHECK(&p, "after the masked alloc");
	palloc_free_mask_locked(&p, base, 64, mask);
	KEXPECT(tp_unchanged(&p, s));
	TP_CHECK(&p, "after the masked free");
	tp_release(&p);
}

/* A mask may name no page past the run: for 63 pages, bit 63 is one. */
KTEST(palloc_scav, mask_past_a_63_page_run_panics)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk c = {.chunk = 0, .alloc = {{0, 63}}};
	KASSERT(palloc_test_build(&p, &c, 1));
	struct tp_snap held = tp_snapshot(&p);
	size_t free = palloc_free_pages_hint(&p);
	KEXPECT(MM_PORT_PANICS(
	        palloc_free_mask_locked(&p, TP_BASE, 63, 1ull << 63)));
	KEXPECT(strstr(mm_port_last_panic(), "free_mask of 63 pages"));
	KEXPECT(tp_unchanged(&p, held));
	palloc_free_mask_locked(&p, TP_BASE, 63, 1ull << 62);
	KEXPECT_EQ(palloc_free_pages_hint(&p), free + 63);
	TP_CHECK(&p, "after the masked free");
	tp_release(&p);
}

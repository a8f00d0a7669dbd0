/*
 * palloc's edges that a mutation round of mm/palloc*.c found no test
 * for: each test here fails against the mutant it names (the round's
 * notes are in the commit that added them). A growth far past the
 * arena, a scavenge of the one free backed page there is, and a summary
 * above the leaves that promises a run its children do not have.
 */
#include "palloc_test_util.h"

#include "../../mm/palloc_scav.h"

/* A growth whose base lies past the arena's end is refused. With the
 * test of base against the limit dropped, the growth's length was
 * measured from base to the limit, a wrapped subtraction, and accepted:
 * palloc would have written bitmaps and summaries past its metadata.
 * The other growth tests try a base at the limit or inside. */
KTEST(palloc_edges, a_growth_far_past_the_arena_is_refused)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 4, 0));
	mm_port_set_quiet(true);
	KEXPECT(!palloc_grow(&p, TP_BASE + 8 * PALLOC_CHUNK_BYTES,
	                     PALLOC_CHUNK_BYTES));
	mm_port_set_quiet(false);
	TP_CHECK(&p, "after the refusal");
	tp_release(&p);
}

/* The scavenger finds a single free backed page: chunk 0 with every page
 * but the last allocated. An early-out that wanted more free pages than
 * scavenged ones plus one (off by one) never found it. */
KTEST(palloc_edges, scavenge_finds_a_single_free_backed_page)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk c0 = {.chunk = 0, .alloc = {{0, 511}}};
	KASSERT(palloc_test_build(&p, &c0, 1));
	struct palloc_run r = {0, 0};
	KEXPECT(palloc_scav_take_locked(&p, 10, PALLOC_SCAV_FORCE, &r));
	KEXPECT_EQ(r.base, tp_addr(&p, P(0, 511)));
	KEXPECT_EQ(r.npages, 1);
	tp_release(&p);
}

/* A root summary that promises a run its leaves do not have: the find
 * panics naming the level and entry, rather than hand out pages the
 * bitmaps hold allocated. Only the leaf's own promise (its bitmaps)
 * was tested (palloc_check.find_panics_on_a_lying_tree); with this
 * panic dropped, the find returned "nothing free" for a corrupt tree. */
KTEST(palloc_edges, a_root_promise_the_leaves_do_not_keep_panics)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT_EQ(p.levels, 2);
	struct palloc_test_chunk full = {.chunk = 3, .alloc = {{0, 512}}};
	KASSERT(palloc_test_build(&p, &full, 1));
	*palloc_test_summary(&p, 0, 0) = palloc_sum_pack(0, 5, 0);
	palloc_test_set_search_pi(&p, 0);
	KEXPECT(MM_PORT_PANICS(palloc_alloc(&p, 1, NULL)));
	KEXPECT(strstr(mm_port_last_panic(),
	               "level 0 entry 0 promised 1 free pages that its "
	               "children do not have"));
	tp_release(&p);
}

/*
 * An init whose metadata cannot be mapped says so and gives back all it
 * took, address space and pages, and the same init then works: it maps
 * in one call (the mapped bitmap, the grown bitmap and the root level),
 * so no second map can fail after a first. Until a review it made three,
 * and an init whose second failed kept its reservation and the pages of
 * the first for good (a retry leaked them again).
 */
KTEST(palloc_edges, an_init_that_cannot_map_its_metadata_gives_all_back)
{
	struct palloc p;
	size_t reserved = mm_port_reserved_bytes();
	size_t mapped = mm_port_mapped_bytes();
	for (unsigned nth = 1; nth <= 3; nth++) {
		mm_port_set_quiet(true);
		mm_port_fail_map_at(nth);
		bool made = tp_new(&p, TP_BASE, 16, 0);
		mm_port_fail_map_at(0);
		mm_port_set_quiet(false);
		if (made) { /* init made fewer maps than nth */
			KEXPECT(nth > 1);
			tp_release(&p);
			mapped = mm_port_mapped_bytes(); /* not uncounted */
			continue;
		}
		KEXPECT(strstr(mm_port_last_log(), "no memory for metadata"));
		KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
		KEXPECT_EQ(mm_port_mapped_bytes(), mapped);
		/* Used anyway: refused, saying why. Until a review p kept
		 * its pointers into the region given back, and a grow read
		 * and mapped there. */
		mm_port_set_quiet(true);
		KEXPECT(!palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
		mm_port_set_quiet(false);
		KEXPECT(strstr(mm_port_last_log(), "no arena (palloc_init "
		                                   "failed") != NULL);
		KEXPECT_EQ(mm_port_mapped_bytes(), mapped);
	}
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), TP_BASE);
	TP_CHECK(&p, "after the failed inits");
	tp_release(&p);
	KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
}

/* palloc_longest_free_locked against a scan of a model of the pages,
 * after each of 3000 random range allocations and frees over 64 chunks
 * (a root level of several entries, so runs cross entries and chunks). */
#define LF_PAGES (64 * PALLOC_CHUNK_PAGES)
static bool lf_used[LF_PAGES];
static size_t lf_runs[4096][2];

static size_t lf_scan(void)
{
	size_t best = 0, run = 0;
	for (size_t i = 0; i < LF_PAGES; i++) {
		run = lf_used[i] ? 0 : run + 1;
		best = run > best ? run : best;
	}
	return best;
}

static bool lf_free_range(size_t pi, size_t n)
{
	for (size_t i = pi; i < pi + n; i++)
		if (lf_used[i])
			return false;
	return true;
}

KTEST(palloc_edges, the_longest_free_run_matches_a_scan)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 64, 0));
	KASSERT(palloc_grow(&p, TP_BASE, 64 * PALLOC_CHUNK_BYTES));
	memset(lf_used, 0, sizeof(lf_used));
	size_t nruns = 0;
	uint64_t x = 0x2545f4914f6cdd1dull;
	KEXPECT_EQ(palloc_longest_free_locked(&p), LF_PAGES);
	for (int step = 0; step < 3000; step++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (nruns && (x % 5 < 2 || nruns == NELEM(lf_runs))) {
			size_t k = (x >> 8) % nruns, pi = lf_runs[k][0];
			size_t n = lf_runs[k][1];
			palloc_free_locked(&p, tp_addr(&p, pi), n);
			memset(lf_used + pi, 0, n);
			lf_runs[k][0] = lf_runs[--nruns][0];
			lf_runs[k][1] = lf_runs[nruns][1];
		} else {
			size_t n = 1 + (x >> 8) % (step % 4 ? 64 : 3000);
			size_t pi = (x >> 24) % (LF_PAGES - n + 1);
			if (!lf_free_range(pi, n))
				continue;
			KASSERT(palloc_alloc_range_locked(&p, tp_addr(&p, pi),
			                                  n, NULL));
			memset(lf_used + pi, 1, n);
			lf_runs[nruns][0] = pi;
			lf_runs[nruns++][1] = n;
		}
		size_t got = palloc_longest_free_locked(&p), want = lf_scan();
		if (got != want) {
			ktest_fail_at(__FILE__, __LINE__,
			              "step %d: longest free run %zu, a scan "
			              "finds %zu",
			              step, got, want);
			break;
		}
	}
	TP_CHECK(&p, "after the steps");
	tp_release(&p);
}

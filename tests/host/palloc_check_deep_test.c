/*
 * palloc_check over the deepest summary tree palloc builds: five levels
 * (a 512 GiB arena, 2^18 chunks). The other checker tests use a tree of
 * two levels, so a check that skipped the levels only a deep tree has
 * (the level just above the leaves is level 3 here) was never seen to
 * fail. Each test breaks the tree the way a bug would (an update that
 * stopped part of the way up) and expects the check to name the level.
 */
#include <stdatomic.h>

#include "palloc_test_util.h"

#define ARENA_512G ((size_t)1 << 18) /* chunks: five levels */
#define CB         PALLOC_CHUNK_BYTES
#define LEVELS     5

/* The summary entries on the path from chunk c to the root. */
static void path_of(struct palloc *p, size_t c, palloc_sum_t *path[LEVELS])
{
	for (unsigned l = 0; l < LEVELS; l++)
		path[l] = palloc_test_summary(
		        p, l, c >> (PALLOC_LEVEL_BITS * (LEVELS - 1 - l)));
}

/*
 * For each depth k: an allocation of one page in the last chunk, after
 * which the path's entries at levels [0, k] are put back as they were (an
 * update of the summaries that stopped below level k). The levels above k
 * still agree with each other; level k no longer agrees with its children
 * (with the leaf's bitmaps, for k = 4), and the check must say so, naming
 * level k and its entry. Against a check that left out level 3 against
 * the leaves (`l + 1 < levels` bounded to l < 3), k = 3 went unseen.
 */
KTEST(palloc_check_deep, a_stale_summary_at_each_of_five_levels)
{
	static const char *const from[LEVELS] = {"children say", "children say",
	                                         "children say", "children say",
	                                         "bitmaps say"};
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, ARENA_512G, 0));
	KASSERT_EQ(p.levels, LEVELS);
	size_t c = ARENA_512G - 1;
	uintptr_t chunk = TP_BASE + c * CB;
	KASSERT(palloc_grow(&p, chunk, CB));
	palloc_sum_t *path[LEVELS];
	path_of(&p, c, path);
	for (unsigned l = 0; l < LEVELS; l++)
		KASSERT(path[l] != NULL);
	TP_CHECK(&p, "clean");
	for (unsigned k = 0; k < LEVELS; k++) {
		palloc_sum_t before[LEVELS], after[LEVELS];
		for (unsigned l = 0; l < LEVELS; l++)
			before[l] = *path[l];
		KASSERT_EQ(palloc_alloc(&p, 1, NULL), chunk);
		for (unsigned l = 0; l <= k; l++) {
			after[l] = *path[l];
			*path[l] = before[l];
		}
		char want[96];
		snprintf(want, sizeof(want), "level %u entry %zu", k,
		         c >> (PALLOC_LEVEL_BITS * (LEVELS - 1 - k)));
		bool fired = MM_PORT_PANICS(palloc_check(&p));
		if (!fired)
			ktest_fail_at(__FILE__, __LINE__, "k %u: check missed",
			              k);
		else if (!strstr(mm_port_last_panic(), want) ||
		         !strstr(mm_port_last_panic(), from[k]))
			ktest_fail_at(__FILE__, __LINE__,
			              "k %u: check said \"%s\", not %s (%s)", k,
			              mm_port_last_panic(), want, from[k]);
		/* The whole path as the allocation left it, then undone. */
		for (unsigned l = 0; l <= k; l++)
			*path[l] = after[l];
		palloc_free(&p, chunk, 1);
		TP_CHECK(&p, "restored");
	}
	tp_release(&p);
}

/* Flips the record's bit for the metadata page holding addr. */
static void flip_mapped(struct palloc *p, const void *addr)
{
	size_t pg = ((uintptr_t)addr - p->meta_base) / MM_PAGE_SIZE;
	atomic_fetch_xor(&p->mapped[pg / 64], 1ull << (pg % 64));
}

/*
 * A level's summary page recorded as unmapped while its children below
 * are mapped and free: the check must say so rather than skip the entry
 * as it skips a range nothing has grown into (the record of mapped pages
 * corrupted; nothing else makes this). For each level above the leaves,
 * the page of the path's entry is marked unmapped, the check must fail,
 * and the mark is put back. The root's page is mapped at init, so only
 * the levels' check sees it; below the root the grown chunk's own check
 * (its path's pages) speaks first.
 */
KTEST(palloc_check_deep, an_unmapped_summary_over_free_children)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, ARENA_512G, 0));
	KASSERT(p.mapped != NULL);
	size_t c = ARENA_512G - 1;
	KASSERT(palloc_grow(&p, TP_BASE + c * CB, CB));
	palloc_sum_t *path[LEVELS];
	path_of(&p, c, path);
	TP_CHECK(&p, "clean");
	for (unsigned k = 0; k + 1 < LEVELS; k++) {
		flip_mapped(&p, path[k]);
		char want[96];
		if (k == 0)
			snprintf(want, sizeof(want),
			         "level 0 entry %zu is not mapped but its "
			         "children are free",
			         c >> (PALLOC_LEVEL_BITS * (LEVELS - 1)));
		else
			snprintf(want, sizeof(want),
			         "chunk %zu is grown but its metadata is not "
			         "mapped",
			         c);
		if (!MM_PORT_PANICS(palloc_check(&p)))
			ktest_fail_at(__FILE__, __LINE__, "k %u: check missed",
			              k);
		else if (!strstr(mm_port_last_panic(), want))
			ktest_fail_at(__FILE__, __LINE__,
			              "k %u: check said \"%s\", not \"%s\"", k,
			              mm_port_last_panic(), want);
		flip_mapped(&p, path[k]);
		TP_CHECK(&p, "restored");
	}
	tp_release(&p);
}

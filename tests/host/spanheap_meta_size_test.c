/*
 * The metadata arena's size (mm/spanheap_meta.c, spanheap_meta_arena_bytes)
 * against a heap filled to its limits with the most metadata its
 * configuration makes: after it, the arena must still hold its margins,
 * a quarter of the spans' part for the holes between runs and the
 * pools' reserve arrays, and in poison mode with callers' records the
 * stack depot's growth to its most. A mutation audit (M10) found both
 * margins unpinned: either could be cut with no test failing, as no
 * test filled the arena near them. Poison mode's fill reaches the
 * sizing's count for the spans (its side tables, per page, are the most
 * any class takes); the other modes' cannot (no class has spans of one
 * page, which the sizing assumes), so only this one can tell a cut.
 * The terms paid once (slabs, users' blocks, the depot) are compared
 * with what they stand for before the rounding to chunks, which hid any
 * of them lost (a later audit's survivors).
 */
#include <stdio.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* The metadata heap's pages in use. */
static size_t meta_in_use(void)
{
	struct mheap_stats ms;
	mheap_stats(&sh.meta, &ms);
	return ms.in_use_pages;
}

/* The metadata pages in use that are the spans' part (structs, array
 * entries, side tables): all but the slabs, the depot and the users'
 * blocks. */
static size_t spans_part(size_t in_use)
{
	size_t other = sh.meta_blocks.pages + atomic_load(&sh.depot.pages);
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		if (sh.caches[cpu].slab)
			other += sh.mag_slab_pages;
	return in_use - other;
}

/* Allocates objects of size until the heap has none; how many. */
static size_t fill(size_t size)
{
	size_t n = 0;
	mm_port_set_quiet(true);
	while (spanheap_alloc(&sh, size, 0))
		n++;
	mm_port_set_quiet(false);
	return n;
}

/*
 * A poison heap with callers' records over 8 chunks, full of objects of
 * the smallest class (the largest side tables a page, which the sizing
 * counts for every page: the fill reaches it): the free metadata pages
 * left hold the depot's growth to its most and a quarter of the spans'
 * part. Poison mode makes no slab, so the slabs' count, 512 pages, no
 * longer hides a cut margin (the sizing counted them until this test).
 * Of the 4124 pages wanted, the sizing left 4409 free; with an eighth for
 * the holes it left 2873, with none 1337, without the depot's pages 3385.
 */
KTEST(spanheap_meta_size, a_full_poison_arena_leaves_its_margins)
{
	KASSERT(sh_heap_tight_poison(&heap, &sh, 8 * PALLOC_CHUNK_BYTES));
	KASSERT(sh.track);
	size_t n = fill(sh_poison_size(1));
	size_t in_use = meta_in_use(), part = spans_part(in_use);
	size_t room = sh.meta.arena_pages - in_use;
	size_t depot = atomic_load(&sh.depot.pages);
	size_t grow = spanheap_depot_max_pages() - depot;
	ktest_diag("%zu objects; metadata %zu of %zu pages in use, %zu the "
	           "spans', %zu the depot's; %zu free",
	           n, in_use, sh.meta.arena_pages, part, depot, room);
	KEXPECT(depot <= spanheap_depot_max_pages());
	KEXPECT(room >= grow + part / 4);
	sh_heap_release(&heap, &sh);
}

/* The metadata pages every named cache a heap may have takes, its struct
 * and the caches' counter area: measured, by making them all; 0 if they
 * could not be made. */
static size_t users_pages_taken(void)
{
	static struct objcache *c[SPANHEAP_OBJCACHE_SLOTS];
	if (!sh_heap_fresh(&heap, &sh))
		return 0;
	size_t before = sh.meta_blocks.pages, taken = 0;
	unsigned made = 0;
	for (; made < SPANHEAP_OBJCACHE_SLOTS; made++) {
		char name[16];
		snprintf(name, sizeof(name), "users%u", made);
		if (!(c[made] = objcache_create(&sh, name, 64, 0)))
			break;
	}
	if (made == SPANHEAP_OBJCACHE_SLOTS)
		taken = sh.meta_blocks.pages - before;
	while (made > 0)
		KEXPECT(objcache_destroy(c[--made]));
	sh_heap_release(&heap, &sh);
	return taken;
}

/* The sizing for cfg beside no object arena: its terms paid once. */
static size_t once_pages(const struct spanheap_config *cfg)
{
	uint64_t b = spanheap_meta_need_bytes(cfg, 0);
	KEXPECT_EQ(b % MM_PAGE_SIZE, 0);
	return (size_t)(b / MM_PAGE_SIZE);
}

/*
 * The sizing's terms paid once, each where its mode makes it: every CPU's
 * magazine slab but in poison mode (which makes none), the named caches'
 * blocks in every mode, and, the port giving callers, the stack depot
 * whole in poison mode and in guard-only mode (a guarded object's records
 * are the depot's too). Compared unrounded (spanheap_meta_need_bytes): a
 * chunk's rounding hid each of these terms lost or put in the wrong mode,
 * which a mutation audit found passing every test (the caches' pages, the
 * structs' part of them, the slabs counted in poison mode only, the
 * depot in poison mode only).
 */
KTEST(spanheap_meta_size, the_sizing_counts_each_once_term_in_its_modes)
{
	KASSERT(spanheap_track_probe()); /* the host port gives callers */
	size_t users = users_pages_taken();
	size_t slabs = (size_t)MM_MAX_CPUS * spanheap_mag_slab_pages();
	size_t depot = spanheap_depot_max_pages();
	ktest_diag("users' blocks %zu pages, slabs %zu, depot %zu", users,
	           slabs, depot);
	KASSERT(users > 0);
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	KASSERT(!cfg.poison && cfg.guard_slots == 0);
	KEXPECT_EQ(once_pages(&cfg), slabs + users);
	cfg.guard_slots = 4;
	KEXPECT_EQ(once_pages(&cfg), slabs + users + depot);
	cfg.guard_slots = 0;
	cfg.poison = true;
	KEXPECT_EQ(once_pages(&cfg), users + depot);
}

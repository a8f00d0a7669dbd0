/*
 * spanheap_init's unwinding (mm/spanheap_init.c): when a part fails (no
 * address space for the guarded pool, a port that cannot make its unused
 * pages fault, both before the metadata heap is made; no pages for the
 * stack depot its stacks need, after), or the configuration is refused,
 * the init says so and gives back what it took (the span array's pages,
 * the pool's reservation; the metadata heap keeps its reservations,
 * mm/spanheap_meta.c), a use of the heap then panics saying it is not set
 * up, and the same init works once the memory is back.
 */
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_panic_util.h"
#include "spanheap_init_fail_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* A configuration with a guarded pool of 4 slots. */
static void guard_config(struct spanheap_config *cfg)
{
	spanheap_config_default(cfg);
	cfg->guard_slots = 4;
	cfg->guard_interval = 1000;
}

/* A page heap of 2 chunks with no reserve; the pages in use and the
 * port's reserved bytes before the init, in *used and *reserved. */
static bool small_heap(size_t *used, size_t *reserved)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	hc.reserve_pages = 0;
	if (!mheap_init(&heap, &hc))
		return false;
	*used = sh_in_use_pages(&heap);
	*reserved = mm_port_reserved_bytes();
	return true;
}

/* Fails the current test unless spanheap_init(cfg) fails, logging what,
 * with the pages in use and the reserved bytes as they were. */
#define EXPECT_INIT_FAILS(cfg, what, used, reserved)                 \
	do {                                                         \
		mm_port_set_quiet(true);                             \
		KEXPECT(!spanheap_init(&sh, &heap, (cfg)));          \
		mm_port_set_quiet(false);                            \
		KEXPECT(strstr(mm_port_last_log(), (what)) != NULL); \
		KEXPECT_EQ(sh_in_use_pages(&heap), (used));          \
		KEXPECT_EQ(mm_port_reserved_bytes(), (reserved));    \
	} while (0)

/* One object allocated and freed on sh, then the checker (saying when). */
static void one_object_and_check(const char *when)
{
	mm_port_set_cpu(0);
	void *p = spanheap_alloc(&sh, 64, 0);
	KEXPECT(p != NULL);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, when);
}

/* The init that works once memory is back: a pool and a depot, an object
 * allocated and freed, the checker clean; then everything given back. */
static void init_works(const struct spanheap_config *cfg, size_t reserved)
{
	KASSERT(spanheap_init(&sh, &heap, cfg));
	KEXPECT(sh.guard.base != 0);
	KEXPECT(atomic_load(&sh.depot.pages) > 0);
	KEXPECT_EQ(mm_port_reserved_bytes(),
	           reserved + sh.guard.bytes + sh_meta_reserved_bytes(&sh));
	one_object_and_check("after the init that worked");
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
}

/* A guarded pool with no sampling interval is refused before anything is
 * taken; with no address space for the pool (the port's reserve fails)
 * the init fails before the metadata heap is made (until it, after the
 * span array was made, which it gave back). */
KTEST(spanheap_init_fail, a_refused_config_or_no_room_for_the_pool)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	struct spanheap_config cfg;
	guard_config(&cfg);
	cfg.guard_interval = 0;
	EXPECT_INIT_FAILS(&cfg, "guard_interval", used, reserved);
	cfg.guard_interval = 1000;
	mm_port_fail_reserve(1);
	EXPECT_INIT_FAILS(&cfg,
	                  "no address space for the guarded pool (4 slots)",
	                  used, reserved);
	mm_port_fail_reserve(0);
	/* The heap whose init failed, used: a panic saying so, at its
	 * first span. Until a review it went on over the span array the
	 * init had given back, which the page heap then handed out: here
	 * to b, whose page the heap's allocation wrote its structs in. */
	void *b = mheap_alloc_pages(&heap, 1, MHEAP_ZERO);
	KASSERT(b);
	mm_port_set_cpu(0);
	mm_port_set_quiet(true);
	SH_EXPECT_PANIC(spanheap_alloc(&sh, 64, 0),
	                "spanheap: a heap not set up used");
	SH_EXPECT_PANIC(spanheap_alloc(&sh, 100000, 0),
	                "its spanheap_init failed or was not called");
	SH_EXPECT_PANIC(spanheap_release_all(&sh), "a heap not set up used");
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	SH_EXPECT_PANIC(spanheap_stats(&sh, st), "a heap not set up used");
	free(st);
	KEXPECT(!spanheap_sweeper_start(&sh));
	KEXPECT(strstr(mm_port_last_log(), "no sweeper for a heap not set "
	                                   "up") != NULL);
	mm_port_set_quiet(false);
	KEXPECT(all_bytes(b, MM_PAGE_SIZE, 0));
	mheap_free_pages(&heap, b, 1);
	init_works(&cfg, reserved);
	sh_heap_release(&heap, &sh);
}

/* A port that cannot make the pool's unused pages fault refuses its
 * range (mm_port_prepare_guarded false: the POSIX port's table of guarded
 * ranges full): the init fails saying that, not that address space ran
 * out (the port's reserve worked), and gives the reservation back. */
KTEST(spanheap_init_fail, a_port_that_cannot_guard_is_named)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	enum { HOLD_MAX = 64 };
	void *held[HOLD_MAX];
	unsigned nheld = 0;
	for (; nheld < HOLD_MAX; nheld++) {
		held[nheld] = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
		KASSERT(held[nheld] != NULL);
		if (!mm_port_prepare_guarded(held[nheld], MM_PAGE_SIZE)) {
			mm_port_unreserve(held[nheld], MM_PAGE_SIZE);
			break;
		}
	}
	KASSERT(nheld < HOLD_MAX);
	reserved = mm_port_reserved_bytes();
	struct spanheap_config cfg;
	guard_config(&cfg);
	EXPECT_INIT_FAILS(&cfg,
	                  "cannot make the guarded pool's unused pages fault "
	                  "(mm_port_prepare_guarded) (4 slots)",
	                  used, reserved);
	while (nheld)
		mm_port_unreserve(held[--nheld], MM_PAGE_SIZE);
	sh_heap_release(&heap, &sh);
}

/* No pages for the stack depot the pool's stacks need: the init fails
 * after the pool's reservation, the metadata heap and its span array were
 * made, gives the pool's reservation and every page back, and keeps the
 * metadata heap's reservations (sh->meta names them, given back here).
 * The depot is the metadata heap's, which is the init's own: the port
 * refuses its nth mapping, n = 1, 2, ... until the init works, and one
 * try fails at the depot (until the metadata heap, the test held the
 * object heap's arena but a hole the span array took). */
KTEST(spanheap_init_fail, no_pages_for_the_stack_depot)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	struct spanheap_config cfg;
	guard_config(&cfg);
	bool said;
	bool up = sh_init_until_maps_suffice(
	        &sh, &heap, &cfg, used, "no memory for the stack depot", &said);
	KEXPECT(said);
	KASSERT(up);
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	sh_heap_release(&heap, &sh);
}

/* The retry of a failed init from the configuration the failed one left
 * in the heap (spanheap_init(&sh, h, &sh.cfg)): the same configuration,
 * the guarded pool with it. Until a review the init zeroed the heap,
 * its own configuration with it, before it copied the configuration:
 * the retry made a heap of a zero configuration, every field the checks
 * refuse (no pool, a sweeper of period 0). */
KTEST(spanheap_init_fail, a_retry_from_the_failed_inits_own_config)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	struct spanheap_config cfg;
	guard_config(&cfg);
	mm_port_fail_reserve(1);
	EXPECT_INIT_FAILS(&cfg, "no address space for the guarded pool", used,
	                  reserved);
	mm_port_fail_reserve(0);
	KEXPECT_EQ(sh.cfg.guard_slots, 4);
	init_works(&sh.cfg, reserved);
	KEXPECT_EQ(sh.cfg.period_ns, SPANHEAP_DEFAULT_PERIOD_NS);
	KEXPECT_EQ(sh.guard.nslots, 4);
	sh_heap_release(&heap, &sh);
}

/* Retries of an init that failed after making its metadata heap: each
 * takes that heap again (the port refuses its nth mapping from now, n =
 * 1, 2, ... until the init works, as a malloc under a data limit retries
 * its set-up at every call), so that the port holds one metadata heap's
 * reservations however many tries failed, and the init that works uses
 * the first one kept. Until a review each try zeroed the heap, lost the
 * metadata heap the try before had kept, and reserved another. */
KTEST(spanheap_init_fail, retries_take_the_metadata_heap_kept_again)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	bool up = false;
	unsigned retries_over_kept = 0;
	uintptr_t first_base = 0;
	for (unsigned nth = 1; nth < 64 && !up; nth++) {
		retries_over_kept += sh.meta.arena_pages != 0;
		up = sh_init_port_failing(&sh, &heap, &cfg, mm_port_fail_map_at,
		                          nth, used);
		if (!sh.meta.arena_pages)
			continue; /* failed before a metadata heap was made */
		if (!first_base)
			first_base = sh.meta.arena_base;
		KEXPECT_EQ(sh_in_use_pages(&sh.meta),
		           up ? sh_kept_pages(&sh) : 0);
		if (mm_port_reserved_bytes() !=
		    reserved + sh_meta_reserved_bytes(&sh))
			ktest_fail_at(__FILE__, __LINE__,
			              "try %u: %zu bytes reserved, not %zu: "
			              "one metadata heap's more than before",
			              nth, mm_port_reserved_bytes(),
			              reserved + sh_meta_reserved_bytes(&sh));
	}
	KASSERT(up);
	KEXPECT(retries_over_kept > 0);
	KEXPECT_EQ(sh.meta.arena_base, first_base);
	/* The heap taken again is in use, no longer the one kept, the two
	 * heaps are each other's frames peers again and the object heap's
	 * scavenger serves it (the failed tries unset them): a mutation
	 * audit found none of these pinned. */
	KEXPECT(!spanheap_meta_kept(&sh));
	KEXPECT(heap.frames_peer == &sh.meta);
	KEXPECT(sh.meta.frames_peer == &heap);
	KEXPECT(heap.scav_also == &sh.meta);
	KEXPECT(sh.meta.scav_by == &heap);
	one_object_and_check("after the retries");
	sh_heap_release(&heap, &sh);
}

/* No address space for the metadata heap (the port refuses its nth
 * reservation, n = 1, 2, ...: the guarded pool's is the first, then the
 * metadata heap's probe, arena, span table and palloc metadata): a try
 * that fails there says so and gives the guarded pool's reservation
 * back, the port holding what it held before. A mutation audit found no
 * test of it: without guard_undo on that path, every such failure kept
 * the pool's reservation. A try that works is undone here (nothing of
 * the object heap's is taken by an init). */
KTEST(spanheap_init_fail, no_room_for_the_metadata_heap_gives_the_pool_back)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	struct spanheap_config cfg;
	guard_config(&cfg);
	unsigned seen = 0;
	for (unsigned nth = 1; nth <= 8; nth++) {
		bool up = sh_init_port_failing(&sh, &heap, &cfg,
		                               mm_port_fail_reserve, nth, used);
		if (!up && strstr(mm_port_last_log(),
		                  "cannot set up the metadata heap")) {
			seen++;
			KEXPECT_EQ(sh.meta.arena_pages, 0);
			KEXPECT_EQ(sh.guard.base, 0);
			KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
		}
		if (up)
			mm_port_unreserve((void *)sh.guard.base,
			                  sh.guard.bytes);
		sh_meta_release(&sh);
		KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
	}
	KEXPECT(seen > 0);
	sh_heap_release(&heap, &sh);
}

/* Short of address space for the metadata heap's arena (the port refuses
 * the first reservation, the set-up's probe of the whole size), the
 * set-up halves it and goes on: the heap works over a metadata arena of
 * half the size asked (poison mode, whose arena is past the smallest the
 * set-up settles for). A mutation audit found no test of the halving:
 * without it the same init failed. */
KTEST(spanheap_init_fail, a_metadata_arena_too_large_for_the_room_is_halved)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	cfg.poison = true;
	size_t want = spanheap_meta_arena_bytes(&cfg, heap.cfg.arena_bytes);
	KASSERT(want / 2 >= SPANHEAP_META_MIN_BYTES);
	mm_port_set_quiet(true);
	mm_port_fail_reserve(1);
	bool up = spanheap_init(&sh, &heap, &cfg);
	mm_port_fail_reserve(0);
	mm_port_set_quiet(false);
	KASSERT(up);
	KEXPECT_EQ(sh.meta.cfg.arena_bytes,
	           want / 2 & ~((size_t)PALLOC_CHUNK_BYTES - 1));
	KEXPECT_EQ(mm_port_reserved_bytes(),
	           reserved + sh_meta_reserved_bytes(&sh));
	one_object_and_check("over a halved metadata arena");
	sh_heap_release(&heap, &sh);
}

/* What a try that fails after making its metadata heap leaves of the
 * links between the two heaps: none, either way (the port refuses its
 * nth mapping from now, n = 1, 2, ... until the init works). Until a
 * review the kept metadata heap still named the object heap as its
 * frames peer and as the heap whose scavenger serves it: harmless while
 * that heap lived, a stale pointer into a caller's struct once it was
 * given back (a retry may bring another). */
KTEST(spanheap_init_fail, a_failed_try_leaves_the_heaps_unlinked)
{
	size_t used, reserved;
	KASSERT(small_heap(&used, &reserved));
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	bool up = false;
	unsigned kept = 0;
	for (unsigned nth = 1; nth < 64 && !up; nth++) {
		up = sh_init_port_failing(&sh, &heap, &cfg, mm_port_fail_map_at,
		                          nth, used);
		if (up || !spanheap_meta_kept(&sh))
			continue;
		kept++;
		KEXPECT(heap.frames_peer == NULL);
		KEXPECT(heap.scav_also == NULL);
		KEXPECT(sh.meta.frames_peer == NULL);
		KEXPECT(sh.meta.scav_by == NULL);
	}
	KASSERT(up);
	KEXPECT(kept > 0);
	KEXPECT(sh.meta.scav_by == &heap);
	KEXPECT(sh.meta.frames_peer == &heap);
	sh_heap_release(&heap, &sh);
}

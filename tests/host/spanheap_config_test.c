/*
 * Each field of struct mheap_config and struct spanheap_config at the
 * edges of its range (mheap_refuse_test.c and spanheap_fail_test.c test
 * the refusals one past them): the heaps set up, serve small, large and
 * atomic allocations, take frees from another CPU, run their sweeper and
 * scavenger threads, sweep, give memory back and pass their checkers.
 * Written when a review drove each field to its extremes: min_pending_bytes
 * 0 left an empty heap's sweeper cycling for good
 * (spanheap_sweeper_test.c), and a period of 1 ns spun its idle looks.
 */
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Objects of sizes 16 to 616 from CPU 0 (20000, or fewer in a small
 * arena: about a sixth of it), a large one (1 MiB, or a quarter of a
 * small arena) and an atomic one, the small ones freed from CPU 1; false
 * if a call failed. */
static bool use_heap(const char *what)
{
	size_t arena = heap.cfg.arena_bytes;
	size_t n_objs = arena / 2048 < 20000 ? arena / 2048 : 20000;
	size_t large = arena / 4 < (1 << 20) ? arena / 4 : (1 << 20);
	void **p = calloc(n_objs, sizeof(*p));
	if (!p)
		return false;
	bool ok = true;
	mm_port_set_cpu(0);
	for (size_t i = 0; i < n_objs && ok; i++) {
		p[i] = spanheap_alloc(&sh, 16 + (i % 7) * 100, 0);
		ok = p[i] != NULL;
		if (ok)
			memset(p[i], 1, 16);
	}
	void *big = spanheap_alloc(&sh, large, 0);
	void *at = spanheap_alloc(&sh, 64, MM_ATOMIC);
	if (!ok || !big || !at)
		ktest_fail_at(__FILE__, __LINE__,
		              "%s: an allocation failed (small %d, large %p, "
		              "atomic %p)",
		              what, ok, big, at);
	ok = ok && big && at;
	if (big)
		spanheap_free(&sh, big);
	if (at)
		spanheap_free(&sh, at);
	mm_port_set_cpu(1);
	for (size_t i = 0; i < n_objs; i++)
		if (p[i])
			spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	free(p);
	return ok;
}

/* Sets both heaps up with hc and sc, uses them with their threads
 * running, stops them, sweeps, gives the free pages back and checks. */
static void edge_case(const char *what, const struct mheap_config *hc,
                      const struct spanheap_config *sc)
{
	if (!sh_heap_new_with(&heap, &sh, hc, sc)) {
		ktest_fail_at(__FILE__, __LINE__, "%s: refused: %s", what,
		              mm_port_last_log());
		return;
	}
	KEXPECT(spanheap_sweeper_start(&sh));
	KEXPECT(mheap_scavenger_start(&heap));
	use_heap(what);
	spanheap_sweeper_stop(&sh);
	mheap_scavenger_stop(&heap);
	sh_flush_cpus(&sh, 2);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	mheap_release_all(&heap);
	SH_CHECK(&sh, what);
	MH_CHECK(&heap, what);
	sh_heap_release(&heap, &sh);
}

/* What a case changes in the default configurations. */
typedef void (*edge_fn)(struct mheap_config *hc, struct spanheap_config *sc);

#define EDGE(name, body)                                                      \
	static void name(struct mheap_config *hc, struct spanheap_config *sc) \
	{                                                                     \
		(void)hc;                                                     \
		(void)sc;                                                     \
		body;                                                         \
	}

EDGE(reserve_0, hc->reserve_pages = 0)
EDGE(arena_1_chunk, hc->arena_bytes = PALLOC_CHUNK_BYTES)
EDGE(arena_1_chunk_all_reserved, hc->arena_bytes = PALLOC_CHUNK_BYTES;
     hc->reserve_pages = PALLOC_CHUNK_BYTES / MM_PAGE_SIZE)
EDGE(reserve_all, hc->reserve_pages = hc->arena_bytes / MM_PAGE_SIZE)
EDGE(watermark_max, hc->low_watermark_pages = SIZE_MAX)
EDGE(goal_0, hc->goal_percent = 0)
EDGE(goal_max, hc->goal_percent = MHEAP_MAX_GOAL_PERCENT)
EDGE(scav_cpu_1, hc->cpu_permille = 1)
EDGE(scav_cpu_1000, hc->cpu_permille = 1000)
EDGE(scav_on_free, hc->flags = MHEAP_DEBUG_SCAV_ON_FREE)
EDGE(pending_1, sc->pending_permille = 1)
EDGE(pending_1000, sc->pending_permille = 1000)
EDGE(min_pending_0, sc->min_pending_bytes = 0)
EDGE(min_pending_max, sc->min_pending_bytes = SIZE_MAX)
EDGE(period_min, sc->period_ns = SPANHEAP_MIN_PERIOD_NS)
EDGE(period_max, sc->period_ns = UINT64_MAX)
EDGE(period_max_quiet, sc->period_ns = UINT64_MAX; sc->flush_quiet_cpus = true)
EDGE(batch_1, sc->batch_spans = 1)
EDGE(batch_max, sc->batch_spans = UINT32_MAX)
EDGE(sweep_cpu_1, sc->cpu_permille = 1)
EDGE(sweep_cpu_1000, sc->cpu_permille = 1000)
EDGE(guard_most, sc->guard_slots = UINT8_MAX; sc->guard_interval = 1)
EDGE(guard_least, sc->guard_slots = 1; sc->guard_interval = UINT16_MAX)
EDGE(guard_interval_alone, sc->guard_interval = 7)
EDGE(guard_and_poison, sc->guard_slots = UINT8_MAX; sc->guard_interval = 1;
     sc->poison = true)
EDGE(poison_and_scav_on_free, sc->poison = true;
     hc->flags = MHEAP_DEBUG_SCAV_ON_FREE)

/* Each edge of each field's range, on a 1 GiB arena. */
KTEST(spanheap_config, heaps_work_at_the_edges_of_each_field)
{
	static const struct {
		const char *what;
		edge_fn set;
	} edges[] = {
#define E(f) {#f, f}
	        E(arena_1_chunk),    E(arena_1_chunk_all_reserved),
	        E(reserve_0),        E(reserve_all),
	        E(watermark_max),    E(goal_0),
	        E(goal_max),         E(scav_cpu_1),
	        E(scav_cpu_1000),    E(scav_on_free),
	        E(pending_1),        E(pending_1000),
	        E(min_pending_0),    E(min_pending_max),
	        E(period_min),       E(period_max),
	        E(period_max_quiet), E(batch_1),
	        E(batch_max),        E(sweep_cpu_1),
	        E(sweep_cpu_1000),   E(guard_most),
	        E(guard_least),      E(guard_interval_alone),
	        E(guard_and_poison), E(poison_and_scav_on_free),
#undef E
	};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		struct mheap_config hc;
		struct spanheap_config sc;
		mheap_config_default(&hc);
		hc.arena_bytes = SH_ARENA_BYTES;
		spanheap_config_default(&sc);
		edges[i].set(&hc, &sc);
		edge_case(edges[i].what, &hc, &sc);
	}
}

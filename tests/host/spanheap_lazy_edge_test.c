/*
 * A CPU's cache set up at its first use (mm/spanheap_init.c), at the
 * edges the review of that change found untested: a refill that unpins
 * for a new span and pins again on a CPU that never used the heap; the
 * sweeper's visit and the idle loop on such CPUs (nothing held, nothing
 * counted, nothing written); and a CPU's first magazine slab made of
 * metadata pages that held data before (the slab must come zeroed); and
 * the set-up's order, its table published last.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "mm_port_posix.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { REPIN_CPU = 21 };

/* Everything back, from CPU 0: every cache flushed, a cycle, the heap
 * checked and holding only what it keeps; then released. */
static void finish(void)
{
	mm_port_set_cpu(0);
	sh_flush_cpus(&sh, MM_MAX_CPUS);
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "at the end");
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

static _Atomic bool repin_armed;

/* Once, between the refill's new span and its caching (the refill's
 * thread, unpinned): the thread moves to CPU REPIN_CPU. */
static void repin_mid_refill(struct mheap *h, enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_SPAN_MADE &&
	    atomic_exchange(&repin_armed, false))
		mm_port_set_cpu(REPIN_CPU);
}

KTEST(spanheap_lazy, a_refill_repinned_on_an_unused_cpu_sets_it_up)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_cpu(0);
	atomic_store(&repin_armed, true);
	mheap_test_hook = repin_mid_refill;
	void *p = spanheap_alloc(&sh, 64, 0);
	mheap_test_hook = NULL;
	KASSERT(p);
	KEXPECT(!atomic_load(&repin_armed)); /* the hook ran */
	KEXPECT_EQ(mm_port_cpu(), REPIN_CPU);
	/* The span went to the CPU the refill ended on, set up first. */
	KEXPECT(spanheap_cache_used(&sh, REPIN_CPU));
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KEXPECT(sh.caches[REPIN_CPU].alloc[sizeclass_of(64)] == s);
	KEXPECT_EQ(sh.caches[REPIN_CPU].flushgen, atomic_load(&sh.sweepgen));
	SH_CHECK(&sh, "after the refill");
	spanheap_free(&sh, p);
	finish();
}

/* CPU 2 holds objects; a cycle later the sweeper's visit of the other
 * CPUs flushes and counts that one only, and an idle loop on a CPU that
 * never used the heap flushes and counts nothing. */
KTEST(spanheap_lazy, visits_and_idle_pass_unused_cpus_by)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_cpu(2);
	void *p = spanheap_alloc(&sh, 48, 0);
	KASSERT(p);
	spanheap_free(&sh, p); /* in CPU 2's magazine */
	mm_port_set_cpu(0);
	spanheap_sweep_cycle(&sh);
	uint64_t before = atomic_load(&sh.quiet_flushes);
	bool kick;
	KEXPECT(spanheap_flush_stale_others(&sh, atomic_load(&sh.sweepgen),
	                                    &kick));
	KEXPECT_EQ(atomic_load(&sh.quiet_flushes) - before, 1);
	/* An idle CPU, as a running sweeper lets it flush. */
	atomic_store(&sh.sweeper.idle_flush, true);
	uint64_t idle = atomic_load(&sh.idle_flushes);
	mm_port_set_cpu(7);
	KEXPECT(!spanheap_cpu_idle(&sh));
	mm_port_set_cpu(0);
	atomic_store(&sh.sweeper.idle_flush, false);
	KEXPECT_EQ(atomic_load(&sh.idle_flushes), idle);
	for (unsigned cpu = 3; cpu < MM_MAX_CPUS; cpu++)
		KEXPECT(ktest_all_zero(&sh.caches[cpu], sizeof(struct mcache)));
	SH_CHECK(&sh, "after the visit");
	sh_flush_cpus(&sh, MM_MAX_CPUS);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* The metadata heap's pages written and freed, then a CPU's first free
 * makes its slab: the slab comes zeroed (the 0 below each magazine),
 * whichever pages it is made of. */
KTEST(spanheap_lazy, a_slab_of_reused_metadata_pages_comes_zeroed)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	enum { JUNK = 64 };
	void *junk[JUNK];
	size_t n = sh.mag_slab_pages;
	for (unsigned i = 0; i < JUNK; i++) {
		junk[i] = mheap_alloc_pages(&sh.meta, n, 0);
		KASSERT(junk[i]);
		memset(junk[i], 0xa5, n * MM_PAGE_SIZE);
	}
	for (unsigned i = 0; i < JUNK; i++)
		mheap_free_pages(&sh.meta, junk[i], n);
	mm_port_set_cpu(5);
	void *p[200];
	for (unsigned i = 0; i < 200; i++)
		KASSERT(p[i] = spanheap_alloc(&sh, 16 + 16 * (i % 40), 0));
	for (unsigned i = 0; i < 200; i++)
		spanheap_free(&sh, p[i]);
	KASSERT(sh.caches[5].slab);
	SH_CHECK(&sh, "with the slab");
	/* Every class's magazine pops empty after its objects, not junk. */
	for (unsigned i = 0; i < 200; i++)
		KASSERT(p[i] = spanheap_alloc(&sh, 16 + 16 * (i % 40), 0));
	for (unsigned i = 0; i < 200; i++)
		memset(p[i], 0, 16 + 16 * (i % 40));
	for (unsigned i = 0; i < 200; i++)
		spanheap_free(&sh, p[i]);
	finish();
}

/* What the set-up had done when its hook ran, on the CPU it set up. */
static _Atomic int seen_set_ups;
static bool seen_published, seen_ready;

static void look_mid_set_up(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_CACHE_SETTING_UP)
		return;
	unsigned cpu = mm_port_cpu();
	struct mcache *mc = &sh.caches[cpu];
	atomic_fetch_add(&seen_set_ups, 1);
	seen_published = spanheap_cache_used(&sh, cpu);
	seen_ready = mc->alloc[1] == &spanheap_empty_span &&
	             mc->alloc[SC_NCLASSES - 1] == &spanheap_empty_span &&
	             mc->mag[1].top && mc->mag[1].top == mc->mag[1].limit &&
	             mc->flushgen == atomic_load(&sh.sweepgen);
}

/*
 * The set-up's order: every field first, then (last, release) the fast
 * paths' table, which says the cache is set up: what reads a cache by
 * spanheap_cache_used (a flush, the checker, a visit) may then rely on
 * it whole. At the set-up's hook, between the two, the cache must read as
 * not set up and be ready. Both ways in: a first allocation (CPU 3) and a
 * first free, of another CPU's object (CPU 4). A mutant that published the
 * table first passed every other test.
 */
KTEST(spanheap_lazy, a_set_up_publishes_the_cache_last)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mheap_test_hook = look_mid_set_up;
	mm_port_set_cpu(3);
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	KEXPECT_EQ(atomic_load(&seen_set_ups), 1);
	KEXPECT(!seen_published);
	KEXPECT(seen_ready);
	KEXPECT(spanheap_cache_used(&sh, 3));
	seen_ready = false;
	mm_port_set_cpu(4);
	spanheap_free(&sh, p);
	mheap_test_hook = NULL;
	KEXPECT_EQ(atomic_load(&seen_set_ups), 2);
	KEXPECT(!seen_published);
	KEXPECT(seen_ready);
	KEXPECT(spanheap_cache_used(&sh, 4));
	finish();
}

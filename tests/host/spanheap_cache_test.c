/*
 * What a sweep cycle does to the per-CPU caches and the central lists
 * (mm/spanheap_cache.c, mm/spanheap_central.c): a CPU's cache is flushed
 * at its first refill after a cycle began, and only at that one; a refill
 * that runs while a cycle is mid-sweep sweeps the unswept spans it needs
 * itself (on demand), and counts them; a cycle that flips while a
 * refill holds a new span it has not cached yet leaves the span alone.
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end; the simulated CPUs are set by hand.
 */
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Objects in CPU cpu's magazine of class cls (its slab made). */
static size_t mag_objects(unsigned cpu, unsigned cls)
{
	uintptr_t *base = sh.caches[cpu].slab + sh.mag_off[cls];
	return (size_t)(sh.caches[cpu].mag[cls].top - base);
}

/*
 * A cycle run from CPU 1 leaves CPU 0's cache alone until CPU 0's next
 * refill, of any class, which gives back everything it holds: its
 * magazines and its cached spans. The refills after that one, up to the
 * next cycle, flush nothing: an object freed into a magazine stays there.
 */
KTEST(spanheap_cache, refill_flushes_once_per_cycle)
{
	enum { A = 64, B = 1000 };
	unsigned ca = sizeclass_of(A), cb = sizeclass_of(B);
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *a = spanheap_alloc(&sh, A, 0);
	KASSERT(a);
	struct mspan *sa = mheap_span_lookup(&heap, (uintptr_t)a);
	KASSERT(sh.caches[0].alloc[ca] == sa);
	spanheap_free(&sh, a);
	size_t held = mag_objects(0, ca);
	KEXPECT(held >= 1);
	mm_port_set_cpu(1);
	spanheap_sweep_cycle(&sh);
	mm_port_set_cpu(0);
	KEXPECT_EQ(mag_objects(0, ca), held); /* not CPU 1's to flush */
	KEXPECT(sh.caches[0].alloc[ca] == sa);
	/* CPU 0's first refill since the cycle: the flush. */
	void *b = spanheap_alloc(&sh, B, 0);
	KASSERT(b);
	struct mspan *sb = mheap_span_lookup(&heap, (uintptr_t)b);
	KEXPECT_EQ(mag_objects(0, ca), 0);
	KEXPECT(sh.caches[0].alloc[ca] != sa);
	/* Later refills in the same cycle keep what the cache holds. */
	spanheap_free(&sh, b);
	KEXPECT_EQ(mag_objects(0, cb), 1);
	a = spanheap_alloc(&sh, A, 0);
	KASSERT(a);
	KEXPECT_EQ(mag_objects(0, cb), 1);
	KEXPECT(sh.caches[0].alloc[cb] == sb);
	spanheap_free(&sh, a);
	SH_CHECK(&sh, "after the refills");
	sh_flush_cpus(&sh, 2);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* The hook's refill: once, at the cycle's first claimed span, CPU 3 takes
 * an object of the class (the cycle's thread, no mm lock held). */
static _Atomic bool refill_at_claim;
static void *claim_got;

static void refill_mid_cycle(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SWEEP_CLAIMED ||
	    !atomic_exchange(&refill_at_claim, false))
		return;
	mm_port_set_cpu(3);
	claim_got = spanheap_alloc(&sh, 64, 0);
	mm_port_set_cpu(0);
}

/*
 * Three partial spans, swept, on their class's list; a cycle flips them
 * unswept, and while it holds the first it claimed, a refill on CPU 3
 * finds no swept span and nothing queued: it sweeps one of the other two
 * itself, takes an object of it, and counts one demand sweep. The cycle
 * then sweeps the one left and leaves the cached one alone.
 */
KTEST(spanheap_cache, refill_mid_cycle_sweeps_on_demand)
{
	enum { SPANS = 3 };
	unsigned cls = sizeclass_of(64), n = sizeclass_info[cls].nelems;
	KASSERT(sh_heap_fresh(&heap, &sh));
	void **p = calloc((size_t)SPANS * n, sizeof(*p));
	KASSERT(p && sh_alloc_n(&sh, p, (size_t)SPANS * n, 64));
	spanheap_flush_cache(&sh);
	/* One object of each span freed: three partial spans once swept. */
	void *freed[SPANS];
	for (unsigned j = 0; j < SPANS; j++) {
		freed[j] = p[j * n];
		spanheap_free(&sh, freed[j]);
		p[j * n] = NULL;
	}
	spanheap_sweep_cycle(&sh);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	KASSERT_EQ(sh.central[cls].partial[0].n + sh.central[cls].partial[1].n,
	           SPANS);
	KEXPECT_EQ(st->n.demand_swept, 0);
	claim_got = NULL;
	atomic_store(&refill_at_claim, true);
	mheap_test_hook = refill_mid_cycle;
	spanheap_sweep_cycle(&sh);
	mheap_test_hook = NULL;
	KEXPECT(!atomic_load(&refill_at_claim)); /* the hook ran */
	KEXPECT(claim_got == freed[0] || claim_got == freed[1] ||
	        claim_got == freed[2]);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->n.demand_swept, 1);
	KEXPECT_EQ(st->n.swept_spans, SPANS + SPANS - 1);
	SH_CHECK(&sh, "after the cycle");
	for (size_t k = 0; k < (size_t)SPANS * n; k++)
		if (p[k])
			spanheap_free(&sh, p[k]);
	spanheap_free(&sh, claim_got);
	sh_flush_cpus(&sh, 4);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	free(st);
	free(p);
	sh_heap_release(&heap, &sh);
}

/*
 * The refill count (statistics' refills, which the sweeper also reads to
 * tell a quiet heap) counts the refills that go to the central lists: one
 * per span a CPU runs through. A refill whose cached span, folded, has at
 * least an eighth of its objects free keeps it and counts nothing: here a
 * quarter came free from CPU 1, and CPU 0's next allocation takes the
 * first of them from the span it caches.
 */
KTEST(spanheap_cache, refills_count_trips_to_the_central_lists)
{
	unsigned cls = sizeclass_of(64), n = sizeclass_info[cls].nelems;
	KASSERT(sh_heap_fresh(&heap, &sh));
	void **p = calloc(2 * (size_t)n, sizeof(*p));
	KASSERT(p && sh_alloc_n(&sh, p, 2 * (size_t)n, 64));
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->refills, 2);
	struct mspan *s = sh.caches[0].alloc[cls];
	KASSERT(s->base == (uintptr_t)p[n]);
	mm_port_set_cpu(1);
	for (unsigned i = 0; i < n / 4; i++)
		spanheap_free(&sh, p[n + i]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	void *q = spanheap_alloc(&sh, 64, 0);
	KEXPECT(q == p[n]);
	KEXPECT(sh.caches[0].alloc[cls] == s);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->refills, 2);
	p[n] = q;
	for (unsigned i = 1; i < n / 4; i++)
		p[n + i] = NULL;
	for (size_t k = 0; k < 2 * (size_t)n; k++)
		if (p[k])
			spanheap_free(&sh, p[k]);
	SH_CHECK(&sh, "after the frees");
	sh_flush_cpus(&sh, 2);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	free(st);
	free(p);
	sh_heap_release(&heap, &sh);
}

/* The hook's cycle: once, between the refill's new span and its caching
 * (the refill's thread, unpinned, no lock held). */
static _Atomic bool cycle_at_span_made;

static void cycle_mid_refill(struct mheap *h, enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_SPAN_MADE &&
	    atomic_exchange(&cycle_at_span_made, false))
		spanheap_sweep_cycle(&sh);
}

/*
 * A cycle that flips between a refill's new span and its caching finds
 * the span in the all-spans array at sg - 2, as if it needed sweeping,
 * but on no list: the refill owns it, and the cycle leaves it alone. The
 * refill then caches it, on no list, and nothing was swept.
 */
KTEST(spanheap_cache, cycle_between_a_span_made_and_cached)
{
	unsigned cls = sizeclass_of(64);
	KASSERT(sh_heap_fresh(&heap, &sh));
	atomic_store(&cycle_at_span_made, true);
	mheap_test_hook = cycle_mid_refill;
	void *p = spanheap_alloc(&sh, 64, 0);
	mheap_test_hook = NULL;
	KASSERT(p);
	KEXPECT(!atomic_load(&cycle_at_span_made)); /* the hook ran */
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s)); /* not swept empty and freed */
	KEXPECT(sh.caches[0].alloc[cls] == s);
	KEXPECT(s->list == MSPAN_LIST_NONE);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->n.cycles, 1);
	KEXPECT_EQ(st->n.swept_spans, 0);
	free(st);
	SH_CHECK(&sh, "after the refill");
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* CPU 0 runs through two spans of 64-byte objects, then CPU 1 frees
 * nfree objects of the second (the one CPU 0 caches) and flushes; CPU 0
 * allocates once more. Returns the refills that allocation counted (0:
 * the fold kept the span), or UINT64_MAX if something failed. */
static uint64_t refills_after_remote_frees(unsigned nfree)
{
	unsigned cls = sizeclass_of(64), n = sizeclass_info[cls].nelems;
	if (!sh_heap_fresh(&heap, &sh))
		return UINT64_MAX;
	uint64_t r = UINT64_MAX;
	void **p = calloc(2 * (size_t)n, sizeof(*p));
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	if (p && st && sh_alloc_n(&sh, p, 2 * (size_t)n, 64) &&
	    sh.caches[0].alloc[cls]->base == (uintptr_t)p[n]) {
		spanheap_stats(&sh, st);
		uint64_t before = st->refills;
		mm_port_set_cpu(1);
		for (unsigned i = 0; i < nfree; i++) {
			spanheap_free(&sh, p[n + i]);
			p[n + i] = NULL;
		}
		spanheap_flush_cache(&sh);
		mm_port_set_cpu(0);
		p[n] = spanheap_alloc(&sh, 64, 0);
		spanheap_stats(&sh, st);
		r = p[n] ? st->refills - before : UINT64_MAX;
	}
	for (size_t k = 0; p && k < 2 * (size_t)n; k++)
		if (p[k])
			spanheap_free(&sh, p[k]);
	SH_CHECK(&sh, "after the frees");
	free(st);
	free(p);
	sh_heap_release(&heap, &sh);
	return r;
}

/*
 * The fold's "worth keeping" rule at its boundary: a cached span that
 * has exactly an eighth of its objects free after the fold is kept (no
 * refill counted); one object fewer and it goes back, and the allocation
 * counts a trip to the central lists.
 */
KTEST(spanheap_cache, refill_keeps_a_span_exactly_an_eighth_free)
{
	unsigned n = sizeclass_info[sizeclass_of(64)].nelems;
	KASSERT_EQ(n % 8, 0);
	KEXPECT_EQ(refills_after_remote_frees(n / 8), 0);
	KEXPECT_EQ(refills_after_remote_frees(n / 8 - 1), 1);
}

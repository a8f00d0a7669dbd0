/*
 * The span heap's statistics read mid-change (spanheap_stats): the
 * counts of a class come from two reads that are not atomic together, a
 * walk of the spans' bitmaps and then, per class, the span count and the
 * CPUs' magazines. A change between them can leave the walk's objects in
 * use above the spans' capacity (the spans were swept away since) or
 * below the objects in the magazines (a refill filled one since). Each
 * test makes that change happen at MHEAP_HOOK_STATS_WALKED, between the
 * two reads, on the thread taking the statistics, so the interleaving is
 * certain; and it checks what the clamps in spanheap_stats.c promise: a
 * class's objects in use are a count that was true at some moment of the
 * read (between the counts before and after the change), never above the
 * capacity reported beside them, and its free objects are the rest of
 * that capacity, not a difference wrapped past zero.
 *
 * Frees not folded yet are counted from the walk's bits and folded ones
 * from the classes' counters read after it: a fold between the two moved
 * the same frees from one to the other, and they were counted twice (the
 * next read lower: the count ran backwards). The statistics walk again
 * when the folded counts moved during the walk.
 *
 * Each test checks first that the hook ran and that its change happened
 * (a span freed, a magazine filled); without that, the clamps would go
 * untested and the checks would pass anyway.
 */
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* The change a test makes at the hook, once, on the statistics' thread;
 * the hook it replaced (the chaos mode's, or none) gets every other
 * call. */
static void (*midread_change)(void);
static void (*saved_hook)(struct mheap *, enum mheap_hook_point);

static void at_walked(struct mheap *h, enum mheap_hook_point where)
{
	void (*change)(void) = midread_change;
	if (h == &heap && where == MHEAP_HOOK_STATS_WALKED && change) {
		midread_change = NULL; /* once: the change reenters the heap */
		change();
	} else if (saved_hook) {
		saved_hook(h, where);
	}
}

/* spanheap_stats into st with change made between its walk and its
 * per-class reads; false if the hook never ran. */
static bool stats_changed_midread(struct spanheap_stats *st,
                                  void (*change)(void))
{
	saved_hook = mheap_test_hook;
	midread_change = change;
	mheap_test_hook = at_walked;
	spanheap_stats(&sh, st);
	mheap_test_hook = saved_hook;
	bool ran = midread_change == NULL;
	midread_change = NULL;
	return ran;
}

/* The promises of one class's counts, read while its objects in use went
 * from `before` to `after`. */
static void expect_class_sane(const struct spanheap_stats *st, unsigned cls,
                              size_t before, size_t after, int line)
{
	const struct spanheap_class_stats *cs = &st->cls[cls];
	size_t cap = cs->spans * sizeclass_info[cls].nelems;
	size_t lo = before < after ? before : after;
	size_t hi = before < after ? after : before;
	if (cs->objects_in_use > cap ||
	    cs->objects_free != cap - cs->objects_in_use ||
	    cs->objects_in_use < lo || cs->objects_in_use > hi ||
	    cs->bytes_in_use != cs->objects_in_use * sizeclass_info[cls].size)
		ktest_fail_at(__FILE__, line,
		              "class %u read mid-change: %zu objects in use "
		              "(%zu before, %zu after), %zu free, %zu bytes in "
		              "use, of %zu spans holding %zu",
		              cls, cs->objects_in_use, before, after,
		              cs->objects_free, cs->bytes_in_use, cs->spans,
		              cap);
}

/* A class of objects over 512 bytes: a refill puts none in a magazine. */
enum { BIG = 1024 };
static void **big_objs;
static size_t big_n;

/* Frees every object of the class, hands the magazines and cached spans
 * back and sweeps: the class's only span is freed. */
static void free_the_span(void)
{
	for (size_t i = 0; i < big_n; i++)
		spanheap_free(&sh, big_objs[i]);
	sh_flush_cpus(&sh, 1);
	spanheap_sweep_cycle(&sh);
}

/*
 * One span of 1024-byte objects, full. The walk counts its objects in
 * use; then, before the class's span count is read, every object is freed
 * and the span swept away. The walk's count is above the capacity of the
 * spans now counted (none): clamped, the class reads no object in use and
 * none free, where unclamped its free objects were 0 less the walk's.
 */
KTEST(spanheap_stats, walk_overtaken_by_a_sweep_stays_within_capacity)
{
	unsigned cls = sizeclass_of(BIG);
	big_n = sizeclass_info[cls].nelems;
	KASSERT(sh_heap_fresh(&heap, &sh));
	big_objs = calloc(big_n, sizeof(*big_objs));
	KASSERT(big_objs && sh_alloc_n(&sh, big_objs, big_n, BIG));
	KASSERT_EQ(atomic_load(&sh.central[cls].nspans), 1);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	/* The frees fold: a second walk would see them. One walk, as when
	 * the heap folds through every walk, leaves the clamp alone. */
	atomic_store(&spanheap_test_stats_walks, 1);
	bool ran = stats_changed_midread(st, free_the_span);
	atomic_store(&spanheap_test_stats_walks, SPANHEAP_STATS_WALKS);
	KASSERT(ran);
	KASSERT_EQ(atomic_load(&sh.central[cls].nspans), 0); /* it happened */
	expect_class_sane(st, cls, big_n, 0, __LINE__);
	KEXPECT_EQ(st->cls[cls].spans, 0);
	/* Read again, at rest: exact. */
	spanheap_stats(&sh, st);
	expect_class_sane(st, cls, 0, 0, __LINE__);
	SH_CHECK(&sh, "after the sweep inside the statistics");
	free(st);
	free(big_objs);
	sh_heap_release(&heap, &sh);
}

enum { SMALL = 64 };
static void *small_obj[2];

/* This CPU's first two allocations of the class: the first's refill makes
 * a span and caches it; the second, its magazine empty, takes the span's
 * next object and fills the magazine from it (mag_fill), marking those
 * objects allocated. */
static void refill_a_magazine(void)
{
	for (int i = 0; i < 2; i++)
		small_obj[i] = spanheap_alloc(&sh, SMALL, 0);
}

/*
 * No span of 64-byte objects when the walk runs; then, before the
 * magazines are counted, two allocations make one and fill this CPU's
 * magazine from it. The magazine holds more objects than the walk
 * counted in use: clamped, the class reads none in use (the walk's
 * moment), where unclamped the difference wrapped and read as the span
 * full.
 */
KTEST(spanheap_stats, magazines_filled_after_the_walk_leave_no_wrap)
{
	unsigned cls = sizeclass_of(SMALL);
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	small_obj[0] = small_obj[1] = NULL;
	KASSERT(stats_changed_midread(st, refill_a_magazine));
	KASSERT(small_obj[0] && small_obj[1]);
	KASSERT_EQ(st->cls[cls].spans, 1);
	KASSERT(st->cls[cls].mag_objects > 0); /* it happened */
	expect_class_sane(st, cls, 0, 2, __LINE__);
	spanheap_stats(&sh, st);
	expect_class_sane(st, cls, 2, 2, __LINE__);
	for (int i = 0; i < 2; i++)
		spanheap_free(&sh, small_obj[i]);
	SH_CHECK(&sh, "after the refill inside the statistics");
	free(st);
	sh_heap_release(&heap, &sh);
}

enum { NFREED = 32 };
static void *freed_obj[NFREED];

/* CPU 0 hands its cached span back: its pending frees are folded. */
static void fold_cpu0(void)
{
	spanheap_flush_cache(&sh);
}

/*
 * 32 objects of 1024 bytes from CPU 0, freed on CPU 1: pending bits in
 * the span CPU 0 caches. The walk counts them; then, before the classes'
 * folded counts are read, CPU 0 uncaches the span, which folds them. They
 * are counted once: 64 remote frees were read until this version, then
 * 32 (review).
 */
KTEST(spanheap_stats, frees_folded_after_the_walk_are_counted_once)
{
	unsigned cls = sizeclass_of(BIG);
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_cpu(0);
	KASSERT(sh_alloc_n(&sh, freed_obj, NFREED, BIG));
	mm_port_set_cpu(1);
	for (int i = 0; i < NFREED; i++)
		spanheap_free(&sh, freed_obj[i]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	uint64_t folded = atomic_load(&sh.central[cls].nremote);
	KASSERT(stats_changed_midread(st, fold_cpu0));
	KASSERT_EQ(atomic_load(&sh.central[cls].nremote),
	           folded + NFREED); /* it happened */
	KEXPECT_EQ(st->remote_frees, NFREED);
	KEXPECT_EQ(st->local_frees, 0);
	expect_class_sane(st, cls, 0, 0, __LINE__);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->remote_frees, NFREED);
	SH_CHECK(&sh, "after the fold inside the statistics");
	free(st);
	sh_heap_release(&heap, &sh);
}

/*
 * A remote free that lands on a span while its owner has folded it and
 * not yet placed it (mm/spanheap_central.c, spanheap_span_place): the
 * free queues the span, and a fold queue's taker that comes first (a
 * refill, or a cycle's drain) clears queued and skips the span, which is
 * on no list; the owner then places it with a pending bit that no fold
 * has taken. If a cycle flipped in between, that cycle counted the free
 * as its own (pending_base) and never saw the span; the placement makes
 * the span swept at the new sweepgen, so nothing pending since the flip
 * and no queued span tells anyone to fold it: an empty span stayed out
 * of the page heap, and a reclaim (an allocation's last resort before
 * NULL) found nothing to do. Found by review; the span is queued again
 * at its placement now.
 *
 * Driven with the page heap's test hook at MHEAP_HOOK_SPAN_PLACING:
 * CPU 0 hands back its cached span S, whose last live object is then
 * freed by CPU 1 (a pending bit, S queued) before CPU 2 runs a whole
 * cycle (the flip, then the drain of the fold queue that skips S), all on
 * another thread while CPU 0 waits in the hook.
 *
 * And the order a bit set after the placement's look relies on: a thread
 * that sees a free counted sees its bit (a_free_seen_counted_is_seen_whole,
 * for ThreadSanitizer).
 */
#include <pthread.h>
#include <sched.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { SIZE = 64 };

static struct mspan *_Atomic target; /* the span the hook acts on, once */
static void *last;                   /* S's last live object */

static void *free_then_cycle(void *arg)
{
	(void)arg;
	mm_port_set_cpu(1);
	spanheap_free(&sh, last);  /* into CPU 1's magazine */
	spanheap_flush_cache(&sh); /* a pending bit: S queued */
	mm_port_set_cpu(2);
	spanheap_sweep_cycle(&sh); /* the flip; its drain skips S */
	return NULL;
}

static void hook(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SPAN_PLACING)
		return;
	struct mspan *s = atomic_load(&target);
	if (!s || !atomic_compare_exchange_strong(&target, &s, NULL))
		return;
	/* A thread of its own: this one is pinned (CPU 0). */
	pthread_t t;
	if (pthread_create(&t, NULL, free_then_cycle, NULL) == 0)
		pthread_join(t, NULL);
}

KTEST(spanheap_requeue, a_free_between_a_fold_and_a_flip_is_folded)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	unsigned cls = sizeclass_of(SIZE);
	unsigned n = sizeclass_info[cls].nelems;
	void *objs[1024];
	KASSERT(n <= 1024);
	KASSERT(sh_alloc_n(&sh, objs, n, SIZE));
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)objs[0]);
	KASSERT(mheap_span_is_span(s));
	/* All of S's objects but one freed on CPU 0, which caches S:
	 * local frees, folded as CPU 0 hands S back. */
	size_t in_s = 0;
	last = NULL;
	for (unsigned i = 0; i < n; i++) {
		if (mheap_span_lookup(&heap, (uintptr_t)objs[i]) != s)
			continue;
		in_s++;
		if (last)
			spanheap_free(&sh, objs[i]);
		else
			last = objs[i];
		objs[i] = NULL;
	}
	KASSERT(in_s == s->nelems && atomic_load(&s->owner) == 1);
	atomic_store(&target, s);
	mheap_test_hook = hook;
	spanheap_flush_cache(&sh); /* CPU 0 hands S back */
	mheap_test_hook = NULL;
	KEXPECT(atomic_load(&target) == NULL); /* the hook ran */
	KEXPECT(atomic_load(&s->queued));      /* its free is on its way */
	SH_CHECK(&sh, "with S placed");
	/* S is placed; its one object is freed (a pending bit). A reclaim
	 * must fold that free and give S back. */
	size_t before = sh_in_use_pages(&heap);
	spanheap_reclaim(&sh);
	KEXPECT_EQ(sh_in_use_pages(&heap) + sizeclass_info[cls].npages, before);
	for (unsigned i = 0; i < n; i++)
		if (objs[i])
			spanheap_free(&sh, objs[i]);
	sh_flush_cpus(&sh, 3);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

/*
 * What the placement's requeue leaves to the count (spanheap_central.c,
 * requeue_if_pending_locked): a bit set after its look is owed a fold by
 * the next cycle, as the free counts its bytes after its bit, so a flip
 * whose base took the count in happened after the bit was set. That holds
 * only if a thread that reads a free's count sees what the free wrote
 * before it: the count's store release, its reads acquire. Relaxed (until
 * a review), arm64 and riscv64 may show the count before the bit, and the
 * bit then waits for a cycle that need not come (the sweep model's mutant
 * COUNT_BEFORE_BIT). The pending bit is atomic, and ThreadSanitizer tells
 * no race on an atomic: a plain word the freeing thread writes before the
 * free stands in for it, and the host-tsan build reports its read here as
 * a race unless the count orders it.
 */
static int before_free; /* plain: written before the free, read after */
static void *remote;    /* an object of CPU 0's cached span */

static void *free_remote(void *arg)
{
	(void)arg;
	mm_port_set_cpu(1);
	before_free = 1;
	spanheap_free(&sh, remote); /* into CPU 1's magazine */
	spanheap_flush_cache(&sh);  /* its pending bit, then its count */
	return NULL;
}

KTEST(spanheap_requeue, a_free_seen_counted_is_seen_whole)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	remote = spanheap_alloc(&sh, SIZE, 0);
	KASSERT(remote != NULL);
	before_free = 0;
	uint64_t total0 = spanheap_pending_total(&sh);
	pthread_t t;
	KASSERT(pthread_create(&t, NULL, free_remote, NULL) == 0);
	/* The flip's read of the counts (its base), acquire. */
	while (spanheap_pending_total(&sh) == total0)
		sched_yield();
	KEXPECT_EQ(before_free, 1);
	pthread_join(t, NULL);
	sh_flush_cpus(&sh, 2);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

/*
 * The growth fold's parked hint at its edges (sweeper.parked,
 * mm/spanheap_sweeper.c's fold_for and spanheap_sweep_before_growth): a
 * growth parks the rest of a queue in a backlog and the cycle that made
 * its frees due ends, so that only the hint tells the next growth to
 * fold. Here the hint must survive a growth that spends its budget on a
 * queue of exactly SPANHEAP_GROWTH_FOLD_BUDGET spans (a rest of none, so
 * park_rest sets nothing), and a growth the backlog cannot serve must not
 * run a cycle for it (a backlog owes none). Review rv76's mutations of
 * both (fold_for's set at its budget's end, or its budget test, dropped;
 * sweep_before_growth's "|| !due" dropped) failed no test before these.
 */
#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* 8 MiB of the last class (32 KiB, a span an object), freed: due. */
#define LAST_SIZE   32768
#define PHASE_BYTES ((size_t)8 << 20)
enum { N_LAST = PHASE_BYTES / LAST_SIZE, KEPT_SIZE = 256 };
static void *last[N_LAST];

/* SPANHEAP_GROWTH_FOLD_BUDGET spans of 256-byte objects (up to 256 each). */
enum { KEPT_MAX = SPANHEAP_GROWTH_FOLD_BUDGET * 256 };
static void *kept[KEPT_MAX];

static void *taken[1 << 16];
static size_t ntaken;

/* Takes every free page of the page heap, so the next span must grow. */
static void take_free_pages(void)
{
	while (ntaken < sizeof(taken) / sizeof(taken[0]) &&
	       (taken[ntaken] = mheap_alloc_pages(&heap, 1, MHEAP_NO_GROW)))
		ntaken++;
}

static void give_back(void)
{
	while (ntaken)
		mheap_free_pages(&heap, taken[--ntaken], 1);
}

static size_t grown_pages(void)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	return st.grown_pages;
}

static struct spanheap_counters counts(void)
{
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.n;
}

static size_t queue_len(unsigned cls)
{
	struct mcentral *c = spanheap_central_of(&sh, cls, __func__);
	size_t n = 0;
	for (struct mspan *s = atomic_load(&c->fold_queue); s;
	     s = atomic_load(&s->qnext))
		n++;
	return n;
}

static _Atomic bool cycle_armed;

/* As a growth's folds park their rest: a whole cycle ends first. */
static void cycle_before_the_rest_parks(struct mheap *h,
                                        enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_FOLD_REST &&
	    atomic_exchange(&cycle_armed, false))
		spanheap_run_cycle(&sh, false);
}

/*
 * A fresh heap with kept[] (nkept objects: SPANHEAP_GROWTH_FOLD_BUDGET
 * full spans of KEPT_SIZE, uncached) and a backlog of empty last-class
 * spans that a growth (*p, 1 KiB) parked after a cycle ended: nothing
 * pending, only the hint. Every free page taken.
 */
static bool parked_backlog(void **p, size_t *nkept)
{
	unsigned cls = sizeclass_of(KEPT_SIZE);
	*nkept = (size_t)SPANHEAP_GROWTH_FOLD_BUDGET *
	         sizeclass_info[cls].nelems;
	if (sizeclass_of(LAST_SIZE) != SC_NCLASSES - 1 || *nkept > KEPT_MAX ||
	    !sh_heap_fresh(&heap, &sh) || !sh_alloc_n(&sh, kept, *nkept, 256) ||
	    !sh_alloc_n(&sh, last, N_LAST, LAST_SIZE))
		return false;
	spanheap_flush_cache(&sh);
	for (size_t i = 0; i < N_LAST; i++)
		spanheap_free(&sh, last[i]);
	spanheap_flush_cache(&sh); /* the magazine's too: the cycle's */
	take_free_pages();
	atomic_store(&cycle_armed, true);
	mheap_test_hook = cycle_before_the_rest_parks;
	*p = spanheap_alloc(&sh, 1024, 0);
	mheap_test_hook = NULL;
	take_free_pages(); /* the cycle gave back spans */
	return *p && !atomic_load(&cycle_armed) &&
	       spanheap_pending_since_flip(&sh) == 0 &&
	       atomic_load(&sh.sweeper.parked);
}

static void release(void **p, size_t np, size_t nkept)
{
	for (size_t i = 0; i < np; i++)
		if (p[i])
			spanheap_free(&sh, p[i]);
	for (size_t i = 0; i < nkept; i++)
		if (kept[i])
			spanheap_free(&sh, kept[i]);
	spanheap_flush_cache(&sh);
	give_back();
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * A growth (not due, hinted) spends its whole budget on a queue of
 * exactly SPANHEAP_GROWTH_FOLD_BUDGET spans that give no pages (each
 * keeps an object), before the last class's backlog: no rest, so nothing
 * but fold_for's stop sets the hint again, which its start cleared. The
 * growth after it must still fold the backlog instead of growing. With
 * the set (or the budget test before it) dropped it grew by 512 pages and
 * folded nothing.
 */
KTEST(spanheap_growth_park, a_hint_outlives_a_budget_spent_to_the_last_span)
{
	void *p[3] = {NULL};
	size_t nkept = 0;
	KASSERT(parked_backlog(&p[0], &nkept));
	unsigned cls = sizeclass_of(KEPT_SIZE);
	size_t per = sizeclass_info[cls].nelems;
	for (size_t i = 1; i < nkept; i += per) { /* an object a span */
		spanheap_free(&sh, kept[i]);
		kept[i] = NULL;
	}
	spanheap_flush_cache(
	        &sh); /* the magazine's frees: each queues its span */
	KASSERT(queue_len(cls) == SPANHEAP_GROWTH_FOLD_BUDGET);
	KASSERT(spanheap_pending_since_flip(&sh) < sh.cfg.min_pending_bytes);
	uint64_t f = counts().queue_folded;
	p[1] = spanheap_alloc(&sh, 2048, 0);
	KEXPECT(p[1] != NULL);
	KEXPECT_EQ(counts().queue_folded - f, SPANHEAP_GROWTH_FOLD_BUDGET);
	KEXPECT_EQ(queue_len(cls), 0);
	take_free_pages();
	size_t before = grown_pages();
	f = counts().queue_folded;
	p[2] = spanheap_alloc(&sh, 4096, 0);
	KEXPECT(p[2] != NULL);
	KEXPECT_EQ(grown_pages(), before);
	KEXPECT(counts().queue_folded > f);
	release(p, 3, nkept);
}

/*
 * A growth the parked backlog cannot serve (a large object of more pages
 * than a budget of its spans give) folds what its budget allows and
 * grows, but runs no cycle: nothing is pending, and without a sweeper
 * the cycle would be the caller's, a whole heap's sweep for nothing.
 * With "|| !due" dropped from sweep_before_growth it ran one here.
 */
KTEST(spanheap_growth_park, a_parked_backlog_owes_no_cycle)
{
	void *p[2] = {NULL};
	size_t nkept = 0;
	KASSERT(parked_backlog(&p[0], &nkept));
	struct spanheap_counters n0 = counts();
	size_t before = grown_pages();
	p[1] = spanheap_alloc(&sh, (size_t)4 << 20, 0);
	KEXPECT(p[1] != NULL);
	struct spanheap_counters n1 = counts();
	KEXPECT(n1.queue_folded > n0.queue_folded);
	KEXPECT(grown_pages() > before);
	KEXPECT_EQ(n1.cycles, n0.cycles);
	release(p, 2, nkept);
}

/*
 * A parked backlog owes a release a cycle though nothing is pending
 * (spanheap_release_all, as spanheap_reclaim: spanheap_queues_hold_spans):
 * its empty spans are freed by no one but whoever takes them off. With
 * the look dropped the release ran no cycle and kept the backlog's spans.
 */
KTEST(spanheap_growth_park, a_release_folds_a_parked_backlog)
{
	void *p[1] = {NULL};
	size_t nkept = 0;
	KASSERT(parked_backlog(&p[0], &nkept));
	struct mcentral *c =
	        spanheap_central_of(&sh, SC_NCLASSES - 1, __func__);
	KASSERT(atomic_load(&c->fold_backlog) != NULL);
	uint64_t c0 = counts().cycles;
	spanheap_release_all(&sh);
	KEXPECT_EQ(counts().cycles, c0 + 1);
	KEXPECT(atomic_load(&c->fold_backlog) == NULL);
	release(p, 1, nkept);
}

/*
 * The span heap's sweep before growth (spanheap_sweep_before_growth,
 * mm/spanheap_sweeper.c): a thread allocation that would grow the page
 * heap, with a cycle owed, first folds queued spans until its pages came
 * back, so that memory freed in one size class comes back for another
 * before the heap grows; an atomic caller never does, a heap with free
 * pages never pays for it, and the work is bounded by the need, not by
 * the heap. The sweeper thread is not started: the work counted is the
 * callers'.
 * Found measuring Hoard's blowup (tests/real/blowup.c, "phases": 32 MiB
 * freed size after size held 275 MiB). spanheap_check runs at every quiet
 * point.
 */
#include <pthread.h>
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* 8 MiB of 256-byte objects, freed, and 8 MiB of 1 KiB ones. */
#define PHASE_BYTES ((size_t)8 << 20)
enum { N_SMALL = PHASE_BYTES / 256, N_BIG = PHASE_BYTES / 1024 };
static void *small[N_SMALL], *big[N_BIG];

/* Spans folded off fold queues: the sweep before growth's work. */
static uint64_t folded(void)
{
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.n.queue_folded;
}

static size_t grown_pages(void)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	return st.grown_pages;
}

/* Allocates the first phase and frees it after handing the cached span
 * back, so that every free is pending (no cycle runs yet). */
static bool phase_one_freed(void)
{
	if (!sh_alloc_n(&sh, small, N_SMALL, 256))
		return false;
	spanheap_flush_cache(&sh);
	for (size_t i = 0; i < N_SMALL; i++)
		spanheap_free(&sh, small[i]);
	return sh_cycles(&sh) == 0;
}

static void free_big(size_t n)
{
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, big[i]);
}

/*
 * The second phase, another class, reuses the first one's pages: the heap
 * grows by less than half of it. Without the sweep before growth it grew
 * by all of it (the freed spans waited for a sweeper that was not
 * running: 2048 pages more).
 */
KTEST(spanheap_growth, a_thread_sweeps_before_the_heap_grows)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(phase_one_freed());
	size_t before = grown_pages();
	KASSERT(sh_alloc_n(&sh, big, N_BIG, 1024));
	size_t grew = grown_pages() - before;
	KEXPECT(grew < PHASE_BYTES / MM_PAGE_SIZE / 2);
	KEXPECT(folded() > 0);
	SH_CHECK(&sh, "after the second phase");
	free_big(N_BIG);
	sh_heap_release(&heap, &sh);
}

/* Takes every free page of the page heap (none is left for a span
 * without growth) into taken[n], taken[n + 1], ...; returns the count
 * taken in all, freed by give_back. */
static void *taken[1 << 16];
static size_t take_free_pages(size_t n)
{
	while (n < sizeof(taken) / sizeof(taken[0]) &&
	       (taken[n] = mheap_alloc_pages(&heap, 1, MHEAP_NO_GROW)))
		n++;
	return n;
}

static void give_back(size_t n)
{
	for (size_t i = 0; i < n; i++)
		mheap_free_pages(&heap, taken[i], 1);
}

/*
 * An atomic caller (an interrupt handler in the kernel) cannot run a
 * cycle, which may sleep: its span comes from growth or not at all, and
 * no cycle runs nor span is folded. The thread caller after it folds the
 * queued spans. With the caller's MM_ATOMIC test dropped, the atomic
 * allocation swept and panicked in its can-sleep assertion.
 */
KTEST(spanheap_growth, an_atomic_caller_does_not_sweep_first)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(phase_one_freed());
	size_t n = take_free_pages(0);
	void *p = NULL;
	mm_port_set_atomic(true);
	bool fired = MM_PORT_PANICS(p = spanheap_alloc(&sh, 1024, MM_ATOMIC));
	mm_port_set_atomic(false);
	sh_unpin_after_panic();
	KEXPECT(!fired);
	KEXPECT_EQ(sh_cycles(&sh), 0);
	KEXPECT_EQ(folded(), 0);
	if (p)
		spanheap_free(&sh, p);
	/* The atomic caller may have grown the heap by a chunk: taken too.
	 * Then a thread allocation of another class that needs a span. */
	n = take_free_pages(n);
	void *q = spanheap_alloc(&sh, 2048, 0);
	KEXPECT(q != NULL);
	KEXPECT(folded() > 0);
	spanheap_free(&sh, q);
	give_back(n);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * A heap with free pages grows nothing, so no cycle runs before a span
 * is made, however much is pending: the sweeper's pace is kept. Here the
 * free pages are a large object's, freed after the first phase. With
 * the page heap's test dropped, the first span of the second phase ran a
 * cycle.
 */
KTEST(spanheap_growth, no_cycle_while_the_heap_has_free_pages)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *large = spanheap_alloc(&sh, PHASE_BYTES, 0);
	KASSERT(large != NULL);
	KASSERT(phase_one_freed());
	spanheap_free(&sh, large);
	size_t before = grown_pages();
	/* A quarter of the large object's pages. */
	KASSERT(sh_alloc_n(&sh, big, N_BIG / 4, 1024));
	KEXPECT_EQ(sh_cycles(&sh), 0);
	KEXPECT_EQ(grown_pages(), before);
	free_big(N_BIG / 4);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

static uint64_t spans_worked(void)
{
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.n.swept_spans + st.n.demand_swept + st.n.queue_folded;
}

/* 16 MiB of 64-byte objects kept live: spans a whole cycle would sweep. */
enum { N_LIVE = ((size_t)16 << 20) / 64 };
static void *live[N_LIVE];

/*
 * The sweep before growth does work in proportion to the allocation's
 * need, not to the heap (Go's mheap.reclaim sweeps until npages came
 * back): one allocation that needs a span in a heap of 3072 spans, 1024
 * of them freed and owed a sweep, folds a few of the freed ones and
 * takes its pages from them, without growing the heap. Until a review it
 * ran the whole cycle owed (every span swept, 3072 here: 1.4 ms of one
 * malloc call in a 256 MiB heap, 4.8 ms in a 1 GiB one; make
 * bench-latency).
 */
KTEST(spanheap_growth, the_sweep_before_growth_is_bounded)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh_alloc_n(&sh, live, N_LIVE, 64));
	KASSERT(phase_one_freed());
	size_t n = take_free_pages(0);
	size_t before = grown_pages();
	uint64_t worked = spans_worked();
	void *p = spanheap_alloc(&sh, 1024, 0);
	KEXPECT(p != NULL);
	uint64_t did = spans_worked() - worked;
	KEXPECT(did > 0);
	KEXPECT(did <=
	        SPANHEAP_GROWTH_FOLD_BUDGET + SPANHEAP_FOLD_QUEUE_BUDGET);
	KEXPECT_EQ(grown_pages(), before);
	spanheap_free(&sh, p);
	give_back(n);
	for (size_t i = 0; i < N_LIVE; i++)
		spanheap_free(&sh, live[i]);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * When the queues cannot give the pages (every span freed into keeps an
 * object), a caller with a sweeper thread running leaves the cycle to it
 * and grows: its work stays bounded (a budget of folds, no cycle). The
 * sweeper is stood for by its running flag (idle_flush), so that no
 * thread's cycle races with the count. Without a sweeper the caller runs
 * the cycle itself, as nothing else would. Until a review it ran the
 * whole cycle either way.
 */
KTEST(spanheap_growth, with_a_sweeper_the_caller_leaves_it_the_cycle)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh_alloc_n(&sh, small, N_SMALL, 256));
	spanheap_flush_cache(&sh);
	for (size_t i = 0; i < N_SMALL; i++)
		if (i % 16)
			spanheap_free(&sh, small[i]);
	KASSERT(sh_cycles(&sh) == 0);
	size_t n = take_free_pages(0);
	uint64_t worked = spans_worked();
	atomic_store(&sh.sweeper.idle_flush, true);
	void *p = spanheap_alloc(&sh, 1024, 0);
	atomic_store(&sh.sweeper.idle_flush, false);
	KEXPECT(p != NULL);
	KEXPECT_EQ(sh_cycles(&sh), 0);
	KEXPECT(spans_worked() - worked <=
	        SPANHEAP_GROWTH_FOLD_BUDGET + SPANHEAP_FOLD_QUEUE_BUDGET);
	n = take_free_pages(n);
	void *q = spanheap_alloc(&sh, 2048, 0);
	KEXPECT(q != NULL);
	KEXPECT_EQ(sh_cycles(&sh), 1);
	spanheap_free(&sh, p);
	spanheap_free(&sh, q);
	give_back(n);
	for (size_t i = 0; i < N_SMALL; i += 16)
		spanheap_free(&sh, small[i]);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

static _Atomic bool cycle_armed;

/* As a growth's folds park their rest in the backlog: a whole cycle,
 * which the rest (in the folder's hands) escapes, ends first. */
static void cycle_before_the_rest_parks(struct mheap *h,
                                        enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_FOLD_REST &&
	    atomic_exchange(&cycle_armed, false))
		spanheap_run_cycle(&sh, false);
}

/* With every free page taken: a 1 KiB allocation whose folds park a
 * rest, hook (armed) running at the park; then a 2 KiB one must fold
 * the parked rest rather than grow the heap. Releases the heap. */
static void parked_rest_is_folded_next(_Atomic bool *armed,
                                       void (*hook)(struct mheap *,
                                                    enum mheap_hook_point))
{
	size_t n = take_free_pages(0);
	atomic_store(armed, true);
	mheap_test_hook = hook;
	void *p = spanheap_alloc(&sh, 1024, 0);
	mheap_test_hook = NULL;
	KEXPECT(p != NULL);
	KEXPECT(!atomic_load(armed));
	KEXPECT_EQ(spanheap_pending_since_flip(&sh), 0);
	n = take_free_pages(n);
	size_t before = grown_pages();
	uint64_t f = folded();
	void *q = spanheap_alloc(&sh, 2048, 0);
	KEXPECT(q != NULL);
	KEXPECT_EQ(grown_pages(), before);
	KEXPECT(folded() > f);
	spanheap_free(&sh, p);
	spanheap_free(&sh, q);
	give_back(n);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * A growth's folds leave the rest of a queue in its class's backlog, and
 * the cycle that made the frees due may end meanwhile (the sweeper's,
 * here run by the hook): nothing is pending since its flip, but the
 * backlog still holds the empty spans. The next growth folds them
 * (sweeper.parked) instead of growing. Found with blowup "phases" under
 * the sweeper: 4 runs in 22 peaked 22 to 33 MiB higher; without the flag
 * the second allocation here grew the heap and folded nothing.
 */
KTEST(spanheap_growth, a_backlog_a_growth_parked_is_folded_by_the_next)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(phase_one_freed());
	parked_rest_is_folded_next(&cycle_armed, cycle_before_the_rest_parks);
}

static _Atomic bool growth_armed;

/* As a growth's folds park their rest: another growth, of more pages
 * than the heap has, folds every class (the rest, in the first folder's
 * hands, escapes it) and runs the cycle owed, there being no sweeper. */
static void growth_before_the_rest_parks(struct mheap *h,
                                         enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_FOLD_REST &&
	    atomic_exchange(&growth_armed, false))
		spanheap_sweep_before_growth(&sh, (size_t)1 << 30);
}

/* The first phase in the last class (32 KiB, a span an object). */
#define LAST_SIZE 32768
enum { N_LAST = PHASE_BYTES / LAST_SIZE };
static void *last[N_LAST];

/* A fresh heap with a phase of the last class allocated and freed, its
 * spans queued, no cycle run. */
static bool last_phase_freed(void)
{
	if (sizeclass_of(LAST_SIZE) != SC_NCLASSES - 1 ||
	    !sh_heap_fresh(&heap, &sh) ||
	    !sh_alloc_n(&sh, last, N_LAST, LAST_SIZE))
		return false;
	spanheap_flush_cache(&sh);
	for (size_t i = 0; i < N_LAST; i++)
		spanheap_free(&sh, last[i]);
	return sh_cycles(&sh) == 0;
}

/*
 * The folds before growth stop once the allocation's pages came back,
 * not at the budget: with 8-page spans freed empty, about the reserve's
 * pages over 8 of them (17 by default), far fewer than
 * SPANHEAP_GROWTH_FOLD_BUDGET. The other tests' 2-page spans use the
 * whole budget before the pages come back, so the stop went untested:
 * a mutation that dropped it (review rv71) folded 64 here.
 */
KTEST(spanheap_growth, the_folds_stop_once_the_pages_came_back)
{
	KASSERT(last_phase_freed());
	size_t n = take_free_pages(0);
	size_t before = grown_pages();
	uint64_t f = folded();
	void *p = spanheap_alloc(&sh, 1024, 0);
	KEXPECT(p != NULL);
	uint64_t did = folded() - f;
	ktest_diag("%lu spans folded", (unsigned long)did);
	KEXPECT(did > 0);
	KEXPECT(did <= heap.cfg.reserve_pages / 8 + 8);
	KEXPECT(did < SPANHEAP_GROWTH_FOLD_BUDGET);
	KEXPECT_EQ(grown_pages(), before);
	spanheap_free(&sh, p);
	give_back(n);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * Two growths' folds overlap: the second clears parked as it starts,
 * while the first holds a queue's rest it has not put in the backlog
 * yet. The first's hint must outlive the second's clear: the next
 * growth folds the backlog instead of growing. Until a review the
 * first set parked before it put the rest in the backlog, so the
 * second's clear, between the two, lost the hint with the rest still
 * parked when the rest was the last class's (for any other the first
 * set it again as it stopped at the next class). Found reading the
 * flag's protocol; this test grew the heap and folded nothing then.
 */
KTEST(spanheap_growth, a_parked_hint_outlives_an_overlapping_growth)
{
	KASSERT(last_phase_freed());
	parked_rest_is_folded_next(&growth_armed, growth_before_the_rest_parks);
}

static _Atomic bool placing_armed;
static void *got_in_cycle;

/* At the cycle's first placement (after its flip): a thread allocation
 * that needs a span, with every free page taken. */
static void growth_in_a_cycle(struct mheap *h, enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_SPAN_PLACING &&
	    spanheap_cycle_running(&sh) &&
	    atomic_exchange(&placing_armed, false))
		got_in_cycle = spanheap_alloc(&sh, 1024, 0);
}

/*
 * A growth while a cycle runs folds queued spans though nothing is
 * pending since the cycle's flip (the flip took the frees, and the
 * queues still hold their spans until the cycle reaches them): a
 * running cycle makes the folds due. With that test dropped (review
 * rv71's mutation, which no test killed) the allocation grew the heap.
 */
KTEST(spanheap_growth, a_growth_during_a_cycle_folds_first)
{
	KASSERT(last_phase_freed());
	size_t n = take_free_pages(0);
	size_t before = grown_pages();
	got_in_cycle = NULL;
	atomic_store(&placing_armed, true);
	mheap_test_hook = growth_in_a_cycle;
	spanheap_sweep_cycle(&sh);
	mheap_test_hook = NULL;
	KEXPECT(!atomic_load(&placing_armed));
	KEXPECT(got_in_cycle != NULL);
	KEXPECT_EQ(grown_pages(), before);
	if (got_in_cycle)
		spanheap_free(&sh, got_in_cycle);
	give_back(n);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

static _Atomic bool alloc_armed;
static size_t grew_in_fold;

static void *alloc_in_the_fold(void *arg)
{
	(void)arg;
	mm_port_set_cpu(2);
	size_t before = grown_pages();
	void *p = spanheap_alloc(&sh, 1024, 0);
	grew_in_fold = grown_pages() - before;
	if (p)
		spanheap_free(&sh, p);
	spanheap_flush_cache(&sh);
	return NULL;
}

/* The folder's first span placed: another thread allocates meanwhile. */
static void alloc_while_folding(struct mheap *h, enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_SPAN_PLACING &&
	    atomic_exchange(&alloc_armed, false)) {
		pthread_t t;
		if (pthread_create(&t, NULL, alloc_in_the_fold, NULL) == 0)
			pthread_join(t, NULL);
	}
}

/*
 * A cycle's finish folds a class's queue in chunks; a thread descheduled
 * in a chunk (the sweeper, under load) holds that chunk, and the rest of
 * the queue waits in the backlog, where an allocation about to grow the
 * heap folds it. Here the other allocation runs at the cycle's first
 * span placed, with the sweeper stood for by idle_flush (so that the
 * allocation runs no cycle of its own). Until a review the rest of the
 * queue was parked only after the chunk: the allocation found queue and
 * backlog empty and grew the heap by 512 pages (one run of blowup
 * "phases" in 30 peaked 46.6 MiB for 40.9, under load; this is a likely
 * cause, not shown to be the one).
 */
KTEST(spanheap_growth, a_fold_in_progress_holds_only_its_chunk)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(phase_one_freed());
	unsigned cls = sizeclass_of(256);
	size_t n = take_free_pages(0);
	grew_in_fold = (size_t)-1;
	atomic_store(&sh.sweeper.idle_flush, true);
	atomic_store(&alloc_armed, true);
	mheap_test_hook = alloc_while_folding;
	spanheap_fold_queue_all(&sh, cls);
	mheap_test_hook = NULL;
	atomic_store(&sh.sweeper.idle_flush, false);
	KEXPECT(!atomic_load(&alloc_armed)); /* the hook ran */
	KEXPECT_EQ(grew_in_fold, 0);
	give_back(n);
	SH_CHECK(&sh, "after the folds");
	sh_heap_release(&heap, &sh);
}

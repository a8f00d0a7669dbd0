/*
 * The fold queues (mm/spanheap_central.c, spanheap_fold_queue), driven step by
 * step on simulated CPUs: a remote free queues its span once, however
 * many of its objects follow; a refill takes the whole queue, folds spans
 * until one has a free object (skipping the spans a CPU caches), caches
 * that one and leaves the rest in the class's backlog, which the next refill
 * takes first; the rests of two refills that overlap join in the backlog, none
 * lost (the page heap's test hook holds the first at the join while another
 * CPU's refill leaves its rest); a sweep cycle folds the backlog and the
 * queue whole; and a rest left in the backlog after a cycle overtook its
 * refill is still given back, by a refused allocation's reclaim and by the
 * sweeper's periodic cycle. Last, pushes from several threads at once
 * onto one queue (spanheap_fold_queue_push, lock-free) lose none.
 *
 * Each test fills S spans of the 64-byte class on CPU 0 and hands them
 * back full; CPU 1 then frees one object of some of them and flushes, so
 * that every free is a pending bit and every span it touched is queued.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { S = 40, SIZE = 64 };

static unsigned cls;
static unsigned nelems;
static void **objs; /* S * nelems: span j's object i at [j * nelems + i] */
static struct mspan *spans[S]; /* span j */

/* The heap, S full spans of class cls handed back by CPU 0 (on a full
 * list), their objects in objs in address order span by span. */
static bool fill_spans(void)
{
	cls = sizeclass_of(SIZE);
	nelems = sizeclass_info[cls].nelems;
	if (!sh_heap_fresh(&heap, &sh))
		return false;
	objs = calloc((size_t)S * nelems, sizeof(*objs));
	if (!objs || !sh_alloc_n(&sh, objs, (size_t)S * nelems, SIZE))
		return false;
	spanheap_flush_cache(&sh);
	for (size_t j = 0; j < S; j++) {
		struct mspan *s =
		        mheap_span_lookup(&heap, (uintptr_t)objs[j * nelems]);
		if (!mheap_span_is_span(s) ||
		    s->base != (uintptr_t)objs[j * nelems] ||
		    s->list != MSPAN_LIST_FULL)
			return false;
		spans[j] = s;
	}
	return true;
}

static struct mspan *span_j(size_t j)
{
	return spans[j];
}

/* CPU cpu frees object i of spans [from, to) and flushes: pending bits. */
static void free_from(unsigned cpu, size_t from, size_t to, size_t i)
{
	mm_port_set_cpu(cpu);
	for (size_t j = from; j < to; j++) {
		spanheap_free(&sh, objs[j * nelems + i]);
		objs[j * nelems + i] = NULL;
	}
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
}

/* The spans on chain q (linked through qnext), or S + 1 if one is there
 * twice or is not one of the test's. */
static size_t chain_len(struct mspan *q)
{
	bool seen[S] = {false};
	size_t n = 0;
	for (; q; q = atomic_load(&q->qnext), n++) {
		size_t j = 0;
		while (j < S && span_j(j) != q)
			j++;
		if (j == S || seen[j])
			return S + 1;
		seen[j] = true;
	}
	return n;
}

static void finish(void)
{
	for (size_t k = 0; k < (size_t)S * nelems; k++)
		if (objs[k])
			spanheap_free(&sh, objs[k]);
	sh_flush_cpus(&sh, 3);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	free(objs);
	objs = NULL;
	sh_heap_release(&heap, &sh);
}

/* Two objects of one span freed from another CPU: the span is queued once
 * (the first free's), both pending bits are set, and the span stays on
 * its full list until someone folds it. */
KTEST(spanheap_queue, remote_frees_queue_their_span_once)
{
	KASSERT(fill_spans());
	mm_port_set_cpu(1);
	spanheap_free(&sh, objs[3]);
	spanheap_free(&sh, objs[7]);
	spanheap_free(&sh, objs[nelems + 5]);
	objs[3] = objs[7] = objs[nelems + 5] = NULL;
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	struct mcentral *c = &sh.central[cls];
	struct mspan *s0 = span_j(0), *s1 = span_j(1);
	KEXPECT_EQ(chain_len(atomic_load(&c->fold_queue)), 2);
	KEXPECT(atomic_load(&s0->queued) && atomic_load(&s1->queued));
	KEXPECT(!atomic_load(&span_j(2)->queued));
	KEXPECT_EQ(atomic_load(&s0->pending[0]), (1ull << 3) | (1ull << 7));
	KEXPECT_EQ(atomic_load(&s1->pending[0]), 1ull << 5);
	KEXPECT(s0->list == MSPAN_LIST_FULL && s1->list == MSPAN_LIST_FULL);
	KEXPECT(c->fold_backlog == NULL);
	SH_CHECK(&sh, "queued spans");
	finish();
}

/* A refill with no partial span takes the whole queue, folds its newest
 * span (the last queued), which has a free object, and caches it; the
 * other spans wait in the backlog, still queued. The next refill takes
 * the backlog first, the queue untouched. */
KTEST(spanheap_queue, refill_caches_one_and_leaves_a_backlog)
{
	KASSERT(fill_spans());
	free_from(1, 0, S / 2, 0);
	struct mcentral *c = &sh.central[cls];
	KASSERT_EQ(chain_len(atomic_load(&c->fold_queue)), S / 2);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	uint64_t folded = st.n.queue_folded;
	/* The refill: the newest queued span is the last one freed into. */
	void *p = spanheap_alloc(&sh, SIZE, 0);
	struct mspan *last = span_j(S / 2 - 1);
	KEXPECT(p == (void *)last->base);
	KEXPECT(sh.caches[0].alloc[cls] == last);
	KEXPECT(!atomic_load(&last->queued));
	KEXPECT(atomic_load(&c->fold_queue) == NULL);
	KEXPECT_EQ(chain_len(c->fold_backlog), S / 2 - 1);
	for (size_t j = 0; j + 1 < S / 2; j++)
		KEXPECT(atomic_load(&span_j(j)->queued));
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.n.queue_folded, folded + 1);
	objs[(S / 2 - 1) * nelems] = p;
	/* A span queued now goes on the queue, not the backlog. */
	free_from(1, S / 2, S / 2 + 1, 0);
	KEXPECT_EQ(chain_len(atomic_load(&c->fold_queue)), 1);
	/* The cached span is full again: the next refill takes the
	 * backlog's first span, not the one just queued. */
	void *q = spanheap_alloc(&sh, SIZE, 0);
	KEXPECT(q == (void *)span_j(S / 2 - 2)->base);
	KEXPECT_EQ(chain_len(c->fold_backlog), S / 2 - 2);
	KEXPECT_EQ(chain_len(atomic_load(&c->fold_queue)), 1);
	objs[(S / 2 - 2) * nelems] = q;
	SH_CHECK(&sh, "a backlog");
	/* A sweep cycle folds the backlog and the queue, every one. */
	spanheap_sweep_cycle(&sh);
	KEXPECT(c->fold_backlog == NULL);
	KEXPECT(atomic_load(&c->fold_queue) == NULL);
	size_t partial = 0;
	for (size_t j = 0; j < S; j++) {
		KEXPECT(!atomic_load(&span_j(j)->queued));
		partial += span_j(j)->list == MSPAN_LIST_PARTIAL;
	}
	KEXPECT_EQ(partial, S / 2 - 1); /* the two refilled are full */
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].objects_in_use,
	           (size_t)S * nelems - (S / 2 - 1));
	SH_CHECK(&sh, "after the sweep");
	finish();
}

/*
 * Two refills that overlap: CPU 0's takes the queue of spans [0, S/2),
 * caches one and, before it leaves its rest in the backlog, the hook
 * stops it while another thread queues spans [S/2, S) from CPU 1 and
 * refills on CPU 2, which takes that queue, caches one and leaves its own
 * rest in the backlog. CPU 0's rest then joins it there: S - 2 spans,
 * each once, none lost (a lost span would stay queued for good: never
 * queued again, never given back). (The join walks CPU 0's rest to
 * its tail before the class's lock, not under it: a rest may hold every
 * span of the class, and the lock keeps interrupts off. What this test
 * shows is that the join still loses no span.)
 */
static _Atomic bool hold_rest;

/* Runs fn(arg) on a thread of the test's own and waits for it: another
 * CPU's work inside a hook, where the refill is pinned and the port lets
 * no thread of its own start. */
struct other {
	void (*fn)(void *);
	void *arg;
};

static void *other_run(void *p)
{
	struct other *o = p;
	o->fn(o->arg);
	return NULL;
}

static void on_another_thread(void (*fn)(void *), void *arg)
{
	struct other o = {fn, arg};
	pthread_t t;
	if (pthread_create(&t, NULL, other_run, &o) == 0)
		pthread_join(t, NULL);
}

static void other_refill(void *arg)
{
	free_from(1, S / 2, S, 0);
	mm_port_set_cpu(2);
	*(void **)arg = spanheap_alloc(&sh, SIZE, 0);
	spanheap_flush_cache(&sh);
}

static void *other_got;

static void overlap_at_rest(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_FOLD_REST ||
	    !atomic_exchange(&hold_rest, false))
		return;
	on_another_thread(other_refill, &other_got);
}

KTEST(spanheap_queue, overlapping_refills_join_their_rests)
{
	KASSERT(fill_spans());
	free_from(1, 0, S / 2, 0);
	struct mcentral *c = &sh.central[cls];
	other_got = NULL;
	atomic_store(&hold_rest, true);
	mheap_test_hook = overlap_at_rest;
	void *p = spanheap_alloc(&sh, SIZE, 0);
	mheap_test_hook = NULL;
	KEXPECT(!atomic_load(&hold_rest)); /* the hook ran */
	KEXPECT(p == (void *)span_j(S / 2 - 1)->base);
	KEXPECT(other_got == (void *)span_j(S - 1)->base);
	KEXPECT_EQ(chain_len(c->fold_backlog), S - 2);
	KEXPECT(atomic_load(&c->fold_queue) == NULL);
	size_t queued = 0;
	for (size_t j = 0; j < S; j++)
		queued += atomic_load(&span_j(j)->queued);
	KEXPECT_EQ(queued, S - 2);
	objs[(S / 2 - 1) * nelems] = p;
	objs[(S - 1) * nelems] = other_got;
	SH_CHECK(&sh, "a joined backlog");
	spanheap_sweep_cycle(&sh);
	KEXPECT(c->fold_backlog == NULL);
	for (size_t j = 0; j < S; j++)
		KEXPECT(!atomic_load(&span_j(j)->queued));
	finish();
}

/*
 * A queued span that a CPU caches is its owner's to fold: a refill that
 * meets it on the queue skips it (and it is queued no more) and goes on
 * to the next, which it folds and caches. Here the newest queued span is
 * CPU 2's cached one, and the next is span 0 with one object free: CPU
 * 3's refill gets that object, not a new span.
 */
KTEST(spanheap_queue, refill_skips_a_cached_span_for_the_next)
{
	KASSERT(fill_spans());
	mm_port_set_cpu(2);
	void *x = spanheap_alloc(&sh, SIZE, 0); /* a new span, cached */
	mm_port_set_cpu(0);
	KASSERT(x);
	struct mspan *cached = mheap_span_lookup(&heap, (uintptr_t)x);
	KASSERT(cached == sh.caches[2].alloc[cls]);
	free_from(1, 0, 1, 0);
	mm_port_set_cpu(1);
	spanheap_free(&sh, x);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(3);
	struct mcentral *c = &sh.central[cls];
	KEXPECT(atomic_load(&c->fold_queue) == cached);
	KEXPECT(atomic_load(&cached->qnext) == span_j(0));
	void *p = spanheap_alloc(&sh, SIZE, 0);
	KEXPECT(p == (void *)span_j(0)->base);
	KEXPECT(sh.caches[3].alloc[cls] == span_j(0));
	KEXPECT(!atomic_load(&cached->queued));
	KEXPECT(sh.caches[2].alloc[cls] == cached);
	KEXPECT(c->fold_backlog == NULL);
	objs[0] = p;
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	SH_CHECK(&sh, "after the refill");
	finish();
}

/*
 * A cycle that overtakes a refill's pass over the fold queue: the refill
 * has taken the whole queue (spans each emptied by CPU 1's frees) and
 * cached the first, and before it leaves the rest in the backlog the hook
 * runs a whole cycle on CPU 3. The cycle folds the rest where they are
 * listed, empty, but cannot free them (they are queued: whoever takes
 * them off frees them) nor drain them (the refill holds them), and its
 * flip took in every pending free. The rest then waits in the backlog
 * with no free pending since the flip: before the fix, for good (until a
 * refill of the class), as neither spanheap_reclaim nor the sweeper's
 * periodic cycle looked at a backlog.
 */
/* More than a 4 MiB arena of 64-byte objects: every page of it may be
 * a span's (the span heap's own pages are its metadata heap's: 1 << 16
 * filled it exactly). */
static void *tight[1 << 17];

static void cycle_thread(void *arg)
{
	(void)arg;
	mm_port_set_cpu(3);
	spanheap_sweep_cycle(&sh);
}

static _Atomic bool cycle_at_rest;

static void cycle_overtakes_rest(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_FOLD_REST ||
	    !atomic_exchange(&cycle_at_rest, false))
		return;
	on_another_thread(cycle_thread, NULL);
}

/* CPU 0's refill of the class, overtaken by a cycle at its rest; the
 * object it got. */
static void *refill_overtaken(void)
{
	atomic_store(&cycle_at_rest, true);
	mheap_test_hook = cycle_overtakes_rest;
	void *p = spanheap_alloc(&sh, SIZE, 0);
	mheap_test_hook = NULL;
	KEXPECT(!atomic_load(&cycle_at_rest)); /* the hook ran */
	KEXPECT(sh.central[cls].fold_backlog != NULL);
	return p;
}

/* The arena full of 64-byte objects, all freed from CPU 1: a large
 * allocation that the page heap refuses must get the rest's pages
 * (spanheap_reclaim runs a cycle for a backlog too), not NULL. */
KTEST(spanheap_queue, a_backlog_left_after_a_cycle_is_reclaimed)
{
	cls = sizeclass_of(SIZE);
	KASSERT(sh_heap_tight(&heap, &sh, 2));
	mm_port_set_cpu(0);
	size_t n = 0;
	while (n < sizeof tight / sizeof tight[0] &&
	       (tight[n] = spanheap_alloc(&sh, SIZE, 0)) != NULL)
		n++;
	KASSERT(n > 0 && n < sizeof tight / sizeof tight[0]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(1);
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, tight[i]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	struct mcentral *c = &sh.central[cls];
	void *p = refill_overtaken();
	KASSERT(p);
	void *big = spanheap_alloc(&sh, 64 << 10, 0);
	KEXPECT(big != NULL);
	KEXPECT(c->fold_backlog == NULL);
	spanheap_free(&sh, big);
	spanheap_free(&sh, p);
	spanheap_release_all(&sh);
	SH_CHECK(&sh, "after the release");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

/* The S spans emptied from CPU 1, and the sweeper running with a period
 * of a millisecond: its periodic cycle drains the backlog (the wait has
 * no limit of its own; before the fix it never ended). */
KTEST(spanheap_queue, a_backlog_left_after_a_cycle_is_swept)
{
	KASSERT(fill_spans());
	for (size_t i = 0; i < nelems; i++)
		free_from(1, 0, S, i);
	void *p = refill_overtaken();
	KASSERT(p);
	sh.cfg.period_ns = 1000 * 1000;
	KASSERT(spanheap_sweeper_start(&sh));
	struct mcentral *c = &sh.central[cls];
	for (;;) {
		unsigned long irq = mm_lock_acquire(&c->lock);
		bool left = c->fold_backlog != NULL;
		mm_lock_release(&c->lock, irq);
		if (!left)
			break;
		sched_yield();
	}
	spanheap_sweeper_stop(&sh);
	KEXPECT_EQ(atomic_load(&c->nspans), 1); /* the cached one */
	spanheap_free(&sh, p);
	finish();
}

/* ---- Pushes from every CPU at once -------------------------------------- */

enum { PT = 4, PN = 4000 };

static struct mcentral push_c;
static struct mspan *push_spans; /* PT * PN; thread t pushes [t * PN, +PN) */
static _Atomic unsigned push_ready;

static void *push_worker(void *arg)
{
	size_t t = (size_t)arg;
	/* All start together, so that their compare-and-swaps collide. */
	atomic_fetch_add(&push_ready, 1);
	while (atomic_load(&push_ready) < PT)
		;
	for (size_t i = 0; i < PN; i++)
		spanheap_fold_queue_push(&push_c, &push_spans[t * PN + i]);
	return NULL;
}

/* PT threads push PN spans each onto one fold queue at once: the queue
 * then holds every span exactly once (a push whose compare-and-swap lost
 * a race must retry, not give up or link a span twice). */
KTEST(spanheap_queue, pushes_from_every_cpu_at_once_lose_none)
{
	push_spans = calloc((size_t)PT * PN, sizeof(*push_spans));
	unsigned char *seen = calloc((size_t)PT * PN, 1);
	KASSERT(push_spans && seen);
	atomic_store(&push_c.fold_queue, NULL);
	atomic_store(&push_ready, 0);
	pthread_t th[PT];
	for (size_t t = 0; t < PT; t++)
		KASSERT(pthread_create(&th[t], NULL, push_worker, (void *)t) ==
		        0);
	for (size_t t = 0; t < PT; t++)
		pthread_join(th[t], NULL);
	size_t n = 0, twice = 0, foreign = 0;
	for (struct mspan *s = atomic_load(&push_c.fold_queue);
	     s && n <= (size_t)PT * PN; s = atomic_load(&s->qnext), n++) {
		size_t i = (size_t)(s - push_spans);
		if (i >= (size_t)PT * PN)
			foreign++;
		else if (seen[i]++)
			twice++;
	}
	KEXPECT_EQ(n, (size_t)PT * PN);
	KEXPECT_EQ(twice, 0);
	KEXPECT_EQ(foreign, 0);
	free(seen);
	free(push_spans);
}

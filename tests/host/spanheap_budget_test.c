/*
 * A refill's two budgets (mm/spanheap_central.c): it folds at most
 * SPANHEAP_FOLD_QUEUE_BUDGET spans off its class's fold queue (the rest
 * waits in the backlog), and it sweeps at most SPANHEAP_CACHE_SPAN_BUDGET
 * unswept spans before it makes a new one. Both bound the cost of one
 * refill; the second also keeps the heap from growing while unswept spans
 * behind a few full ones have free objects.
 *
 * The spans are of a class whose refills put nothing in the magazine
 * (1 KiB objects), each filled by one allocation per object. A "decoy" is
 * a span that is queued and yet full once folded: a CPU caches it, another
 * CPU frees an eighth of its objects (a pending free, which queues it), the
 * owner's next refill folds them and keeps the span (an eighth came free)
 * and takes them back, and a flush puts it on its full list, still queued.
 * The simulated CPUs are set by hand; each span has a CPU of its own where
 * it must stay cached.
 */
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

enum {
	SZ = 1024,      /* the class under test */
	FILLER = 512,   /* a lower class: the cycle's first span */
	FREER = 1,      /* the CPU whose frees are remote */
	FIRST_OWN = 2,  /* decoy j is cached on CPU FIRST_OWN + j */
	HOOK_CPU = 60,  /* the refill inside the cycle */
	MAXOBJ = 64,    /* objects per span, at most */
	MAXFILL = 4096, /* filler objects, at most */
	MAXSPANS = SPANHEAP_FOLD_QUEUE_BUDGET + SPANHEAP_CACHE_SPAN_BUDGET + 2,
};
_Static_assert(FIRST_OWN + SPANHEAP_FOLD_QUEUE_BUDGET + 1 < HOOK_CPU &&
                       HOOK_CPU < MM_MAX_CPUS,
               "a CPU each");

static struct mheap heap;
static struct spanheap sh;
static unsigned cls, nel, nfree;
static void *objs[MAXSPANS][MAXOBJ]; /* span j's objects */
static struct mspan *span[MAXSPANS];
static size_t nspans;
static void *fillers[MAXFILL];
static size_t nfillers;

static bool setup(void)
{
	cls = sizeclass_of(SZ);
	nel = sizeclass_info[cls].nelems;
	nfree = (nel + 7) / 8; /* what the owner's refill keeps a span for */
	nspans = nfillers = 0;
	return nel <= MAXOBJ && sh_heap_fresh(&heap, &sh) &&
	       sh.mag_fill[cls] == 0;
}

/* CPU cpu fills a new span of class cls (cached there afterwards, with no
 * free object) as span nspans. NULL if it was not a new span. */
static struct mspan *fill_span(unsigned cpu)
{
	size_t j = nspans;
	mm_port_set_cpu(cpu);
	for (unsigned i = 0; i < nel; i++)
		objs[j][i] = spanheap_alloc(&sh, SZ, 0);
	mm_port_set_cpu(0);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)objs[j][0]);
	if (!objs[j][0] || !mheap_span_is_span(s) ||
	    s->base != (uintptr_t)objs[j][0])
		return NULL;
	for (unsigned i = 0; i < nel; i++)
		if (mheap_span_lookup(&heap, (uintptr_t)objs[j][i]) != s)
			return NULL;
	nspans++;
	return span[j] = s;
}

/* FREER frees the first nfree objects of spans [from, to) and flushes:
 * pending bits, each span queued, span from first. */
static void remote_frees(size_t from, size_t to)
{
	mm_port_set_cpu(FREER);
	for (size_t j = from; j < to; j++)
		for (unsigned i = 0; i < nfree; i++) {
			spanheap_free(&sh, objs[j][i]);
			objs[j][i] = NULL;
		}
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
}

/* The decoys' last steps: span j's owner (CPU FIRST_OWN + j - from) takes
 * its freed objects back from the span it keeps, then flushes it to its
 * full list, still queued. False if an object came from elsewhere. */
static bool decoys_refold(size_t from, size_t to)
{
	bool ok = true;
	for (size_t j = from; j < to; j++) {
		mm_port_set_cpu(FIRST_OWN + (unsigned)(j - from));
		for (unsigned i = 0; i < nfree; i++) {
			objs[j][i] = spanheap_alloc(&sh, SZ, 0);
			ok &= mheap_span_lookup(&heap, (uintptr_t)objs[j][i]) ==
			      span[j];
		}
		spanheap_flush_cache(&sh);
		ok &= span[j]->list == MSPAN_LIST_FULL &&
		      atomic_load(&span[j]->queued) &&
		      span[j]->alloc_count == nel;
	}
	mm_port_set_cpu(0);
	return ok;
}

/* Spans on chain q (linked through qnext). */
static size_t chain_len(struct mspan *q)
{
	size_t n = 0;
	for (; q && n <= MAXSPANS; q = atomic_load(&q->qnext))
		n++;
	return n;
}

/* The index of p's span among the test's, or nspans. */
static size_t span_of(void *p)
{
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	size_t j = 0;
	while (j < nspans && span[j] != s)
		j++;
	return j;
}

/* Frees everything, flushes every CPU used, and checks that every span
 * went back. */
static void finish(void)
{
	for (size_t j = 0; j < nspans; j++)
		for (unsigned i = 0; i < nel; i++)
			if (objs[j][i])
				spanheap_free(&sh, objs[j][i]);
	for (size_t k = 0; k < nfillers; k++)
		spanheap_free(&sh, fillers[k]);
	SH_CHECK(&sh, "after the frees");
	sh_flush_cpus(&sh, HOOK_CPU + 1);
	spanheap_sweep_cycle(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/*
 * The fold queue holds one decoy more than a refill's budget: CPU 0's
 * refill (no partial span, nothing unswept) folds exactly the budget, the
 * newest first, all still full, leaves the oldest (still queued) in the
 * backlog, and makes a new span.
 */
KTEST(spanheap_budget, refill_folds_at_most_its_budget_of_queued_spans)
{
	enum { NQ = SPANHEAP_FOLD_QUEUE_BUDGET + 1 };
	KASSERT(setup());
	for (size_t j = 0; j < NQ; j++)
		KASSERT(fill_span(FIRST_OWN + (unsigned)j));
	remote_frees(0, NQ);
	KASSERT(decoys_refold(0, NQ));
	struct mcentral *c = &sh.central[cls];
	KASSERT_EQ(chain_len(atomic_load(&c->fold_queue)), NQ);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	uint64_t folded = st->n.queue_folded;
	void *p = spanheap_alloc(&sh, SZ, 0);
	KASSERT(p);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->n.queue_folded - folded, SPANHEAP_FOLD_QUEUE_BUDGET);
	KEXPECT(atomic_load(&c->fold_queue) == NULL);
	KEXPECT(c->fold_backlog == span[0]);
	KEXPECT_EQ(chain_len(c->fold_backlog), 1);
	KEXPECT(atomic_load(&span[0]->queued));
	for (size_t j = 1; j < NQ; j++)
		KEXPECT(!atomic_load(&span[j]->queued) &&
		        span[j]->list == MSPAN_LIST_FULL);
	KEXPECT_EQ(span_of(p), nspans); /* a new span */
	SH_CHECK(&sh, "a backlog of one");
	spanheap_free(&sh, p);
	free(st);
	finish();
}

/* The hook's refill: at the cycle's first claimed span (the filler: a
 * cycle sweeps the classes in order, and FILLER's is below SZ's), once, if
 * every span of the test is still listed and unswept, CPU HOOK_CPU allocates.
 */
static _Atomic bool refill_armed;
static bool hook_saw_unswept;
static void *hook_got;

static void refill_at_claim(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SWEEP_CLAIMED ||
	    !atomic_exchange(&refill_armed, false))
		return;
	uint32_t sg = atomic_load(&sh.sweepgen);
	hook_saw_unswept = true;
	for (size_t j = 0; j < nspans; j++)
		hook_saw_unswept &= span[j]->list != MSPAN_LIST_NONE &&
		                    atomic_load(&span[j]->sweepgen) == sg - 2;
	mm_port_set_cpu(HOOK_CPU);
	hook_got = spanheap_alloc(&sh, SZ, 0);
	mm_port_set_cpu(0);
}

/* A filler span of a class below SZ's, flushed to its list, so that a
 * cycle claims it first. Until a review a cycle walked the all-spans
 * array, and the filler had to sit in its first slot. */
_Static_assert(FILLER < SZ, "the filler's class is swept first");

static bool fill_first_slot(void)
{
	if (!(fillers[nfillers++] = spanheap_alloc(&sh, FILLER, 0)))
		return false;
	spanheap_flush_cache(&sh);
	return true;
}

/*
 * Made in this order: the filler; the target span T and then nfull full
 * spans, all on CPU 0 and flushed, so that T lies under them on the full
 * list; the budget's worth of decoys. Then one remote free into T (which
 * queues it under the decoys, queued next), and the decoys' refolds. A
 * cycle flips: all are unswept. At its first claim, the hook's refill on
 * a CPU of its own finds no swept span, folds the decoys (its queue
 * budget), leaves T in the backlog, and sweeps the unswept full list: the
 * nfull spans, then T. Returns the hook's object (its demand sweeps in
 * *swept); the spans made are span[0] = T, then the full ones, then the
 * decoys.
 */
static void *refill_behind_full_spans(size_t nfull, uint64_t *swept)
{
	enum { ND = SPANHEAP_FOLD_QUEUE_BUDGET };
	hook_got = NULL;
	hook_saw_unswept = false;
	if (!setup() || !fill_first_slot())
		return NULL;
	for (size_t j = 0; j < 1 + nfull; j++)
		if (!fill_span(0))
			return NULL;
	spanheap_flush_cache(&sh);
	for (size_t j = 0; j < ND; j++)
		if (!fill_span(FIRST_OWN + (unsigned)j))
			return NULL;
	remote_frees(0, 1);
	remote_frees(1 + nfull, 1 + nfull + ND);
	if (!decoys_refold(1 + nfull, 1 + nfull + ND) || span[0]->queued != 1)
		return NULL;
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	spanheap_stats(&sh, st);
	uint64_t before = st->n.demand_swept;
	atomic_store(&refill_armed, true);
	mheap_test_hook = refill_at_claim;
	spanheap_sweep_cycle(&sh);
	mheap_test_hook = NULL;
	spanheap_stats(&sh, st);
	*swept = st->n.demand_swept - before;
	free(st);
	return atomic_load(&refill_armed) ? NULL : hook_got;
}

/*
 * With the budget's worth of unswept spans to look at, less one for T, T
 * is the last the refill may sweep: it must find T's free objects (the
 * first it gets is T's first), not make a new span. With as many full
 * spans as the budget ahead of T, it stops before T and makes one.
 */
KTEST(spanheap_budget, refill_sweeps_its_budget_of_unswept_spans)
{
	uint64_t swept = 0;
	void *p = refill_behind_full_spans(SPANHEAP_CACHE_SPAN_BUDGET - 1,
	                                   &swept);
	KASSERT(p);
	KEXPECT(hook_saw_unswept);
	KEXPECT_EQ(span_of(p), 0); /* T */
	KEXPECT(p == (void *)span[0]->base);
	KEXPECT_EQ(swept, SPANHEAP_CACHE_SPAN_BUDGET);
	objs[0][0] = p;
	SH_CHECK(&sh, "T found");
	finish();

	p = refill_behind_full_spans(SPANHEAP_CACHE_SPAN_BUDGET, &swept);
	KASSERT(p);
	KEXPECT(hook_saw_unswept);
	KEXPECT_EQ(span_of(p), nspans); /* a new span */
	KEXPECT_EQ(swept, SPANHEAP_CACHE_SPAN_BUDGET);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "T left");
	finish();
}

/*
 * mm/spanheap_central.c: the central lists and the fold queues.
 *
 * Purpose: per size class, the spans no CPU caches: partial and full,
 * each split into a swept and an unswept half by sweepgen (Go's
 * mcentral.go: cacheSpan, uncacheSpan), and a lock-free queue of spans
 * that remote frees touched, folded by refills and by the sweeper.
 *
 * Representation: struct mcentral (mspan.h): four doubly linked lists
 * whose swept and unswept halves swap meaning when sweepgen advances by
 * 2, a span's list recorded in it; the fold queue's head, a lock-free
 * stack taken whole (so no ABA), and the backlog a refill leaves of it.
 *
 * Algorithm: a cache asks for a span (spanheap_central_cache_span): a
 * swept partial one, else one from the fold queue (at most
 * SPANHEAP_FOLD_QUEUE_BUDGET folded a refill), else unswept spans swept
 * on demand (at most SPANHEAP_CACHE_SPAN_BUDGET), else none. A span
 * handed back is folded and placed (spanheap_span_place): empty ones go
 * back to the page heap unless queued, others on the swept list their
 * fullness says.
 *
 * Invariants: spanheap.c's 6 (a span's list matches its sweepgen, read
 * under the class's lock); a span is on a fold queue at most once (its
 * queued flag).
 *
 * Locking: a class's lock (MM_RANK_CENTRAL) guards its lists, the list
 * links and the queue's backlog; no lock is taken under it (the page heap
 * is reached with it let go); the queue's head is a lock-free stack.
 *
 * Limits: the two budgets bound a refill's work; what they leave waits
 * for the next refill or the sweeper.
 */
#include "spanheap_internal.h"

/* ---- Central lists ----------------------------------------------------------
 */

/*
 * With c's lock held, as s goes on one of c's lists: queues s for a fold
 * if a free set a pending bit since its fold and its queue entry is gone.
 * Such a free queued s while it was on no list (its owner between the
 * fold and the placement), and a taker of the queue that came first
 * cleared queued and skipped it; placed as swept with the bit left, s
 * waited for the next cycle's sweep, and when a cycle flipped in
 * between, that cycle had counted the free as its own and nothing told
 * anyone to fold it (an empty span kept from the page heap, a reclaim
 * finding nothing to do). A bit set after this look need not queue s (a
 * free queues a span before it sets its bit, and only if it was not
 * queued then: a taker may have cleared that entry since), but the free
 * counts its bytes after its bit, so after any flip this look followed:
 * the next cycle folds it (the sweep model's S7).
 */
static void requeue_if_pending_locked(struct mcentral *c, struct mspan *s)
{
	if (!atomic_load_explicit(&s->queued, memory_order_relaxed) &&
	    spanheap_span_has_pending(s) &&
	    !atomic_exchange_explicit(&s->queued, 1, memory_order_acq_rel))
		spanheap_fold_queue_push(c, s);
}

/*
 * Puts a span the caller owns (swept or folded, not cached) where it
 * belongs: freed if empty, else on the swept partial or full list
 * (queued for a fold if a free came after its fold:
 * requeue_if_pending_locked). Locks the class; any context but NMI.
 */
void spanheap_span_place(struct spanheap *sh, struct mspan *s)
{
	mheap_hook(sh->heap, MHEAP_HOOK_SPAN_PLACING);
	struct mcentral *c = spanheap_central_of(sh, s->sizeclass, __func__);
	/* An empty span goes back to the page heap, except when it is on a
	 * fold queue: whoever takes it off frees it. queued is read under
	 * the class's lock, under which the queue's taker clears it and
	 * then skips a span on no list: read before, a taker could clear it
	 * and skip the span between the read and the push below, leaving
	 * an empty span on the partial list until the next cycle. */
	unsigned long irq = mm_lock_acquire(&c->lock);
	if (s->alloc_count == 0 &&
	    !atomic_load_explicit(&s->queued, memory_order_acquire)) {
		mm_lock_release(&c->lock, irq);
		spanheap_span_free(sh, s);
		return;
	}
	uint32_t sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	atomic_store_explicit(&s->sweepgen, sg, memory_order_relaxed);
	if (s->alloc_count < s->nelems)
		list_push(&c->partial[swept_idx(sg)], s, MSPAN_LIST_PARTIAL);
	else
		list_push(&c->full[swept_idx(sg)], s, MSPAN_LIST_FULL);
	requeue_if_pending_locked(c, s);
	mm_lock_release(&c->lock, irq);
}

/* Pushes s on its class's fold queue. Any context but NMI. */
void spanheap_fold_queue_push(struct mcentral *c, struct mspan *s)
{
	struct mspan *head =
	        atomic_load_explicit(&c->fold_queue, memory_order_relaxed);
	do
		atomic_store_explicit(&s->qnext, head, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&c->fold_queue, &head, s,
	                                              memory_order_release,
	                                              memory_order_relaxed));
}

/*
 * Another CPU's rest is in c's backlog (c->lock held, interrupts off
 * irq): the rest q goes in front of it, so q's tail is needed. It is
 * found with the lock let go, as q may hold every span of the class: q
 * is ours (its spans are still queued, so no one pushes or links them).
 * Returns with the lock held again and q joined to whatever the backlog
 * is then; the interrupt state for mm_lock_release.
 */
static unsigned long rest_tail_unlocked(struct mcentral *c, struct mspan *q,
                                        unsigned long irq)
{
	mm_lock_release(&c->lock, irq);
	struct mspan *t = q, *next;
	while ((next = atomic_load_explicit(&t->qnext, memory_order_relaxed)))
		t = next;
	irq = mm_lock_acquire(&c->lock);
	atomic_store_explicit(
	        &t->qnext,
	        atomic_load_explicit(&c->fold_backlog, memory_order_relaxed),
	        memory_order_relaxed);
	return irq;
}

/*
 * The rest q of a taken queue (still queued) waits in c's backlog, in
 * front of what is there: no re-push, so a refill costs its budget, not
 * the queue's length. A growth's rest (npages) is of any class, and may
 * outlive the cycle that made it due: the next growth looks (parked).
 */
static void park_rest(struct spanheap *sh, struct mcentral *c, struct mspan *q,
                      size_t npages)
{
	if (!q)
		return;
	unsigned long irq = mm_lock_acquire(&c->lock);
	if (atomic_load_explicit(&c->fold_backlog, memory_order_relaxed))
		irq = rest_tail_unlocked(c, q, irq);
	atomic_store_explicit(&c->fold_backlog, q, memory_order_relaxed);
	mm_lock_release(&c->lock, irq);
	/* Set once the rest is there, so that a growth's clear meanwhile
	 * (fold_for) cannot lose it: it either precedes the set or finds
	 * the rest in the backlog (review). */
	if (npages)
		atomic_store(&sh->sweeper.parked, true);
}

/* Cuts the taken queue q after its first n spans (n > 0); returns the
 * rest, or NULL if q holds no more. q's spans are ours (still queued: no
 * one pushes or links them). */
static struct mspan *chunk_cut(struct mspan *q, unsigned n)
{
	for (; q && n > 1; n--)
		q = atomic_load_explicit(&q->qnext, memory_order_relaxed);
	if (!q)
		return NULL;
	struct mspan *rest =
	        atomic_load_explicit(&q->qnext, memory_order_relaxed);
	atomic_store_explicit(&q->qnext, NULL, memory_order_relaxed);
	return rest;
}

/*
 * Folds spans taken off a fold queue of c (q, the backlog or the queue
 * taken whole) while *budget lasts and, with npages, while the page heap
 * would grow for npages; with take, until one has free objects, which it
 * returns. The rest is left in the backlog; without take, before the
 * folds: a chunk of *budget spans is all this thread holds while it
 * folds, so a thread descheduled in the middle (the sweeper's, under
 * load) keeps no more than the chunk from an allocation about to grow
 * the heap. Until a review the rest was parked after the chunk, and the
 * whole queue (a freed phase's spans) was out of reach meanwhile. A
 * refill's rest (take) is still parked after its few folds.
 */
static struct mspan *fold_some(struct spanheap *sh, struct mcentral *c,
                               struct mspan *q, bool take, unsigned *budget,
                               size_t npages)
{
	struct mspan *found = NULL;
	unsigned long irq;
	if (!take && *budget != UINT32_MAX)
		park_rest(sh, c, chunk_cut(q, *budget), npages);
	while (q && !found && *budget &&
	       !(npages && !mheap_would_grow(sh->heap, npages))) {
		struct mspan *s = q;
		q = atomic_load_explicit(&s->qnext, memory_order_relaxed);
		(*budget)--;
		irq = mm_lock_acquire(&c->lock);
		atomic_store_explicit(&s->queued, 0, memory_order_release);
		if (s->list == MSPAN_LIST_NONE) {
			mm_lock_release(&c->lock, irq);
			continue;
		}
		uint32_t sg = atomic_load_explicit(&sh->sweepgen,
		                                   memory_order_acquire);
		list_remove_any(c, s, sg);
		atomic_store_explicit(&s->sweepgen, sg - 1,
		                      memory_order_relaxed);
		mm_lock_release(&c->lock, irq);
		spanheap_span_fold(sh, s);
		atomic_fetch_add_explicit(&sh->queue_folded, 1,
		                          memory_order_relaxed);
		if (take && s->alloc_count < s->nelems)
			found = s;
		else
			spanheap_span_place(sh, s);
	}
	if (q) {
		mheap_hook(sh->heap, MHEAP_HOOK_FOLD_REST);
		park_rest(sh, c, q, npages);
	}
	return found;
}

/* The backlog, else the queue taken whole: what an earlier call took
 * but did not fold comes first. */
static struct mspan *queue_take(struct mcentral *c)
{
	unsigned long irq = mm_lock_acquire(&c->lock);
	struct mspan *q = atomic_exchange_explicit(&c->fold_backlog, NULL,
	                                           memory_order_relaxed);
	mm_lock_release(&c->lock, irq);
	if (!q && atomic_load_explicit(&c->fold_queue, memory_order_relaxed))
		q = atomic_exchange_explicit(&c->fold_queue, NULL,
		                             memory_order_acquire);
	return q;
}

/*
 * Folds spans from class cls's fold queue: spans on a central list that
 * remote frees have touched. With take (a refill, pinned), at most
 * SPANHEAP_FOLD_QUEUE_BUDGET, and returns the first with free objects
 * for the cache; without, all of them, placed (a cycle's finish folds in
 * chunks: spanheap_fold_queue_all). Spans that are cached or being swept
 * are left to their owner.
 */
struct mspan *spanheap_fold_queue(struct spanheap *sh, unsigned cls, bool take)
{
	struct mcentral *c = spanheap_central_of(sh, cls, __func__);
	unsigned budget = take ? SPANHEAP_FOLD_QUEUE_BUDGET : UINT32_MAX;
	return fold_some(sh, c, queue_take(c), take, &budget, 0);
}

/* spanheap_central.h. While a chunk is folded the rest waits in the
 * backlog (fold_some), not in this thread's hands, where an allocation
 * about to grow the heap finds it (spanheap_sweep_before_growth, which
 * no longer waits for a running cycle's end): taken whole, a queue holding a
 * freed phase's spans (tests/real/blowup.c's "phases") would be out of its
 * reach for the whole fold. Not measured apart (1 run in 15 of "phases" peaked
 * at 53 MiB for 41 before the chunks, none in 20 after; sweeper.parked fixed a
 * cause found later). */
void spanheap_fold_queue_all(struct spanheap *sh, unsigned cls)
{
	struct mcentral *c = spanheap_central_of(sh, cls, __func__);
	for (int pass = 0; pass < 2; pass++) { /* the backlog, the queue */
		struct mspan *q = queue_take(c);
		while (q) {
			unsigned budget = SPANHEAP_GROWTH_FOLD_BUDGET;
			fold_some(sh, c, q, false, &budget, 0);
			unsigned long irq = mm_lock_acquire(&c->lock);
			q = atomic_exchange_explicit(&c->fold_backlog, NULL,
			                             memory_order_relaxed);
			mm_lock_release(&c->lock, irq);
		}
	}
}

void spanheap_fold_queue_for(struct spanheap *sh, unsigned cls, size_t npages,
                             unsigned *budget)
{
	struct mcentral *c = spanheap_central_of(sh, cls, __func__);
	if (*budget)
		fold_some(sh, c, queue_take(c), false, budget, npages);
}

/*
 * A span of class cls with free objects for a cache (Go's
 * mcentral.cacheSpan): a swept partial span, else unswept spans swept
 * now (partial first, then full, at most SPANHEAP_CACHE_SPAN_BUDGET), else
 * NULL. Pinned.
 */
struct mspan *spanheap_central_cache_span(struct spanheap *sh, unsigned cls)
{
	struct mcentral *c = spanheap_central_of(sh, cls, __func__);
	unsigned long irq = mm_lock_acquire(&c->lock);
	uint32_t sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	unsigned sw = swept_idx(sg), un = 1 - sw;
	struct mspan *s = list_pop(&c->partial[sw]);
	mm_lock_release(&c->lock, irq);
	if (s)
		return s;
	s = spanheap_fold_queue(sh, cls, true);
	if (s)
		return s;
	irq = mm_lock_acquire(&c->lock);
	sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	sw = swept_idx(sg);
	un = 1 - sw;
	for (unsigned budget = 0; budget < SPANHEAP_CACHE_SPAN_BUDGET;
	     budget++) {
		s = list_pop(&c->partial[un]);
		if (!s)
			s = list_pop(&c->full[un]);
		if (!s)
			break;
		atomic_store_explicit(&s->sweepgen, sg - 1,
		                      memory_order_relaxed);
		mm_lock_release(&c->lock, irq);
		spanheap_span_fold(sh, s);
		atomic_fetch_add_explicit(&sh->demand_swept, 1,
		                          memory_order_relaxed);
		if (s->alloc_count < s->nelems)
			return s;
		spanheap_span_place(sh, s); /* full: the swept full list */
		irq = mm_lock_acquire(&c->lock);
		sg = atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
		sw = swept_idx(sg);
		un = 1 - sw;
	}
	mm_lock_release(&c->lock, irq);
	return NULL;
}

/* Hands a cached span back (pinned, its owner): folds its frees (a stale
 * span, cached before a flip, is swept by that) and places it. */
void spanheap_uncache_span(struct spanheap *sh, struct mspan *s)
{
	atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
	atomic_store_explicit(
	        &s->sweepgen,
	        atomic_load_explicit(&sh->sweepgen, memory_order_acquire) - 1,
	        memory_order_relaxed);
	spanheap_span_fold(sh, s);
	spanheap_span_place(sh, s);
}

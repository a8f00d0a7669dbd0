/*
 * mm/spanheap_sweep.c: sweep cycles and release (when a cycle runs, the
 * pending frees and the sweeper thread, are in spanheap_sweeper.c;
 * statistics in spanheap_stats.c, the checker in spanheap_check.c).
 *
 * Purpose: fold pending frees into the spans' bitmaps cycle by cycle, give
 * empty spans back to the page heap (whose scavenger returns their frames).
 * Modelled on the Go runtime's background sweeper (mgcsweep.go), with the cycle
 * started by frees rather than by a garbage collection.
 *
 * A cycle, under the cycle semaphore (invariant 5: held from flip to
 * finish; statistics do not need it, the checker takes it, as a claimed
 * span is on no list):
 *   flip    under the heap lock: sweepgen += 2, so every swept span becomes
 *           unswept, and every swept list an unswept one; the pending-free
 *           count it starts from. Then the flip passes through every
 *           class's lock, so that no central-list section still works with
 *           the old sweepgen. Per-CPU caches are prepared lazily: each
 *           flushes its spans at its next refill (mcache.flushgen).
 *   sweep   each class's unswept lists are emptied: a span on them (sg - 2)
 *           is claimed (sg - 1) under the class's lock, taken off, folded,
 *           and put on a swept list, or freed if empty; spans put there
 *           by CPUs that read the old sweepgen too. The sweeper thread
 *           yields every batch_spans spans. The cost is the spans on the
 *           lists, not the all-spans array (which holds the heap's peak:
 *           Go's golang/go#9265), which a cycle does not read.
 *   finish  the fold queues are drained (a queued span is never freed, so
 *           an empty one waits there), the semaphore released.
 * Cached spans are never claimed (their sweepgen is odd); their owners
 * fold them when they hand them back.
 *
 * A cycle starts when pending frees pass a threshold, on a period, or on
 * demand (spanheap_sweep_cycle, spanheap_reclaim, spanheap_release_all):
 * spanheap_sweeper.c says when.
 *
 * Invariants: spanheap.c's 5 and 6; a claimed span (sg - 1) is on no
 * list, and only its claimer folds it.
 *
 * Locking: the cycle semaphore from flip to finish, no lock across a
 * cycle; the heap's lock for the flip; a class's lock
 * (MM_RANK_CENTRAL) to claim, move and drain its spans. A cycle runs in
 * thread context and may wait for a running one.
 *
 * Limits: the sweeper thread yields between batches; a span cached
 * through many cycles is folded only when its CPU hands it back.
 */
#include "spanheap_internal.h"

/* ---- The cycle semaphore ------------------------------------------------- */

/*
 * A ticket pair, served in order: a cycle's caller takes the next ticket
 * and sleeps until the turn is its own. Until a review it was a flag
 * taken by exchange, retried after each release's wake, and a releaser
 * still running (a thread that runs cycles back to back) took it again
 * before the sleeping waiter woke: a waiter let 594 cycles pass
 * (spanheap_progress.a_cycle_waiter_is_not_passed_over). No acquire is
 * abandoned, so every ticket taken is served. Wraps at 2^32, compared
 * for equality only.
 */
void spanheap_cycle_acquire(struct spanheap *sh)
{
	uint32_t mine = atomic_fetch_add_explicit(&sh->sweeper.cycle_next, 1,
	                                          memory_order_relaxed);
	for (;;) {
		uint64_t seen = mm_event_prepare(&sh->sweeper.cycle_done);
		if (atomic_load_explicit(&sh->sweeper.cycle_turn,
		                         memory_order_acquire) == mine)
			return;
		mm_event_wait(&sh->sweeper.cycle_done, seen,
		              (uint64_t)1000 * 1000 * 1000);
	}
}

void spanheap_cycle_release(struct spanheap *sh)
{
	uint32_t turn = atomic_load_explicit(&sh->sweeper.cycle_turn,
	                                     memory_order_relaxed);
	atomic_store_explicit(&sh->sweeper.cycle_turn, turn + 1,
	                      memory_order_release);
	mm_event_wake(&sh->sweeper.cycle_done);
}

bool spanheap_cycle_running(struct spanheap *sh)
{
	return atomic_load_explicit(&sh->sweeper.cycle_next,
	                            memory_order_relaxed) !=
	       atomic_load_explicit(&sh->sweeper.cycle_turn,
	                            memory_order_relaxed);
}

/* ---- A cycle ----------------------------------------------------------------
 */

/* Advances sweepgen; returns the new one. */
static uint32_t flip(struct spanheap *sh)
{
	struct mheap *h = sh->heap;
	/* The base before the flip: a free counted between the two is this
	 * cycle's and counts as pending since it too (one cycle more at
	 * worst). Read after, it took in a free whose span a taker had
	 * placed as swept after the flip with its bit, which the placement's
	 * look missed: nothing then owed that bit a fold (the model's S7). */
	spanheap_assert_set_up(sh); /* a cycle, a release, a reclaim */
	uint64_t base = spanheap_pending_total(sh);
	mheap_hook(h, MHEAP_HOOK_FLIP_BASE_READ);
	unsigned long irq = mm_lock_acquire(&h->lock);
	uint32_t sg =
	        atomic_load_explicit(&sh->sweepgen, memory_order_relaxed) + 2;
	atomic_store_explicit(&sh->sweepgen, sg, memory_order_release);
	mm_lock_release(&h->lock, irq);
	atomic_store_explicit(&sh->pending_base, base,
	                      memory_order_release); /* pending_since_flip */
	/* Every central-list section that began before the flip ends
	 * before the sweep starts. */
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mcentral *c = spanheap_central_of(sh, cls, __func__);
		irq = mm_lock_acquire(&c->lock);
		mm_lock_release(&c->lock, irq);
	}
	return sg;
}

/* Folds and places a span claimed at sg - 1. */
static void sweep_claimed(struct spanheap *sh, struct mspan *s)
{
	mheap_hook(sh->heap, MHEAP_HOOK_SWEEP_CLAIMED);
	spanheap_span_fold(sh, s);
	spanheap_span_place(sh, s);
}

/*
 * Sweeps every span on the unswept lists: after the flip they hold every
 * small span that needs sweeping (invariant 6: a span not cached, not
 * claimed and not held by a caller is on the list its sweepgen says, and
 * the flip made every swept list unswept), and the spans CPUs put there
 * since with the old sweepgen. The sweeper thread yields every
 * batch_spans spans (yield). Returns the spans swept.
 *
 * Until a review the cycle walked a snapshot of the all-spans array
 * first, claiming each span at sg - 2 there: every struct the heap ever
 * made, so a cycle after a peak cost the peak (16384 structs walked
 * after 1 GiB of 64 KiB objects was freed; Go's golang/go#9265, which Go
 * fixed the same way, sweeping from the mcentrals' span sets).
 */
static size_t sweep_unswept(struct spanheap *sh, uint32_t sg, bool yield)
{
	size_t n = 0, batch = 0;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mcentral *c = spanheap_central_of(sh, cls, __func__);
		for (;;) {
			unsigned long irq = mm_lock_acquire(&c->lock);
			unsigned un = 1 - (sg / 2) % 2;
			struct mspan *s = c->partial[un].first;
			if (!s)
				s = c->full[un].first;
			if (s) {
				list_remove_any(c, s, sg);
				atomic_store_explicit(&s->sweepgen, sg - 1,
				                      memory_order_relaxed);
			}
			mm_lock_release(&c->lock, irq);
			if (!s)
				break;
			sweep_claimed(sh, s);
			n++;
			if (yield && ++batch >= sh->cfg.batch_spans) {
				batch = 0;
				mm_port_yield();
			}
		}
	}
	return n;
}

/* Empty spans given back so far. */
static uint64_t freed_spans(struct spanheap *sh)
{
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	uint64_t n = sh->n.freed_spans;
	mm_lock_release(&sh->heap->lock, irq);
	return n;
}

/* One whole cycle. The sweeper thread yields between batches (yield). */
size_t spanheap_run_cycle(struct spanheap *sh, bool yield)
{
	/* The guarded pool's frees made where no thread could unmap. */
	spanheap_guard_drain(sh);
	spanheap_cycle_acquire(sh);
	uint64_t freed0 = freed_spans(sh);

	uint32_t sg = flip(sh);
	size_t swept = sweep_unswept(sh, sg, yield);
	/* Queued spans are never freed while queued: take them off, so
	 * that the empty ones go back. */
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		spanheap_fold_queue_all(sh, cls);

	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	sh->n.cycles++;
	sh->n.swept_spans += swept;
	size_t freed = (size_t)(sh->n.freed_spans - freed0);
	mm_lock_release(&sh->heap->lock, irq);
	atomic_store_explicit(&sh->sweeper.last_cycle_ns, mm_port_now_ns(),
	                      memory_order_relaxed);
	spanheap_cycle_release(sh);
	return freed;
}

size_t spanheap_sweep_cycle(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_sweep_cycle");
	spanheap_mags_drain_here(sh); /* the cycle runs now anyway */
	return spanheap_run_cycle(sh, false);
}

/* True if a cycle has work (after a flush of every cache): frees pending
 * since the last flip, a cycle running, or spans queued. Else the last
 * cycle swept every span and nothing was freed into one since. */
static bool cycle_owed(struct spanheap *sh)
{
	spanheap_assert_set_up(sh); /* a release, a reclaim */
	return spanheap_pending_since_flip(sh) || spanheap_cycle_running(sh) ||
	       spanheap_queues_hold_spans(sh);
}

/*
 * The page heap refused a thread allocation: sweeps now, so that memory
 * freed but not swept yet is not reported as out of memory (Go's
 * mheap.reclaim sweeps before the heap grows). Every CPU's cache goes
 * back first (spanheap_flush_all: magazines to their spans, cached spans
 * to the central lists, the empty ones to the page heap; other CPUs' only
 * if the port can reach them), as objects in another CPU's magazine keep
 * their spans in use; then, if frees are pending since the last flip, a
 * cycle is running (whose end it waits for) or a fold queue or backlog
 * holds spans (spanheap_queues_hold_spans), a whole cycle gives every empty
 * span back. Before all that the port's own caches are asked to free what
 * they can (mm_port_reclaim: the kernel's shrinkers), thread context being
 * assured here. Returns true if the flush gave a span back or a cycle ran (even
 * one that freed no span: the objects it folded free in the spans it
 * kept are room for a small allocation's retry); with nothing pending and
 * nothing freed it fails at once, so a heap truly out of memory fails
 * fast. Thread context, nothing pinned, no mm lock held.
 */
bool spanheap_reclaim(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_reclaim");
	uint64_t freed0 = freed_spans(sh);
	/* The port's caches first (the kernel's shrinkers): what they free
	 * is pending, and the cycle below folds it. */
	bool port_freed = mm_port_reclaim();
	spanheap_flush_all(sh);
	if (!cycle_owed(sh))
		return port_freed || freed_spans(sh) != freed0;
	spanheap_run_cycle(sh, false);
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	sh->n.reclaims++;
	mm_lock_release(&sh->heap->lock, irq);
	return true;
}

size_t spanheap_release_all(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_release_all");
	/* The guarded pool's pages count: malloc_trim says whether memory
	 * went back (until a review a trim whose only release was the
	 * pool's said none did). Drained before the cycle, whose own drain
	 * counts nothing, and after it, for the frees made meanwhile. */
	size_t pages = spanheap_guard_drain_all(sh);
	spanheap_flush_all(sh);
	/* None owed (cycle_owed), a cycle would sweep every span for
	 * nothing: most of a malloc_trim of a small heap with nothing
	 * freed (callgrind, review rv76), and a whole heap's sweep in a big
	 * one. */
	if (cycle_owed(sh))
		spanheap_run_cycle(sh, false);
	pages += spanheap_guard_drain_all(sh);
	return pages + mheap_release_all(sh->heap) +
	       mheap_release_all(&sh->meta);
}

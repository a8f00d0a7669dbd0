/*
 * mm/spanheap_sweep.c: sweep cycles, the sweeper thread and release
 * (statistics are in spanheap_stats.c, the checker in spanheap_check.c).
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
 *           unswept; a snapshot of the all-spans array (invariant 2); the
 *           pending-free count it starts from. Then the flip passes through
 *           every class's lock, so that no central-list section still works
 *           with the old sweepgen. Per-CPU caches are prepared lazily: each
 *           flushes its spans at its next refill (mcache.flushgen).
 *   sweep   every span of the snapshot at sg - 2 is claimed (sg - 1) under
 *           its class's lock, taken off its unswept list, folded, and put
 *           on a swept list, or freed if empty. The sweeper thread yields
 *           every batch_spans spans.
 *   finish  the unswept lists are drained (spans put there by CPUs that
 *           read the old sweepgen), and the fold queues (a queued span is
 *           never freed, so an empty one waits there), the snapshot is
 *           dropped, the semaphore released.
 * Cached spans are never claimed (their sweepgen is odd); their owners
 * fold them when they hand them back.
 *
 * A cycle starts when pending frees since the last flip pass
 * pending_permille of the bytes in use (and min_pending_bytes), every
 * period_ns while frees are pending (or a fold queue or backlog holds
 * spans: queues_hold_spans), or on demand (spanheap_sweep_cycle,
 * spanheap_release_all).
 *
 * Invariants: spanheap.c's 5 and 6; a claimed span (sg - 1) is on no
 * list, and only its claimer folds it.
 *
 * Locking: the cycle semaphore from flip to finish, no lock across a
 * cycle; the heap's lock for the flip and the snapshot; a class's lock
 * (MM_RANK_CENTRAL) to claim, move and drain its spans. A cycle runs in
 * thread context and may wait for a running one; spanheap_sweeper_kick,
 * which only wakes the sweeper, may be called from any context but NMI.
 *
 * Limits: the sweeper thread stays within cpu_permille of one CPU
 * (sleeping after each cycle in proportion to its own CPU time) and
 * yields between batches; a span cached through many cycles is folded
 * only when its CPU hands it back.
 */
#include "spanheap_internal.h"

/* ---- The cycle semaphore ------------------------------------------------- */

void spanheap_cycle_acquire(struct spanheap *sh)
{
	for (;;) {
		uint64_t seen = mm_event_prepare(&sh->sweeper.cycle_done);
		if (!atomic_exchange_explicit(&sh->sweeper.cycle_held, true,
		                              memory_order_acquire))
			return;
		mm_event_wait(&sh->sweeper.cycle_done, seen,
		              (uint64_t)1000 * 1000 * 1000);
	}
}

void spanheap_cycle_release(struct spanheap *sh)
{
	atomic_store_explicit(&sh->sweeper.cycle_held, false,
	                      memory_order_release);
	mm_event_wake(&sh->sweeper.cycle_done);
}

/* ---- Pending frees ----------------------------------------------------------
 */

/* One per-CPU counter (its offset in struct mcache_counters) summed over
 * every CPU. Acquire, against count_add's release (spanheap_cache.c): a
 * flip whose base took in a spill's pending bytes then sees its bits, and
 * so does a placement after the flip. */
static uint64_t cpus_total(struct spanheap *sh, size_t off)
{
	uint64_t t = 0;
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		t += atomic_load_explicit(
		        (_Atomic uint64_t *)((char *)&sh->caches[cpu].n + off),
		        memory_order_acquire);
	return t;
}

static uint64_t pending_total(struct spanheap *sh)
{
	return cpus_total(sh, offsetof(struct mcache_counters, pending_bytes));
}

uint64_t spanheap_refills_total(struct spanheap *sh)
{
	return cpus_total(sh, offsetof(struct mcache_counters, refills));
}

/*
 * Pending bytes since the last flip. The base first, acquire (the flip
 * read the counters before it stored it, release), then the counters,
 * each of which only grows: so the total is at least the base. Read the
 * other way round, a flip between the two reads left the total older than
 * the base, and the difference wrapped to nearly 2^64: a kick woke the
 * sweeper, a reclaim swept and the sweeper ran a cycle, all for nothing.
 * Any context but NMI.
 */
static uint64_t pending_since_flip(struct spanheap *sh)
{
	uint64_t base =
	        atomic_load_explicit(&sh->pending_base, memory_order_acquire);
	mheap_hook(sh->heap, MHEAP_HOOK_PENDING_BASE_READ);
	uint64_t total = pending_total(sh);
	return total > base ? total - base : 0;
}

uint64_t spanheap_pending_since_flip(struct spanheap *sh)
{
	return pending_since_flip(sh);
}

void spanheap_sweeper_kick(struct spanheap *sh)
{
	if (pending_since_flip(sh) >= sh->cfg.min_pending_bytes)
		mm_event_wake(&sh->sweeper.wake);
}

/*
 * True if a class's fold queue or backlog holds spans. Normally a free
 * that queued a span is also pending since the last flip, and the next
 * cycle drains the queues. But a refill that a cycle overtook (it took
 * the queue before the cycle's drain, and leaves its rest in the backlog
 * after) holds spans whose frees the flip took in; a queued span is
 * freed by no one but whoever takes it off, so empty ones would wait
 * there with nothing pending to start the cycle that frees them. Takes
 * each class's lock (the backlog is under it). Thread context.
 */
static bool queues_hold_spans(struct spanheap *sh)
{
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mcentral *c = spanheap_central_of(sh, cls, __func__);
		unsigned long irq = mm_lock_acquire(&c->lock);
		bool held = c->fold_backlog != NULL ||
		            atomic_load_explicit(&c->fold_queue,
		                                 memory_order_relaxed) != NULL;
		mm_lock_release(&c->lock, irq);
		if (held)
			return true;
	}
	return false;
}

/* True if pending frees passed the threshold. Thread context. */
static bool pending_due(struct spanheap *sh)
{
	struct mheap_stats hs;
	mheap_stats(sh->heap, &hs);
	uint64_t in_use = (uint64_t)hs.in_use_pages * MM_PAGE_SIZE;
	uint64_t want = in_use / 1000 * sh->cfg.pending_permille;
	if (want < sh->cfg.min_pending_bytes)
		want = sh->cfg.min_pending_bytes;
	return pending_since_flip(sh) >= want;
}

/* ---- A cycle ----------------------------------------------------------------
 */

static void flip(struct spanheap *sh, struct spanheap_snapshot *snap)
{
	struct mheap *h = sh->heap;
	/* The base before the flip: a free counted between the two is this
	 * cycle's and counts as pending since it too (one cycle more at
	 * worst). Read after, it took in a free whose span a taker had
	 * placed as swept after the flip with its bit, which the placement's
	 * look missed: nothing then owed that bit a fold (the model's S7). */
	uint64_t base = pending_total(sh);
	mheap_hook(h, MHEAP_HOOK_FLIP_BASE_READ);
	unsigned long irq = mm_lock_acquire(&h->lock);
	uint32_t sg =
	        atomic_load_explicit(&sh->sweepgen, memory_order_relaxed) + 2;
	atomic_store_explicit(&sh->sweepgen, sg, memory_order_release);
	snap->arr = sh->spans;
	snap->len = snap->arr->len;
	snap->sweepgen = sg;
	atomic_fetch_add_explicit(&snap->arr->refs, 1, memory_order_relaxed);
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
}

/* Folds and places a span claimed at sg - 1. */
static void sweep_claimed(struct spanheap *sh, struct mspan *s)
{
	mheap_hook(sh->heap, MHEAP_HOOK_SWEEP_CLAIMED);
	spanheap_span_fold(sh, s);
	spanheap_span_place(sh, s);
}

/* Sweeps s if it needs it; true if it did. A large span has nothing to
 * sweep: its sweepgen moves on, and it is not counted. */
static bool sweep_one(struct spanheap *sh, struct mspan *s, uint32_t sg)
{
	uint8_t state = atomic_load_explicit(&s->state, memory_order_acquire);
	if (state == MSPAN_LARGE) {
		uint32_t want = sg - 2;
		atomic_compare_exchange_strong_explicit(&s->sweepgen, &want, sg,
		                                        memory_order_relaxed,
		                                        memory_order_relaxed);
		return false;
	}
	if (state != MSPAN_SMALL)
		return false;
	unsigned cls = __atomic_load_n(&s->sizeclass, __ATOMIC_RELAXED);
	if (cls == 0 || cls >= SC_NCLASSES)
		return false;
	struct mcentral *c = &sh->central[cls];
	unsigned long irq = mm_lock_acquire(&c->lock);
	/* Under the class's lock a span on one of its lists stays there
	 * and stays of this class. */
	bool claim = atomic_load_explicit(&s->state, memory_order_acquire) ==
	                     MSPAN_SMALL &&
	             __atomic_load_n(&s->sizeclass, __ATOMIC_RELAXED) == cls &&
	             s->list != MSPAN_LIST_NONE &&
	             atomic_load_explicit(&s->sweepgen, memory_order_relaxed) ==
	                     sg - 2;
	if (claim) {
		list_remove_any(c, s, sg);
		atomic_store_explicit(&s->sweepgen, sg - 1,
		                      memory_order_relaxed);
	}
	mm_lock_release(&c->lock, irq);
	if (claim)
		sweep_claimed(sh, s);
	return claim;
}

/* Sweeps what is left on the unswept lists. Returns the spans swept. */
static size_t drain_unswept(struct spanheap *sh, uint32_t sg)
{
	size_t n = 0;
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
static size_t run_cycle(struct spanheap *sh, bool yield)
{
	/* The guarded pool's frees made where no thread could unmap. */
	spanheap_guard_drain(sh);
	spanheap_cycle_acquire(sh);
	uint64_t freed0 = freed_spans(sh);

	struct spanheap_snapshot snap;
	flip(sh, &snap);
	size_t swept = 0, batch = 0;
	for (size_t i = 0; i < snap.len; i++) {
		if (sweep_one(sh, snap.arr->v[i], snap.sweepgen))
			swept++;
		if (yield && ++batch >= sh->cfg.batch_spans) {
			batch = 0;
			mm_port_yield();
		}
	}
	swept += drain_unswept(sh, snap.sweepgen);
	/* Queued spans are never freed while queued: take them off, so
	 * that the empty ones go back. */
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		spanheap_fold_queue(sh, cls, false); /* the backlog */
		spanheap_fold_queue(sh, cls, false); /* the queue */
	}
	spanheap_snapshot_put(sh, &snap);

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
	return run_cycle(sh, false);
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
 * holds spans (queues_hold_spans), a whole cycle gives every empty span
 * back. Returns true if the flush gave a span back or a cycle ran (even
 * one that freed no span: the objects it folded free in the spans it
 * kept are room for a small allocation's retry); with nothing pending and
 * nothing freed it fails at once, so a heap truly out of memory fails
 * fast. Thread context, nothing pinned, no mm lock held.
 */
bool spanheap_reclaim(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_reclaim");
	uint64_t freed0 = freed_spans(sh);
	spanheap_flush_all(sh);
	if (!pending_since_flip(sh) &&
	    !atomic_load_explicit(&sh->sweeper.cycle_held,
	                          memory_order_relaxed) &&
	    !queues_hold_spans(sh))
		return freed_spans(sh) != freed0;
	run_cycle(sh, false);
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	sh->n.reclaims++;
	mm_lock_release(&sh->heap->lock, irq);
	return true;
}

size_t spanheap_release_all(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_release_all");
	spanheap_flush_all(sh);
	run_cycle(sh, false);
	spanheap_guard_drain_all(sh);
	return mheap_release_all(sh->heap);
}

/* ---- The sweeper thread
 * ------------------------------------------------------ */

/*
 * After a cycle that took used ns of CPU: sleeps long enough to stay
 * within the CPU budget (refills fold what they need meanwhile: fold
 * queues, demand sweeps), but wakes every period to look, and stops early
 * when frees are pending and no CPU refilled its cache for a whole period:
 * a heap gone quiet has CPU to spare, and its empty spans should go back
 * now, not after a long pause (under TCG a cycle after a burst took 94 ms,
 * which bought a 9 s sleep with 9 MiB of empty spans held).
 */
static void pace(struct spanheap *sh, uint64_t used)
{
	struct spanheap_sweeper *sw = &sh->sweeper;
	uint64_t until = mm_port_now_ns() +
	                 mheap_pace_sleep_ns(used, sh->cfg.cpu_permille);
	uint64_t seen_refills = spanheap_refills_total(sh);
	while (!atomic_load(&sw->stop)) {
		uint64_t now = mm_port_now_ns();
		if (now >= until)
			return;
		uint64_t chunk = until - now < sh->cfg.period_ns
		                         ? until - now
		                         : sh->cfg.period_ns;
		uint64_t pseen = mm_event_prepare(&sw->pace);
		if (atomic_load(&sw->stop))
			return;
		mm_event_wait(&sw->pace, pseen, chunk);
		uint64_t r = spanheap_refills_total(sh);
		if (r == seen_refills && pending_since_flip(sh) > 0) {
			atomic_fetch_add_explicit(&sh->quiet_cycles, 1,
			                          memory_order_relaxed);
			return;
		}
		seen_refills = r;
	}
}

/*
 * Config flush_quiet_cpus (a port whose CPUs have no idle loop: the hosted
 * malloc's threads): hands back the caches of CPUs that have not flushed
 * since a cycle that began at least a period ago, at most once a period
 * and only once a cycle has begun since the last such visit. A CPU that
 * allocated meanwhile refilled, and flushed, by itself; one blocked would
 * keep its magazines' objects, and the spans they hold, until it ran
 * again. The first call that sees a cycle not yet visited marks it and
 * its time; a period later the visit hands back what has not flushed
 * since (spanheap_flush_stale_others), and the mark is cleared; a visit
 * that could not reach every CPU (a thread stopped inside a call) leaves
 * the cycle to the next mark, made at once, and the next visit waits
 * twice as long, up to 64 periods, until one reaches every CPU. Until
 * a review it waited for a period with no refill anywhere, and one
 * thread taking a span a second kept every other thread's cache for
 * good. The objects handed back are pending frees the next cycle folds.
 * The sweeper's own fields; nothing pinned, no lock held.
 */
static void quiet_visit(struct spanheap *sh, uint64_t now)
{
	struct spanheap_sweeper *sw = &sh->sweeper;
	if (!sh->cfg.flush_quiet_cpus)
		return;
	uint32_t gen =
	        atomic_load_explicit(&sh->sweepgen, memory_order_relaxed);
	if (sw->mark_since == 0) {
		if (gen != sw->visited_gen) {
			sw->mark_gen = gen;
			sw->mark_since = now;
		}
		return;
	}
	unsigned backoff = sw->visit_fails < 6 ? sw->visit_fails : 6;
	if (now - sw->mark_since < sh->cfg.period_ns << backoff)
		return;
	sw->mark_since = 0;
	bool kick = false;
	if (spanheap_flush_stale_others(sh, sw->mark_gen, &kick)) {
		sw->visited_gen = sw->mark_gen;
		sw->visit_fails = 0;
	} else if (sw->visit_fails < UINT8_MAX) {
		sw->visit_fails++;
	}
	atomic_fetch_add_explicit(&sh->quiet_visits, 1, memory_order_relaxed);
	if (kick)
		spanheap_sweeper_kick(sh);
}

static void sweeper_main(void *arg)
{
	struct spanheap *sh = arg;
	struct spanheap_sweeper *sw = &sh->sweeper;
	atomic_store_explicit(&sw->last_cycle_ns, mm_port_now_ns(),
	                      memory_order_relaxed);
	while (!atomic_load(&sw->stop)) {
		uint64_t seen = mm_event_prepare(&sw->wake);
		if (atomic_load(&sw->stop))
			break;
		/* The guarded pool's slots freed where no unmap could be
		 * made (spanheap_guard_alloc wakes this for them). */
		if (sh->guard.base)
			spanheap_guard_drain(sh);
		uint64_t now = mm_port_now_ns();
		uint64_t last = atomic_load_explicit(&sw->last_cycle_ns,
		                                     memory_order_relaxed);
		bool periodic =
		        now - last >= sh->cfg.period_ns &&
		        (pending_since_flip(sh) > 0 || queues_hold_spans(sh));
		if (periodic || pending_due(sh)) {
			uint64_t t0 = mm_port_thread_cpu_ns();
			run_cycle(sh, true);
			uint64_t used = mm_port_thread_cpu_ns() - t0;
			unsigned long irq = mm_lock_acquire(&sh->heap->lock);
			sh->n.sweeper_cpu_ns += used;
			mm_lock_release(&sh->heap->lock, irq);
			pace(sh, used);
			/* A heap freeing steadily runs cycle after cycle; a
			 * stop (fork's, first of all) must not wait for a
			 * visit. */
			if (!atomic_load(&sw->stop))
				quiet_visit(sh, mm_port_now_ns());
			continue;
		}
		quiet_visit(sh, now);
		mm_event_wait(&sw->wake, seen, sh->cfg.period_ns / 4 + 1);
	}
}

bool spanheap_sweeper_start(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_sweeper_start");
	if (sh->sweeper.thread)
		return true;
	atomic_store(&sh->sweeper.stop, false);
	/* Caches stale now wait for a cycle begun from here (quiet_visit);
	 * set before the thread, which a cycle may precede. */
	sh->sweeper.visited_gen = atomic_load(&sh->sweepgen);
	sh->sweeper.mark_since = 0;
	sh->sweeper.visit_fails = 0;
	sh->sweeper.thread = mm_port_thread_start("sweeper", sweeper_main, sh);
	if (sh->sweeper.thread) {
		atomic_store(&sh->sweeper.idle_flush, true);
		return true;
	}
	mm_log("spanheap: cannot start the sweeper thread");
	return false;
}

void spanheap_sweeper_stop(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_sweeper_stop");
	if (!sh->sweeper.thread)
		return;
	/* No idle CPU's flush outlives the stop (spanheap_cpu_idle). */
	atomic_store(&sh->sweeper.idle_flush, false);
	while (atomic_load(&sh->sweeper.idle_inflight))
		mm_port_yield();
	atomic_store(&sh->sweeper.stop, true);
	mm_event_wake(&sh->sweeper.wake);
	mm_event_wake(&sh->sweeper.pace);
	mm_port_thread_join(sh->sweeper.thread);
	sh->sweeper.thread = NULL;
}

/*
 * mm/spanheap_sweeper.c: when the span heap sweeps. The pending frees
 * counted since the last flip, the threshold they pass, and the sweeper
 * thread that runs cycles (spanheap_sweep.c) when they do, on a period,
 * and paced to its CPU budget.
 *
 * Purpose: fold frees, and give empty spans back, without a caller of the
 * heap paying for it: frees only set bits and count bytes, and a thread
 * of its own (Go's background sweeper, mgcsweep.go's bgsweep) does the rest.
 * The exception: a thread allocation that would grow the page heap first
 * folds queued spans until its pages came back, at most a budget
 * (spanheap_sweep_before_growth, as Go's mheap.alloc reclaims before it
 * grows), since memory freed but not swept would otherwise be lost to
 * that allocation.
 *
 * Representation: each CPU counts the bytes of its remote frees
 * (mcache_counters.pending_bytes, only growing); the flip stores their sum
 * as the cycle's base (sh->pending_base), so the bytes pending since the
 * last flip are the sum less the base.
 *
 * Algorithm: a cycle starts when pending frees since the last flip pass
 * pending_permille of the bytes in use (and min_pending_bytes), every
 * period_ns while frees are pending (or a fold queue or backlog holds
 * spans: spanheap_queues_hold_spans), or on demand. After a cycle the
 * thread sleeps in proportion to the CPU time it took (pace), and in
 * flush_quiet_cpus mode hands back the caches of CPUs that stopped
 * allocating (quiet_visit).
 *
 * Invariants: the pending total read after the base is at least the base
 * (the counters only grow, and the base was read from them).
 *
 * Locking: the counters are atomics, each written by its own CPU pinned;
 * the thread takes the heap's lock for its statistics and a class's lock
 * to look at its fold queues. spanheap_sweeper_kick, which only wakes the
 * thread, may be called from any context but NMI; start and stop from
 * thread context.
 *
 * Limits: the thread stays within cpu_permille of one CPU (sleeping after
 * each cycle in proportion to its own CPU time), but wakes early when
 * the heap went quiet with frees pending.
 */
#include "spanheap_internal.h"

/* ---- Pending frees ----------------------------------------------------------
 */

/* One per-CPU counter (its offset in struct mcache_counters) summed over
 * every CPU, each loaded with order mo. */
static uint64_t cpus_total(struct spanheap *sh, size_t off, memory_order mo)
{
	uint64_t t = 0;
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		t += atomic_load_explicit(
		        (_Atomic uint64_t *)((char *)&sh->caches[cpu].n + off),
		        mo);
	return t;
}

/* Acquire, against count_add's release (spanheap_cache.c): a flip whose
 * base took in a spill's pending bytes then sees its bits, and so does a
 * placement after the flip. Only the flip needs it: the kicks' and
 * reclaim's reads (pending_since_flip) decide only whether to start a
 * cycle, and are relaxed, as a free counted just after them would be. */
uint64_t spanheap_pending_total(struct spanheap *sh)
{
	return cpus_total(sh, offsetof(struct mcache_counters, pending_bytes),
	                  memory_order_acquire);
}

uint64_t spanheap_refills_total(struct spanheap *sh)
{
	return cpus_total(sh, offsetof(struct mcache_counters, refills),
	                  memory_order_relaxed);
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
	/* Relaxed: coherence with the flip's reads, which its base's
	 * release and our acquire order before these, keeps them no older. */
	uint64_t total =
	        cpus_total(sh, offsetof(struct mcache_counters, pending_bytes),
	                   memory_order_relaxed);
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
 * there with nothing pending to start the cycle that frees them. Reads
 * each class's two heads without its lock: a class's look is a moment's
 * either way, as a taker may hold a rest it parks just after (until
 * review rv76 it took each lock, 63 of them at every malloc_trim). Thread
 * context.
 */
bool spanheap_queues_hold_spans(struct spanheap *sh)
{
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mcentral *c = spanheap_central_of(sh, cls, __func__);
		if (atomic_load_explicit(&c->fold_backlog,
		                         memory_order_relaxed) ||
		    atomic_load_explicit(&c->fold_queue, memory_order_relaxed))
			return true;
	}
	return false;
}

/* True if pending frees passed the threshold. Some must be pending: with
 * min_pending_bytes 0 and nothing in use the threshold is 0, and until a
 * review an empty heap's sweeper ran cycle after cycle for nothing, as
 * fast as its CPU budget let it. Thread context. */
static bool pending_due(struct spanheap *sh)
{
	struct mheap_stats hs;
	mheap_stats(sh->heap, &hs);
	uint64_t in_use = (uint64_t)hs.in_use_pages * MM_PAGE_SIZE;
	uint64_t want = in_use / 1000 * sh->cfg.pending_permille;
	if (want < sh->cfg.min_pending_bytes)
		want = sh->cfg.min_pending_bytes;
	uint64_t pending = pending_since_flip(sh);
	return pending > 0 && pending >= want;
}

/* Folds queued spans of every class, at most SPANHEAP_GROWTH_FOLD_BUDGET,
 * until the page heap would not grow for npages; true if it would not.
 * parked is cleared first and set again unless every class was looked
 * at: a backlog parked before the clear is then either folded here or
 * still hinted. */
static bool fold_for(struct spanheap *sh, size_t npages)
{
	unsigned budget = SPANHEAP_GROWTH_FOLD_BUDGET;
	atomic_store(&sh->sweeper.parked, false);
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		if (!budget || !mheap_would_grow(sh->heap, npages)) {
			atomic_store(&sh->sweeper.parked, true);
			return !mheap_would_grow(sh->heap, npages);
		}
		spanheap_fold_queue_for(sh, cls, npages, &budget);
	}
	return !mheap_would_grow(sh->heap, npages);
}

/*
 * A thread allocation of npages is about to grow the page heap: if frees
 * pending since the last flip passed the threshold, or a cycle is
 * running (whose flip took them), or an earlier growth's folds left a
 * backlog (parked: its cycle may have ended, and its frees count as
 * pending since no flip; without the look 4 runs in 22 of "phases" grew
 * by 22 to 33 MiB), the spans they emptied go back to the page heap for
 * this allocation first (Go's mheap.alloc reclaims, before
 * the heap grows, for the same reason). Until a review a thread that
 * freed 32 MiB of one size and then allocated 32 MiB of another, size
 * after size, kept every size's spans: 275 MiB resident for 32 MiB live
 * (tests/real/blowup.c's "phases").
 *
 * The work is in proportion to the need, as Go's reclaim(npages) is:
 * every span a pending free touched is on its class's fold queue (a
 * remote free queues its span before it sets its bit), so folding queued
 * spans until npages are free, at most SPANHEAP_GROWTH_FOLD_BUDGET,
 * finds what a cycle would give back here. What it leaves is the
 * sweeper's, woken for it. Until a review this ran the whole cycle owed,
 * or waited for the end of the sweeper's, in the caller: every span of
 * the heap swept in one malloc, 1.4 ms in a 256 MiB heap and 4.8 ms in a
 * 1 GiB one (make bench-latency), the worst single call by far.
 * Without a sweeper thread (idle_flush clear: none started, or stopped)
 * nothing else runs cycles, and a caller the queues left short runs the
 * cycle as before, or waits for a running one (a reclaim's).
 */
bool spanheap_sweep_before_growth(struct spanheap *sh, size_t npages)
{
	spanheap_assert_can_sleep("spanheap_sweep_before_growth");
	bool running = spanheap_cycle_running(sh);
	bool due = running || pending_due(sh);
	if (!due && !atomic_load(&sh->sweeper.parked))
		return false;
	if (fold_for(sh, npages) || !due) /* a parked backlog owes no cycle */
		return true;
	if (atomic_load(&sh->sweeper.idle_flush)) { /* a sweeper runs */
		mm_event_wake(&sh->sweeper.wake);
		return true;
	}
	if (running) {
		spanheap_cycle_acquire(sh);
		spanheap_cycle_release(sh);
	} else {
		spanheap_run_cycle(sh, false);
	}
	return true;
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

uint64_t spanheap_visit_wait_ns(uint64_t period_ns, unsigned backoff)
{
	/* Saturating: a period near the top of its range (UINT64_MAX is
	 * "never") shifted left wrapped, 2^62 ns to 0 at the second
	 * backoff, and the visit came at once (review). */
	if (backoff >= 64 || period_ns > UINT64_MAX >> backoff)
		return UINT64_MAX;
	return period_ns << backoff;
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
	if (now - sw->mark_since <
	    spanheap_visit_wait_ns(sh->cfg.period_ns, backoff))
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
		/* A cycle that ended elsewhere after this read (a reclaim's)
		 * is later than now: no period has passed since it (until a
		 * review the difference wrapped, and a "periodic" cycle
		 * followed it at once). */
		uint64_t now = mm_port_now_ns();
		uint64_t last = atomic_load_explicit(&sw->last_cycle_ns,
		                                     memory_order_relaxed);
		bool periodic = now > last && now - last >= sh->cfg.period_ns &&
		                (pending_since_flip(sh) > 0 ||
		                 spanheap_queues_hold_spans(sh));
		if (periodic || pending_due(sh)) {
			uint64_t t0 = mm_port_thread_cpu_ns();
			spanheap_run_cycle(sh, true);
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
	if (!sh->spans) {
		/* Its cycles would panic in the thread (review). */
		mm_log("spanheap: no sweeper for a heap not set up (its "
		       "spanheap_init failed or was not called)");
		return false;
	}
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

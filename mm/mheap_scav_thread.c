/*
 * mm/mheap_scav_thread.c: the page heap's background scavenger thread.
 *
 * Purpose: the paced loop of mheap_scav.c's "goal", "refill", "served",
 * "pacing" and "report" (that file's header describes the algorithm and
 * the batches the thread takes): each round a batch of h and of the heap
 * it serves, then a sleep that keeps the thread's CPU share within
 * cfg.cpu_permille; with nothing to take in either, a long sleep until a
 * large free, a refill request or stop wakes it. Split from mheap_scav.c
 * to keep each file within the house style's size.
 *
 * Locking: each heap's lock (MM_RANK_HEAP, a leaf) for its counters and
 * flags, one heap's at a time (the two heaps' locks share a rank and never
 * nest); nothing is logged or waited for under a lock. Thread context:
 * the thread, and start and stop (serialised by their caller).
 */
#include "mheap_internal.h"

uint64_t mheap_pace_sleep_ns(uint64_t work_ns, unsigned permille)
{
	if (permille == 0 || permille >= 1000)
		return 0;
	const uint64_t cap = UINT64_MAX / 1000; /* no overflow below */
	if (work_ns > cap)
		work_ns = cap;
	uint64_t ns = work_ns * (1000 - permille) / permille;
	return ns < MHEAP_PACE_MAX_NS ? ns : MHEAP_PACE_MAX_NS;
}

/* Books the CPU time since *since; returns it. */
static uint64_t bg_book(struct mheap *h, uint64_t *since)
{
	uint64_t now = mm_port_thread_cpu_ns(), work = now - *since;
	unsigned long irq = mm_lock_acquire(&h->lock);
	h->counters.bg_cpu_ns += work;
	mm_lock_release(&h->lock, irq);
	*since = now;
	return work;
}

/* x's refill if an atomic caller asked for one since: true if it did. */
static bool bg_refill(struct mheap *x)
{
	unsigned long irq = mm_lock_acquire(&x->lock);
	bool asked = x->scav.refill;
	x->scav.refill = false;
	mm_lock_release(&x->lock, irq);
	if (asked)
		mheap_refill(x);
	return asked;
}

/* A paced sleep for the work since *since. The pace is the scavenging's
 * budget, not the reserve's: an atomic caller's refill request wakes it
 * (mheap_scav_pace_of), is made, and the sleep goes on to its end (until
 * this version the request waited out the pace, up to MHEAP_PACE_MAX_NS,
 * with atomic callers finding the reserve short meanwhile). */
static void bg_pace(struct mheap *h, uint64_t *since)
{
	mheap_hook(h, MHEAP_HOOK_SCAV_PACING);
	uint64_t work = bg_book(h, since);
	uint64_t ns = mheap_pace_sleep_ns(work, h->cfg.cpu_permille);
	uint64_t end = mm_port_now_ns() + ns;
	while (ns && !atomic_load(&h->scav.stop)) {
		uint64_t seen = mm_event_prepare(&h->scav.pace);
		/* The end before the refills: a request that waited out the
		 * pace is the next turn's (bg_turn), not counted as the
		 * pace's (mheap_reserve.a_refill_asked_in_a_paced_sleep_*
		 * could not fail while the pace's last round made it). */
		uint64_t now = mm_port_now_ns();
		if (now >= end)
			break;
		bool made = bg_refill(h);
		if (h->scav_also)
			made |= bg_refill(h->scav_also);
		if (!made)
			mm_event_wait(&h->scav.pace, seen, end - now);
	}
	mheap_hook(h, MHEAP_HOOK_SCAV_PACED);
}

/* One line of what the thread did, at most every MHEAP_REPORT_NS, and
 * only when it released something since the last line: at its goal, or
 * idle above it (the free backed pages over the goal in dense chunks). */
static void bg_report(struct mheap *h, const struct mheap_stats *st)
{
	uint64_t now = mm_port_now_ns();
	if (st->n.bg_pages == h->scav.reported_pages ||
	    (h->scav.reported_ns &&
	     now - h->scav.reported_ns < MHEAP_REPORT_NS))
		return;
	if (st->free_backed_pages > st->goal_pages)
		mm_log("scavenger: idle above its goal (%zu free backed pages "
		       "kept, goal %zu: the rest lie in dense chunks): %lu "
		       "pages released in %lu runs so far, %lu us CPU",
		       st->free_backed_pages, st->goal_pages, st->n.bg_pages,
		       st->n.bg_runs, st->n.bg_cpu_ns / 1000);
	else
		mm_log("scavenger: at goal (%zu free backed pages kept): %lu "
		       "pages released in %lu runs so far, %lu us CPU",
		       st->goal_pages, st->n.bg_pages, st->n.bg_runs,
		       st->n.bg_cpu_ns / 1000);
	h->scav.reported_pages = st->n.bg_pages;
	h->scav.reported_ns = now;
}

/* Sets and returns x->scav.idle: nothing to do for x (at goal, or no
 * backed free since a barren search; no refill) and others_idle. */
static bool idle_check(struct mheap *x, bool others_idle,
                       struct mheap_stats *st)
{
	unsigned long irq = mm_lock_acquire(&x->lock);
	mheap_stats_locked(x, st);
	x->scav.idle = (st->free_backed_pages <= st->goal_pages ||
	                x->scav.barren_frees == x->scav.backed_frees) &&
	               !x->scav.refill && others_idle;
	bool idle = x->scav.idle;
	mm_lock_release(&x->lock, irq);
	return idle;
}

/* Nothing to take (at the goal, or every free backed page in a dense
 * chunk) in h nor in the heap it serves: pays for the work that found
 * nothing with its paced sleep too (so the share stays within budget up
 * to the moment it goes idle), then sleeps until a free, a refill or stop
 * wakes it, unless frees during that sleep put a heap over its goal again
 * and may have given it something to take. The served heap's flag is set
 * first, then h's (whether the thread sleeps), each under its own lock. */
static void bg_idle(struct mheap *h, uint64_t *since)
{
	bg_pace(h, since);
	mheap_hook(h, MHEAP_HOOK_SCAV_IDLE);
	uint64_t seen = mm_event_prepare(&h->scav.wake);
	struct mheap_stats st, also;
	bool idle = !h->scav_also || idle_check(h->scav_also, true, &also);
	if (!idle_check(h, idle, &st))
		return;
	bg_report(h, &st);
	if (!atomic_load(&h->scav.stop))
		mm_event_wait(&h->scav.wake, seen, MHEAP_IDLE_NS);
}

/* x's turn: its refill if asked, then a batch unless its last search found
 * nothing and no free came since (review: it searched in vain every round). */
static size_t bg_turn(struct mheap *x)
{
	bg_refill(x);
	unsigned long irq = mm_lock_acquire(&x->lock);
	bool barren = x->scav.barren_frees == x->scav.backed_frees;
	mm_lock_release(&x->lock, irq);
	return barren ? 0 : mheap_scavenge_batch(x, 0, 0, MHEAP_SCAV_BG);
}

/* The thread: a batch of h and one of the heap it serves, then a paced
 * sleep; with nothing to take in either, a long sleep until a large free
 * wakes it. Everything it spends, sleeps' own cost included, is booked to
 * h and paced; two lock holds and one shootdown a batch. */
static void bg_main(void *arg)
{
	struct mheap *h = arg;
	uint64_t since = mm_port_thread_cpu_ns();
	while (!atomic_load(&h->scav.stop)) {
		size_t n = bg_turn(h);
		if (h->scav_also)
			n += bg_turn(h->scav_also);
		if (n == 0)
			bg_idle(h, &since); /* at goal, or only dense chunks */
		else
			bg_pace(h, &since);
	}
	bg_book(h, &since);
	mheap_hook(h, MHEAP_HOOK_SCAV_EXIT);
}

bool mheap_scavenger_start(struct mheap *h)
{
	mheap_assert_can_sleep("mheap_scavenger_start");
	if (h->scav.thread)
		return true;
	if (!h->arena_pages) { /* its events never made (review) */
		mm_log("mheap: no scavenger for a heap not set up (its "
		       "mheap_init failed or was not called)");
		return false;
	}
	if (h->scav_by) { /* its frees wake the server's thread alone */
		mm_log("mheap: no scavenger of its own for a heap served by "
		       "another heap's (start that one)");
		return false;
	}
	atomic_store(&h->scav.stop, false);
	h->scav.thread = mm_port_thread_start("mheap_scav", bg_main, h);
	if (h->scav.thread)
		return true;
	mm_log("mheap: cannot start the scavenger thread");
	return false;
}

void mheap_scavenger_stop(struct mheap *h)
{
	mheap_assert_can_sleep("mheap_scavenger_stop");
	if (!h->scav.thread)
		return;
	atomic_store(&h->scav.stop, true);
	mm_event_wake(&h->scav.wake);
	mm_event_wake(&h->scav.pace);
	mm_port_thread_join(h->scav.thread);
	h->scav.thread = NULL;
	unsigned long irq = mm_lock_acquire(&h->lock);
	h->scav.idle = false;
	mm_lock_release(&h->lock, irq);
	if (h->scav_also) { /* not under h's lock: the same rank */
		irq = mm_lock_acquire(&h->scav_also->lock);
		h->scav_also->scav.idle = false;
		mm_lock_release(&h->scav_also->lock, irq);
	}
}

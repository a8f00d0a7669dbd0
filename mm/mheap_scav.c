/*
 * mm/mheap_scav.c: the heap's scavenger: giving free pages' memory back.
 *
 * Purpose: keep the memory behind free heap pages near a goal, so that a
 * heap does not hold its peak forever. Modelled on the Go runtime's
 * background scavenger (mgcscavenge.go: bgscavenge, scavengeOne, the
 * scavenge(nbytes, locked) of CL 195699) and debug.FreeOSMemory.
 *
 * Representation. palloc's scavenged bitmap says which free pages are
 * unmapped (palloc_scav.c finds the others, highest address first). The
 * thread's state is two flags (running, stop) and three events: wake (a
 * large free over the goal, or stop), pace (never woken: a sleep), done.
 *
 * Algorithm.
 *   locked    mheap_scavenge_locked: with h->lock held throughout, mark
 *             free backed runs scavenged (they stay free) and clear their
 *             PTEs into h->batch (mm_port_unused_begin: no lock, no
 *             allocation, no waiting). After unlocking the caller calls
 *             mm_port_unused_finish: shootdown, then the frames go back.
 *             Used by growth under a low frame pool (mheap.c) and by
 *             mheap_release_all (forced: dense chunks too).
 *   background  One batch: under the lock take 16 to 256 pages (at most
 *             16 runs) out of the free set; unlock; clear their PTEs
 *             (mm_port_unused_begin on pages the thread now owns) and
 *             finish the batch: one shootdown for all of it, then the
 *             frames go back; relock; return the runs free and
 *             scavenged. The lock is never held across the unmapping, and
 *             is released between batches. Dense chunks (>= 496 pages in
 *             use) are skipped.
 *   goal      free backed pages kept = in_use * goal_percent / 100
 *             (mheap_goal_pages, integers only). The thread scavenges
 *             while free backed > goal, then (after its paced sleep) sets
 *             bg_idle and waits on
 *             wake (MHEAP_IDLE_NS at most); a free of >= 16 pages that
 *             leaves the heap over its goal wakes it.
 *   pacing    After each batch the thread reads its own CPU time
 *             (mm_port_thread_cpu_ns); work w since its last sleep earns
 *             a sleep of w * (1000 - b) / b ns (b = cpu_permille), so
 *             that w / (w + sleep) <= b / 1000: 1% of one CPU by default.
 *
 * Invariants:
 *   1. A page is scavenged (its bit set) only once its PTE is cleared or
 *      about to be (taken pages are allocated while unmapped).
 *   2. taken_pages counts the taken runs; they are returned before the
 *      next batch.
 *
 * Locking: h->lock around each step as above; the batch belongs to the
 * holder of h->growing. Statistics are h->lock's; nothing is logged or
 * woken under it.
 * Limits: one background thread per heap; mm_event_t wakes may be lost
 * only as "remembered once", which the idle timeout bounds.
 */
#include "mheap.h"

size_t mheap_scavenge_locked(struct mheap *h, size_t npages, unsigned flags)
{
	size_t done = 0;
	while (done < npages) {
		size_t room = MM_UNUSED_BATCH_PAGES - h->batch.npages;
		size_t want = npages - done < room ? npages - done : room;
		struct palloc_run r;
		if (want == 0 ||
		    !palloc_scav_mark_locked(&h->pages, want, flags, &r))
			break;
		mm_port_unused_begin((void *)r.base, r.npages * MM_PAGE_SIZE,
		                     &h->batch);
		done += r.npages;
	}
	h->counters.sync_pages += done;
	return done;
}

/* Takes h->growing (thread context), spinning while a grower has it. */
static void own_batch(struct mheap *h)
{
	while (atomic_exchange(&h->growing, true))
		mm_event_wait(&h->backoff, 100 * 1000); /* 100 us */
}

size_t mheap_release_all(struct mheap *h)
{
	size_t total = 0;
	own_batch(h);
	for (;;) {
		unsigned long irq = mm_lock_acquire(&h->lock);
		size_t n = mheap_scavenge_locked(h, MM_UNUSED_BATCH_PAGES,
		                                 PALLOC_SCAV_FORCE);
		/* Counted as release-all, not as growth's locked mode. */
		h->counters.sync_pages -= n;
		h->counters.release_pages += n;
		mm_lock_release(&h->lock, irq);
		mm_port_unused_finish(&h->batch);
		total += n;
		if (n == 0)
			break;
	}
	atomic_store(&h->growing, false);
	return total;
}

uint64_t mheap_pace_sleep_ns(uint64_t work_ns, unsigned permille)
{
	if (permille == 0 || permille >= 1000)
		return 0;
	const uint64_t cap = UINT64_MAX / 1000;
	if (work_ns > cap)
		work_ns = cap;
	return work_ns * (1000 - permille) / permille;
}

/* The pages a batch asks for when free backed pages are over the goal. */
static size_t batch_pages(size_t over)
{
	if (over == 0)
		return 0;
	if (over < MHEAP_SCAV_MIN_PAGES)
		return MHEAP_SCAV_MIN_PAGES;
	return over < MHEAP_SCAV_BATCH_PAGES ? over : MHEAP_SCAV_BATCH_PAGES;
}

/* A background batch's first half, in one lock hold: how far over the
 * goal the heap is, and the runs taken out of the free set for it. With
 * nothing taken (at goal, or only dense chunks left) the thread is idle.
 * Returns the pages taken. */
static size_t bg_take(struct mheap *h, struct palloc_run *runs, size_t *nruns)
{
	struct mheap_stats st;
	size_t n = 0, total = 0;
	unsigned long irq = mm_lock_acquire(&h->lock);
	mheap_stats_locked(h, &st);
	size_t max = batch_pages(st.free_backed_pages > st.goal_pages
	                                 ? st.free_backed_pages - st.goal_pages
	                                 : 0);
	while (n < MHEAP_SCAV_RUNS && total < max &&
	       palloc_scav_take_locked(&h->pages, max - total, 0, &runs[n]))
		total += runs[n++].npages;
	h->taken_pages += total;
	if (total)
		h->bg_idle = false;
	mm_lock_release(&h->lock, irq);
	*nruns = n;
	return total;
}

/* The second half: the runs are the thread's own while it unmaps them, so
 * their PTEs are cleared without the lock (mm_port_unused_begin) and the
 * batch costs one shootdown (finish); then, in one lock hold, they go
 * back free and scavenged and the CPU time since *since is booked (the
 * return's own cost counts toward the next batch). Returns that time. */
static uint64_t bg_put(struct mheap *h, const struct palloc_run *runs,
                       size_t nruns, size_t total, uint64_t *since)
{
	for (size_t i = 0; i < nruns; i++)
		mm_port_unused_begin((void *)runs[i].base,
		                     runs[i].npages * MM_PAGE_SIZE,
		                     &h->bg_batch);
	mm_port_unused_finish(&h->bg_batch);
	uint64_t now = mm_port_thread_cpu_ns(), work = now - *since;
	*since = now;
	unsigned long irq = mm_lock_acquire(&h->lock);
	for (size_t i = 0; i < nruns; i++)
		palloc_scav_return_locked(&h->pages, runs[i].base,
		                          runs[i].npages);
	h->taken_pages -= total;
	h->counters.bg_runs++;
	h->counters.bg_pages += total;
	h->counters.bg_cpu_ns += work;
	mm_lock_release(&h->lock, irq);
	return work;
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

/* At the goal: pays for the work that found nothing to do with its paced
 * sleep too (so the share stays within budget up to the moment it goes
 * idle), then marks itself idle for frees to wake, unless frees during
 * that sleep put the heap over its goal again (they did not wake it: it
 * was not idle yet). Returns whether it went idle. */
static bool bg_go_idle(struct mheap *h, uint64_t *since)
{
	uint64_t work = bg_book(h, since);
	mm_event_wait(&h->pace, mheap_pace_sleep_ns(work, h->cfg.cpu_permille));
	struct mheap_stats st;
	unsigned long irq = mm_lock_acquire(&h->lock);
	mheap_stats_locked(h, &st);
	h->bg_idle = st.free_backed_pages <= st.goal_pages;
	bool idle = h->bg_idle;
	mm_lock_release(&h->lock, irq);
	/* Report a cycle that did something, after unlocking. */
	if (idle && st.bg_pages != h->bg_reported_pages) {
		mm_log("scavenger: at goal (%zu free backed pages kept): %lu "
		       "pages released in %lu runs so far, %lu us CPU",
		       st.goal_pages, st.bg_pages, st.bg_runs,
		       st.bg_cpu_ns / 1000);
		h->bg_reported_pages = st.bg_pages;
	}
	return idle;
}

/* The thread: a batch, then a paced sleep; at goal, a long sleep until a
 * large free wakes it. Everything it spends, sleeps' own cost included,
 * is booked and paced; two lock holds and one shootdown a batch. */
static void bg_main(void *arg)
{
	struct mheap *h = arg;
	uint64_t since = mm_port_thread_cpu_ns();
	while (!atomic_load(&h->bg_stop)) {
		struct palloc_run runs[MHEAP_SCAV_RUNS];
		size_t nruns, n = bg_take(h, runs, &nruns);
		if (n == 0) { /* at goal, or only dense chunks left */
			if (bg_go_idle(h, &since))
				mm_event_wait(&h->wake, MHEAP_IDLE_NS);
			continue;
		}
		uint64_t work = bg_put(h, runs, nruns, n, &since);
		mm_event_wait(&h->pace,
		              mheap_pace_sleep_ns(work, h->cfg.cpu_permille));
	}
	bg_book(h, &since);
	atomic_store(&h->bg_running, false);
	mm_event_wake(&h->done);
}

bool mheap_scavenger_start(struct mheap *h)
{
	if (atomic_exchange(&h->bg_running, true))
		return true;
	atomic_store(&h->bg_stop, false);
	if (mm_port_thread_start("mheap_scav", bg_main, h))
		return true;
	atomic_store(&h->bg_running, false);
	mm_log("mheap: cannot start the scavenger thread");
	return false;
}

void mheap_scavenger_stop(struct mheap *h)
{
	atomic_store(&h->bg_stop, true);
	mm_event_wake(&h->wake);
	while (atomic_load(&h->bg_running))
		mm_event_wait(&h->done, 1000 * 1000);
}

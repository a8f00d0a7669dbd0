/*
 * mm/mheap_scav.c: the heap's scavenger: giving free pages' memory back.
 *
 * Purpose: keep the memory behind free heap pages near a goal, so that a
 * heap does not hold its peak forever. Modelled on the Go runtime's
 * background scavenger (mgcscavenge.go: bgscavenge, scavengeOne) and
 * debug.FreeOSMemory.
 *
 * Representation. palloc's scavenged bitmap says which free pages are
 * unmapped (palloc_scav.c finds the others, highest address first). The
 * thread's state is struct mheap_scav: a stop flag, an idle flag, a
 * refill request, and two events: wake (frees over the goal, refills,
 * stop) and pace (woken only by stop).
 *
 * Algorithm.
 *   batch     Every mode scavenges the same way (mheap_scavenge_batch):
 *             under the lock take up to 256 pages (at most 16 runs) out
 *             of the free set, so that nobody can allocate them, having
 *             searched at most MHEAP_SCAV_SEARCH_CHUNKS chunks (a longer
 *             search unlocks and relocks between stretches); unlock;
 *             clear their PTEs (mm_port_unused_begin) and finish the
 *             batch (mm_port_unused_finish: one shootdown for all of it,
 *             then the frames go back); relock and return the runs free
 *             and scavenged. A page is handed out again only after every
 *             CPU flushed it: a not-present to present change needs no
 *             shootdown only because of that. The lock is never held
 *             while anyone waits for another CPU.
 *   modes     background (the thread, towards the goal, dense chunks
 *             skipped), allocation while frames are short and release-all
 *             (both forced: dense chunks too). Go also has a "locked"
 *             mode that marks pages scavenged while they stay free; it is
 *             gone here, because another CPU could allocate such a page
 *             and reach the old frame through its stale TLB entry.
 *   goal      free backed pages kept = in_use * goal_percent / 100
 *             (mheap_goal_pages, integers only). The thread scavenges
 *             while free backed > goal and it finds pages to take; then
 *             (after its paced sleep) it sets idle and waits on wake
 *             (MHEAP_IDLE_NS at most), unless it is over its goal and
 *             pages were freed since its search (backed_frees moved
 *             past barren_frees; an undone allocation and a batch not
 *             the thread's count too, mheap_scav.h): nor, till then,
 *             searches that heap.
 *             A free of >= 16 pages that leaves the heap over its goal
 *             wakes it (the debug mode's too, which frees scavenged but
 *             lowers the goal: mheap_free_wakes_locked).
 *   refill    An atomic allocation that left free pages below the reserve
 *             sets refill and wakes the thread, which grows the heap.
 *   served    h's thread may serve a heap with none of its own (whose
 *             start is refused; h->scav_also, whose scav_by names h: a
 *             span heap's metadata heap, spanheap_meta.c): each round it
 *             refills and scavenges that heap too, by its goal, within
 *             h's CPU budget; its frees and refill requests wake h's
 *             thread, which sleeps only when both are idle (until a
 *             review no thread covered the metadata heap). Report: h's.
 *   pacing    After each batch the thread reads its own CPU time
 *             (mm_port_thread_cpu_ns); work w since its last sleep earns
 *             a sleep of w * (1000 - b) / b ns (b = cpu_permille), so
 *             that w / (w + sleep) <= b / 1000: 1% of one CPU by default.
 *             At most MHEAP_PACE_MAX_NS (10 s), as Go bounds its
 *             scavenger's (maxCrit): w may hold a stall of the thread's
 *             CPU, and the paced sleep hears no free and no refill.
 *   report    At goal, one line of what it released, at most every
 *             MHEAP_REPORT_NS (mheap_dump prints the counters on request).
 *
 * Invariants:
 *   1. A page is scavenged (its bit set) only once it is unmapped and
 *      every CPU flushed it.
 *   2. taken_pages counts the taken runs; each batch returns its own.
 *   3. h->taken lists every batch between its take and its return, with
 *      its runs: a free of a page in one is a double free (palloc sees it
 *      allocated) and mm_panics (mheap_check_not_taken_locked).
 *
 * Locking: h->lock around the take and the return; nothing is logged,
 * woken or unmapped under it. The thread takes the served heap's lock
 * only with h's let go (both MM_RANK_HEAP). Start and stop are thread
 * context and serialised by their caller.
 * Limits: one background thread per heap; it serves one heap besides.
 * The thread itself (goal, served heap, pacing, report) is in
 * mheap_scav_thread.c; the batches it takes are this file's.
 */
#include "mheap_internal.h"

/* The pages a background batch asks for when free backed pages are over
 * the goal by `over`. */
static size_t bg_batch_pages(size_t over)
{
	if (over == 0)
		return 0;
	if (over < MHEAP_SCAV_MIN_PAGES)
		return MHEAP_SCAV_MIN_PAGES;
	return over < MHEAP_SCAV_BATCH_PAGES ? over : MHEAP_SCAV_BATCH_PAGES;
}

/* Lists batch t, its runs (total pages) allocated in palloc, on h->taken
 * with the next number. Locking: h->lock must be held. */
static void list_locked(struct mheap *h, struct mheap_taken *t, size_t total)
{
	h->taken_pages += total;
	t->seq = ++h->scav_takes;
	t->next = h->taken;
	h->taken = t;
}

/* The first half of a batch, in one lock hold: the runs taken out of the
 * free set, put on h->taken if there are any. max == 0: as far as the
 * background goal asks. Searches at most MHEAP_SCAV_SEARCH_CHUNKS chunks
 * along search, which the caller keeps for its next hold: true in *more
 * if nothing was taken and the search must go on. Returns the pages
 * taken. Locking: h->lock must be held. */
static size_t take_locked(struct mheap *h, size_t max, unsigned flags,
                          struct mheap_taken *t,
                          struct palloc_scav_search *search, bool *more)
{
	bool background = max == 0;
	if (background) {
		struct mheap_stats st;
		mheap_stats_locked(h, &st);
		max = bg_batch_pages(st.free_backed_pages > st.goal_pages
		                             ? st.free_backed_pages -
		                                       st.goal_pages
		                             : 0);
	}
	if (max > MHEAP_SCAV_BATCH_PAGES)
		max = MHEAP_SCAV_BATCH_PAGES;
	size_t n = 0, total = 0, budget = MHEAP_SCAV_SEARCH_CHUNKS;
	enum palloc_scav_found f = PALLOC_SCAV_NONE;
	while (n < MHEAP_SCAV_RUNS && total < max) {
		f = palloc_scav_search_locked(&h->pages, search, max - total,
		                              flags, budget, &t->runs[n]);
		budget -= search->searched;
		if (f != PALLOC_SCAV_TAKEN)
			break;
		total += t->runs[n++].npages;
	}
	if (MHEAP_SCAV_SEARCH_CHUNKS - budget > h->scav_searched_max)
		h->scav_searched_max = MHEAP_SCAV_SEARCH_CHUNKS - budget;
	*more = total == 0 && f == PALLOC_SCAV_MORE;
	if (total == 0 && background && f == PALLOC_SCAV_NONE) {
		h->scav.barren_frees = h->scav.backed_frees;
		h->scav.barren_searches += max > 0; /* a search, in vain */
	}
	t->nruns = n;
	if (n)
		list_locked(h, t, total);
	return total;
}

/* The second half of a batch t of total pages, in one lock hold: off
 * h->taken, its runs returned free and scavenged. Locking: h->lock must
 * be held. */
static void return_locked(struct mheap *h, struct mheap_taken *t, size_t total)
{
	struct mheap_taken **pp = &h->taken;
	while (*pp != t)
		pp = &(*pp)->next;
	*pp = t->next;
	for (size_t i = 0; i < t->nruns; i++)
		palloc_scav_return_locked(&h->pages, t->runs[i].base,
		                          t->runs[i].npages);
	h->taken_pages -= total;
	h->scav_returns++;
}

/* The end of [base, base + npages pages), saturated. */
static uintptr_t range_limit(uintptr_t base, size_t npages)
{
	return npages > (UINTPTR_MAX - base) >> MM_PAGE_SHIFT
	               ? UINTPTR_MAX
	               : base + npages * MM_PAGE_SIZE;
}

const struct palloc_run *mheap_taken_run_locked(const struct mheap *h,
                                                uintptr_t base, size_t npages)
{
	uintptr_t limit = range_limit(base, npages);
	for (const struct mheap_taken *t = h->taken; t; t = t->next) {
		for (size_t i = 0; i < t->nruns; i++) {
			uintptr_t lo = t->runs[i].base;
			uintptr_t hi = lo + t->runs[i].npages * MM_PAGE_SIZE;
			if (base < hi && lo < limit)
				return &t->runs[i];
		}
	}
	return NULL;
}

void mheap_check_not_taken_locked(const struct mheap *h, uintptr_t base,
                                  size_t npages)
{
	const struct palloc_run *r = mheap_taken_run_locked(h, base, npages);
	if (!r)
		return;
	uintptr_t lo = r->base, hi = lo + r->npages * MM_PAGE_SIZE;
	mm_panic("mheap: double free of [0x%lx, 0x%lx): page 0x%lx is free, "
	         "being scavenged (a batch took [0x%lx, 0x%lx))",
	         base, range_limit(base, npages), base > lo ? base : lo, lo,
	         hi);
}

/*
 * The debug mode's free: a bad free panics before anything is unmapped
 * (the pages may be another owner's: in the kernel their frames reused),
 * and in the same lock hold the run goes on h->taken as a batch of its
 * own, so that a second free of it while it is unmapped panics as a free
 * of pages being scavenged does, and an allocation that wants it waits
 * as for a batch. Until it was listed, such a free passed every check
 * (the run allocated, on no list), went back to the free set backed and
 * was handed out, and this free then unmapped and freed the new owner's
 * pages. Its pages go back scavenged, but the pages in use fall, and with
 * them the goal: a large one wakes the idle scavenger as a backed free
 * does when it leaves free backed pages (an atomic caller's frees) over
 * the lower goal; until this version it slept on, up to MHEAP_IDLE_NS.
 * Thread context.
 */
void mheap_free_unmapping(struct mheap *h, uintptr_t base, size_t npages)
{
	struct mheap_taken t = {.runs = {{base, npages}}, .nruns = 1};
	unsigned long irq = mm_lock_acquire(&h->lock);
	mheap_check_not_taken_locked(h, base, npages);
	palloc_free_check_locked(&h->pages, base, npages);
	mheap_head_clear_locked(h, base);
	list_locked(h, &t, npages);
	mm_lock_release(&h->lock, irq);
	mheap_unmap_run(base, npages);
	mheap_hook(h, MHEAP_HOOK_FREE_UNMAPPED);
	irq = mm_lock_acquire(&h->lock);
	return_locked(h, &t, npages);
	h->counters.debug_pages += npages;
	h->scav.backed_frees++; /* may make pages takeable (mheap_scav.h) */
	bool wake = mheap_free_wakes_locked(h, npages);
	mm_lock_release(&h->lock, irq);
	mm_event_wake(&h->grown);
	if (wake)
		mm_event_wake(mheap_scav_wake_of(h));
}

/* Books a finished batch. Locking: h->lock must be held. */
static void book_locked(struct mheap *h, enum mheap_scav_kind kind,
                        size_t npages)
{
	struct mheap_counters *c = &h->counters;
	switch (kind) {
	case MHEAP_SCAV_BG:
		c->bg_runs++;
		c->bg_pages += npages;
		break;
	case MHEAP_SCAV_FRAMES:
		c->sync_runs++;
		c->sync_pages += npages;
		break;
	case MHEAP_SCAV_RELEASE:
		c->release_pages += npages;
		break;
	}
}

size_t mheap_scavenge_batch(struct mheap *h, size_t max, unsigned palloc_flags,
                            enum mheap_scav_kind kind)
{
	struct mheap_taken t;
	struct mm_unused_batch b;
	struct palloc_scav_search search = {0};
	bool more;
	unsigned long irq = mm_lock_acquire(&h->lock);
	size_t total;
	/* A long search lets the lock (interrupts off) go between its
	 * stretches. */
	while ((total = take_locked(h, max, palloc_flags, &t, &search,
	                            &more)) == 0 &&
	       more) {
		mm_lock_release(&h->lock, irq);
		irq = mm_lock_acquire(&h->lock);
	}
	mm_lock_release(&h->lock, irq);
	if (total == 0)
		return 0;
	/* The runs are ours: their PTEs change without the lock. */
	mm_unused_batch_init(&b);
	for (size_t i = 0; i < t.nruns; i++)
		mm_port_unused_begin((void *)t.runs[i].base,
		                     t.runs[i].npages * MM_PAGE_SIZE, &b);
	mheap_hook(h, MHEAP_HOOK_SCAV_UNMAPPED);
	mm_port_unused_finish(&b); /* every CPU flushed, frames back */
	irq = mm_lock_acquire(&h->lock);
	return_locked(h, &t, total);
	/* Held, the runs may have made their chunks dense to the thread's
	 * search, which then skipped the chunks' other free backed pages:
	 * those are takeable again (mheap_scav.h; until a review a batch
	 * for frames or a release left the thread skipping the heap:
	 * mheap_idle's a_batch_for_frames_that_made_its_chunk_dense_counts).
	 * The thread's own batches end before its next search. */
	if (kind != MHEAP_SCAV_BG)
		h->scav.backed_frees++;
	book_locked(h, kind, total);
	mm_lock_release(&h->lock, irq);
	/* An allocation that found no free pages and no growth left may be
	 * waiting for these (mheap_alloc.c, alloc_pages). */
	mm_event_wake(&h->grown);
	return total;
}

/* True while a batch numbered up to seq holds pages. Locking: h->lock
 * must be held. */
static bool batch_out_locked(const struct mheap *h, uint64_t seq)
{
	for (const struct mheap_taken *t = h->taken; t; t = t->next)
		if (t->seq <= seq)
			return true;
	return false;
}

/*
 * The passes take every free backed page. Pages another thread's batch
 * (the background scavenger's, a scavenge for frames) took before the
 * last pass were free when it began too, and stay backed until that
 * batch returns them: the call waits for those batches, so that on
 * return no page freed before it is backed. Not for batches taken after
 * it (by their numbers): a thread that keeps freeing beside the
 * background scavenger would make it wait for as long as it frees.
 * Until this version it returned at once, with such pages still out (a
 * kernel test read "6 pages given back" with 66 being scavenged).
 */
size_t mheap_release_all(struct mheap *h)
{
	mheap_assert_can_sleep("mheap_release_all");
	size_t total = 0, n;
	while ((n = mheap_scavenge_batch(h, MHEAP_SCAV_BATCH_PAGES,
	                                 PALLOC_SCAV_FORCE,
	                                 MHEAP_SCAV_RELEASE)) > 0)
		total += n;
	unsigned long irq = mm_lock_acquire(&h->lock);
	uint64_t last = h->scav_takes;
	mm_lock_release(&h->lock, irq);
	for (bool counted = false;; counted = true) {
		/* A batch's return wakes grown (mheap_scavenge_batch). */
		uint64_t seen = mm_event_prepare(&h->grown);
		irq = mm_lock_acquire(&h->lock);
		bool out = batch_out_locked(h, last);
		if (out && !counted)
			h->counters.scav_waits++;
		mm_lock_release(&h->lock, irq);
		if (!out)
			return total;
		mm_event_wait(&h->grown, seen, MHEAP_GROW_WAIT_NS);
	}
}

/* mheap_internal.h: a run the caller owns, unmapped (an allocation that
 * could not be mapped, a debug free). */
void mheap_unmap_run(uintptr_t base, size_t npages)
{
	struct mm_unused_batch b;
	mm_unused_batch_init(&b);
	for (size_t done = 0; done < npages;) {
		size_t n = npages - done < MM_UNUSED_BATCH_PAGES
		                   ? npages - done
		                   : MM_UNUSED_BATCH_PAGES;
		mm_port_unused_begin((void *)(base + done * MM_PAGE_SIZE),
		                     n * MM_PAGE_SIZE, &b);
		mm_port_unused_finish(&b);
		done += n;
	}
}

void mheap_unmap_and_return(struct mheap *h, uintptr_t base, size_t npages)
{
	mheap_unmap_run(base, npages);
	unsigned long irq = mm_lock_acquire(&h->lock);
	palloc_scav_return_locked(&h->pages, base, npages);
	mheap_head_clear_locked(h, base); /* an extension's: clear already */
	/* An undone allocation: as mheap_alloc.c's finish_alloc (the run's
	 * chunks may be sparse again). */
	h->scav.backed_frees++;
	mm_lock_release(&h->lock, irq);
}

/*
 * The span heap's metadata heap (mm/spanheap_meta.c) is served by the
 * object heap's background scavenger (mm/mheap_scav.c, "served"): its
 * free backed pages are given back by its own goal, its frees over that
 * goal wake the object heap's thread, and so do its atomic callers'
 * refill requests. Until a review no scavenger thread covered it: its
 * free pages (poison mode's side tables of dead spans, replaced all-spans
 * arrays, torn-down CPUs' slabs) stayed backed until
 * spanheap_release_all or until a heap was short of frames, and a refill
 * it asked for woke an event no thread waited on.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Pages freed backed into the metadata heap: more than its goal, in a
 * chunk far from dense (the background scavenger skips dense ones). */
enum { FREED = 256 };

/* Takes FREED pages of the metadata heap, writes them (backed) and frees
 * them: as a dead span's side table or a replaced array goes back. */
static void meta_free_backed(void)
{
	char *p = mheap_alloc_pages(&sh.meta, FREED, 0);
	KASSERT(p);
	memset(p, 0x5a, (size_t)FREED * MM_PAGE_SIZE);
	mheap_free_pages(&sh.meta, p, FREED);
}

/* True while h's background scavenger sleeps with nothing to take. */
static bool scav_idle(struct mheap *h)
{
	unsigned long irq = mm_lock_acquire(&h->lock);
	bool idle = h->scav.idle;
	mm_lock_release(&h->lock, irq);
	return idle;
}

/* Waits, with no bound (a hang is the failure), until the object heap's
 * scavenger sleeps: it does once neither heap has pages to take. */
static void wait_scav_idle(void)
{
	while (!scav_idle(&heap)) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

/* spanheap_dump details the metadata heap as the object heap: its
 * scavenger's line, with the runs and pages in *ms. Until a review the
 * dump gave it one line of pages, and its scavenger's work went untold. */
static void expect_dump_tells(const struct mheap_stats *ms)
{
	static char log[16384];
	sh_dump_log(&sh, log, sizeof(log));
	char want[96];
	snprintf(want, sizeof(want),
	         "\nmheap meta: scavenger: %lu runs, %lu "
	         "pages,",
	         ms->n.bg_runs, ms->n.bg_pages);
	if (!strstr(log, want))
		ktest_fail_at(__FILE__, __LINE__, "no line '%s' in:\n%s",
		              want + 1, log);
	KEXPECT(strstr(log, "\nmheap: scavenger: ") != NULL);
}

/* Free backed metadata pages over the goal are given back by the object
 * heap's scavenger thread, with no release-all: before the fix it went
 * to sleep with all FREED pages still backed. */
KTEST(spanheap_meta_scav, free_metadata_pages_are_scavenged)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	meta_free_backed();
	struct mheap_stats ms;
	mheap_stats(&sh.meta, &ms);
	KASSERT(ms.free_backed_pages >= FREED &&
	        ms.free_backed_pages > ms.goal_pages);
	KASSERT(mheap_scavenger_start(&heap));
	wait_scav_idle();
	mheap_scavenger_stop(&heap);
	mheap_stats(&sh.meta, &ms);
	ktest_diag("metadata heap: %zu free backed (goal %zu), %lu pages in "
	           "%lu background runs",
	           ms.free_backed_pages, ms.goal_pages, ms.n.bg_pages,
	           ms.n.bg_runs);
	KEXPECT(ms.free_backed_pages <= ms.goal_pages);
	KEXPECT(ms.n.bg_pages >= FREED - ms.goal_pages);
	KEXPECT_EQ(ms.n.release_pages, 0);
	KEXPECT_EQ(ms.n.sync_pages, 0);
	SH_CHECK(&sh, "after the metadata heap was scavenged");
	expect_dump_tells(&ms);
	sh_heap_release(&heap, &sh);
}

/* A large free of metadata over the goal wakes the thread that serves
 * the metadata heap, the object heap's: before the fix it woke the
 * metadata heap's own event, which no thread waits on. No thread here:
 * the idle flag is set by hand, as bg_idle would. */
KTEST(spanheap_meta_scav, a_large_metadata_free_wakes_the_object_heaps_thread)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = mheap_alloc_pages(&sh.meta, FREED, 0);
	KASSERT(p);
	memset(p, 0x5a, (size_t)FREED * MM_PAGE_SIZE);
	unsigned long irq = mm_lock_acquire(&sh.meta.lock);
	sh.meta.scav.idle = true;
	mm_lock_release(&sh.meta.lock, irq);
	uint64_t woken = mm_event_prepare(&heap.scav.wake);
	mheap_free_pages(&sh.meta, p, FREED);
	KEXPECT(!sh.meta.scav.idle);
	KEXPECT(mm_event_prepare(&heap.scav.wake) != woken);
	sh_heap_release(&heap, &sh);
}

/* An atomic metadata allocation that leaves the metadata heap's free
 * pages below its reserve asks the object heap's thread, which grows it
 * back: before the fix the request woke no thread, and the reserve
 * stayed short until a thread's metadata allocation. */
KTEST(spanheap_meta_scav, a_metadata_refill_request_is_served)
{
	enum { MAX = 64, EACH = 32 };
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh.meta.cfg.reserve_pages > 0);
	uint64_t woken = mm_event_prepare(&heap.scav.wake);
	void *p[MAX];
	size_t n = 0;
	while (n < MAX && !sh.meta.scav.refill) {
		p[n] = mheap_alloc_pages(&sh.meta, EACH, MHEAP_ATOMIC);
		KASSERT(p[n]);
		n++;
	}
	KASSERT(sh.meta.scav.refill);
	KEXPECT(mm_event_prepare(&heap.scav.wake) != woken);
	struct mheap_stats ms;
	mheap_stats(&sh.meta, &ms);
	uint64_t refills = ms.n.refills;
	KASSERT(mheap_scavenger_start(&heap));
	wait_scav_idle();
	mheap_scavenger_stop(&heap);
	mheap_stats(&sh.meta, &ms);
	KEXPECT(!sh.meta.scav.refill);
	KEXPECT_EQ(ms.n.refills, refills + 1);
	KEXPECT(ms.free_backed_pages + ms.free_scav_pages >=
	        sh.meta.cfg.reserve_pages);
	for (size_t i = 0; i < n; i++)
		mheap_free_pages(&sh.meta, p[i], EACH);
	sh_heap_release(&heap, &sh);
}

/* spanheap_init links h's scavenger to the metadata heap (scav_also,
 * which the thread reads with no lock, set-up being before it starts),
 * and a failed try unlinks it before its pages go back: a thread already
 * running would race with both, and serve a heap as it is released and
 * zeroed. So a page heap whose scavenger runs is refused, saying so, and
 * taken once the thread is stopped. Until a review it was taken: the
 * thread then read scav_also as the set-up wrote it (ThreadSanitizer
 * reported the race on the object heap's scav_also). */
KTEST(spanheap_meta_scav, init_refuses_a_page_heap_whose_scavenger_runs)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	KASSERT(mheap_init(&heap, &hc));
	KASSERT(mheap_scavenger_start(&heap));
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	mm_port_set_quiet(true);
	bool up = spanheap_init(&sh, &heap, &sc);
	mm_port_set_quiet(false);
	KEXPECT(!up);
	KEXPECT(strstr(mm_port_last_log(), "scavenger thread runs") != NULL);
	KEXPECT(heap.scav_also == NULL);
	mheap_scavenger_stop(&heap);
	if (!up)
		KEXPECT(spanheap_init(&sh, &heap, &sc));
	KEXPECT(heap.scav_also == &sh.meta);
	sh_heap_release(&heap, &sh);
}

/* The metadata heap has no thread of its own: the object heap's serves it,
 * and its frees wake that one (mheap_scav_wake_of). A thread started for
 * it would be woken by none of them and would race with the one serving
 * it for the same pages, so its start is refused, saying why. Until a
 * review it started. */
KTEST(spanheap_meta_scav, the_metadata_heaps_own_scavenger_is_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	bool started = mheap_scavenger_start(&sh.meta);
	mm_port_set_quiet(false);
	KEXPECT(!started);
	KEXPECT(strstr(mm_port_last_log(), "served by another heap's") != NULL);
	KEXPECT(sh.meta.scav.thread == NULL);
	mheap_scavenger_stop(&sh.meta); /* started or not: none left */
	sh_heap_release(&heap, &sh);
}

/* A span heap over a page heap whose mheap_init failed is refused, saying
 * so. Since spanheap_init grows the page heap to its reserve first, its
 * first step took the unmade heap's lock and said "no memory to grow the
 * page heap" (until a review). */
KTEST(spanheap_meta_scav, init_over_a_page_heap_not_set_up_says_so)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = 12345; /* not a chunk multiple: refused */
	mm_port_set_quiet(true);
	KASSERT(!mheap_init(&heap, &hc));
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	bool up = spanheap_init(&sh, &heap, &sc);
	mm_port_set_quiet(false);
	KEXPECT(!up);
	KEXPECT(strstr(mm_port_last_log(), "not set up") != NULL);
	if (sh.meta.arena_pages)
		sh_heap_release(&heap, &sh);
	memset(&sh, 0, sizeof(sh));
}

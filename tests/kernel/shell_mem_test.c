/*
 * The shell's scavenge and release against the frame pool: the KiB
 * scavenge reports are its pages', and the free frames it and release
 * report moved by the pages they gave back; and sweep's report against
 * the span heap's statistics around it.
 */
#include "kernel/frames.h"
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"

#if KTEST_HOOKS
/* Moves *p past the next occurrence of word; false if there is none. */
static bool skip_past(const char **p, const char *word)
{
	const char *at = strstr(*p, word);
	if (at == NULL)
		return false;
	*p = at + strlen(word);
	return true;
}

/* "scavenge: P pages (K KiB) scavenged in U us; free backed A -> B
 * pages; frames free C -> D": K is 4 P, and D is C + P (each page
 * scavenged gives its frame back). Tried a few times, in case another
 * thread took or gave frames meanwhile; a run of pages is freed before
 * each, so that there is something to scavenge. */
KTEST(shell_mem, scavenge_reports_its_pages_in_kib_and_frames)
{
	if (kheap.cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE)
		KTEST_SKIP("mm.debug_pagealloc: a free gives its pages back "
		           "itself, none is left to scavenge");
	bool same = false;
	uint64_t pages = 0, kib = 0, c = 0, d = 0;
	for (int tries = 0; tries < 5 && !same; tries++) {
		void *run = mheap_alloc_pages(&kheap, 64, 0);
		KASSERT(run != NULL);
		mheap_free_pages(&kheap, run, 64);
		capture_start();
		KEXPECT_EQ(shell_run_line("scavenge"), SHELL_OK);
		capture_stop();
		const char *p = seen;
		KASSERT(skip_past(&p, "scavenge: "));
		pages = number_at(&p);
		KASSERT(skip_past(&p, "("));
		kib = number_at(&p);
		KASSERT(skip_past(&p, "frames free "));
		c = number_at(&p);
		KASSERT(skip_past(&p, "-> "));
		d = number_at(&p);
		KEXPECT_EQ(kib, pages * 4);
		same = pages > 0 && d == c + pages;
	}
	if (!same)
		ktest_diag("scavenged %llu pages, frames free %llu -> %llu",
		           (unsigned long long)pages, (unsigned long long)c,
		           (unsigned long long)d);
	KEXPECT(same);
}

/* "release: P pages scavenged; N frames came back; frames free F of
 * M": N is F less the frames free before it, and M the pool's. */
KTEST(shell_mem, release_reports_the_frames_that_came_back)
{
	bool same = false;
	uint64_t before = 0, came = 0, nfree = 0, managed = 0;
	for (int tries = 0; tries < 5 && !same; tries++) {
		void *run = mheap_alloc_pages(&kheap, 64, 0);
		KASSERT(run != NULL);
		mheap_free_pages(&kheap, run, 64);
		before = frames_free_count();
		capture_start();
		KEXPECT_EQ(shell_run_line("release"), SHELL_OK);
		capture_stop();
		const char *p = seen;
		KASSERT(skip_past(&p, "pages scavenged; "));
		came = number_at(&p);
		KASSERT(skip_past(&p, "frames free "));
		nfree = number_at(&p);
		KASSERT(skip_past(&p, " of "));
		managed = number_at(&p);
		KEXPECT_EQ(managed, frames_managed_count());
		same = came > 0 && nfree == before + came;
	}
	if (!same)
		ktest_diag(
		        "%llu frames free before, %llu came back, %llu after",
		        (unsigned long long)before, (unsigned long long)came,
		        (unsigned long long)nfree);
	KEXPECT(same);
}
/* Static: too big for a stack, and a kmalloc would count in them. */
static struct spanheap_stats before_st, after_st;
static void *objs[512];

/* The numbers of a sweep line, in its order (X, Y, A, B, C below); false
 * if one is missing. */
static bool sweep_line_numbers(const char *p, uint64_t v[5])
{
	static const char *const before[5] = {"given back (", "was ",
	                                      "sweepgen ", "-> ", ", "};
	for (int i = 0; i < 5; i++) {
		if (!skip_past(&p, before[i]))
			return false;
		v[i] = number_at(&p);
	}
	return true;
}

/* "sweep: ... (X pages now in spans, was Y); sweepgen A -> B, C cycles
 * in all": Y and A from before the cycle, X, B and C from after it, B
 * one cycle (2) past A. Spans emptied just before (objects freed, every
 * cache flushed) make X and Y differ. The sweeper thread is stopped
 * meanwhile: the frees' 1.5 MiB pending woke it, and under load at -smp 8
 * it swept those spans before the command did, in all 5 tries ("sweep
 * said 12 pages in spans, was 12"). Tried a few times, in case another
 * thread allocated meanwhile. */
KTEST(shell_mem, sweep_reports_the_cycle_it_ran)
{
	bool same = false;
	uint64_t x = 0, y = 0, a = 0, b = 0, c = 0;
	bool parsed = true;
	spanheap_sweeper_stop(&kspanheap);
	for (int tries = 0; tries < 5 && !same; tries++) {
		for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
			objs[i] = kmalloc(3000, 0);
		for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
			kfree(objs[i]);
		heap_flush_caches();
		spanheap_stats(&kspanheap, &before_st);
		capture_start();
		KEXPECT_EQ(shell_run_line("sweep"), SHELL_OK);
		capture_stop();
		spanheap_stats(&kspanheap, &after_st);
		uint64_t v[5];
		parsed = sweep_line_numbers(seen, v);
		if (!parsed)
			break;
		x = v[0], y = v[1], a = v[2], b = v[3], c = v[4];
		same = x != y && y == before_st.bytes_spans / MM_PAGE_SIZE &&
		       x == after_st.bytes_spans / MM_PAGE_SIZE &&
		       a == before_st.sweepgen && b == after_st.sweepgen &&
		       b == a + 2 && c == after_st.n.cycles;
	}
	KASSERT(spanheap_sweeper_start(&kspanheap));
	KEXPECT(parsed);
	if (!same)
		ktest_diag("sweep said %llu pages in spans, was %llu; sweepgen "
		           "%llu -> %llu, %llu cycles",
		           (unsigned long long)x, (unsigned long long)y,
		           (unsigned long long)a, (unsigned long long)b,
		           (unsigned long long)c);
	KEXPECT(same);
}
#endif

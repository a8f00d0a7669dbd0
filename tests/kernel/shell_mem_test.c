/*
 * The shell's scavenge and release against the frame pool: the KiB
 * scavenge reports are its pages', and the free frames it and release
 * report moved by the pages they gave back; scavenge covers the span
 * heap's metadata heap too, and release, meminfo and slabinfo print its
 * lines; sweep's report against
 * the span heap's statistics around it; and objwho's records of an
 * object's allocation and free (poison mode), or its refusal.
 */
#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/shrinker.h"
#include "kernel/ktest.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/heap_util.h"

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

/*
 * The kernel heap's background threads are stopped while a test compares
 * the frame pool across a command. A batch the scavenger took before the
 * first count and gave back after it (its frames are freed only after
 * the other CPUs' flush, and a vCPU preempted there keeps them out for
 * many ms) moved the pool by pages the command did not scavenge, or
 * before the command looked; the test's own free of 64 pages wakes it
 * when the heap is near its goal. Retrying did not get round it: with the
 * scavenger kept busy by a burst of frees, all five tries failed. The
 * sweeper is stopped too: with mm.debug_pagealloc a span it frees gives
 * its frames back at once. Both start again (on the CPUs with the fewest
 * threads) before the verdict, whatever the command did
 * (heap_threads_stop and _start, heap_util.h).
 */

/* Frees a run of backed pages, so that there is something to scavenge:
 * with the scavenger stopped it stays backed until the command. */
static void free_backed_run(void)
{
	void *run = mheap_alloc_pages(&kheap, 64, 0);
	KEXPECT(run != NULL);
	if (run)
		mheap_free_pages(&kheap, run, 64);
}

/* Runs cmd at the shell, its output captured, with the heap's threads
 * stopped and a backed run freed just before; returns the frames free
 * just before the command. */
static uint64_t run_stopped(const char *cmd)
{
	heap_threads_stop();
	free_backed_run();
	uint64_t nfree = frames_free_count();
	capture_start();
	KEXPECT_EQ(shell_run_line(cmd), SHELL_OK);
	capture_stop();
	KEXPECT(heap_threads_start());
	return nfree;
}

/* The numbers of a line of the captured text, in order, each after the
 * word before it; false if one is missing. */
static bool line_numbers(const char *p, const char *const *before, uint64_t *v,
                         int n)
{
	for (int i = 0; i < n; i++) {
		if (!skip_past(&p, before[i]))
			return false;
		v[i] = number_at(&p);
	}
	return true;
}

/* The numbers of the captured line "scavenge: P pages (K KiB) scavenged
 * in U us; free backed A -> B pages; frames free C -> D" into v: P, K, C,
 * D; false if one is missing. */
static bool scavenge_numbers(uint64_t v[4])
{
	static const char *const before[4] = {"scavenge: ", "(", "frames free ",
	                                      "-> "};
	return line_numbers(seen, before, v, 4);
}

/* scavenge's line: K is 4 P, and D is C + P (each page scavenged gives
 * its frame back), P at least the run freed before. */
KTEST(shell_mem, scavenge_reports_its_pages_in_kib_and_frames)
{
	HEAP_SKIP_IF_FREES_SCAVENGE();
	uint64_t v[4] = {0}; /* P, K, C, D */
	run_stopped("scavenge");
	KASSERT(scavenge_numbers(v));
	ktest_diag("scavenged %llu pages, frames free %llu -> %llu",
	           (unsigned long long)v[0], (unsigned long long)v[2],
	           (unsigned long long)v[3]);
	KEXPECT(v[0] >= 64);
	KEXPECT_EQ(v[1], v[0] * 4);
	KEXPECT_EQ(v[3], v[2] + v[0]);
}

/* `scavenge` gives back the span heap's metadata heap's free backed
 * pages too (freed side tables, replaced arrays): until a review it
 * scavenged kheap's alone, and the 64 pages freed here stayed backed. */
KTEST(shell_mem, scavenge_covers_the_metadata_heap)
{
	HEAP_SKIP_IF_FREES_SCAVENGE();
	uint64_t v[4] = {0}; /* P, K, C, D */
	heap_threads_stop();
	void *run = mheap_alloc_pages(&kspanheap.meta, 64, 0);
	KEXPECT(run != NULL);
	if (run)
		mheap_free_pages(&kspanheap.meta, run, 64);
	capture_start();
	KEXPECT_EQ(shell_run_line("scavenge"), SHELL_OK);
	capture_stop();
	struct mheap_stats m;
	mheap_stats(&kspanheap.meta, &m);
	KEXPECT(heap_threads_start());
	KASSERT(scavenge_numbers(v));
	ktest_diag("scavenged %llu pages; metadata heap %zu free backed after",
	           (unsigned long long)v[0], m.free_backed_pages);
	KEXPECT(v[0] >= 64);
	KEXPECT_EQ(m.free_backed_pages, 0);
	KEXPECT_EQ(v[3], v[2] + v[0]);
}

/* "release: P pages scavenged; N frames came back; frames free F of
 * M": N is F less the frames free before it, and M the pool's. */
KTEST(shell_mem, release_reports_the_frames_that_came_back)
{
	static const char *const before[3] = {"pages scavenged; ",
	                                      "frames free ", " of "};
	uint64_t v[3] = {0}; /* N, F, M */
	uint64_t nfree = run_stopped("release");
	KASSERT(line_numbers(seen, before, v, 3));
	ktest_diag("%llu frames free before, %llu came back, %llu after",
	           (unsigned long long)nfree, (unsigned long long)v[0],
	           (unsigned long long)v[1]);
	KEXPECT(v[0] > 0);
	KEXPECT_EQ(v[1], nfree + v[0]);
	KEXPECT_EQ(v[2], frames_managed_count());
	/* The span heap's metadata heap has its line, its pages in use the
	 * span structs at least (a mutation audit found the line unpinned,
	 * and meminfo's and slabinfo's below). */
	static const char *const meta[1] = {"release: metadata heap holds "};
	uint64_t in_use = 0;
	KEXPECT(line_numbers(seen, meta, &in_use, 1) && in_use > 0);
}

/* meminfo and slabinfo show the span heap's metadata heap: its pages and
 * its arena (mm/spanheap_meta.c). */
KTEST(shell_mem, meminfo_and_slabinfo_show_the_metadata_heap)
{
	static const char *const cmds[2] = {"meminfo", "slabinfo"};
	for (unsigned i = 0; i < 2; i++) {
		KEXPECT_EQ(capture_run_line(cmds[i]), SHELL_OK);
		KEXPECT(seen_has("metadata heap: "));
		KEXPECT(seen_has(" MiB arena; "));
	}
}

/* meminfo tells the metadata heap's background scavenging, which the
 * page heap's thread does (mm/mheap_scav.c, "served"): its runs and
 * pages, at least those read before the command. Until a review the
 * "scavenger:" line counted that work's CPU and the page heap's pages
 * alone, and no line told the metadata heap's. */
KTEST(shell_mem, meminfo_tells_the_metadata_heaps_scavenging)
{
	HEAP_SKIP_IF_FREES_SCAVENGE();
	struct mheap_stats m0, m;
	KASSERT(heap_meta_free_until_bg_scavenge(256, &m0, &m));
	KEXPECT_EQ(capture_run_line("meminfo"), SHELL_OK);
	static const char *const before[2] = {"metadata heap: scavenger: ",
	                                      "runs, "};
	uint64_t v[2] = {0}; /* runs, pages */
	KEXPECT(line_numbers(seen, before, v, 2));
	KEXPECT(v[0] >= m.n.bg_runs && v[0] > 0);
	KEXPECT(v[1] >= m.n.bg_pages && v[1] > 0);
}

static size_t three(struct shrinker *s)
{
	return 3;
}

static size_t none_freed(struct shrinker *s, size_t nr)
{
	return 0;
}

/* meminfo lists each registered shrinker with the objects it could free
 * now, and the registry's totals (kernel/shrinker.h). */
KTEST(shell_mem, meminfo_lists_the_shrinkers)
{
	static struct shrinker s = {.name = "shell_test_shrinker",
	                            .count = three,
	                            .scan = none_freed};
	shrinker_register(&s);
	KEXPECT_EQ(capture_run_line("meminfo"), SHELL_OK);
	shrinker_unregister(&s);
	KEXPECT(seen_has("shrinker shell_test_shrinker: 3 objects now, "));
	KEXPECT(seen_has("shrinkers: "));
	KEXPECT(seen_has(" registered; "));
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
	return line_numbers(p, before, v, 5);
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
/* Out of line, so that objwho must name it. */
__attribute__((noinline)) static void *objwho_alloc_here(void)
{
	void *p = kmalloc(96, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

KTEST(shell_mem, objwho_names_who_allocated_and_freed)
{
	char line[64];
	void *p = objwho_alloc_here();
	KASSERT(p != NULL);
	ksnprintf(line, sizeof(line), "objwho %p", p);
	enum shell_status st = capture_run_line(line);
	if (!kspanheap.track) {
		KEXPECT_EQ(st, SHELL_FAILED);
		KEXPECT(seen_has("the heap keeps none (boot with "
		                 "mm.debug_poison)"));
		kfree(p);
		return;
	}
	KEXPECT_EQ(st, SHELL_OK);
	KEXPECT(seen_has("last allocated on CPU"));
	KEXPECT(seen_has(" objwho_alloc_here+0x"));
	KEXPECT(seen_has("never freed since its span was made") ||
	        seen_has("last freed on CPU")); /* its slot's last object */
	kfree(p);
	KEXPECT_EQ(capture_run_line(line), SHELL_OK);
	KEXPECT(seen_has("last freed on CPU"));
	/* kfree is inline: the test's own function freed it. */
	KEXPECT(seen_has(" ktest_fn_shell_mem_objwho_names_who_allocated_and_"
	                 "freed+0x"));
	/* Not an object of the heap; not an address at all. */
	KEXPECT_EQ(capture_run_line("objwho 0x1000"), SHELL_FAILED);
	KEXPECT(seen_has("objwho: no records for 0x1000: not in an object "
	                 "the heap keeps records of"));
}

KTEST(shell_mem, objwho_refuses_what_is_no_address)
{
	KEXPECT_EQ(capture_run_line("objwho"), SHELL_USAGE);
	KEXPECT(seen_has("usage: objwho ADDR"));
	KEXPECT_EQ(capture_run_line("objwho 1234"), SHELL_USAGE);
	KEXPECT(seen_has("objwho: ADDR '1234' is not 0x and 1 to 16 hex "
	                 "digits"));
	KEXPECT_EQ(capture_run_line("objwho 0x12345678123456789"), SHELL_USAGE);
	KEXPECT_EQ(capture_run_line("objwho 0xfg"), SHELL_USAGE);
	KEXPECT_EQ(capture_run_line("objwho 0x"), SHELL_USAGE);
}

/* 20 objects from one stack, in a class the kernel's own code seldom
 * uses (2900 bytes), so that the shell's 32 stacks hold theirs. */
__attribute__((noinline)) static void *traces_alloc_here(void)
{
	void *p = kmalloc(2900, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

KTEST(shell_mem, alloctraces_counts_live_objects_by_stack)
{
	static void *p[20];
	/* One call site, one stack: unrolled (as clang -O2 unrolls it),
	 * each call would be a stack of its own. */
#pragma GCC unroll 1
	for (int i = 0; i < 20; i++)
		KASSERT((p[i] = traces_alloc_here()) != NULL);
	struct spanheap_where w;
	KASSERT(spanheap_where(&kspanheap, p[0], &w));
	char line[64];
	ksnprintf(line, sizeof(line), "alloctraces %u", w.sizeclass);
	enum shell_status st = capture_run_line(line);
	if (!kspanheap.track) {
		KEXPECT_EQ(st, SHELL_FAILED);
		KEXPECT(seen_has("alloctraces: the heap keeps no records (boot "
		                 "with mm.debug_poison)"));
	} else {
		KEXPECT_EQ(st, SHELL_OK);
		KEXPECT(seen_has("live objects by the stack that allocated "
		                 "them, most first:"));
		KEXPECT(seen_has("20 objects, 58000 bytes, the oldest "));
		KEXPECT(seen_has(" traces_alloc_here+0x"));
	}
	for (int i = 0; i < 20; i++)
		kfree(p[i]);
	if (kspanheap.track) {
		KEXPECT_EQ(capture_run_line(line), SHELL_OK);
		KEXPECT(!strstr(seen, "traces_alloc_here"));
	}
	KEXPECT_EQ(capture_run_line("alloctraces 0"), SHELL_USAGE);
	KEXPECT(seen_has("alloctraces: CLASS '0' is not a number in [1, "));
	KEXPECT_EQ(capture_run_line("alloctraces 1 2"), SHELL_USAGE);
	KEXPECT(seen_has("usage: alloctraces [CLASS|CACHE]"));
	KEXPECT_EQ(capture_run_line("alloctraces nosuch"), SHELL_USAGE);
	KEXPECT(seen_has("alloctraces: 'nosuch' is neither a size class nor "
	                 "a named cache"));
}

/* alloctraces reads the span heap's side tables under the thread's fault
 * hook: one unmapped while it is read (made to happen here by clearing the
 * PTE of a live poison span's table) ends the command with a line, and
 * leaves no hold on the all-spans array behind (its count of references
 * is what it was). */
/* Runs line with the side table of p's span unmapped, as a span freed
 * meanwhile leaves it under mm.debug_pagealloc: the command (who) must
 * fail saying so, not fault, and give the spans' snapshot back; then it
 * works again. */
static void run_with_table_gone(void *p, const char *line, const char *who)
{
	struct mspan *s = mheap_span_lookup(&kheap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s) && s->redzone != NULL);
	uintptr_t table = (uintptr_t)s->redzone;
	size_t refs = atomic_load(&kspanheap.spans->refs);
	paddr_t pa;
	unsigned flags;
	KASSERT(vm_translate(table, &pa, &flags));
	KASSERT_EQ(vm_pte_clear(table, &pa), 0);
	enum shell_status st = capture_run_line(line);
	KASSERT_EQ(vm_pte_set(table, pa, flags), 0);
	char want[64];
	ksnprintf(want, sizeof(want), "%s: a fault at ", who);
	KEXPECT_EQ(st, SHELL_FAILED);
	KEXPECT(seen_has(want));
	KEXPECT(seen_has("while reading the heap (a span freed meanwhile); "
	                 "try again"));
	KEXPECT_EQ(atomic_load(&kspanheap.spans->refs), refs);
	KEXPECT_EQ(capture_run_line(line), SHELL_OK);
}

/* alloctraces and objwho read spans' side tables without a lock: a
 * table given back meanwhile faults under the kernel's fault hook, not
 * as a panic (objwho had no hook: a review's test panicked at once,
 * objwho beside sweeps under mm.debug_poison and mm.debug_pagealloc). */
KTEST(shell_mem, readers_survive_a_table_gone_under_them)
{
	if (!kspanheap.track)
		KTEST_SKIP("needs mm.debug_poison's records");
	/* A span's object, not the guarded pool's (mm.guard): its table. */
	static struct guard_aside aside;
	void *p = traces_alloc_here();
	while (p && spanheap_guard_owns(&kspanheap.guard, p) &&
	       aside.n < SPANHEAP_GUARD_MAX + 1) {
		aside.p[aside.n++] = p;
		p = traces_alloc_here();
	}
	kmalloc_plain_done(&aside);
	KASSERT(p != NULL);
	run_with_table_gone(p, "alloctraces", "alloctraces");
	char line[64];
	ksnprintf(line, sizeof(line), "objwho %p", p);
	run_with_table_gone(p, line, "objwho");
	kfree(p);
}

/* addrinfo: a kmalloc object's place and state, before and after its
 * free (kernel/addrinfo.c has the regions' own tests), and what is no
 * address refused as objwho refuses it. */
KTEST(shell_mem, addrinfo_says_what_an_address_is)
{
	char line[64], want[96];
	static struct guard_aside aside; /* mm.guard's: kmalloc_guard_test */
	char *p = kmalloc_plain(200, 0, &aside);
	kmalloc_plain_done(&aside);
	KASSERT(p != NULL);
	ksnprintf(line, sizeof(line), "addrinfo %p", p + 3);
	KEXPECT_EQ(capture_run_line(line), SHELL_OK);
	ksnprintf(want, sizeof(want), "address %p: in the heap arena", p + 3);
	KEXPECT(seen_has(want));
	KEXPECT(seen_has("3 bytes into object "));
	KEXPECT(seen_has(" (allocated) of span "));
	kfree(p);
	KEXPECT_EQ(capture_run_line(line), SHELL_OK);
	KEXPECT(seen_has(" (free) of span "));
	KEXPECT_EQ(capture_run_line("addrinfo 0x18"), SHELL_OK);
	KEXPECT(seen_has("address 0x18: a NULL pointer dereference"));
	KEXPECT_EQ(capture_run_line("addrinfo"), SHELL_USAGE);
	KEXPECT(seen_has("usage: addrinfo ADDR"));
	KEXPECT_EQ(capture_run_line("addrinfo 42"), SHELL_USAGE);
	KEXPECT(seen_has("addrinfo: ADDR '42' is not 0x and 1 to 16 hex "
	                 "digits"));
}

/* guarded lists the pool's live objects (mm.guard): one of its own, by
 * its slot, with its size and class, and not after its free; without a
 * pool, it says so. */
KTEST(shell_mem, guarded_lists_the_pools_live_objects)
{
	if (!kspanheap.guard.base) {
		KEXPECT_EQ(capture_run_line("guarded"), SHELL_FAILED);
		KEXPECT(seen_has("guarded: the heap has no guarded pool (boot "
		                 "with mm.guard)"));
		return;
	}
	uint8_t *p =
	        spanheap_guard_alloc(&kspanheap, 77, 16, 0, sizeclass_of(77));
	if (!p)
		KTEST_SKIP("the guarded pool is full");
	char want[96];
	ksnprintf(want, sizeof(want), ": %p, 77 bytes asked, size class %u, ",
	          (void *)p, sizeclass_of(77));
	KEXPECT_EQ(capture_run_line("guarded"), SHELL_OK);
	char head[48];
	ksnprintf(head, sizeof(head), "guarded pool: %u slots at ",
	          kspanheap.guard.nslots);
	KEXPECT(seen_has(head));
	KEXPECT(seen_has(want));
	kfree(p);
	KEXPECT_EQ(capture_run_line("guarded"), SHELL_OK);
	KEXPECT(!seen_has(want));
	KEXPECT_EQ(capture_run_line("guarded 1"), SHELL_USAGE);
}
#endif

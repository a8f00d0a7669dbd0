/*
 * Frame failure injection (frames_fail_arm, kernel/frames.h) on the real
 * kernel: FAULT-POINT SWEEPS over every frame-allocating path reachable
 * at run time. For k = 1, 2, ...: the heap settled and its threads
 * stopped, the pool counted, "fail exactly the k-th frame allocation from
 * now" armed (interval k, probability 10000, times 1), the operation run
 * and undone, disarmed; then the operation said so if it failed, the pool
 * is back where it was but for the frames kept by design, and the frame
 * pool's and the heap's checkers pass. The sweep ends at the first k that
 * injects nothing (the operation took fewer than k frames), and must end
 * within SWEEP_MAX steps.
 *
 * Kept by design, and counted exactly by their own counters:
 *   - page-table pages (paging_table_pages): never freed (paging.c), so
 *     a table made before the failing step stays for the next map;
 *   - the heap's metadata mapped by mm_port_map (heap_meta_frames):
 *     palloc's bitmaps and the span table of a chunk being grown, mapped
 *     for good, all or nothing per call;
 *   - the span heap's own pages (span_own_pages): span structs, which
 *     never go back (not span_meta_pages, whose mm.kasan shadow
 *     heap_meta_frames counts already).
 * Nothing else: a failed operation's stack frames, thread struct and
 * heap pages go back, and heap_settle scavenges every free backed page,
 * so that what the heap grew into holds no frame once free. The check is
 * exact: free frames after + kept frames == free frames before.
 *
 * A step ends one of three ways. Failed: the operation reports it (NULL,
 * THREAD_NONE). Absorbed: the span heap asked the page heap again and
 * the second ask got its frames (times 1: only one fails), so the
 * operation succeeds; that is by design (a small object's refill that
 * gets no span falls back to alloc_any, which asks for one again:
 * spanheap.c alloc_fast_miss, thread_create's struct; a krealloc that
 * cannot grow a large object in place moves it), and is checked: such a
 * step must have made more frame calls than the clean run. None
 * injected: the sweep is over.
 *
 * Each step starts from the same state, so that step k fails the k-th
 * frame call of the same sequence: the heap settled (and, for the
 * growth, filled again, so that every step grows a fresh chunk); no
 * warm-up is needed, as the kept frames are counted, not avoided.
 *
 * Measured (-smp 4 and 1): thread_create 16 points (8 absorbed: the
 * struct's span; 8 failed: the stack's pages), kmalloc 16 failed,
 * kmalloc growing the heap 18 failed (2 frames of the growth, then the
 * 16 of the run), krealloc 16 absorbed.
 *
 * Not swept: thread_adopt_current and thread_alloc_idle, the only
 * FROM_FRAMES thread structs (kernel/thread.c), run at boot and AP start
 * alone, and panic without a frame by design (sched.c: a CPU without its
 * idle thread cannot run); the boot's page tables (main.c table_frames
 * at paging_init) likewise. Their later use, a walk that makes a table,
 * is swept through the stack and the heap growth below.
 */
#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "mm/failpoint.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/heap_util.h"

#if KTEST_HOOKS

/* A sweep longer than this is a path that never stops taking frames. */
#define SWEEP_MAX 400

/* An operation: true if it succeeded, and then undone by itself (what it
 * made is freed or joined); false if it failed, having undone itself. */
struct sweep_op {
	const char *name;
	void (*setup)(void); /* before each step's count, unarmed; or NULL */
	bool (*run)(void);
	void (*teardown)(void); /* after the sweep, unarmed; or NULL */
};

/* How the steps of a sweep ended. */
struct sweep_result {
	unsigned failed;   /* the operation reported the failure */
	unsigned absorbed; /* it asked again and succeeded */
	/* Frame calls: the fewest of an absorbing step; the last step's */
	uint64_t absorbed_calls, clean_calls;
	bool ended; /* a step injected nothing */
};

/* Frames kept by design (see the top): their counters' sum. */
static size_t kept_frames(void)
{
	return paging_table_pages() + heap_meta_frames() + span_own_pages();
}

/* The verdict on one step (see sweep_step), counted into *r. */
static void step_verdict(const struct sweep_op *op, uint32_t k, bool ok,
                         const struct failpoint_counts *n, size_t frames0,
                         size_t frames, size_t kept, struct sweep_result *r)
{
	ktest_diag("%s, frame allocation %u of %llu failing: %s", op->name, k,
	           (unsigned long long)n->calls,
	           n->injected == 0 ? "none injected, done"
	           : ok             ? "absorbed (asked again)"
	                            : "failed");
	if ((n->injected == 0 && !ok) || frames + kept != frames0)
		ktest_fail_at(
		        __FILE__, __LINE__,
		        "%s, frame allocation %u of %llu failing: %s; %llu "
		        "injected; frames free %zu before, %zu after, %zu "
		        "kept by design",
		        op->name, k, (unsigned long long)n->calls,
		        ok ? "succeeded" : "failed",
		        (unsigned long long)n->injected, frames0, frames, kept);
	r->ended = n->injected == 0;
	if (r->ended)
		r->clean_calls = n->calls;
	r->failed += n->injected && !ok;
	if (n->injected && ok && (!r->absorbed || n->calls < r->absorbed_calls))
		r->absorbed_calls = n->calls;
	r->absorbed += n->injected && ok;
}

/* One step of a sweep: fails the k-th frame allocation of op from now;
 * checks the pool and the heap after it, counted into *r. */
static void sweep_step(const struct sweep_op *op, uint32_t k,
                       struct sweep_result *r)
{
	if (op->setup)
		op->setup();
	heap_settle();
	size_t frames0 = frames_free_count(), kept0 = kept_frames();
	struct spanheap_fail_attr a = {.interval = k,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1};
	if (!frames_fail_arm(&a)) {
		ktest_fail_at(__FILE__, __LINE__, "%s: not armed", op->name);
		r->ended = true;
		return;
	}
	bool ok = op->run();
	struct failpoint_counts n;
	frames_fail_get(&a, &n);
	frames_fail_disarm();
	heap_settle();
	size_t frames = frames_free_count(), kept = kept_frames() - kept0;
	frames_check();
	spanheap_check(&kspanheap);
	step_verdict(op, k, ok, &n, frames0, frames, kept, r);
}

/*
 * Sweeps op (see the top) with the heap's threads stopped: the
 * scavenger's unmapping and the sweeper's frees would move the pool
 * between the count and the verdict, and either could take the k-th
 * frame.
 */
static struct sweep_result sweep(const struct sweep_op *op)
{
	heap_threads_stop();
	struct sweep_result r = {0};
	for (uint32_t k = 1; k <= SWEEP_MAX && !r.ended; k++)
		sweep_step(op, k, &r);
	if (op->teardown)
		op->teardown();
	KEXPECT(heap_threads_start());
	ktest_diag("%s: %u frame allocations failed in turn: %u reported, %u "
	           "absorbed by the span heap asking again",
	           op->name, r.failed + r.absorbed, r.failed, r.absorbed);
	KEXPECT(r.ended); /* within SWEEP_MAX */
	/* A success despite a failure must have asked again: more frame
	 * calls than the run that failed nothing. */
	if (r.absorbed && r.absorbed_calls <= r.clean_calls)
		ktest_fail_at(
		        __FILE__, __LINE__,
		        "%s: a step succeeded with a failure injected in "
		        "%llu frame calls, no more than the clean run's %llu",
		        op->name, (unsigned long long)r.absorbed_calls,
		        (unsigned long long)r.clean_calls);
	return r;
}

/* ---- thread_create and join: stack frames, page tables, struct ---- */

static void runs(void *arg)
{
	(void)arg;
}

static bool thread_op(void)
{
	struct thread_handle h =
	        thread_create("frames-inject", runs, NULL, THREAD_ANY_CPU);
	if (!thread_handle_ok(h))
		return false;
	thread_join(h);
	return true;
}

/* thread_create's frames: one per stack page (kstack_alloc, which maps
 * each and undoes the ones before on a failure), the page tables of a
 * stack slot not used before, and, when its size class has no free
 * object, the thread struct's span (mm_port_used). Each failure is
 * THREAD_NONE and gives back every frame. */
KTEST(frames_inject, thread_create_sweep)
{
	static const struct sweep_op op = {"thread_create", NULL, thread_op,
	                                   NULL};
	KEXPECT(sweep(&op).failed >= THREAD_STACK_PAGES);
}

/* ---- A large kmalloc that grows the heap into a new chunk ---- */

/* The runs that hold every free page of the heap's grown chunks, so that
 * the operation must grow it (filled again before each step). */
#define FILL_MAX 2048
static void *fill[FILL_MAX];
static size_t fill_pages[FILL_MAX], nfill;

/* Takes every free page of the grown chunks, largest runs first, without
 * growing (KM_NOGROW's page-heap flag): the heap then has nowhere to
 * put a run but a new chunk. */
static void fill_heap(void)
{
	for (size_t np = PALLOC_CHUNK_PAGES; np >= 1; np /= 2) {
		while (nfill < FILL_MAX) {
			void *p = mheap_alloc_pages(&kheap, np, MHEAP_NO_GROW);
			if (!p)
				break;
			fill[nfill] = p;
			fill_pages[nfill++] = np;
		}
	}
	KASSERT(nfill < FILL_MAX);
}

static void unfill_heap(void)
{
	while (nfill > 0) {
		nfill--;
		mheap_free_pages(&kheap, fill[nfill], fill_pages[nfill]);
	}
}

/* 64 KiB: a span of its own (over 32 KiB), 16 pages. */
#define GROW_BYTES (64u << 10)

static bool grow_op(void)
{
	void *p = kmalloc(GROW_BYTES, 0);
	if (!p)
		return false;
	kfree(p);
	return true;
}

/* The growth (mheap_grow: palloc's metadata and the span table's page,
 * mm_port_map; the chunk's page tables, mm_port_prepare), then the run's
 * 16 frames (mm_port_used, all or nothing), and the span struct's page
 * when the struct pool is out: each failure is NULL from kmalloc, and
 * gives back all but the tables and metadata made before it. */
KTEST(frames_inject, large_kmalloc_growing_the_heap_sweep)
{
	static const struct sweep_op op = {"kmalloc growing the heap",
	                                   fill_heap, grow_op, unfill_heap};
	size_t grown0 = kheap.grown_chunks;
	KEXPECT(sweep(&op).failed >= GROW_BYTES / PAGE_SIZE);
	ktest_diag("the heap grew by %zu chunks", kheap.grown_chunks - grown0);
	KEXPECT(kheap.grown_chunks > grown0);
}

/* The same without a growth: a heap with room maps the run's frames. */
KTEST(frames_inject, large_kmalloc_sweep)
{
	static const struct sweep_op op = {"kmalloc", NULL, grow_op, NULL};
	KEXPECT(sweep(&op).failed >= GROW_BYTES / PAGE_SIZE);
}

/* ---- krealloc growing a large object (in place, or moved) ---- */

/* The object krealloc grows: made unarmed before each step's count (its
 * frames are the baseline's), grown by the step, shrunk back after. */
static unsigned char *held;

static void hold(void)
{
	if (!held)
		held = kmalloc(GROW_BYTES, 0);
	KASSERT(held != NULL);
	held[0] = 0x5a;
	held[GROW_BYTES - 1] = 0xa5;
}

static void unhold(void)
{
	kfree(held);
	held = NULL;
}

/* On failure held must be untouched (heap.h); on success the bytes came
 * along, and the shrink back gives the growth's pages up. */
static bool realloc_op(void)
{
	unsigned char *q = krealloc(held, 2 * GROW_BYTES, 0);
	if (q)
		held = krealloc(q, GROW_BYTES, 0); /* shrinks: no frame */
	KEXPECT(held != NULL && held[0] == 0x5a &&
	        held[GROW_BYTES - 1] == 0xa5);
	return q != NULL;
}

/* The in-place growth's 16 frames (mheap_extend_pages, mm_port_used,
 * all or nothing): each failure gives them back and krealloc moves the
 * object instead (spanheap_realloc: a new run of 32 pages and a copy),
 * which succeeds (times 1), so every step is absorbed, the bytes kept and
 * the pool back. The moved path's own failures are the large kmalloc's,
 * swept above. */
KTEST(frames_inject, krealloc_growing_a_large_object_sweep)
{
	static const struct sweep_op op = {"krealloc", hold, realloc_op,
	                                   unhold};
	KEXPECT(sweep(&op).absorbed >= GROW_BYTES / PAGE_SIZE);
}

/* ---- The shell's mmfail frame ---- */

/* A bad value names its field (the heap's parser) or the frame pool's
 * refusal of a what filter, and arms nothing; a good one arms, shows the
 * counts, and "off" disarms; "mmfail SPEC" is still the heap's. */
KTEST(frames_inject, the_mmfail_frame_command)
{
	/* mm.fail may have armed the heap's at boot: it must be off for the
	 * checks that the frame one is separate from it. */
	spanheap_fail_disarm(&kspanheap);
	struct spanheap_fail_attr a;
	struct failpoint_counts n;
	KEXPECT_EQ(capture_run_line("mmfail frame 1,10001,1"), SHELL_USAGE);
	KEXPECT(strstr(seen, "mmfail frame: probability '10001' is not a "
	                     "number in [0, 10000]") != NULL);
	KEXPECT_EQ(capture_run_line("mmfail frame 1,100"), SHELL_USAGE);
	KEXPECT_EQ(capture_run_line("mmfail frame 1,100,1,small"), SHELL_USAGE);
	KEXPECT(strstr(seen, "frames: failure injection refused") != NULL);
	KEXPECT(strstr(seen, "what is all or absent") != NULL);
	KEXPECT_EQ(capture_run_line("mmfail frame 1,100,1,all+atomic"),
	           SHELL_USAGE);
	KEXPECT_EQ(capture_run_line("mmfail frame 1 2"), SHELL_USAGE);
	KEXPECT(!frames_fail_get(&a, &n));
	/* Armed with nothing asking for frames but the command's own test:
	 * "times 0" injects nothing, so the kernel runs on meanwhile. */
	KEXPECT_EQ(capture_run_line("mmfail frame 3,10000,0,all,7"), SHELL_OK);
	KEXPECT(strstr(seen, "mmfail frame: armed: interval 3, probability "
	                     "10000/10000, failures left 0, seed 7") != NULL);
	KEXPECT(strstr(seen, "eligible calls, 0 failures injected") != NULL);
	KEXPECT(frames_fail_get(&a, &n));
	KEXPECT_EQ(a.interval, 3);
	KEXPECT_EQ(a.times, 0);
	KEXPECT_EQ(a.seed, 7);
	KEXPECT(!spanheap_fail_get(&kspanheap, &a)); /* the heap's is off */
	KEXPECT_EQ(capture_run_line("mmfail frame"), SHELL_OK);
	KEXPECT(strstr(seen, "mmfail frame: armed") != NULL);
	KEXPECT_EQ(capture_run_line("mmfail frame off"), SHELL_OK);
	KEXPECT(strstr(seen, "mmfail frame: off") != NULL);
	KEXPECT(!frames_fail_get(&a, &n));
	KEXPECT_EQ(capture_run_line("mmfail"), SHELL_OK);
	KEXPECT(strstr(seen, "mmfail: off") != NULL);
}

/* The point itself: interval, cap and counters, on frame_alloc and
 * frames_alloc_contig alike (one call each, whatever its size). */
KTEST(frames_inject, every_second_call_fails_up_to_times)
{
	heap_threads_stop();
	struct spanheap_fail_attr a = {.interval = 2,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 2};
	paddr_t got[6];
	KASSERT(frames_fail_arm(&a));
	for (unsigned i = 0; i < 6; i++)
		got[i] = i % 3 == 2 ? frames_alloc_contig(4) : frame_alloc();
	struct failpoint_counts n;
	frames_fail_get(&a, &n);
	frames_fail_disarm();
	KEXPECT(heap_threads_start());
	/* Calls 2 and 4 fail; 6 would, but the two failures are spent. */
	for (unsigned i = 0; i < 6; i++) {
		KEXPECT_EQ(got[i] == 0, i == 1 || i == 3);
		if (got[i] && i % 3 == 2)
			frames_free_contig(got[i], 4);
		else if (got[i])
			frame_free(got[i]);
	}
	KEXPECT_EQ(n.calls, 6);
	KEXPECT_EQ(n.injected, 2);
	KEXPECT_EQ(a.times, 0);
}

/* frames_alloc_contig_within (dma_alloc's) is one eligible call too, as
 * frames.h says; bad arguments are not calls. */
KTEST(frames_inject, a_constrained_run_is_an_eligible_call)
{
	heap_threads_stop();
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1};
	KASSERT(frames_fail_arm(&a));
	bool bad_inj, first_inj, second_inj;
	paddr_t bad = frames_alloc_contig_within(0, 1, UINT64_MAX, &bad_inj);
	paddr_t first =
	        frames_alloc_contig_within(2, 4, UINT64_MAX, &first_inj);
	paddr_t second =
	        frames_alloc_contig_within(2, 4, UINT64_MAX, &second_inj);
	struct failpoint_counts n;
	frames_fail_get(&a, &n);
	frames_fail_disarm();
	KEXPECT(heap_threads_start());
	KEXPECT_EQ(bad, 0);
	KEXPECT(!bad_inj);
	KEXPECT_EQ(first, 0); /* injected */
	KEXPECT(first_inj);
	KEXPECT(second != 0);
	KEXPECT(!second_inj);
	if (second)
		frames_free_contig(second, 2);
	KEXPECT_EQ(n.calls, 2);
	KEXPECT_EQ(n.injected, 1);
}
#endif

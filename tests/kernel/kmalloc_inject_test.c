/*
 * Allocation-failure injection (mm/spanheap_fail.h) on the real kernel:
 * each kernel user of kmalloc, with "fail the next allocation" armed,
 * reports a clean error and leaves the frame pool where it was:
 * thread_create (its struct), mm_port_thread_start (its handle, then its
 * thread's struct), the shell's threads, locks, stress and heapmap
 * stream; stress's workers count exactly the failures injected and the
 * heap verifies after them; KM_ATOMIC calls in a timer interrupt get NULL
 * holding no lock; and the shell's mmfail arms, shows and disarms it, naming a
 * bad field.
 */
#include <stdatomic.h>

#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/heap_util.h"

#if KTEST_HOOKS
/* The frame pool and the span heap's own pages at rest, before a case. */
static size_t frames0, meta0;
static uint64_t injected0;

static uint64_t injected_now(void)
{
	static struct spanheap_stats st; /* too big for a stack */
	spanheap_stats(&kspanheap, &st);
	return st.fail_injected;
}

/* Settles the heap, notes the pool, and arms the failure of the nth
 * eligible kmalloc from now (every CPU's; nothing else allocates while
 * a test runs but the test). */
static void arm_nth(uint32_t nth, unsigned what)
{
	heap_settle();
	frames0 = frames_free_count();
	meta0 = span_meta_pages();
	struct spanheap_fail_attr a = {.interval = nth,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1,
	                               .what = what};
	KEXPECT(spanheap_fail_arm(&kspanheap, &a));
	injected0 = 0;
}

/* Disarms; true if exactly one failure was injected and the pool came
 * back to where it was (allowing for the span heap's own pages, which
 * never go back). */
static bool disarm_and_settled(const char *what)
{
	uint64_t injected = injected_now();
	spanheap_fail_disarm(&kspanheap);
	heap_settle();
	size_t frames = frames_free_count(), meta = span_meta_pages();
	ktest_diag("%s: %llu failure injected; frames free %zu before, %zu "
	           "after; span-heap metadata pages %zu, %zu",
	           what, (unsigned long long)injected, frames0, frames, meta0,
	           meta);
	return injected == injected0 + 1 && frames + (meta - meta0) == frames0;
}

static void never_runs(void *arg)
{
	(void)arg;
}

KTEST(kmalloc_inject, thread_create_fails_cleanly)
{
	arm_nth(1, 0);
	struct thread_handle h =
	        thread_create("inject", never_runs, NULL, THREAD_ANY_CPU);
	KEXPECT(!thread_handle_ok(h));
	KEXPECT(disarm_and_settled("thread_create"));
}

/* Its handle's kmalloc (the first), then its thread's struct (the
 * second): NULL either way, nothing kept. */
KTEST(kmalloc_inject, mm_port_thread_start_fails_cleanly)
{
	for (uint32_t nth = 1; nth <= 2; nth++) {
		arm_nth(nth, 0);
		struct mm_thread *t =
		        mm_port_thread_start("inject", never_runs, NULL);
		KEXPECT(t == NULL);
		if (t)
			mm_port_thread_join(t);
		KEXPECT(disarm_and_settled(nth == 1 ? "the handle"
		                                    : "the thread's struct"));
	}
}

KTEST(kmalloc_inject, shell_commands_that_allocate_fail_cleanly)
{
	static const struct {
		const char *line, *says;
		uint32_t nth;
	} cases[] = {
	        {"threads", "threads: out of memory", 1},
	        {"locks", "locks: out of memory", 1},
	        /* the worker's slots, then its thread's struct */
	        {"stress 1 1", "stress: cannot start 1 worker", 1},
	        {"stress 1 1", "stress: cannot start 1 worker", 2},
	        /* the row, then the streamer's struct */
	        {"heapmap stream 1000", "heapmap: cannot start the stream", 1},
	        {"heapmap stream 1000", "heapmap: cannot start the stream", 2},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		arm_nth(cases[i].nth, 0);
		enum shell_status s = capture_run_line(cases[i].line);
		if (s != SHELL_FAILED || !strstr(seen, cases[i].says))
			ktest_fail_at(
			        __FILE__, __LINE__,
			        "'%s' (allocation %u failing): status %d, "
			        "said: %s",
			        cases[i].line, cases[i].nth, (int)s, seen);
		if (!disarm_and_settled(cases[i].line))
			ktest_fail_at(__FILE__, __LINE__,
			              "'%s' (allocation %u failing): the pool "
			              "did not come back",
			              cases[i].line, cases[i].nth);
	}
}

/* stress with every large kmalloc failing (its start allocates only
 * small objects): its workers' NULLs are exactly the failures injected,
 * and the heap verifies after them. */
KTEST(kmalloc_inject, stress_workers_see_exactly_the_injected_nulls)
{
	heap_settle();
	frames0 = frames_free_count();
	meta0 = span_meta_pages();
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1,
	                               .what = SPANHEAP_FAIL_LARGE};
	/* span_own_pages, not span_meta_pages: heap_meta_frames holds
	 * mm.kasan's shadow, which this test's first stress of a fresh heap
	 * maps (run alone with mm.kasan, counted twice: 306 frames over). */
	size_t own0 = span_own_pages(), hmeta0 = heap_meta_frames(),
	       tables0 = paging_table_pages();
	KASSERT(spanheap_fail_arm(&kspanheap, &a));
	enum shell_status s = capture_run_line("stress 2");
	uint64_t injected = injected_now();
	spanheap_fail_disarm(&kspanheap);
	uint64_t nulls = ~0ull;
	const char *p = strstr(seen, "corrupt objects, ");
	if (p) {
		p += strlen("corrupt objects, ");
		nulls = number_at(&p);
	}
	ktest_diag("stress: %llu failures injected, it saw %llu NULLs",
	           (unsigned long long)injected, (unsigned long long)nulls);
	KEXPECT(strstr(seen, "stress: heap verified") != NULL);
	KEXPECT(strstr(seen, " 0 corrupt objects") != NULL);
	KEXPECT_EQ(nulls, injected);
	KEXPECT_EQ(s, injected ? SHELL_FAILED : SHELL_OK);
	/* The pool, allowing for what a heap grown by the storm holds for
	 * good: its metadata and page tables. */
	heap_settle();
	KEXPECT_EQ(frames_free_count() + (span_own_pages() - own0) +
	                   (heap_meta_frames() - hmeta0) +
	                   (paging_table_pages() - tables0),
	           frames0);
}

/* ---- From a timer interrupt
 * --------------------------------------------------- */

static _Atomic bool irq_claimed, irq_done;
static unsigned irq_cpu;
static void *irq_small, *irq_large, *irq_after;
static int irq_held, irq_depth;

/* Once, on the test's CPU: a small and a large KM_ATOMIC call (both to
 * fail: times 2), then a small one (served: the cap is spent). */
static void inject_tick(void)
{
	if (this_cpu()->id != irq_cpu || atomic_load(&irq_done) ||
	    atomic_exchange(&irq_claimed, true))
		return;
	irq_small = kmalloc(64, KM_ATOMIC);
	irq_large = kmalloc(64 << 10, KM_ATOMIC | KM_ZERO);
	irq_held = this_cpu()->nheld;
	irq_depth = this_cpu()->irq_depth;
	irq_after = kmalloc(64, KM_ATOMIC);
	atomic_store(&irq_done, true);
}

/* KM_ATOMIC calls in a timer interrupt, with only atomic calls eligible:
 * the thread's own kmalloc meanwhile is served; the interrupt's first two
 * get NULL, holding no lock, and its third is served. */
KTEST(kmalloc_inject, atomic_calls_in_an_interrupt_get_null)
{
	heap_settle();
	frames0 = frames_free_count();
	meta0 = span_meta_pages();
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 2,
	                               .what = SPANHEAP_FAIL_SMALL |
	                                       SPANHEAP_FAIL_LARGE |
	                                       SPANHEAP_FAIL_ATOMIC_ONLY};
	KASSERT(spanheap_fail_arm(&kspanheap, &a));
	void *mine = kmalloc(64, 0);
	KEXPECT(mine != NULL);
	irq_cpu = this_cpu()->id;
	irq_small = irq_large = irq_after = NULL;
	irq_held = irq_depth = -1;
	atomic_store(&irq_claimed, false);
	atomic_store(&irq_done, false);
	sched_tick_hook = inject_tick;
	while (!atomic_load(&irq_done))
		thread_sleep_ns(1000000);
	sched_tick_hook = NULL;
	uint64_t injected = injected_now();
	spanheap_fail_disarm(&kspanheap);
	KEXPECT(irq_small == NULL);
	KEXPECT(irq_large == NULL);
	KEXPECT(irq_after != NULL);
	KEXPECT_EQ(irq_held, 0);
	KEXPECT(irq_depth > 0);
	KEXPECT_EQ(injected, 2);
	kfree(mine);
	kfree(irq_after);
	heap_settle();
	KEXPECT_EQ(frames_free_count() + (span_meta_pages() - meta0), frames0);
}

/* mmfail: a bad field is named and arms nothing; a good value arms,
 * shows the counts, and "off" disarms. */
KTEST(kmalloc_inject, the_mmfail_command)
{
	/* mm.fail may have armed it at boot (the harness's
	 * kmalloc_fail_boot): from disarmed, a bad field is seen to arm
	 * nothing. */
	spanheap_fail_disarm(&kspanheap);
	struct spanheap_fail_attr a;
	KEXPECT_EQ(capture_run_line("mmfail 1,10001,1"), SHELL_USAGE);
	KEXPECT(strstr(seen, "probability '10001' is not a number in [0, "
	                     "10000]") != NULL);
	KEXPECT_EQ(capture_run_line("mmfail 1,100,1,tiny"), SHELL_USAGE);
	KEXPECT(strstr(seen, "what 'tiny'") != NULL);
	KEXPECT_EQ(capture_run_line("mmfail 1,100"), SHELL_USAGE);
	KEXPECT(!spanheap_fail_get(&kspanheap, &a));
	KEXPECT_EQ(capture_run_line("mmfail 3,10000,-1,small+atomic,7"),
	           SHELL_OK);
	KEXPECT(strstr(seen, "mmfail: armed: interval 3") != NULL);
	KEXPECT(spanheap_fail_get(&kspanheap, &a));
	KEXPECT_EQ(a.interval, 3);
	KEXPECT_EQ(a.times, -1);
	KEXPECT_EQ(a.seed, 7);
	KEXPECT_EQ(a.what, SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_ATOMIC_ONLY);
	KEXPECT_EQ(capture_run_line("mmfail off"), SHELL_OK);
	KEXPECT(strstr(seen, "mmfail: off") != NULL);
	KEXPECT(!spanheap_fail_get(&kspanheap, &a));
}
#endif

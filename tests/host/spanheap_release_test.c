/*
 * spanheap_release_all (mm/spanheap_sweep.c, the hosted malloc_trim)
 * runs a sweep cycle only when one is owed: frees pending since the last
 * flip (a flushed magazine's among them), a cycle running, or spans on a
 * fold queue or backlog (spanheap_growth_park_test.c has that one). With
 * none, the last cycle swept every span and nothing was freed into one
 * since: a cycle would sweep every span of the heap for nothing. Either
 * way every free page goes back.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_sweep.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { N = 4096 };
static void *obj[N];

/*
 * The first release after the frees runs a cycle (the frees wait in the
 * magazines and then in the spans) and gives the spans' pages back; a
 * second, with nothing freed since, runs none and gives nothing back,
 * and the heap stays as the first left it. Until review rv76 every
 * release ran one: most of the cost of a malloc_trim of a small heap
 * (callgrind), and a whole heap's sweep in a large one, for nothing.
 */
KTEST(spanheap_release, a_release_with_no_cycle_owed_runs_none)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh_alloc_n(&sh, obj, N, 256));
	void *live = spanheap_alloc(&sh, 64, 0);
	KASSERT(live != NULL);
	for (size_t i = 0; i < N; i++)
		spanheap_free(&sh, obj[i]);
	uint64_t c0 = sh_cycles(&sh);
	KEXPECT(spanheap_release_all(&sh) > 0);
	KEXPECT_EQ(sh_cycles(&sh), c0 + 1);
	size_t spans = sh_span_pages(&heap, &sh);
	KEXPECT_EQ(spanheap_release_all(&sh), 0);
	KEXPECT_EQ(sh_cycles(&sh), c0 + 1);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), spans);
	SH_CHECK(&sh, "after the releases");
	/* A free since: owed again. */
	spanheap_free(&sh, live);
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_cycles(&sh), c0 + 2);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	SH_CHECK(&sh, "after the last release");
	sh_heap_release(&heap, &sh);
}

/* ---- A cycle running elsewhere ------------------------------------------ */

static _Atomic bool sweeper_parked, release_done, cycle_over;
static _Thread_local bool is_sweeper;

/* The other thread's cycle, its sweep done and its fold queues taken
 * (nothing queued, nothing pending since its flip: only "a cycle
 * running" owes one), at its first span placed from them: stays until
 * the release waits for the semaphore behind it, or has returned. */
static void in_sweep(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SPAN_PLACING || !is_sweeper ||
	    spanheap_queues_hold_spans(&sh) ||
	    spanheap_pending_since_flip(&sh) ||
	    atomic_exchange(&sweeper_parked, true))
		return;
	while (!atomic_load(&release_done) &&
	       atomic_load(&sh.sweeper.cycle_next) -
	                       atomic_load(&sh.sweeper.cycle_turn) <
	               2)
		sched_yield();
}

static void *other_cycle(void *arg)
{
	mm_port_set_cpu(1);
	is_sweeper = true;
	spanheap_sweep_cycle(&sh);
	atomic_store(&cycle_over, true);
	return arg;
}

/*
 * A release while another thread's cycle has taken the fold queues but
 * not given the empty spans on them back yet: that cycle is owed
 * (cycle_owed's "a cycle running"), the release waits for it, and every
 * empty span's pages are back when it returns. Without that term it ran
 * none and returned with those spans still held by the other cycle.
 */
KTEST(spanheap_release, a_release_beside_a_running_cycle_waits_for_it)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh_alloc_n(&sh, obj, N, 256));
	for (size_t i = 0; i < N; i++)
		spanheap_free(&sh, obj[i]);
	spanheap_flush_all(&sh);
	atomic_store(&sweeper_parked, false);
	atomic_store(&release_done, false);
	atomic_store(&cycle_over, false);
	mheap_test_hook = in_sweep;
	pthread_t t;
	KASSERT(pthread_create(&t, NULL, other_cycle, NULL) == 0);
	while (!atomic_load(&sweeper_parked) && !atomic_load(&cycle_over))
		sched_yield();
	KEXPECT(!atomic_load(&cycle_over)); /* it parked */
	spanheap_release_all(&sh);
	size_t left = sh_span_pages(&heap, &sh);
	atomic_store(&release_done, true);
	pthread_join(t, NULL);
	mheap_test_hook = NULL;
	ktest_diag("span pages left at the release's return: %zu", left);
	KEXPECT_EQ(left, 0);
	SH_CHECK(&sh, "after the release");
	sh_heap_release(&heap, &sh);
}

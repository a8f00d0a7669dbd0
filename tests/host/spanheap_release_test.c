/*
 * spanheap_release_all (mm/spanheap_sweep.c, the hosted malloc_trim)
 * runs a sweep cycle only when one is owed: frees pending since the last
 * flip (a flushed magazine's among them), a cycle running, or spans on a
 * fold queue or backlog (spanheap_growth_park_test.c has that one). With
 * none, the last cycle swept every span and nothing was freed into one
 * since: a cycle would sweep every span of the heap for nothing. Either
 * way every free page goes back.
 */
#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

static uint64_t cycles(void)
{
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.n.cycles;
}

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
	uint64_t c0 = cycles();
	KEXPECT(spanheap_release_all(&sh) > 0);
	KEXPECT_EQ(cycles(), c0 + 1);
	size_t spans = sh_span_pages(&heap, &sh);
	KEXPECT_EQ(spanheap_release_all(&sh), 0);
	KEXPECT_EQ(cycles(), c0 + 1);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), spans);
	SH_CHECK(&sh, "after the releases");
	/* A free since: owed again. */
	spanheap_free(&sh, live);
	spanheap_release_all(&sh);
	KEXPECT_EQ(cycles(), c0 + 2);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	SH_CHECK(&sh, "after the last release");
	sh_heap_release(&heap, &sh);
}

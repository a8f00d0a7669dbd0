/*
 * The span heap's zeroed allocations on every path, over memory just
 * filled and freed, reused as it is and after spanheap_release_all gave
 * it back (madvise: it reads zero once touched again): the paths are
 * tests/kernel/zero_paths_util.h's, which the kernel runs over its frame
 * pool too (tests/kernel/kzero_test.c).
 */
#include "../kernel/zero_paths_run_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

KTEST(spanheap, every_zeroed_path_over_dirty_memory)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	zp_run(&sh, NULL);
	sh_heap_release(&heap, &sh);
}

/* The same in poison mode: a freed object holds the poison fill, and
 * each object a red zone, which a zeroed allocation must not leave in
 * the bytes it hands out. */
KTEST(spanheap, every_zeroed_path_over_dirty_memory_poison)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	zp_run(&sh, NULL);
	sh_heap_release(&heap, &sh);
}

/*
 * What spanheap_stats reads of the CPUs' magazines, counted
 * (spanheap_test_mags_read): only those of the CPUs that have a slab of
 * magazines, each class's once, and what they hold is still counted.
 * Until a review every class looked at all MM_MAX_CPUS CPUs' magazines,
 * slab or none: 64 x 63 reads a call, 8 us a mallinfo2 of a one-thread
 * program under LD_PRELOAD against glibc's 0.1 (tools/bench-cliffs).
 *
 * The test makes its own heap and gives it back at the end.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

KTEST(spanheap_stats_work, reads_the_magazines_of_cpus_with_a_slab)
{
	enum { N = 8, SIZE = 100 };
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p[N];
	/* Objects freed into CPU 0's and CPU 2's magazines: two slabs. */
	for (unsigned cpu = 0; cpu <= 2; cpu += 2) {
		mm_port_set_cpu(cpu);
		KASSERT(sh_alloc_n(&sh, p, N, SIZE));
		for (int i = 0; i < N; i++)
			spanheap_free(&sh, p[i]);
	}
	mm_port_set_cpu(0);
	size_t slabs = atomic_load(&sh.mag_slabs);
	KASSERT(slabs >= 2 && slabs < MM_MAX_CPUS);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	uint64_t r0 = atomic_load(&spanheap_test_mags_read);
	spanheap_stats(&sh, st);
	uint64_t reads = atomic_load(&spanheap_test_mags_read) - r0;
	ktest_diag("%lu magazines read, %zu slabs", (unsigned long)reads,
	           slabs);
	KEXPECT_EQ(reads, (uint64_t)slabs * (SC_NCLASSES - 1));
	KEXPECT(st->cls[sizeclass_of(SIZE)].mag_objects >= 2 * N);
	KEXPECT(st->cls[sizeclass_of(SIZE)].mag_room >=
	        st->cls[sizeclass_of(SIZE)].mag_objects);
	free(st);
	sh_heap_release(&heap, &sh);
}

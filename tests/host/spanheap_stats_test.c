/*
 * The span heap's statistics at quiescence (spanheap_stats): after
 * objects allocated on four simulated CPUs are freed half on their own
 * CPU and half on another, every cache flushed and a cycle finished,
 * every per-class count (objects in use and free, spans, bytes), the
 * totals, the frees and the sweep counters are exact, and a second cycle
 * changes none of them.
 */
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { NCPUS = 4, PER_CPU = 300 };

/* Sizes over 512 bytes: a refill puts none of their objects into a
 * magazine (mag_fill), so every object given back to a span is a free. */
static const size_t sizes[] = {16, 64, 256, 1024, 2048, 8192, 100000};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct stats_run {
	void *p[NCPUS][NSIZES][PER_CPU];
	size_t kept[SC_NCLASSES]; /* objects held per class (0: large) */
	uint64_t frees_big;       /* frees of objects over 512 bytes */
};

/* Object i of a CPU is kept if i % 3 == 0, else freed: on its own CPU if
 * i % 3 == 1, on the next one if i % 3 == 2. */
static void stats_round(struct stats_run *r)
{
	for (unsigned cpu = 0; cpu < NCPUS; cpu++) {
		mm_port_set_cpu(cpu);
		for (size_t k = 0; k < NSIZES; k++)
			for (unsigned i = 0; i < PER_CPU; i++)
				r->p[cpu][k][i] =
				        spanheap_alloc(&sh, sizes[k], 0);
	}
	for (unsigned cpu = 0; cpu < NCPUS; cpu++)
		for (size_t k = 0; k < NSIZES; k++) {
			unsigned cls = sizes[k] <= SC_MAX_SIZE
			                       ? sizeclass_of(sizes[k])
			                       : 0;
			for (unsigned i = 0; i < PER_CPU; i++) {
				if (i % 3 == 0) {
					r->kept[cls]++;
					continue;
				}
				mm_port_set_cpu(i % 3 == 1 ? cpu
				                           : (cpu + 1) % NCPUS);
				spanheap_free(&sh, r->p[cpu][k][i]);
				r->p[cpu][k][i] = NULL;
				if (cls && sizes[k] > 512)
					r->frees_big++;
			}
		}
	sh_flush_cpus(&sh, NCPUS);
}

static void expect_stats(const struct spanheap_stats *st,
                         const struct stats_run *r, const char *when)
{
	size_t spans = 0, bytes = 0, span_bytes = 0;
	uint64_t big_frees = 0;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		const struct spanheap_class_stats *cs = &st->cls[cls];
		const struct sizeclass_info *ci = &sizeclass_info[cls];
		size_t nspans = atomic_load(&sh.central[cls].nspans);
		if (cs->objects_in_use != r->kept[cls] || cs->spans != nspans ||
		    cs->objects_free != nspans * ci->nelems - r->kept[cls] ||
		    cs->bytes_in_use != r->kept[cls] * ci->size ||
		    cs->bytes_spans != nspans * ci->npages * MM_PAGE_SIZE)
			ktest_fail_at(__FILE__, __LINE__,
			              "%s: class %u: %zu in use (held %zu), "
			              "%zu free, %zu spans (%zu made)",
			              when, cls, cs->objects_in_use,
			              r->kept[cls], cs->objects_free, cs->spans,
			              nspans);
		spans += cs->spans;
		bytes += cs->bytes_in_use;
		span_bytes += cs->bytes_spans;
		if (ci->size > 512)
			big_frees += atomic_load(&sh.central[cls].nlocal) +
			             atomic_load(&sh.central[cls].nremote);
	}
	size_t large_pages =
	        r->kept[0] * ((100000 + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE);
	KEXPECT_EQ(st->cls[0].spans, r->kept[0]);
	KEXPECT_EQ(st->cls[0].objects_in_use, r->kept[0]);
	KEXPECT_EQ(st->large_pages, large_pages);
	KEXPECT_EQ(st->spans, spans + r->kept[0]);
	KEXPECT_EQ(st->bytes_in_use, bytes + large_pages * MM_PAGE_SIZE);
	KEXPECT_EQ(st->bytes_spans, span_bytes + large_pages * MM_PAGE_SIZE);
	KEXPECT_EQ(st->mag_objects, 0);
	/* Every free was folded (the cycle and the flushes): the booked
	 * frees of the big classes are the frees made. */
	KEXPECT_EQ(big_frees, r->frees_big);
}

KTEST(spanheap_stats, exact_after_cross_cpu_frees_and_a_sweep)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct stats_run *r = calloc(1, sizeof(*r));
	KASSERT(r);
	stats_round(r);
	spanheap_sweep_cycle(&sh);
	struct spanheap_stats *st = calloc(2, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, &st[0]);
	expect_stats(&st[0], r, "after the cycle");
	KEXPECT_EQ(st[0].n.cycles, 1);
	KEXPECT_EQ(st[0].n.large_allocs, (uint64_t)NCPUS * PER_CPU);
	KEXPECT_EQ(st[0].n.large_frees, (uint64_t)NCPUS * PER_CPU - r->kept[0]);
	SH_CHECK(&sh, "after the cycle");
	/* A second cycle finds nothing to do and changes no count but its
	 * own. */
	KEXPECT_EQ(spanheap_sweep_cycle(&sh), 0);
	spanheap_stats(&sh, &st[1]);
	expect_stats(&st[1], r, "after the second cycle");
	KEXPECT_EQ(st[1].n.cycles, 2);
	KEXPECT_EQ(st[1].n.freed_spans, st[0].n.freed_spans);
	KEXPECT_EQ(st[1].local_frees, st[0].local_frees);
	KEXPECT_EQ(st[1].remote_frees, st[0].remote_frees);
	KEXPECT_EQ(st[1].n.demand_swept, st[0].n.demand_swept);
	KEXPECT_EQ(st[1].n.queue_folded, st[0].n.queue_folded);
	ktest_diag("swept %lu then %lu; %lu freed; %lu local, %lu remote",
	           (unsigned long)st[0].n.swept_spans,
	           (unsigned long)st[1].n.swept_spans,
	           (unsigned long)st[0].n.freed_spans,
	           (unsigned long)st[0].local_frees,
	           (unsigned long)st[0].remote_frees);
	for (unsigned cpu = 0; cpu < NCPUS; cpu++)
		for (size_t k = 0; k < NSIZES; k++)
			for (unsigned i = 0; i < PER_CPU; i++)
				spanheap_free(&sh, r->p[cpu][k][i]);
	sh_flush_cpus(&sh, NCPUS);
	spanheap_sweep_cycle(&sh);
	spanheap_stats(&sh, &st[0]);
	KEXPECT_EQ(st[0].spans, 0);
	KEXPECT_EQ(st[0].bytes_in_use, 0);
	KEXPECT_EQ(sh_in_use_pages(&heap), sh_kept_pages(&sh));
	SH_CHECK(&sh, "after everything was freed");
	free(st);
	free(r);
	sh_heap_release(&heap);
}

/*
 * The span heap across the wrap of its 32-bit sweepgen (mm/spanheap.c's
 * protocol, Go's): 2^31 cycles, 5 days of a program calling malloc_trim
 * in a loop (a release-all's cycle, 4800 a second in this ASan build),
 * months of a sweeper under churn (170 a second here, on a shared
 * host). Every comparison of generations must be an equality, or a
 * difference, that holds across it: a span on the swept lists at
 * 0xfffffffe is unswept at 0, one cached at 0xfffffffe is at 1, and
 * (sg / 2) % 2 alternates through 0 (2^32 is a multiple of 4).
 *
 * A heap is started a few cycles below the wrap (no span made yet: only
 * the count, and each CPU's flushgen, moves), and four simulated CPUs
 * allocate, free their own objects and each other's, keep spans cached
 * and listed through the wrap, with a cycle and the heap's checker after
 * each round; every live object carries a tag that a second hand-out
 * would overwrite; at the end every page but the heap's own comes back.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { NCPUS = 4, ROUNDS = 24, PER_ROUND = 300, LIVE = 2048 };

/* Cycles the heap starts below the wrap: it crosses it in round 8. */
#define BELOW_WRAP 8u

static const size_t sizes[] = {48, 256, 3000, 40000 /* large */};

struct live {
	uint64_t *p;
	size_t size;
	uint64_t tag;
};
static struct live live[LIVE];
static size_t nlive;

/* sh, fresh, with its sweepgen sg: as if it had run until there and
 * given everything back. No span exists, so no span's sweepgen is out
 * of step; no CPU has used the heap yet, and each one's cache, set up at
 * its first use, is flushed as of then (spanheap_cache_set_up). */
static bool heap_at(uint32_t sg)
{
	if (!sh_heap_fresh(&heap, &sh))
		return false;
	atomic_store(&sh.sweepgen, sg);
	return true;
}

/* Word 2 holds the tag (words 0 and 1 are the free's). */
static void tag_set(struct live *l, uint64_t tag)
{
	l->tag = tag;
	l->p[2] = tag;
	l->p[l->size / 8 - 1] = ~tag;
}

/* Frees live[i] on CPU cpu, its tags checked; the last entry takes its
 * place. Returns false if a tag changed (the object was handed out
 * again while live). */
static bool free_live(size_t i, unsigned cpu)
{
	struct live *l = &live[i];
	bool ok = l->p[2] == l->tag && l->p[l->size / 8 - 1] == ~l->tag;
	mm_port_set_cpu(cpu);
	spanheap_free(&sh, l->p);
	*l = live[--nlive];
	return ok;
}

/* One round on every CPU: PER_ROUND allocations each, then about as many
 * frees of random live objects, most on another CPU than the one that
 * allocated (a remote free). Returns the tags found overwritten, and
 * the allocations refused. */
static unsigned round_run(uint64_t *rng, uint64_t *tags)
{
	unsigned bad = 0;
	for (unsigned cpu = 0; cpu < NCPUS; cpu++) {
		mm_port_set_cpu(cpu);
		for (unsigned k = 0; k < PER_ROUND && nlive < LIVE; k++) {
			size_t size = sizes[stress_random(rng) % 4];
			if (size == 40000 && stress_random(rng) % 8)
				size = 64; /* few large ones */
			struct live *l = &live[nlive];
			l->p = spanheap_alloc(&sh, size, 0);
			if (!l->p)
				return bad + 1; /* counted as lost */
			l->size = size;
			tag_set(l, ++*tags);
			nlive++;
		}
	}
	for (unsigned k = 0; k < NCPUS * PER_ROUND && nlive > LIVE / 4; k++)
		bad += !free_live(stress_random(rng) % nlive,
		                  (unsigned)(stress_random(rng) % NCPUS));
	return bad;
}

KTEST(spanheap_wrap, cycles_across_the_sweepgen_wrap)
{
	uint32_t sg0 = 0u - 2 * BELOW_WRAP;
	KASSERT(heap_at(sg0));
	uint64_t rng = 0x243f6a8885a308d3ull, tags = 0;
	unsigned bad = 0;
	nlive = 0;
	for (unsigned r = 0; r < ROUNDS; r++) {
		bad += round_run(&rng, &tags);
		/* A CPU's cached spans back now and then, at any gen. */
		mm_port_set_cpu(r % NCPUS);
		if (r % 3 == 0)
			spanheap_flush_cache(&sh);
		spanheap_sweep_cycle(&sh);
		KEXPECT_EQ(atomic_load(&sh.sweepgen), sg0 + 2 * (r + 1));
		SH_CHECK(&sh, "after a cycle");
	}
	KEXPECT(atomic_load(&sh.sweepgen) < sg0); /* it wrapped */
	while (nlive)
		bad += !free_live(nlive - 1, (unsigned)(nlive % NCPUS));
	KEXPECT_EQ(bad, 0u);
	sh_flush_cpus(&sh, NCPUS);
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "at the end");
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.spans, 0);
	KEXPECT(st.n.swept_spans > 0);
	sh_heap_release(&heap, &sh);
}

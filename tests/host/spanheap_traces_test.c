/*
 * Live objects grouped by the stack that allocated them
 * (spanheap_alloc_traces, mm/spanheap_track.c; Linux's alloc_traces):
 * two out-of-line allocators' objects counted apart, most first, with
 * their bytes and their oldest allocation's time; freed objects, large
 * objects and other classes left out when asked; a table too small
 * counting the rest; every live object counted once, as the statistics
 * count them; nothing without poison mode's records.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Two allocation sites, each the only caller of the heap in its body. */
SH_ALLOC_SITE(site_a, &sh)
SH_ALLOC_SITE(site_b, &sh)

static void ktest_fn_spanheap_traces_groups_live_objects_by_their_stack(void);
static void ktest_fn_spanheap_traces_every_live_object_is_counted_once(void);

/* Whether one of t's return addresses lies in fn, one of the two sites:
 * between its start and the next of this file's functions (or 512
 * bytes, more than a site's body), as instrumented builds lay them out. */
static bool trace_in(const struct spanheap_trace *t, void *fn)
{
	uintptr_t lo = (uintptr_t)fn, hi = lo + 512;
	const uintptr_t others[] = {
	        (uintptr_t)site_a, (uintptr_t)site_b, (uintptr_t)trace_in,
	        (uintptr_t)
	                ktest_fn_spanheap_traces_groups_live_objects_by_their_stack,
	        (uintptr_t)
	                ktest_fn_spanheap_traces_every_live_object_is_counted_once};
	for (unsigned i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		if (others[i] > lo && others[i] < hi)
			hi = others[i];
	for (uint32_t i = 0; i < t->npcs; i++)
		if (t->pc[i] > lo && t->pc[i] < hi)
			return true;
	return false;
}

static void *pa[40], *pb[10];

KTEST(spanheap_traces, groups_live_objects_by_their_stack)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	uint64_t before = mm_port_now_ns();
	/* One call site a loop, one stack a site: clang -O3 unrolled the
	 * second loop into ten calls (a check inside a loop may also peel
	 * its first call off). */
#pragma GCC unroll 1
	for (int i = 0; i < 40; i++)
		pa[i] = site_a(24);
#pragma GCC unroll 1
	for (int i = 0; i < 10; i++)
		pb[i] = site_b(100);
	for (int i = 0; i < 40; i++)
		KASSERT(pa[i]);
	for (int i = 0; i < 10; i++)
		KASSERT(pb[i]);
	for (int i = 0; i < 15; i++) /* 25 of site a's left */
		spanheap_free(&sh, pa[i]);
	void *big = spanheap_alloc(&sh, 100000, 0); /* large: no record */
	KASSERT(big);
	struct spanheap_trace t[8];
	size_t rest = 99;
	size_t n = spanheap_alloc_traces(&sh, 0, t, 8, &rest);
	KASSERT_EQ(n, 2);
	KEXPECT_EQ(rest, 0);
	KEXPECT_EQ(t[0].objects, 25);
	KEXPECT_EQ(t[0].bytes, 25 * 24);
	KEXPECT(trace_in(&t[0], (void *)site_a));
	KEXPECT(!trace_in(&t[0], (void *)site_b));
	KEXPECT(t[0].oldest_ns >= before);
	KEXPECT_EQ(t[1].objects, 10);
	KEXPECT_EQ(t[1].bytes, 10 * 100);
	KEXPECT(trace_in(&t[1], (void *)site_b));
	KEXPECT(t[1].oldest_ns >= t[0].oldest_ns); /* site a's came first */

	/* One class: site b's only. */
	n = spanheap_alloc_traces(&sh, sizeclass_of(101), t, 8, &rest);
	KASSERT_EQ(n, 1);
	KEXPECT_EQ(t[0].objects, 10);
	KEXPECT(trace_in(&t[0], (void *)site_b));
	/* A table of one: the first stack found fills it, the rest is
	 * counted. */
	n = spanheap_alloc_traces(&sh, 0, t, 1, &rest);
	KASSERT_EQ(n, 1);
	KEXPECT_EQ(t[0].objects + rest, 35);
	KEXPECT_EQ(spanheap_alloc_traces(&sh, 0, t, 0, &rest), 0);
	KEXPECT_EQ(rest, 35);
	/* A class out of range: nothing. */
	KEXPECT_EQ(spanheap_alloc_traces(&sh, SC_NCLASSES, t, 8, &rest), 0);
	KEXPECT_EQ(rest, 0);

	for (int i = 15; i < 40; i++)
		spanheap_free(&sh, pa[i]);
	for (int i = 0; i < 10; i++)
		spanheap_free(&sh, pb[i]);
	spanheap_free(&sh, big);
	KEXPECT_EQ(spanheap_alloc_traces(&sh, 0, t, 8, &rest), 0);
	KEXPECT_EQ(rest, 0);
	sh_heap_release(&heap, &sh);
}

/* Objects of every class from one stack per class's call: the counts sum
 * to the statistics' objects in use (poison mode keeps no magazines). */
KTEST(spanheap_traces, every_live_object_is_counted_once)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	static void *p[SC_NCLASSES][3];
	/* One call site, so one stack a site: with the check in the loop,
	 * clang -O1 under TSan made k = 0's call a copy of its own (the
	 * check's exit peeled it), four stacks; unrolled, more. */
#pragma GCC unroll 1
	for (unsigned c = 1; c < SC_NCLASSES; c++)
#pragma GCC unroll 1
		for (int k = 0; k < 3; k++)
			p[c][k] = (c % 2 ? site_a : site_b)(sh_poison_size(c) -
			                                    (size_t)k);
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		for (int k = 0; k < 3; k++)
			KASSERT(p[c][k]);
	spanheap_free(&sh, p[5][1]);
	static struct spanheap_trace t[4];
	size_t rest;
	size_t n = spanheap_alloc_traces(&sh, 0, t, 4, &rest);
	KASSERT_EQ(n, 2);
	KEXPECT_EQ(rest, 0);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	size_t in_use = 0;
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		in_use += st.cls[c].objects_in_use;
	KEXPECT_EQ(t[0].objects + t[1].objects, in_use);
	KEXPECT_EQ(in_use, 3 * (SC_NCLASSES - 1) - 1);
	for (unsigned c = 1; c < SC_NCLASSES; c++)
		for (int k = 0; k < 3; k++)
			if (c != 5 || k != 1)
				spanheap_free(&sh, p[c][k]);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_traces, nothing_without_records)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, false));
	void *p = site_a(24);
	KASSERT(p);
	struct spanheap_trace t[2];
	size_t rest = 7;
	KEXPECT_EQ(spanheap_alloc_traces(&sh, 0, t, 2, &rest), 0);
	KEXPECT_EQ(rest, 0);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/*
 * A fresh span heap's object heap is ready for its first allocations
 * that may not grow it (mm/spanheap_init.c): grown to its reserve for
 * atomic callers. Until the span heap kept its metadata in a heap of its
 * own (mm/spanheap_meta.c), set-up's metadata grew the object heap; after
 * it, nothing did, so a fresh heap's first MM_NO_GROW allocation failed
 * with memory plentiful, and of several CPUs' first MM_ATOMIC
 * allocations one grew the heap and the others got NULL (in the kernel,
 * the first allocations in interrupt handlers). A review found it.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* The first allocation of a fresh heap with MM_NO_GROW: a small object
 * and a large one, both served from the pages set-up grew. */
KTEST(spanheap_ready, a_fresh_heaps_first_no_grow_allocation_succeeds)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT(st.grown_pages > 0 &&
	        st.in_use_pages + st.free_backed_pages + st.free_scav_pages >=
	                heap.cfg.reserve_pages);
	void *p = spanheap_alloc(&sh, 64, MM_NO_GROW);
	KEXPECT(p != NULL);
	void *q = spanheap_alloc(&sh, 64 << 10, MM_NO_GROW);
	KEXPECT(q != NULL);
	spanheap_free(&sh, p);
	spanheap_free(&sh, q);
	SH_CHECK(&sh, "after the first MM_NO_GROW allocations");
	sh_heap_release(&heap, &sh);
}

/* An owner that configured no reserve asked for no pages held ahead of
 * need (the out-of-memory tests use up every page): set-up grows
 * nothing for it, as before the metadata heap it grew only what its
 * metadata took. */
KTEST(spanheap_ready, no_reserve_no_growth)
{
	KASSERT(sh_heap_tight(&heap, &sh, 2));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 0);
	sh_heap_release(&heap, &sh);
}

enum { RACE_THREADS = 6, RACE_ROUNDS = 30 };
static pthread_barrier_t race_start;
static void *race_got[RACE_THREADS];

/* CPU i's first allocation, MM_ATOMIC, once every thread is at the
 * barrier. */
static void *race_one(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;
	mm_port_set_cpu(i);
	pthread_barrier_wait(&race_start);
	race_got[i] = spanheap_alloc(&sh, 64, MM_ATOMIC);
	return NULL;
}

/* One round on a fresh heap: adds the threads that got NULL to *nulls. */
static void race_round(unsigned *nulls)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	KASSERT(pthread_barrier_init(&race_start, NULL, RACE_THREADS) == 0);
	pthread_t t[RACE_THREADS];
	for (unsigned i = 0; i < RACE_THREADS; i++)
		KASSERT(pthread_create(&t[i], NULL, race_one,
		                       (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < RACE_THREADS; i++) {
		pthread_join(t[i], NULL);
		*nulls += race_got[i] == NULL;
	}
	pthread_barrier_destroy(&race_start);
	mm_port_set_cpu(0);
	for (unsigned i = 0; i < RACE_THREADS; i++)
		if (race_got[i])
			spanheap_free(&sh, race_got[i]);
	sh_flush_cpus(&sh, RACE_THREADS);
	SH_CHECK(&sh, "after the first atomic allocations");
	sh_heap_release(&heap, &sh);
}

/* Every CPU's first allocation is atomic, all at once, on a fresh heap:
 * each gets its object. Before the fix one thread grew the heap and the
 * others found it growing and got NULL, in most rounds. */
KTEST(spanheap_ready, first_atomic_allocations_at_once_all_succeed)
{
	unsigned failed_rounds = 0, nulls = 0;
	for (int r = 0; r < RACE_ROUNDS; r++) {
		unsigned n = 0;
		race_round(&n);
		nulls += n;
		failed_rounds += n > 0;
	}
	if (failed_rounds)
		ktest_diag("%u of %d rounds had a NULL (%u NULLs of %d "
		           "allocations)",
		           failed_rounds, RACE_ROUNDS, nulls,
		           RACE_ROUNDS * RACE_THREADS);
	KEXPECT_EQ(failed_rounds, 0);
}

/* With no memory for the growth, set-up fails first, naming it, having
 * taken nothing: no reservation (the metadata heap is not made yet), no
 * page; once memory is back the same set-up works. */
KTEST(spanheap_ready, no_memory_for_the_growth_fails_set_up_first)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	KASSERT(mheap_init(&heap, &hc));
	size_t reserved = mm_port_reserved_bytes();
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	mm_port_fail_maps(1);
	mm_port_set_quiet(true);
	KEXPECT(!spanheap_init(&sh, &heap, &sc));
	mm_port_set_quiet(false);
	mm_port_fail_maps(0);
	KEXPECT(strstr(mm_port_last_log(), "to its reserve") != NULL);
	KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
	KEXPECT_EQ(sh.meta.arena_pages, 0);
	KEXPECT_EQ(heap.grown_chunks, 0);
	KASSERT(spanheap_init(&sh, &heap, &sc));
	mm_port_set_cpu(0);
	void *p = spanheap_alloc(&sh, 64, MM_NO_GROW);
	KEXPECT(p != NULL);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

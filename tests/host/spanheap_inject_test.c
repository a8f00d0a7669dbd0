/*
 * Allocation-failure injection on the span heap (mm/spanheap_fail.c): the
 * interval picks exactly every n-th eligible call, times caps the
 * failures (under concurrent callers too), a seed's failures replay, the
 * filters (small, large, atomic only) pass the rest untouched and a
 * refused call (bad flags, a size no arena holds) is not counted, an
 * injected failure is real OOM to the caller (realloc's object kept,
 * calloc and aligned calls NULL), the magazines stay empty while armed
 * (an arm that cannot reach the other CPUs says so, and theirs serve
 * until their next refill) and come back at the disarm (or, on a CPU the disarm
 * could not reach, at that CPU's next free), and after thousands of injected
 * failures on several CPUs the checker is clean and release_all leaves only the
 * pages the heap keeps for itself.
 */
#include <pthread.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "../../mm/spanheap_cache.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { SMALL = 64, BIG = 64 << 10, NCALLS = 240 };

static void *objs[4096];

static bool arm(uint32_t interval, uint32_t prob, int64_t times, uint64_t seed,
                unsigned what)
{
	struct spanheap_fail_attr a = {.interval = interval,
	                               .probability = prob,
	                               .times = times,
	                               .seed = seed,
	                               .what = what};
	return spanheap_fail_arm(&sh, &a);
}

static void stats_of(struct spanheap_stats *st)
{
	static struct spanheap_stats s; /* large: not on the stack */
	spanheap_stats(&sh, &s);
	*st = s;
}

/* Frees objs[0..n) (NULLs too), disarms, and checks the heap. */
static void free_all_disarm(size_t n)
{
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	spanheap_fail_disarm(&sh);
	SH_CHECK(&sh, "after the disarm");
}

KTEST(spanheap_inject, interval_fails_exactly_every_nth_call)
{
	static const uint32_t intervals[] = {1, 2, 3, 7};
	for (size_t k = 0; k < 4; k++) {
		KASSERT(sh_heap_fresh(&heap, &sh));
		uint32_t iv = intervals[k];
		KASSERT(arm(iv, SPANHEAP_FAIL_PROB_ALL, -1, 0, 0));
		for (size_t i = 0; i < NCALLS; i++) {
			objs[i] = spanheap_alloc(&sh, i % 2 ? SMALL : BIG, 0);
			if ((objs[i] == NULL) != ((i + 1) % iv == 0))
				ktest_fail_at(__FILE__, __LINE__,
				              "interval %u: call %zu %s", iv,
				              i + 1,
				              objs[i] ? "served" : "failed");
		}
		struct spanheap_stats st;
		stats_of(&st);
		KEXPECT(st.fail_armed);
		KEXPECT_EQ(st.fail_calls, NCALLS);
		KEXPECT_EQ(st.fail_injected, NCALLS / iv);
		free_all_disarm(NCALLS);
		sh_heap_release(&heap, &sh);
	}
}

KTEST(spanheap_inject, times_caps_the_failures)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(arm(1, SPANHEAP_FAIL_PROB_ALL, 5, 0, 0));
	for (size_t i = 0; i < 20; i++) {
		objs[i] = spanheap_alloc(&sh, SMALL, 0);
		KEXPECT_EQ(objs[i] == NULL, i < 5);
	}
	struct spanheap_fail_attr a;
	KEXPECT(spanheap_fail_get(&sh, &a));
	KEXPECT_EQ(a.times, 0);
	struct spanheap_stats st;
	stats_of(&st);
	KEXPECT_EQ(st.fail_calls, 20);
	KEXPECT_EQ(st.fail_injected, 5);
	free_all_disarm(20);
	sh_heap_release(&heap, &sh);
}

/* The pattern of failures of NCALLS small and large calls under seed. */
static void pattern(uint64_t seed, bool *failed, size_t *nfailed)
{
	KASSERT(arm(1, 2500, -1, seed, 0));
	*nfailed = 0;
	for (size_t i = 0; i < NCALLS; i++) {
		objs[i] = spanheap_alloc(&sh, i % 3 ? SMALL : BIG, 0);
		failed[i] = !objs[i];
		*nfailed += failed[i];
	}
	free_all_disarm(NCALLS);
}

KTEST(spanheap_inject, a_seed_replays_its_failures)
{
	static bool first[NCALLS], again[NCALLS], other[NCALLS];
	size_t n1, n2, n3;
	KASSERT(sh_heap_fresh(&heap, &sh));
	pattern(42, first, &n1);
	pattern(42, again, &n2);
	pattern(43, other, &n3);
	KEXPECT(memcmp(first, again, sizeof(first)) == 0);
	KEXPECT(memcmp(first, other, sizeof(first)) != 0);
	/* A quarter, drawn: 60 expected of 240; the bounds are 6 sigma. */
	KEXPECT(n1 > 20 && n1 < 100);
	KEXPECT_EQ(n1, n2);
	sh_heap_release(&heap, &sh);
}

/* One call of size with flags under the armed filter: served or not. */
static bool served(size_t size, unsigned flags)
{
	void *p = spanheap_alloc(&sh, size, flags);
	spanheap_free(&sh, p);
	return p != NULL;
}

KTEST(spanheap_inject, filters_pass_other_calls_uncounted)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct spanheap_stats st;
	KASSERT(arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0, SPANHEAP_FAIL_LARGE));
	KEXPECT(served(SMALL, 0));
	KEXPECT(served(SC_MAX_SIZE, MM_ATOMIC));
	KEXPECT(!served(SC_MAX_SIZE + 1, 0));
	KEXPECT(!served(BIG, MM_ATOMIC));
	stats_of(&st);
	KEXPECT_EQ(st.fail_calls, 2);
	KASSERT(arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0, SPANHEAP_FAIL_SMALL));
	KEXPECT(!served(SMALL, 0));
	KEXPECT(!served(0, MM_ATOMIC));
	KEXPECT(served(BIG, 0));
	unsigned atomic_small = SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_ATOMIC_ONLY;
	KASSERT(arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0, atomic_small));
	KEXPECT(served(SMALL, 0));
	KEXPECT(served(BIG, MM_ATOMIC));
	mm_port_set_atomic(true);
	KEXPECT(!served(SMALL, MM_ATOMIC));
	KEXPECT(!served(SMALL, MM_ATOMIC | MM_ZERO));
	mm_port_set_atomic(false);
	stats_of(&st);
	KEXPECT_EQ(st.fail_calls, 2);
	KEXPECT_EQ(st.fail_injected, 2);
	/* A refused call is no eligible one: bad flags, and a size no
	 * arena holds, from alloc and from realloc alike. */
	size_t too_big = heap.arena_pages * MM_PAGE_SIZE + 1;
	void *p = spanheap_alloc(&sh, SMALL, 0); /* not atomic: not eligible */
	KASSERT(p);
	KASSERT(arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0, 0)); /* every call */
	mm_port_set_quiet(true);
	KEXPECT(!served(SMALL, 1u << 9));
	KEXPECT(!served(too_big, 0));
	KEXPECT(spanheap_realloc(&sh, p, too_big, 0) == NULL);
	KEXPECT(spanheap_realloc(&sh, p, SIZE_MAX, 0) == NULL);
	/* Nor one the heap refuses whatever it holds: the alignment's pages
	 * past the arena, an atomic one over 64 pages (they were counted,
	 * and spent a failure meant for another call; review). */
	size_t half = heap.arena_pages * MM_PAGE_SIZE / 2;
	KEXPECT(!spanheap_alloc_aligned(&sh, half + 2 * MM_PAGE_SIZE, half, 0));
	mm_port_set_atomic(true);
	KEXPECT(!served(100 * MM_PAGE_SIZE, MM_ATOMIC));
	KEXPECT(!spanheap_realloc(&sh, p, 100 * MM_PAGE_SIZE, MM_ATOMIC));
	mm_port_set_atomic(false);
	mm_port_set_quiet(false);
	spanheap_free(&sh, p);
	stats_of(&st);
	KEXPECT_EQ(st.fail_calls, 0);
	spanheap_fail_disarm(&sh);
	SH_CHECK(&sh, "after the filters");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_inject, arm_refuses_a_bad_attr)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	KEXPECT(!arm(1, SPANHEAP_FAIL_PROB_ALL + 1, -1, 0, 0));
	KEXPECT(!arm(1, SPANHEAP_FAIL_PROB_ALL, -2, 0, 0));
	/* Its message shows |times| without overflowing (UBSan) */
	KEXPECT(!arm(1, SPANHEAP_FAIL_PROB_ALL, INT64_MIN, 0, 0));
	KEXPECT(strstr(mm_port_last_log(), "times -9223372036854775808") !=
	        NULL);
	KEXPECT(!arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0, 8));
	KEXPECT(!arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0,
	             SPANHEAP_FAIL_ATOMIC_ONLY));
	mm_port_set_quiet(false);
	KEXPECT(strstr(mm_port_last_log(), "probability") != NULL);
	struct spanheap_fail_attr a;
	KEXPECT(!spanheap_fail_get(&sh, &a));
	KEXPECT(served(SMALL, 0));
	sh_heap_release(&heap, &sh);
}

/* Every byte of p's n is its index's low byte. */
static bool holds_pattern(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)i)
			return false;
	return true;
}

static void *filled(size_t n)
{
	unsigned char *p = spanheap_alloc(&sh, n, 0);
	for (size_t i = 0; p && i < n; i++)
		p[i] = (unsigned char)i;
	return p;
}

KTEST(spanheap_inject, failed_calls_are_real_oom_and_keep_the_old_block)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *small = filled(SMALL), *big = filled(BIG);
	KASSERT(small && big);
	size_t used = sh_in_use_pages(&heap);
	KASSERT(arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0, 0));
	/* Growth out of the object: NULL, the object as it was. */
	KEXPECT(spanheap_realloc(&sh, small, 4 * SMALL, 0) == NULL);
	KEXPECT(spanheap_realloc(&sh, big, 2 * BIG, 0) == NULL);
	KEXPECT(spanheap_realloc(&sh, big, BIG + 100, MM_ZERO) == NULL);
	KEXPECT(holds_pattern(small, SMALL) && holds_pattern(big, BIG));
	KEXPECT_EQ(spanheap_usable_size(&sh, big), BIG);
	KEXPECT(spanheap_realloc(&sh, NULL, SMALL, 0) == NULL);
	KEXPECT(spanheap_calloc(&sh, 4, SMALL, 0) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SMALL, 256, 0) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SMALL, 2 * MM_PAGE_SIZE, 0) ==
	        NULL);
	/* Nothing taken for them. */
	KEXPECT_EQ(sh_in_use_pages(&heap), used);
	struct spanheap_stats st;
	stats_of(&st);
	KEXPECT_EQ(st.fail_injected, 7);
	/* A realloc within its object needs no memory: not eligible. */
	KEXPECT(spanheap_realloc(&sh, small, SMALL - 8, 0) == small);
	stats_of(&st);
	KEXPECT_EQ(st.fail_calls, 7);
	spanheap_fail_disarm(&sh);
	void *moved = spanheap_realloc(&sh, small, 4 * SMALL, 0);
	KEXPECT(moved && holds_pattern(moved, SMALL - 8));
	spanheap_free(&sh, moved);
	spanheap_free(&sh, big);
	SH_CHECK(&sh, "after the failed calls");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_inject, armed_the_magazines_stay_empty)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh_alloc_n(&sh, objs, 64, SMALL));
	for (size_t i = 0; i < 64; i++)
		spanheap_free(&sh, objs[i]);
	struct spanheap_stats st;
	stats_of(&st);
	KEXPECT(st.mag_objects > 0);
	/* No failure: only the slow paths' way. */
	KASSERT(arm(1, 0, -1, 0, 0));
	stats_of(&st);
	KEXPECT_EQ(st.mag_objects, 0);
	KASSERT(sh_alloc_n(&sh, objs, 64, SMALL));
	for (size_t i = 0; i < 64; i++)
		spanheap_free(&sh, objs[i]);
	stats_of(&st);
	KEXPECT_EQ(st.mag_objects, 0);
	KEXPECT_EQ(st.fail_calls, 64);
	KEXPECT_EQ(st.fail_injected, 0);
	SH_CHECK(&sh, "armed");
	spanheap_fail_disarm(&sh);
	KASSERT(sh_alloc_n(&sh, objs, 64, SMALL));
	for (size_t i = 0; i < 64; i++)
		spanheap_free(&sh, objs[i]);
	stats_of(&st);
	KEXPECT(st.mag_objects > 0);
	KEXPECT_EQ(st.fail_calls, 64);
	SH_CHECK(&sh, "disarmed");
	sh_heap_release(&heap, &sh);
}

/*
 * A CPU the disarm cannot reach (the port refuses to run there) keeps its
 * magazines held at size 0; its next free finds the magazine full, sees
 * injection off, and gives it its floor back before the push
 * (mag_full_claimed), as a flush would have: the object stays in the
 * magazine, and the CPU's next allocation of the class gets it back.
 */
KTEST(spanheap_inject, a_cpu_the_disarm_missed_gets_its_magazine_back_at_a_free)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	unsigned cls = sizeclass_of(SMALL);
	mm_port_set_cpu(1); /* its first frees make its magazine slab */
	KASSERT(sh_alloc_n(&sh, objs, 8, SMALL));
	for (size_t i = 0; i < 8; i++)
		spanheap_free(&sh, objs[i]);
	mm_port_set_cpu(0);
	KASSERT(sh.caches[1].slab != NULL);
	KASSERT(arm(1, 0, -1, 0, 0));
	struct mmag *m = &sh.caches[1].mag[cls];
	uintptr_t *base = mag_base(&sh, 1, cls);
	KEXPECT(m->limit == base); /* held at size 0 */
	mm_port_refuse_each_other_cpu(true);
	spanheap_fail_disarm(&sh);
	mm_port_refuse_each_other_cpu(false);
	KEXPECT(m->limit == base); /* CPU 1 was not reached */
	mm_port_set_cpu(1);
	void *p = spanheap_alloc(&sh, SMALL, 0);
	KASSERT(p);
	KEXPECT(mag_top(m) == base);
	spanheap_free(&sh, p);
	KEXPECT(m->limit == base + mag_floor(&sh, cls));
	KEXPECT(mag_top(m) == base + 1 && base[0] == (uintptr_t)p);
	struct spanheap_stats st;
	stats_of(&st);
	KEXPECT_EQ(st.mag_objects, 1);
	void *q = spanheap_alloc(&sh, SMALL, 0);
	KEXPECT(q == p);
	spanheap_free(&sh, q);
	mm_port_set_cpu(0);
	SH_CHECK(&sh, "after the magazine's floor came back");
	sh_heap_release(&heap, &sh);
}

/*
 * An arm the port cannot take to the other CPUs: injection is on (this
 * CPU's calls fail), but arm returns false with a line saying so, and a
 * CPU it did not reach serves calls from its magazine until that empties
 * and its refill meets the injection (spanheap_fail.c's limits).
 */
KTEST(spanheap_inject, an_arm_that_cannot_reach_other_cpus_says_so)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	unsigned cls = sizeclass_of(SMALL);
	mm_port_set_cpu(1);
	KASSERT(sh_alloc_n(&sh, objs, 8, SMALL));
	for (size_t i = 0; i < 8; i++)
		spanheap_free(&sh, objs[i]);
	struct mmag *m = &sh.caches[1].mag[cls];
	uintptr_t *base = mag_base(&sh, 1, cls);
	size_t kept = (size_t)(mag_top(m) - base);
	KASSERT(kept > 0 && kept < 4096);
	mm_port_set_cpu(0);
	unsigned long logs = mm_port_log_count();
	mm_port_refuse_each_other_cpu(true);
	bool reached = arm(1, SPANHEAP_FAIL_PROB_ALL, -1, 0, 0);
	mm_port_refuse_each_other_cpu(false);
	KEXPECT(!reached);
	KEXPECT_EQ(mm_port_log_count(), logs + 1);
	KEXPECT(strstr(mm_port_last_log(),
	               "spanheap: failure injection armed, but the port could "
	               "not reach the other CPUs") != NULL);
	struct spanheap_fail_attr a;
	KEXPECT(spanheap_fail_get(&sh, &a));
	struct spanheap_stats st;
	stats_of(&st);
	KEXPECT(st.fail_armed);
	KEXPECT(spanheap_alloc(&sh, SMALL, 0) == NULL); /* CPU 0: flushed */
	/* CPU 1: its magazine, then nothing. */
	mm_port_set_cpu(1);
	KEXPECT(m->limit != base);
	size_t n = 0;
	while (n < 4096 && (objs[n] = spanheap_alloc(&sh, SMALL, 0)) != NULL)
		n++;
	KEXPECT_EQ(n, kept);
	KEXPECT(mag_top(m) == base);
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	mm_port_set_cpu(0);
	spanheap_fail_disarm(&sh);
	KEXPECT(!spanheap_fail_get(&sh, &a));
	SH_CHECK(&sh, "after the arm that missed CPU 1");
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

enum { THREADS = 4, PER_THREAD = 2000, CAP = 300 };

static _Atomic unsigned long thread_nulls;

/* A CPU's worth of calls under the cap: small, large, atomic; keeps a
 * few live, frees them all. */
static void *capped_worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	mm_port_set_cpu(cpu);
	void *live[8] = {0};
	for (unsigned i = 0; i < PER_THREAD; i++) {
		unsigned slot = i % 8;
		spanheap_free(&sh, live[slot]);
		size_t size = i % 17 == 0 ? BIG : 16 + (i * 40) % 2000;
		live[slot] = spanheap_alloc(&sh, size, i % 5 ? 0 : MM_ATOMIC);
		if (!live[slot])
			atomic_fetch_add(&thread_nulls, 1);
	}
	for (unsigned slot = 0; slot < 8; slot++)
		spanheap_free(&sh, live[slot]);
	spanheap_flush_cache(&sh);
	return NULL;
}

/* Concurrent callers: exactly CAP failures, no more, and every NULL is an
 * injected one; the heap checks clean and leaks nothing. */
KTEST(spanheap_inject, concurrent_callers_get_exactly_times_failures)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t kept0 = sh_in_use_pages(&heap);
	KASSERT(arm(1, 5000, CAP, 7, 0));
	atomic_store(&thread_nulls, 0);
	pthread_t t[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		KASSERT(pthread_create(&t[i], NULL, capped_worker, (void *)i) ==
		        0);
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	mm_port_set_cpu(0);
	struct spanheap_stats st;
	stats_of(&st);
	KEXPECT_EQ(st.fail_injected, CAP);
	/* An atomic call may meet a real refusal (another CPU growing). */
	KEXPECT_EQ(atomic_load(&thread_nulls), CAP + st.n.atomic_fails);
	KEXPECT_EQ(st.fail_calls, THREADS * PER_THREAD);
	SH_CHECK(&sh, "after the concurrent failures");
	spanheap_fail_disarm(&sh);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	KEXPECT(sh_kept_pages(&sh) >= kept0);
	sh_heap_release(&heap, &sh);
}

/* Thousands of injected failures among mixed calls on four CPUs: realloc
 * chains keep their bytes, the checker is clean every 500 calls, and
 * release_all leaves only the pages the heap keeps. */
KTEST(spanheap_inject, many_failures_leave_a_clean_heap)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(arm(1, 4000, -1, 99, 0));
	size_t n = 512;
	memset(objs, 0, n * sizeof(objs[0]));
	for (unsigned i = 0; i < 20000; i++) {
		mm_port_set_cpu(i % 4);
		size_t k = (i * 2654435761u) % n;
		size_t size = i % 13 == 0 ? BIG + i : 8 + i % 3000;
		if (i % 3 == 0 && objs[k]) {
			memset(objs[k], 0x5a, 8);
			void *r = spanheap_realloc(&sh, objs[k], size, 0);
			if (r)
				objs[k] = r;
			KEXPECT(((unsigned char *)objs[k])[7] == 0x5a);
		} else {
			spanheap_free(&sh, objs[k]);
			objs[k] =
			        spanheap_alloc(&sh, size, i % 2 ? MM_ZERO : 0);
		}
		if (i % 500 == 499)
			SH_CHECK(&sh, "among injected failures");
	}
	mm_port_set_cpu(0);
	struct spanheap_stats st;
	stats_of(&st);
	KEXPECT(st.fail_injected > 5000);
	free_all_disarm(n);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/*
 * The span heap out of pages while frees wait to be swept, under threads
 * (mm/spanheap*.c through the POSIX port; built for ThreadSanitizer too):
 * three workers, each a CPU of its own, fill a small arena with objects
 * of one size until the allocation fails, check each object's pattern and
 * free them all; each round another size, large ones too, while the
 * sweeper thread runs. The arena is full at nearly every step, so the
 * page heap's refusals make the workers sweep (spanheap_reclaim) at the
 * same time as each other and as the sweeper, and a worker's NULL comes
 * only after its sweep. At the end every pattern held, the checker
 * passes, and no span is left.
 */
#include <pthread.h>

#include "../../kernel/ktest.h"
#include "stress_util.h"
#include "spanheap_test_util.h"

enum { WORKERS = 3, ROUNDS = 6, MAXOBJ = 1 << 16 };

static const size_t rsizes[] = {64, 256, 2048, 40 << 10};
#define NSIZES (sizeof rsizes / sizeof rsizes[0])

struct rworker {
	int id;
	size_t got[ROUNDS];
	struct stress_failures failures;
	void *objs[MAXOBJ];
};

static struct mheap heap;
static struct spanheap sh;
static struct rworker rws[WORKERS];

/* What object i of worker w holds in its first and last words. */
static uintptr_t pattern(const struct rworker *w, size_t i, const void *p)
{
	return (uintptr_t)p ^ ((uintptr_t)w->id << 56) ^ i;
}

static void fill(struct rworker *w, size_t i, size_t size)
{
	uintptr_t *p = w->objs[i];
	p[0] = p[size / sizeof(uintptr_t) - 1] = pattern(w, i, p);
}

static void check(struct rworker *w, size_t i, size_t size)
{
	uintptr_t *p = w->objs[i], want = pattern(w, i, p);
	if (p[0] != want || p[size / sizeof(uintptr_t) - 1] != want)
		stress_fail(&w->failures, "object %zu of %zu bytes at %p: %#lx",
		            i, size, (void *)p, (unsigned long)p[0]);
}

static void *rworker_main(void *arg)
{
	struct rworker *w = arg;
	mm_port_set_cpu(1 + (unsigned)w->id);
	for (int r = 0; r < ROUNDS; r++) {
		size_t size = rsizes[(size_t)(w->id + r) % NSIZES], n = 0;
		while (n < MAXOBJ &&
		       (w->objs[n] = spanheap_alloc(&sh, size, 0)) != NULL)
			fill(w, n++, size);
		w->got[r] = n;
		for (size_t i = 0; i < n; i++) {
			check(w, i, size);
			spanheap_free(&sh, w->objs[i]);
		}
	}
	spanheap_flush_cache(&sh);
	return NULL;
}

KTEST(spanheap_reclaim, threads_out_of_pages_sweep_together)
{
	KASSERT(sh_heap_tight(&heap, &sh, 2));
	KASSERT(spanheap_sweeper_start(&sh));
	pthread_t t[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		rws[i] = (struct rworker){.id = i};
		KASSERT(pthread_create(&t[i], NULL, rworker_main, &rws[i]) ==
		        0);
	}
	size_t total = 0, nulls = 0;
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(t[i], NULL);
		if (rws[i].failures.n)
			ktest_fail_at(__FILE__, __LINE__,
			              "worker %d: %lu bad patterns, first: %s",
			              i, rws[i].failures.n,
			              rws[i].failures.first);
		for (int r = 0; r < ROUNDS; r++) {
			total += rws[i].got[r];
			nulls += rws[i].got[r] < MAXOBJ;
		}
	}
	spanheap_sweeper_stop(&sh);
	mm_port_set_cpu(0);
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "after the rounds");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	ktest_diag("%zu objects in %d rounds of %d workers, %zu ended by NULL; "
	           "%lu cycles, %lu of them for refused allocations",
	           total, ROUNDS, WORKERS, nulls, (unsigned long)sh.n.cycles,
	           (unsigned long)sh.n.reclaims);
	KEXPECT(total > 0);
	KEXPECT(nulls > 0);
	KEXPECT(sh.n.reclaims > 0);
	sh_heap_release(&heap, &sh);
}

/* ---- Other CPUs' caches ---------------------------------------------------
 */

/* What CPU 1 leaves in its cache: OTHER_N objects of OTHER_SIZE, freed
 * there, so its magazine (and cached span) hold them and keep their spans
 * in use until something gives them back. */
enum { OTHER_SIZE = 512, OTHER_N = 96 };

static void *other_objs[OTHER_N];

static void leave_on_cpu1(void)
{
	mm_port_set_cpu(1);
	KASSERT(sh_alloc_n(&sh, other_objs, OTHER_N, OTHER_SIZE));
	for (int i = 0; i < OTHER_N; i++)
		spanheap_free(&sh, other_objs[i]);
	mm_port_set_cpu(0);
}

static size_t class_spans(size_t size)
{
	static struct spanheap_stats st; /* large: not on the stack */
	spanheap_stats(&sh, &st);
	return st.cls[sizeclass_of(size)].spans;
}

static void *cpu0_objs[1 << 17];

/* 64-byte objects on CPU 0 until NULL; all freed again. Their number. */
static size_t fill_cpu0(void)
{
	size_t n = 0;
	while (n < sizeof cpu0_objs / sizeof cpu0_objs[0] &&
	       (cpu0_objs[n] = spanheap_alloc(&sh, 64, 0)) != NULL)
		n++;
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, cpu0_objs[i]);
	return n;
}

/*
 * CPU 1's magazine holds freed 512-byte objects; CPU 0 then uses up the
 * arena. Before its NULL, the refused allocation gives every CPU's cache
 * back (spanheap_reclaim through mm_port_each_other_cpu), so no span of
 * that class is left and CPU 0 got their pages. A port that cannot reach
 * other CPUs (refused here) leaves them, and says so in the counters.
 */
KTEST(spanheap_reclaim, out_of_pages_flushes_other_cpus)
{
	KASSERT(sh_heap_tight(&heap, &sh, 2));
	mm_port_set_cpu(0);
	leave_on_cpu1();
	KASSERT(class_spans(OTHER_SIZE) > 0);
	size_t n = fill_cpu0();
	KEXPECT(n > 0);
	KEXPECT_EQ(class_spans(OTHER_SIZE), 0);
	KEXPECT(atomic_load(&sh.flush_alls) > 0);
	KEXPECT_EQ(atomic_load(&sh.flush_alls_failed), 0);

	mm_port_refuse_each_other_cpu(true);
	leave_on_cpu1();
	size_t m = fill_cpu0();
	mm_port_refuse_each_other_cpu(false);
	ktest_diag("CPU 0 got %zu objects with CPU 1's cache given back, %zu "
	           "without",
	           n, m);
	KEXPECT(class_spans(OTHER_SIZE) > 0);
	KEXPECT(atomic_load(&sh.flush_alls_failed) > 0);
	KEXPECT(m < n);

	spanheap_release_all(&sh);
	SH_CHECK(&sh, "after the rounds");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

/* Release-everything gives back what another CPU's cache holds too; with
 * a port that cannot reach it, that CPU keeps its spans. */
KTEST(spanheap_reclaim, release_all_flushes_other_cpus)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	mm_port_refuse_each_other_cpu(true);
	leave_on_cpu1();
	spanheap_release_all(&sh);
	mm_port_refuse_each_other_cpu(false);
	KEXPECT(class_spans(OTHER_SIZE) > 0);
	KEXPECT(sh_span_pages(&heap, &sh) > 0);
	spanheap_release_all(&sh);
	KEXPECT_EQ(class_spans(OTHER_SIZE), 0);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	SH_CHECK(&sh, "after the release");
	sh_heap_release(&heap, &sh);
}

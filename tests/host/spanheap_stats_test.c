/*
 * The span heap's statistics at quiescence (spanheap_stats): after
 * objects allocated on four simulated CPUs are freed half on their own
 * CPU and half on another, every cache flushed and a cycle finished,
 * every per-class count (objects in use and free, spans, bytes), the
 * totals, the frees and the sweep counters are exact, and a second cycle
 * changes none of them. Then the same with threads: three workers, each a
 * CPU of its own, free most of each other's objects while the sweeper
 * thread runs; once they have ended and the sweeper has stopped, a flush of
 * every CPU and a cycle leave the counts exact again. Before any fold,
 * frees still in the spans' bits are counted too; the flush counts and
 * the page heap's numbers are copied; and the slabinfo dump, read back,
 * shows the heap as it is, and waits for another in progress.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "after everything was freed");
	free(st);
	free(r);
	sh_heap_release(&heap, &sh);
}

/*
 * Frees not folded yet count too, read from the spans' bits: on a heap in
 * poison mode (no magazines) a free on the CPU that caches the span sets
 * its local bit, and one on another CPU its pending bit; neither is in
 * the class's booked counts until a fold.
 */
KTEST(spanheap_stats, frees_not_folded_yet_are_counted)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	void *p[4];
	KASSERT(sh_alloc_n(&sh, p, 4, 63)); /* 64-byte objects in poison */
	spanheap_free(&sh, p[0]);
	spanheap_free(&sh, p[1]); /* local bits: CPU 0 caches the span */
	mm_port_set_cpu(1);
	spanheap_free(&sh, p[2]); /* a pending bit */
	mm_port_set_cpu(0);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->local_frees, 2);
	KEXPECT_EQ(st->remote_frees, 1);
	KEXPECT_EQ(st->cls[sizeclass_of(64)].objects_in_use, 1);
	KEXPECT_EQ(st->mag_objects, 0);
	free(st);
	spanheap_free(&sh, p[3]);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * The counters spanheap_stats copies from elsewhere: flushes of every CPU,
 * and those the port could not make (it refused to hold the other CPUs:
 * this CPU's cache alone was flushed), the sweepgen, and the page heap's
 * own numbers.
 */
KTEST(spanheap_stats, copies_the_flush_counts_and_the_page_heap)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 100000, 0);
	KASSERT(p);
	KEXPECT(spanheap_flush_all(&sh));
	mm_port_refuse_each_other_cpu(true);
	KEXPECT(!spanheap_flush_all(&sh));
	KEXPECT(!spanheap_flush_all(&sh));
	mm_port_refuse_each_other_cpu(false);
	spanheap_sweep_cycle(&sh);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->n.flush_alls, 1);
	KEXPECT_EQ(st->n.flush_alls_failed, 2);
	KEXPECT_EQ(st->sweepgen, 4 + 2); /* spanheap_init's, one cycle on */
	struct mheap_stats hs;
	mheap_stats(&heap, &hs);
	KEXPECT(hs.in_use_pages >= 25);
	KEXPECT_EQ(st->heap.in_use_pages, hs.in_use_pages);
	KEXPECT_EQ(st->heap.grown_pages, hs.grown_pages);
	free(st);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/* ---- Threads ------------------------------------------------------------ */

enum { WORKERS = 3, TPER = 2000 };

static const size_t tsizes[] = {16, 48, 256, 1024, 4096, 40000};
#define NTSIZES (sizeof(tsizes) / sizeof(tsizes[0]))

struct tworker {
	unsigned id;
	void *p[NTSIZES][TPER];
};

static struct tworker tws[WORKERS];
static pthread_barrier_t allocated;

/* Allocates TPER objects of each size; once every worker has, frees the
 * next worker's objects but every third. */
static void *tworker_main(void *arg)
{
	struct tworker *w = arg;
	mm_port_set_cpu(1 + w->id);
	for (size_t k = 0; k < NTSIZES; k++)
		for (unsigned i = 0; i < TPER; i++)
			w->p[k][i] = spanheap_alloc(&sh, tsizes[k], 0);
	pthread_barrier_wait(&allocated);
	struct tworker *next = &tws[(w->id + 1) % WORKERS];
	for (size_t k = 0; k < NTSIZES; k++)
		for (unsigned i = 0; i < TPER; i++)
			if (i % 3 != 0) {
				spanheap_free(&sh, next->p[k][i]);
				next->p[k][i] = NULL;
			}
	return NULL;
}

/* Each class's numbers in st are what the workers kept (r->kept). */
static void expect_kept(const struct spanheap_stats *st,
                        const struct stats_run *r)
{
	size_t large_pages =
	        r->kept[0] * ((40000 + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE);
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		const struct spanheap_class_stats *cs = &st->cls[cls];
		size_t nspans = atomic_load(&sh.central[cls].nspans);
		if (cs->objects_in_use != r->kept[cls] || cs->spans != nspans ||
		    cs->objects_free !=
		            nspans * sizeclass_info[cls].nelems - r->kept[cls])
			ktest_fail_at(__FILE__, __LINE__,
			              "class %u: %zu in use (held %zu), %zu "
			              "free, %zu spans (%zu made)",
			              cls, cs->objects_in_use, r->kept[cls],
			              cs->objects_free, cs->spans, nspans);
	}
	KEXPECT_EQ(st->cls[0].spans, r->kept[0]);
	KEXPECT_EQ(st->large_pages, large_pages);
	KEXPECT_EQ(st->mag_objects, 0);
	KEXPECT_EQ(st->n.large_allocs - st->n.large_frees, r->kept[0]);
}

KTEST(spanheap_stats, exact_after_cross_thread_frees_and_a_sweep)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(spanheap_sweeper_start(&sh));
	KASSERT(pthread_barrier_init(&allocated, NULL, WORKERS) == 0);
	pthread_t t[WORKERS];
	for (unsigned w = 0; w < WORKERS; w++) {
		tws[w].id = w;
		KASSERT(pthread_create(&t[w], NULL, tworker_main, &tws[w]) ==
		        0);
	}
	for (unsigned w = 0; w < WORKERS; w++)
		pthread_join(t[w], NULL);
	pthread_barrier_destroy(&allocated);
	spanheap_sweeper_stop(&sh);
	KEXPECT(spanheap_flush_all(&sh));
	spanheap_sweep_cycle(&sh);
	struct stats_run *r = calloc(1, sizeof(*r));
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(r && st);
	size_t held = 0;
	for (unsigned w = 0; w < WORKERS; w++)
		for (size_t k = 0; k < NTSIZES; k++)
			for (unsigned i = 0; i < TPER; i++) {
				if (!tws[w].p[k][i])
					continue;
				KASSERT(i % 3 == 0);
				unsigned cls = tsizes[k] <= SC_MAX_SIZE
				                       ? sizeclass_of(tsizes[k])
				                       : 0;
				r->kept[cls]++;
				held++;
			}
	KEXPECT_EQ(held, (size_t)WORKERS * NTSIZES * ((TPER + 2) / 3));
	spanheap_stats(&sh, st);
	expect_kept(st, r);
	SH_CHECK(&sh, "after the workers");
	for (unsigned w = 0; w < WORKERS; w++)
		for (size_t k = 0; k < NTSIZES; k++)
			for (unsigned i = 0; i < TPER; i++)
				spanheap_free(&sh, tws[w].p[k][i]);
	spanheap_release_all(&sh);
	spanheap_stats(&sh, st);
	KEXPECT_EQ(st->spans, 0);
	KEXPECT_EQ(st->bytes_in_use, 0);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	free(st);
	free(r);
	sh_heap_release(&heap, &sh);
}

static void *dump_main(void *arg)
{
	mm_port_set_cpu((unsigned)(uintptr_t)arg);
	for (int i = 0; i < 20; i++)
		spanheap_dump(&sh);
	return NULL;
}

/* Two threads dump at once: each dump's statistics are its own (under
 * ThreadSanitizer, a buffer shared between them is a data race). */
KTEST(spanheap_stats, dumps_at_once_each_have_their_own_numbers)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	void *p[64];
	for (int i = 0; i < 64; i++) {
		p[i] = spanheap_alloc(&sh, 16 + (size_t)i * 48, 0);
		KASSERT(p[i]);
	}
	mm_port_set_quiet(true);
	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		KASSERT(pthread_create(&t[i], NULL, dump_main, (void *)i) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	mm_port_set_quiet(false);
	for (int i = 0; i < 64; i++)
		spanheap_free(&sh, p[i]);
	SH_CHECK(&sh, "after the dumps");
	sh_heap_release(&heap, &sh);
}

/*
 * The slabinfo dump (spanheap_dump) on a known heap: one row, for the one
 * class with a span, whose columns (in use, free, spans, bytes, waste, the
 * object in a magazine and the magazine's room) are the heap's; the large
 * line; the totals; no word of poison mode on a heap not in it; and the
 * page heap's lines after. Read back through the port's capture.
 */
KTEST(spanheap_stats, dump_shows_the_heap_as_it_is)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p[4]; /* over 512 bytes: no refill fills a magazine */
	KASSERT(sh_alloc_n(&sh, p, 4, 1024));
	spanheap_free(&sh, p[3]); /* into CPU 0's magazine, its first */
	void *big = spanheap_alloc(&sh, 100000, 0); /* 25 pages */
	KASSERT(big);
	static char log[16384];
	sh_dump_log(&sh, log, sizeof(log));
	unsigned cls = sizeclass_of(1024);
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	size_t span_bytes = ci->npages * MM_PAGE_SIZE,
	       large = 25 * MM_PAGE_SIZE;
	unsigned rows = 0;
	for (const char *l = log; (l = strstr(l, "slabinfo: ")) != NULL; l++) {
		unsigned c, size, pages;
		size_t v[7];
		if (sscanf(l, "slabinfo: %u %u %u %zu %zu %zu %zu %zu %zu %zu",
		           &c, &size, &pages, &v[0], &v[1], &v[2], &v[3], &v[4],
		           &v[5], &v[6]) != 10)
			continue; /* the heading, the large line */
		rows++;
		KEXPECT_EQ(c, cls);
		KEXPECT_EQ(size, 1024);
		KEXPECT_EQ(pages, ci->npages);
		KEXPECT_EQ(v[0], 3);              /* in use */
		KEXPECT_EQ(v[1], ci->nelems - 3); /* free */
		KEXPECT_EQ(v[2], 1);              /* spans */
		KEXPECT_EQ(v[3], span_bytes);
		KEXPECT_EQ(v[4], (span_bytes - 3 * 1024) * 100 / span_bytes);
		KEXPECT_EQ(v[5], 1);               /* in magazines */
		KEXPECT_EQ(v[6], sh.mag_max[cls]); /* room: at its most */
	}
	KEXPECT_EQ(rows, 1);
	KEXPECT(strstr(log, "slabinfo: large: 1 spans, 25 pages\n") != NULL);
	char want[192];
	snprintf(want, sizeof(want),
	         "spanheap: 2 spans, %zu bytes in use of %zu; 1 objects in "
	         "magazines; frees: 0 local, 0 remote; ",
	         3 * 1024 + large, span_bytes + large);
	if (!strstr(log, want))
		ktest_fail_at(__FILE__, __LINE__, "no line '%s' in:\n%s", want,
		              log);
	KEXPECT(strstr(log, "poison mode") == NULL);
	KEXPECT(strstr(log, "\nmheap: pages: ") != NULL); /* the page heap's */
	spanheap_free(&sh, big);
	for (int i = 0; i < 3; i++)
		spanheap_free(&sh, p[i]);
	SH_CHECK(&sh, "after the dump");
	sh_heap_release(&heap, &sh);
}

/* dump_waits_for_the_dump_in_progress: which dump this thread runs (1: A,
 * 2: B), and what the hooks saw. */
static _Thread_local int dumper;
static atomic_bool a_inside, b_waited, b_logged, b_logged_inside;
static pthread_t dumper_b;

static void *dumper_b_main(void *arg)
{
	dumper = 2;
	mm_port_set_cpu(1);
	spanheap_dump(&sh);
	return NULL;
}

/* A's first line is inside its dump's statistics (after it took them):
 * B starts its dump then, and A waits until B either yields (waiting for
 * A) or logs (it went in). A's sweep line is its last inside. */
static void dump_log_hook(const char *line)
{
	static bool b_started;
	if (dumper == 2) {
		if (atomic_load(&a_inside))
			atomic_store(&b_logged_inside, true);
		atomic_store(&b_logged, true);
	} else if (dumper == 1 && !b_started) {
		b_started = true;
		atomic_store(&a_inside, true);
		KASSERT(pthread_create(&dumper_b, NULL, dumper_b_main, NULL) ==
		        0);
		while (!atomic_load(&b_waited) && !atomic_load(&b_logged))
			sched_yield();
	} else if (dumper == 1 && strncmp(line, "spanheap: sweep:", 16) == 0) {
		atomic_store(&a_inside, false);
	}
}

static void dump_yield_hook(void)
{
	if (dumper == 2)
		atomic_store(&b_waited, true);
}

/* A second dump while one prints waits for it (they share one buffer of
 * statistics): staged with the port's hooks, so that B starts while A is
 * inside, and must yield, not log, until A is done. */
KTEST(spanheap_stats, dump_waits_for_the_dump_in_progress)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	dumper = 1;
	mm_port_set_quiet(true);
	mm_port_log_hook = dump_log_hook;
	mm_port_yield_hook = dump_yield_hook;
	spanheap_dump(&sh);
	pthread_join(dumper_b, NULL);
	mm_port_log_hook = NULL;
	mm_port_yield_hook = NULL;
	mm_port_set_quiet(false);
	dumper = 0;
	KEXPECT(atomic_load(&b_waited));
	KEXPECT(!atomic_load(&b_logged_inside));
	KEXPECT(atomic_load(&b_logged));
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

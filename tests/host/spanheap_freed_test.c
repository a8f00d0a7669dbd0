/*
 * The large frees the span heap remembers (mm/spanheap_freed.c): an
 * address on a freed large object's pages names the object, where in it,
 * when and on which CPU it was freed, and in poison mode the stack that
 * freed it; a realloc's tail given back is named as such; the oldest is
 * forgotten after SPANHEAP_FREED_LARGE_RING newer frees and said to be so;
 * pages handed out again are their new object's. Under threads (built for
 * ThreadSanitizer too): a reader asks the ring about the pages of large
 * objects that other threads free and allocate meanwhile, and every
 * answer names a free that gave that address back.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

static struct mheap heap;
static struct spanheap sh;

/* spanheap_where_log(p)'s lines, into buf. */
static void where_log(const void *p, char *buf, size_t size)
{
	sh_where_log(&sh, p, buf, size);
}

/* The free the poison test must find in the record's stack. */
SH_SITE static void free_here(void *p)
{
	spanheap_free(&sh, p);
	__asm__ volatile("" ::: "memory"); /* no tail call */
}

KTEST(spanheap_freed, names_the_object_its_time_and_cpu)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, 100000, 0); /* 25 pages */
	KASSERT(p);
	uint64_t before = mm_port_now_ns();
	mm_port_set_cpu(2);
	spanheap_free(&sh, p);
	mm_port_set_cpu(0);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 70000, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREED_LARGE);
	KEXPECT_EQ(w.start, (uintptr_t)p);
	KEXPECT_EQ(w.offset, 70000);
	KEXPECT_EQ(w.span_base, (uintptr_t)p);
	KEXPECT_EQ(w.span_pages, 25u);
	KEXPECT_EQ(w.freed_pages, 25u);
	KEXPECT_EQ(w.elemsize, 25 * MM_PAGE_SIZE);
	KEXPECT(w.freed.ns >= before && w.freed.ns <= mm_port_now_ns());
	KEXPECT_EQ(w.freed.cpu, 2u);
	KEXPECT_EQ(w.cpu, 2);
	KEXPECT_EQ(w.freed.npcs, 0u); /* no stacks outside poison mode */
	char log[1024], want[256];
	where_log(p + 70000, log, sizeof(log));
	snprintf(want, sizeof(want),
	         "spanheap: %#lx: 70000 bytes into a large object [%#lx, +25 "
	         "pages) freed ",
	         (unsigned long)(p + 70000), (unsigned long)p);
	KEXPECT(strstr(log, want) != NULL);
	KEXPECT(strstr(log, " us before on CPU 2 (a use after free?)"));

	/* Handed out again: the new object's, not the free's. */
	char *q = spanheap_alloc(&sh, 100000, 0);
	KASSERT(q == p); /* the page heap gives the lowest run first */
	KASSERT(spanheap_where(&sh, p + 70000, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_LARGE);
	KEXPECT_EQ(w.freed.ns, 0u);
	spanheap_free(&sh, q);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_freed, a_reallocs_tail_and_a_free_forgotten)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, 100000, 0); /* 25 pages */
	KASSERT(p);
	char *q = spanheap_realloc(&sh, p, 50000, 0); /* 13: in place */
	KASSERT(q == p);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 90000, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREED_LARGE);
	KEXPECT_EQ(w.start, (uintptr_t)p);
	KEXPECT_EQ(w.span_pages, 25u);
	KEXPECT_EQ(w.span_base, (uintptr_t)p + 13 * MM_PAGE_SIZE);
	KEXPECT_EQ(w.freed_pages, 12u);
	KEXPECT(w.freed.ns != 0);
	char log[1024], want[256];
	where_log(p + 90000, log, sizeof(log));
	snprintf(want, sizeof(want),
	         "90000 bytes into a large object [%#lx, +25 pages), in the "
	         "tail [%#lx, +12 pages) a realloc gave back",
	         (unsigned long)p, (unsigned long)p + 13 * MM_PAGE_SIZE);
	KEXPECT(strstr(log, want) != NULL);
	/* Still the object's own pages: allocated. */
	KASSERT(spanheap_where(&sh, p + 100, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_LARGE);

	/* The ring's worth of frees of other objects (all live first, so
	 * that none takes p's pages): p's free is forgotten. */
	static char *o[SPANHEAP_FREED_LARGE_RING];
	for (int i = 0; i < SPANHEAP_FREED_LARGE_RING; i++)
		KASSERT(o[i] = spanheap_alloc(&sh, 50000, 0));
	spanheap_free(&sh, p);
	KASSERT(spanheap_where(&sh, p, &w));
	KEXPECT(w.freed.ns != 0);
	for (int i = 0; i < SPANHEAP_FREED_LARGE_RING; i++)
		spanheap_free(&sh, o[i]);
	KASSERT(spanheap_where(&sh, p, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREED_LARGE);
	KEXPECT_EQ(w.freed.ns, 0u);
	where_log(p, log, sizeof(log));
	KEXPECT(strstr(log, "one of the heap's last 32 large frees no more"));
	/* The newest is remembered. */
	KASSERT(spanheap_where(&sh, o[SPANHEAP_FREED_LARGE_RING - 1], &w));
	KEXPECT(w.freed.ns != 0);
	KEXPECT_EQ(w.start, (uintptr_t)o[SPANHEAP_FREED_LARGE_RING - 1]);
	sh_heap_release(&heap, &sh);
}

/*
 * A realloc's tail whose note the ring has forgotten is still pages a
 * large object gave back, not a large object freed: the object may live
 * on. Until a review the address was said to be on the pages of a large
 * object freed since, and a free of it a large span freed twice, while
 * the object was in use.
 */
KTEST(spanheap_freed, a_forgotten_tail_is_not_called_a_free)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	char *p = spanheap_alloc(&sh, 100000, 0); /* 25 pages */
	KASSERT(p);
	/* After p, before its shrink: none can take its tail's pages. */
	static char *o[SPANHEAP_FREED_LARGE_RING];
	for (int i = 0; i < SPANHEAP_FREED_LARGE_RING; i++)
		KASSERT(o[i] = spanheap_alloc(&sh, 50000, 0));
	KASSERT(spanheap_realloc(&sh, p, 50000, 0) == p); /* 13 pages */
	for (int i = 0; i < SPANHEAP_FREED_LARGE_RING; i++)
		spanheap_free(&sh, o[i]);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 90000, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREED_LARGE);
	KEXPECT_EQ(w.freed.ns, 0u);
	char log[1024];
	where_log(p + 90000, log, sizeof(log));
	KEXPECT(strstr(log, "a realloc's shrink") != NULL);
	KEXPECT(strstr(log, "of a large object freed since") == NULL);
	KEXPECT(strstr(log, "one of the heap's last 32 large frees no more"));
	EXPECT_MISUSE(spanheap_free(&sh, p + 90000), "a realloc's shrink",
	              p + 90000);
	KASSERT(spanheap_where(&sh, p, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_LARGE); /* in use all along */
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/*
 * An entry's sequence wraps after 2^31 writes of it (2^36 large frees of
 * the heap, some days of a busy one): the write that takes it from
 * 0xfffffffe through odd to 0 leaves an entry as good as any. Until a
 * review a sequence of 0 was read as an entry never written, and the
 * free it held was said to be forgotten.
 */
KTEST(spanheap_freed, an_entry_whose_sequence_wrapped_is_read)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	for (int i = 0; i < SPANHEAP_FREED_LARGE_RING; i++)
		atomic_store(&sh.freed_large[i].seq, UINT32_MAX - 1);
	char *p = spanheap_alloc(&sh, 100000, 0); /* 25 pages */
	KASSERT(p);
	spanheap_free(&sh, p);
	KEXPECT_EQ(atomic_load(&sh.freed_large[0].seq), 0u);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 5, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREED_LARGE);
	KEXPECT_EQ(w.start, (uintptr_t)p);
	KEXPECT_EQ(w.freed_pages, 25u);
	KEXPECT(w.freed.ns != 0);
	/* The entries never written (their pages none) name nothing. */
	KEXPECT(!spanheap_freed_large_find(
	        &sh, (uintptr_t)p + 30 * MM_PAGE_SIZE, &w));
	sh_heap_release(&heap, &sh);
}

/* Whether one of t's return addresses lies in free_here. */
static bool stack_has_free_here(const struct spanheap_track *t)
{
	uintptr_t lo = (uintptr_t)free_here, hi = lo + 256;
	for (uint32_t i = 0; i < t->npcs; i++)
		if (t->pc[i] > lo && t->pc[i] < hi)
			return true;
	return false;
}

KTEST(spanheap_freed, poison_mode_keeps_the_stack_that_freed)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	if (!sh.track)
		KTEST_SKIP("this build's port records no callers");
	char *p = spanheap_alloc(&sh, 70000, 0);
	KASSERT(p);
	free_here(p);
	struct spanheap_where w;
	KASSERT(spanheap_where(&sh, p + 5, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_FREED_LARGE);
	KEXPECT(w.freed.npcs > 0);
	KEXPECT(stack_has_free_here(&w.freed));
	char log[2048], want[128];
	where_log(p + 5, log, sizeof(log));
	snprintf(want, sizeof(want),
	         "spanheap: object %#lx: last freed on CPU 0",
	         (unsigned long)p);
	KEXPECT(strstr(log, want) != NULL);
	sh_heap_release(&heap, &sh);
}

/* ---- Under threads ---------------------------------------------------- */

enum { CHURNERS = 2, OPS = 3000 };
static _Atomic uintptr_t last_freed[CHURNERS]; /* an address on its pages */
static _Atomic int running;
static struct stress_failures churn_failures[CHURNERS];

static void churn(void *arg)
{
	int id = (int)(uintptr_t)arg;
	mm_port_set_cpu(1 + (unsigned)id);
	uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
	for (int op = 0; op < OPS; op++) {
		size_t size = 33000 + stress_random(&rng) % 100000;
		char *p = spanheap_alloc(&sh, size, 0);
		if (!p) {
			stress_fail(&churn_failures[id], "alloc %d failed", op);
			break;
		}
		p[size - 1] = 1;
		uintptr_t at = (uintptr_t)p + stress_random(&rng) % size;
		if (op % 3 == 0) /* a realloc's tail now and then */
			p = spanheap_realloc(&sh, p, size / 4, 0);
		spanheap_free(&sh, p);
		atomic_store(&last_freed[id], at);
	}
	atomic_fetch_sub(&running, 1);
}

KTEST(spanheap_freed, answers_stay_true_while_threads_free)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct mm_thread *t[CHURNERS];
	atomic_store(&running, CHURNERS);
	for (int i = 0; i < CHURNERS; i++) {
		atomic_store(&last_freed[i], 0);
		churn_failures[i] = (struct stress_failures){0};
		t[i] = mm_port_thread_start("freed-churn", churn,
		                            (void *)(uintptr_t)i);
		KASSERT(t[i]);
	}
	unsigned asked = 0, named = 0, bad = 0;
	while (atomic_load(&running) > 0 || asked < 1000) {
		for (int i = 0; i < CHURNERS; i++) {
			uintptr_t a = atomic_load(&last_freed[i]);
			/* The ring alone: spanheap_where would also read
			 * span structs the churners remake meanwhile, which
			 * it tolerates and ThreadSanitizer calls a race. */
			struct spanheap_where w = {0};
			if (!a)
				continue;
			asked++;
			if (!spanheap_freed_large_find(&sh, a, &w))
				continue;
			named++;
			/* The free named gave a back, from the object named. */
			bad += a - w.span_base >= (uintptr_t)w.freed_pages *
			                                  MM_PAGE_SIZE ||
			       w.start > w.span_base ||
			       w.offset != a - w.start || w.freed.cpu < 1 ||
			       w.freed.cpu > CHURNERS;
		}
	}
	for (int i = 0; i < CHURNERS; i++) {
		mm_port_thread_join(t[i]);
		STRESS_REPORT(i, &churn_failures[i]);
	}
	ktest_diag("%u answers, %u of them naming the free", asked, named);
	KEXPECT_EQ(bad, 0);
	KEXPECT(named > 0);
	mm_port_set_cpu(0);
	sh_flush_cpus(&sh, CHURNERS + 1);
	spanheap_check(&sh);
	mheap_check(&heap);
	sh_heap_release(&heap, &sh);
}

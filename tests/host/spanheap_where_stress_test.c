/*
 * spanheap_where under threads (mm/spanheap_where.c through the POSIX
 * port), built for ThreadSanitizer too (make test-tsan): three churn
 * threads, each a CPU of its own, allocate objects of random sizes (large
 * ones too), fill each with a pattern of its owner and address, and free
 * them, every fourth handed to the next thread to free (cross-thread
 * frees), while the sweeper and the scavenger run; meanwhile a reader on
 * CPU 0 asks, round after round until the churners are done, what each
 * of its own 48 live objects is at a moving offset. Its objects must read as
 * themselves (kind, start, offset, allocated) every time, though the spans
 * around them are made, emptied and given back; every churn object's pattern is
 * checked before its free; and the heap checks clean at the end. Bounded by
 * operation counts; no assert depends on time.
 */
#include "../../kernel/ktest.h"
#include "churn_util.h"

enum { OPS = 20000, OWN = 48, ROUNDS = 400 };

static struct mheap heap;
static struct spanheap sh;
static const size_t churn_sizes[] = {16, 40, 200, 900, 3000, 20000, 50000};
static struct churn churn = {
        .sh = &sh, .sizes = churn_sizes, .nsizes = 7, .ops = OPS};

/* How the reader's object i at offset off must read. */
static bool reads_true(char *p, size_t size, size_t off)
{
	struct spanheap_where w;
	if (!spanheap_where(&sh, p + off, &w))
		return false;
	if (w.start != (uintptr_t)p || w.offset != off)
		return false;
	return size > SC_MAX_SIZE ? w.kind == SPANHEAP_WHERE_LARGE
	                          : w.kind == SPANHEAP_WHERE_SMALL &&
	                                    w.state == SPANHEAP_OBJ_ALLOCATED;
}

KTEST(spanheap_where_stress, own_objects_read_true_while_threads_churn)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static const size_t own_sizes[] = {24, 100, 700, 4000, 40000};
	static char *own[OWN];
	for (unsigned i = 0; i < OWN; i++)
		KASSERT(own[i] = spanheap_alloc(&sh, own_sizes[i % 5], 0));
	KASSERT(spanheap_sweeper_start(&sh));
	KASSERT(mheap_scavenger_start(&heap));
	KASSERT(churn_start(&churn));
	unsigned bad = 0, round = 0;
	for (; round < ROUNDS || churn_running(&churn); round++)
		for (unsigned i = 0; i < OWN; i++) {
			size_t size = own_sizes[i % 5];
			bad += !reads_true(own[i], size,
			                   (round * 7 + i * 13) % size);
		}
	churn_finish(&churn);
	KEXPECT_EQ(bad, 0);
	ktest_diag("%u rounds of %u readings while %d threads churned", round,
	           (unsigned)OWN, (int)CHURNERS);
	for (unsigned i = 0; i < OWN; i++)
		spanheap_free(&sh, own[i]);
	spanheap_sweeper_stop(&sh);
	mheap_scavenger_stop(&heap);
	sh_flush_cpus(&sh, CHURNERS + 1);
	spanheap_check(&sh);
	mheap_check(&heap);
	sh_heap_release(&heap, &sh);
}

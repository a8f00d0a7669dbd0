/*
 * spanheap_check_copy under threads (mm/spanheap_usercopy.c through the
 * POSIX port), built for ThreadSanitizer too (make test-tsan): three
 * churn threads, each a CPU of its own, allocate, pattern-fill, check and
 * free objects of random sizes (large ones too, every fourth freed by the
 * next thread) while the sweeper and the scavenger run; meanwhile a
 * reader on CPU 0 checks copies of its own 40 live objects, round after
 * round until the churners are done: from a moving offset to the end must
 * be INSIDE every time, and a byte past the end BAD every 16th round, the
 * spans around them made, emptied and given back meanwhile. A check that
 * refused a live object's copy would panic a kernel: none may. Its
 * objects' patterns are checked at the end, and the heap checks clean.
 * Bounded by operation counts; no assert depends on time.
 */
#include "../../kernel/ktest.h"
#include "../../mm/spanheap_usercopy.h"
#include "churn_util.h"

enum { OPS = 20000, OWN = 40, ROUNDS = 400 };

static struct mheap heap;
static struct spanheap sh;
static const size_t churn_sizes[] = {16, 48, 256, 1000, 5000, 30000, 70000};
static struct churn churn = {
        .sh = &sh, .sizes = churn_sizes, .nsizes = 7, .ops = OPS};

static unsigned char own_byte(unsigned i, size_t k)
{
	return (unsigned char)(i * 31 + k * 7 + 1);
}

KTEST(spanheap_usercopy_stress, own_objects_pass_while_threads_churn)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static const size_t own_sizes[] = {24, 96, 640, 4000, 50000};
	static unsigned char *own[OWN];
	for (unsigned i = 0; i < OWN; i++) {
		size_t size = own_sizes[i % 5];
		KASSERT(own[i] = spanheap_alloc(&sh, size, 0));
		for (size_t k = 0; k < size; k++)
			own[i][k] = own_byte(i, k);
	}
	KASSERT(spanheap_sweeper_start(&sh));
	KASSERT(mheap_scavenger_start(&heap));
	KASSERT(churn_start(&churn));
	unsigned bad = 0, round = 0;
	for (; round < ROUNDS || churn_running(&churn); round++)
		for (unsigned i = 0; i < OWN; i++) {
			size_t usable = spanheap_usable_size(&sh, own[i]);
			size_t off = (round * 7 + i * 13) % usable;
			bad += spanheap_check_copy(&sh, own[i] + off,
			                           usable - off, round % 2) !=
			       SPANHEAP_COPY_INSIDE;
			if (round % 16 != 0)
				continue;
			mm_port_set_quiet(true);
			bad += spanheap_check_copy(&sh, own[i] + off,
			                           usable - off + 1,
			                           SPANHEAP_COPY_TO_USER) !=
			       SPANHEAP_COPY_BAD;
			mm_port_set_quiet(false);
		}
	churn_finish(&churn);
	KEXPECT_EQ(bad, 0);
	ktest_diag("%u rounds of %u checks while %d threads churned", round,
	           (unsigned)OWN, (int)CHURNERS);
	unsigned damaged = 0;
	for (unsigned i = 0; i < OWN; i++) {
		for (size_t k = 0; k < own_sizes[i % 5]; k++)
			damaged += own[i][k] != own_byte(i, k);
		spanheap_free(&sh, own[i]);
		own[i] = NULL;
	}
	KEXPECT_EQ(damaged, 0);
	spanheap_sweeper_stop(&sh);
	mheap_scavenger_stop(&heap);
	sh_flush_cpus(&sh, CHURNERS + 1);
	spanheap_check(&sh);
	mheap_check(&heap);
	sh_heap_release(&heap, &sh);
}

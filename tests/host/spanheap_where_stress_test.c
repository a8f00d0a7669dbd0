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
#include <stdatomic.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

enum { CHURNERS = 3, OPS = 20000, KEEP = 32, OWN = 48, ROUNDS = 400 };

static struct mheap heap;
static struct spanheap sh;

struct churner {
	int id;
	uint64_t rng;
	uintptr_t keep[KEEP];
	size_t size[KEEP];
	struct stress_failures failures;
};
static struct churner churners[CHURNERS];
/* One object handed from churner i to churner i + 1, or 0. */
static _Atomic uintptr_t handed[CHURNERS];
static _Atomic size_t handed_size[CHURNERS];
/* Churners not done yet: the reader reads until they are. */
static _Atomic int running;

static uint64_t pattern(uintptr_t p, size_t off)
{
	return (p + off) * 0x9e3779b97f4a7c15ull;
}

static void fill(uintptr_t p, size_t size)
{
	for (size_t off = 0; off + 8 <= size; off += 64)
		*(uint64_t *)(p + off) = pattern(p, off);
}

static void check_and_free(struct churner *c, uintptr_t p, size_t size)
{
	for (size_t off = 0; off + 8 <= size; off += 64)
		if (*(uint64_t *)(p + off) != pattern(p, off)) {
			stress_fail(&c->failures,
			            "object %#lx (%zu bytes): word %zu changed",
			            (unsigned long)p, size, off);
			break;
		}
	spanheap_free(&sh, (void *)p);
}

static void churn(void *arg)
{
	struct churner *c = arg;
	static const size_t sizes[] = {16, 40, 200, 900, 3000, 20000, 50000};
	mm_port_set_cpu(1 + (unsigned)c->id);
	for (int op = 0; op < OPS; op++) {
		unsigned k = (unsigned)(stress_random(&c->rng) % KEEP);
		if (c->keep[k] && op % 4 == 0) {
			/* To the next churner; what it left there, freed. */
			int to = (c->id + 1) % CHURNERS;
			size_t sz = c->size[k];
			uintptr_t old = atomic_exchange(&handed[to], 0);
			size_t old_sz = atomic_load(&handed_size[to]);
			if (old)
				check_and_free(c, old, old_sz);
			atomic_store(&handed_size[to], sz);
			atomic_store(&handed[to], c->keep[k]);
		} else if (c->keep[k]) {
			check_and_free(c, c->keep[k], c->size[k]);
		}
		size_t size = sizes[stress_random(&c->rng) % 7];
		c->keep[k] = (uintptr_t)spanheap_alloc(&sh, size, 0);
		c->size[k] = size;
		if (c->keep[k])
			fill(c->keep[k], size);
	}
	for (unsigned k = 0; k < KEEP; k++)
		if (c->keep[k])
			check_and_free(c, c->keep[k], c->size[k]);
	spanheap_flush_cache(&sh);
	atomic_fetch_sub(&running, 1);
}

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
	struct mm_thread *t[CHURNERS];
	for (int i = 0; i < CHURNERS; i++)
		churners[i] = (struct churner){.id = i,
		                               .rng = 0x9e3779b97f4a7c15ull *
		                                      (uint64_t)(i + 1)};
	atomic_store(&running, CHURNERS);
	KASSERT(start_all(t, CHURNERS, churn, churners, sizeof(*churners)));
	unsigned bad = 0, round = 0;
	for (; round < ROUNDS || atomic_load(&running) > 0; round++)
		for (unsigned i = 0; i < OWN; i++) {
			size_t size = own_sizes[i % 5];
			bad += !reads_true(own[i], size,
			                   (round * 7 + i * 13) % size);
		}
	join_all(t, CHURNERS);
	for (int i = 0; i < CHURNERS; i++) {
		STRESS_REPORT(i, &churners[i].failures);
		uintptr_t p = atomic_exchange(&handed[i], 0);
		if (p)
			spanheap_free(&sh, (void *)p);
	}
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
	sh_heap_release(&heap);
}

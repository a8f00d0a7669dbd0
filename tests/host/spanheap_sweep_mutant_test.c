/*
 * The sweeping and deferred-free paths' behaviour (mm/spanheap_sweep.c,
 * spanheap_central.c, spanheap_cache.c) that a mutation review left
 * untested: each test here fails with one mutant of those files, which
 * the commit that added it names. Each test makes its own heap over a
 * 1 GiB arena and gives it back at the end.
 */
#include <pthread.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* The two classes the drain test uses, and the spans it moved. */
static const size_t drain_sizes[2] = {1024, 2048};
static unsigned drain_claims, drain_moved;

/* Moves every span on class cls's swept lists to its unswept ones, at
 * sg - 2: what a place that read the sweepgen before the flip leaves. */
static void unsweep_class(unsigned cls, uint32_t sg)
{
	struct mcentral *c = &sh.central[cls];
	unsigned sw = swept_idx(sg), un = 1 - sw;
	unsigned long irq = mm_lock_acquire(&c->lock);
	struct mspan *s;
	while ((s = list_pop(&c->partial[sw])) != NULL) {
		atomic_store(&s->sweepgen, sg - 2);
		list_push(&c->partial[un], s, MSPAN_LIST_PARTIAL);
		drain_moved++;
	}
	while ((s = list_pop(&c->full[sw])) != NULL) {
		atomic_store(&s->sweepgen, sg - 2);
		list_push(&c->full[un], s, MSPAN_LIST_FULL);
		drain_moved++;
	}
	mm_lock_release(&c->lock, irq);
}

/* At each claim of the walk (the first four, one a span) but the first:
 * the spans the walk has placed so far go back to the unswept lists,
 * behind it. The drain's claims (the ones after) are left alone. */
static void unsweep_behind_the_walk(struct mheap *h,
                                    enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SWEEP_CLAIMED ||
	    ++drain_claims == 1 || drain_claims > 4)
		return;
	uint32_t sg = atomic_load(&sh.sweepgen);
	for (unsigned i = 0; i < 2; i++)
		unsweep_class(sizeclass_of(drain_sizes[i]), sg);
}

/* Spans of class cls on its unswept lists (sweepgen sg). */
static size_t unswept_spans(unsigned cls, uint32_t sg)
{
	unsigned un = 1 - swept_idx(sg);
	return sh.central[cls].partial[un].n + sh.central[cls].full[un].n;
}

/*
 * A cycle's finish sweeps what is left on the unswept lists after its
 * walk (drain_unswept): spans placed with the sweepgen from before the
 * flip, partial and full, that the walk had passed. The flip passes
 * through every class's lock, so no place in this code leaves one; the
 * hook leaves them, behind the walk (two classes, a full and a partial
 * span each: whichever the walk claims last, the three before it are
 * moved, a full and a partial among them). Without the drain they stayed
 * on the unswept lists, and the next flip turned them into spans on a
 * swept list with a sweepgen two cycles old, which no walk claims.
 */
KTEST(spanheap_sweep_mutant, unswept_left_after_the_walk_is_drained)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p[2][SC_MAX_NELEMS + 1];
	size_t n[2];
	for (unsigned i = 0; i < 2; i++) {
		unsigned cls = sizeclass_of(drain_sizes[i]);
		n[i] = sizeclass_info[cls].nelems + 1u; /* a full, a partial */
		KASSERT(sh_alloc_n(&sh, p[i], n[i], drain_sizes[i]));
	}
	spanheap_flush_cache(&sh);
	drain_claims = drain_moved = 0;
	mheap_test_hook = unsweep_behind_the_walk;
	uint64_t swept0 = sh.n.swept_spans;
	spanheap_sweep_cycle(&sh);
	mheap_test_hook = NULL;
	uint32_t sg = atomic_load(&sh.sweepgen);
	KEXPECT_EQ(drain_moved, 3);
	KEXPECT_EQ(sh.n.swept_spans - swept0, 4 + 3);
	for (unsigned i = 0; i < 2; i++)
		KEXPECT_EQ(unswept_spans(sizeclass_of(drain_sizes[i]), sg), 0);
	SH_CHECK(&sh, "after the drained cycle");
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "after the next cycle");
	for (unsigned i = 0; i < 2; i++)
		for (size_t k = 0; k < n[i]; k++)
			spanheap_free(&sh, p[i][k]);
	spanheap_sweep_cycle(&sh);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	SH_CHECK(&sh, "after every free");
	sh_heap_release(&heap, &sh);
}

/*
 * A class index past the last one, or 0, given to a slow path that takes
 * a class is refused by name: the arrays it indexes lie inside struct
 * spanheap, so one past the end read the next field (a CPU's cache)
 * unseen by ASan. With the check, a loop over the classes run one too far
 * (cls <= SC_NCLASSES in flip, drain_unswept or queues_hold_spans) panics
 * in every test that runs a cycle.
 */
KTEST(spanheap_sweep_mutant, class_out_of_range_is_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	SH_EXPECT_PANIC(spanheap_fold_queue(&sh, SC_NCLASSES, false),
	                "spanheap_fold_queue: size class 64 out of range");
	SH_EXPECT_PANIC(spanheap_fold_queue(&sh, 0, false),
	                "spanheap_fold_queue: size class 0 out of range");
	SH_EXPECT_PANIC((void)spanheap_central_of(&sh, SC_NCLASSES, "a test"),
	                "a test: size class 64 out of range (the small classes "
	                "are 1 to 63)");
	KEXPECT_EQ(spanheap_central_of(&sh, SC_NCLASSES - 1, "a test"),
	           &sh.central[SC_NCLASSES - 1]);
	SH_CHECK(&sh, "after the refusals");
	sh_heap_release(&heap, &sh);
}

/*
 * A span given back leaves its struct with nothing marked: a free whose
 * fast path read the span's table entry before it was cleared tests the
 * struct's marked count, and one left as it was lets the object into a
 * magazine. The checker refuses a struct on the free list with a marked
 * count; without spanheap_span_free's store of 0 every span given back
 * was refused.
 */
KTEST(spanheap_sweep_mutant, freed_span_struct_marks_nothing)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 256, 0);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s));
	KEXPECT_EQ(atomic_load(&s->marked) > 0, 1);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	KEXPECT_EQ(atomic_load(&s->state), MSPAN_DEAD);
	KEXPECT_EQ(atomic_load(&s->marked), 0);
	SH_CHECK(&sh, "after the span went back");
	atomic_store(&s->marked, 5);
	KEXPECT_EQ(sh_check_panics(&sh), 1);
	KEXPECT_EQ(strstr(mm_port_last_panic(), "marked 5") != NULL, 1);
	atomic_store(&s->marked, 0);
	SH_CHECK(&sh, "after the repair");
	sh_heap_release(&heap, &sh);
}

/* The objects the kick test frees from CPU 1 in its hook. */
enum { KICK_N = 64, KICK_SIZE = 256 };
static void *kick_obj[KICK_N];
static _Atomic bool kick_armed;

/* Between pending_since_flip's two reads: remote frees (KICK_N objects
 * freed on CPU 1, spilled as pending bits) and a cycle, whose flip takes
 * them into the base. */
static void frees_and_flip_mid_read(struct mheap *h,
                                    enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_PENDING_BASE_READ ||
	    !atomic_exchange(&kick_armed, false))
		return;
	mm_port_set_cpu(1);
	for (unsigned i = 0; i < KICK_N; i++)
		spanheap_free(&sh, kick_obj[i]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	spanheap_sweep_cycle(&sh);
}

/*
 * A kick that counts the pending frees while a flip moves the base wakes
 * no sweeper for frees below min_pending_bytes (16 KiB of 1 MiB here).
 * pending_since_flip read the per-CPU totals, then the base; with a flip
 * and frees between the two reads the total was older than the base, the
 * difference wrapped to nearly 2^64, and the kick woke the sweeper (the
 * wake count moved). Reading the base first, the total is at least it.
 */
KTEST(spanheap_sweep_mutant, kick_across_a_flip_wakes_no_one)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh_alloc_n(&sh, kick_obj, KICK_N, KICK_SIZE));
	spanheap_flush_cache(&sh);
	uint64_t cycles0 = sh.n.cycles;
	uint64_t seen = mm_event_prepare(&sh.sweeper.wake);
	atomic_store(&kick_armed, true);
	mheap_test_hook = frees_and_flip_mid_read;
	spanheap_sweeper_kick(&sh);
	mheap_test_hook = NULL;
	KEXPECT_EQ(atomic_load(&kick_armed), 0);
	KEXPECT_EQ(sh.n.cycles - cycles0, 1);
	KEXPECT_EQ(mm_event_prepare(&sh.sweeper.wake), seen);
	SH_CHECK(&sh, "after the kick");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

/* The objects the flip test frees from CPU 1 in its hook. */
enum { FLIP_N = 16, FLIP_SIZE = 256 };
static void *flip_obj[FLIP_N];
static _Atomic bool flip_armed;

/* Between the flip's read of the pending total and its advance of
 * sweepgen: remote frees (FLIP_N objects freed on CPU 1, spilled as
 * pending bits, their bytes counted). */
static void frees_after_the_base_read(struct mheap *h,
                                      enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_FLIP_BASE_READ ||
	    !atomic_exchange(&flip_armed, false))
		return;
	mm_port_set_cpu(1);
	for (unsigned i = 0; i < FLIP_N; i++)
		spanheap_free(&sh, flip_obj[i]);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
}

/*
 * Frees counted after a flip read its base stay pending since that flip,
 * so that the next cycle is due for them (flip: "one cycle more at
 * worst"). With the base read after the flip instead, such frees went
 * into the base and counted as pending since no flip; a free whose span
 * a taker placed as swept after the flip, its bit missed by the
 * placement's look (spanheap_span_place), then had no cycle owed to fold
 * it, and its empty span was kept from the page heap. No single-thread
 * test saw the order: here the hook frees between the read and the flip.
 */
KTEST(spanheap_sweep_mutant, frees_after_the_flips_base_read_stay_pending)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh_alloc_n(&sh, flip_obj, FLIP_N, FLIP_SIZE));
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	KEXPECT_EQ(spanheap_pending_since_flip(&sh), 0);
	atomic_store(&flip_armed, true);
	mheap_test_hook = frees_after_the_base_read;
	spanheap_sweep_cycle(&sh);
	mheap_test_hook = NULL;
	KEXPECT_EQ(atomic_load(&flip_armed), 0);
	KEXPECT_EQ(spanheap_pending_since_flip(&sh),
	           (uint64_t)FLIP_N *
	                   sizeclass_info[sizeclass_of(FLIP_SIZE)].size);
	spanheap_sweep_cycle(&sh);
	KEXPECT_EQ(spanheap_pending_since_flip(&sh), 0);
	SH_CHECK(&sh, "after the cycles");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

/* The remote-queue test's object: the only one handed out of its span. */
enum { RQ_SIZE = 128 };
static void *rq_obj;
static _Atomic bool rq_armed;
static bool rq_bit_early; /* a pending bit was set at the hook */

static void *owner_hands_back(void *arg)
{
	(void)arg;
	mm_port_set_cpu(0);
	spanheap_flush_cache(&sh); /* its span folded and placed */
	return NULL;
}

/* Between a spill's queueing of the span and the object's pending bit:
 * the span's owner (CPU 0) hands it back, on a thread of its own, as
 * this one is pinned (CPU 1). */
static void owner_flush_mid_free(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_REMOTE_QUEUED ||
	    !atomic_exchange(&rq_armed, false))
		return;
	rq_bit_early = spanheap_span_has_pending(
	        mheap_span_lookup(&heap, (uintptr_t)rq_obj));
	pthread_t t;
	if (pthread_create(&t, NULL, owner_hands_back, NULL) == 0)
		pthread_join(t, NULL);
}

/*
 * A remote free queues the span before it sets the object's pending bit
 * (span_give_back): until the bit is set, the object keeps its span in
 * use, so a fold meanwhile (its owner handing it back) places it, queued,
 * and the queue's taker frees it once empty. With the bit set first, the
 * owner's fold took the bit, found the span empty and not queued, and gave
 * it back to the page heap; the free then queued a dead span (or one
 * reused since) for a fold. Hook at MHEAP_HOOK_REMOTE_QUEUED, which the
 * free that queues the span reaches: no pending bit may be set there yet
 * (with the bit set before the queueing, the hook came after both).
 */
KTEST(spanheap_sweep_mutant, remote_free_queues_its_span_before_its_bit)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	rq_obj = spanheap_alloc(&sh, RQ_SIZE, 0); /* CPU 0 caches its span */
	KASSERT(rq_obj);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)rq_obj);
	mm_port_set_cpu(1);
	spanheap_free(&sh, rq_obj); /* into CPU 1's magazine */
	atomic_store(&rq_armed, true);
	mheap_test_hook = owner_flush_mid_free;
	spanheap_flush_cache(&sh); /* the spill: queued, the hook, the bit */
	mheap_test_hook = NULL;
	mm_port_set_cpu(0);
	KEXPECT_EQ(atomic_load(&rq_armed), 0);
	KEXPECT_EQ(rq_bit_early, false);
	KEXPECT_EQ(atomic_load(&s->state), MSPAN_SMALL);
	KEXPECT_EQ(atomic_load(&s->queued), 1);
	SH_CHECK(&sh, "after the spill");
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "after the cycle");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

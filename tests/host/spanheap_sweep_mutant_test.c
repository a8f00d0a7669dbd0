/*
 * The sweeping and deferred-free paths' behaviour (mm/spanheap_sweep.c,
 * spanheap_central.c, spanheap_cache.c) that a mutation review left
 * untested: each test here fails with one mutant of those files, which
 * the commit that added it names. Each test makes its own heap over a
 * 1 GiB arena and gives it back at the end.
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Runs stmt expecting a panic whose message holds what; then leaves any
 * pin the panic abandoned. */
#define EXPECT_PANIC(stmt, what)                                           \
	do {                                                               \
		bool fired_ = MM_PORT_PANICS(stmt);                        \
		sh_unpin_after_panic();                                    \
		if (!fired_)                                               \
			ktest_fail_at(__FILE__, __LINE__,                  \
			              "no panic (wanted \"%s\")", (what)); \
		else if (!strstr(mm_port_last_panic(), (what)))            \
			ktest_fail_at(__FILE__, __LINE__,                  \
			              "panic \"%s\" does not say \"%s\"",  \
			              mm_port_last_panic(), (what));       \
	} while (0)

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
	EXPECT_PANIC(spanheap_fold_queue(&sh, SC_NCLASSES, false),
	             "spanheap_fold_queue: size class 64 out of range");
	EXPECT_PANIC(spanheap_fold_queue(&sh, 0, false),
	             "spanheap_fold_queue: size class 0 out of range");
	EXPECT_PANIC((void)spanheap_central_of(&sh, SC_NCLASSES, "a test"),
	             "a test: size class 64 out of range (the small classes "
	             "are 1 to 63)");
	KEXPECT_EQ(spanheap_central_of(&sh, SC_NCLASSES - 1, "a test"),
	           &sh.central[SC_NCLASSES - 1]);
	SH_CHECK(&sh, "after the refusals");
	sh_heap_release(&heap);
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
	sh_heap_release(&heap);
}

/*
 * Host tests that fail on purpose, run only with HOST_TEST_FAIL_DEMO=1
 * (main.c): tools/test-harness runs each and checks that the run is judged
 * a failure, for the right reason.
 *
 *   demo.misranked_lock  nests two mm locks out of rank order with no
 *                        panic catch armed: the port's mm_panic names both
 *                        locks and aborts the run
 *   demo.data_race       two threads write one plain variable with nothing
 *                        ordering them: ThreadSanitizer (make test-tsan)
 *                        must report it; the ASan build passes it
 */
#include "../../kernel/ktest.h"
#include "port_test_util.h"

KTEST(demo, misranked_lock)
{
	static mm_lock_t heap_l, palloc_l;
	mm_lock_init(&heap_l, "demo_heap", MM_RANK_HEAP);
	mm_lock_init(&palloc_l, "demo_palloc", MM_RANK_PALLOC);
	unsigned long a = mm_lock_acquire(&heap_l);
	unsigned long b = mm_lock_acquire(&palloc_l); /* panics */
	mm_lock_release(&palloc_l, b);
	mm_lock_release(&heap_l, a);
}

static int racy;
static atomic_int raced, seen;

/* Writes racy, then says so with a relaxed store: that orders nothing for
 * TSan, so the test thread's write after it is a race every time. The
 * racer stays alive until that write is done (relaxed again): TSan then
 * has the racer's write against a running thread, not a finished one,
 * whose history it may drop (one harness run in many passed unreported
 * when the racer had already exited). */
static void race(void *p)
{
	racy++;
	atomic_store_explicit(&raced, 1, memory_order_relaxed);
	while (!atomic_load_explicit(&seen, memory_order_relaxed))
		;
}

KTEST(demo, data_race)
{
	/* A few rounds: one report is enough (the harness halts on it). */
	for (int round = 0; round < 4; round++) {
		atomic_store_explicit(&raced, 0, memory_order_relaxed);
		atomic_store_explicit(&seen, 0, memory_order_relaxed);
		struct mm_thread *t = mm_port_thread_start("racer", race, NULL);
		KASSERT(t);
		while (!atomic_load_explicit(&raced, memory_order_relaxed))
			;
		racy++;
		atomic_store_explicit(&seen, 1, memory_order_relaxed);
		mm_port_thread_join(t);
	}
	KEXPECT_EQ(racy, 8);
}

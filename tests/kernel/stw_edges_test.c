/*
 * What stop-the-world and a TLB shootdown promise at their edges: the
 * stop is its stopper's alone, stw_start returns with every CPU out of
 * the park, and a range may run up to the top of the address space (and
 * no further, nor across the canonical hole). The stop tests need two
 * CPUs and are skipped at -smp 1.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/stw.h"
#include "kernel/stw_testing.h"
#include "kernel/thread.h"
#include "kernel/tlb.h"
#include "tests/kernel/smp_util.h"

/* The last page of the address space is a range like any other: the
 * check for a range past 2^64 counts the pages after the first, and a
 * range that ends at 2^64 runs up to it, not past it. */
KTEST(tlb, a_range_may_end_at_the_top_of_the_address_space)
{
	tlb_shootdown(UINTPTR_MAX - PAGE_SIZE + 1, 1);
	tlb_shootdown(UINTPTR_MAX - 2 * PAGE_SIZE + 1, 2);
}

/* Every way a range can be wrong, and the edges that are right: a range
 * whose both ends are canonical but in different halves crosses the
 * 2^47..2^64-2^47 hole, which no page is in. */
KTEST(tlb, range_error_names_each_way_a_range_is_wrong)
{
	static const char *unaligned =
	        "the range does not start on a page boundary";
	static const char *noncanon =
	        "the range starts at a non-canonical address";
	static const char *past = "the range runs past 2^64";
	static const char *half =
	        "the range leaves the canonical half it starts in";
	const uintptr_t low_top = 0x00007ffffffff000ull;
	const uintptr_t high_base = 0xffff800000000000ull;
	static const struct {
		uintptr_t va;
		size_t npages;
		const char **want; /* NULL: no error */
	} cases[] = {
	        {0x1000, 0, NULL},
	        {0x1000, 1, NULL},
	        {0x1800, 1, &unaligned},
	        {0x00007ffffffff000ull, 1, NULL},
	        {0x00007ffffffff000ull, 2, &half},
	        {0x0000800000000000ull, 1, &noncanon},
	        {0xffff800000000000ull, 1, NULL},
	        {0xffff7ffffffff000ull, 2, &noncanon},
	        {UINTPTR_MAX - PAGE_SIZE + 1, 1, NULL},
	        {UINTPTR_MAX - PAGE_SIZE + 1, 2, &past},
	        {0x1000, SIZE_MAX, &past},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		KEXPECT_STREQ(tlb_range_error(cases[i].va, cases[i].npages),
		              cases[i].want ? *cases[i].want : NULL);
	/* Both ends canonical, one in each half. */
	size_t across = (high_base - low_top) / PAGE_SIZE + 1;
	KEXPECT_STREQ(tlb_range_error(low_top, across), half);
	KEXPECT_STREQ(tlb_range_error(low_top, across - 1), half);
}

static _Atomic bool asker_deaf;
static _Atomic int asker_saw; /* -1 until it has looked */

/* Deaf to the park IPI until it has seen the world stopped by another
 * CPU and asked whether this one stopped it; then it parks. */
static void ask_while_stopped(void *arg)
{
	cpu_cli();
	atomic_store(&asker_deaf, true);
	while (!stw_stopped())
		cpu_pause();
	atomic_store(&asker_saw, stw_stopped_by_this_cpu());
	cpu_sti();
}

/* stw_stopped_by_this_cpu is the stopper's alone: a CPU that has not
 * parked yet and took it for its own would shoot a range down locally
 * only (tlb_shootdown), or panic on a nested stop that is not one. */
KTEST(stw, stopped_by_this_cpu_only_on_the_stopper)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	atomic_store(&asker_deaf, false);
	atomic_store(&asker_saw, -1);
	struct thread_handle t =
	        thread_create("asker", ask_while_stopped, NULL, other);
	KASSERT(thread_handle_ok(t));
	while (!atomic_load(&asker_deaf))
		thread_yield();
	stw_stop("stw test: whose stop is it");
	bool mine = stw_stopped_by_this_cpu();
	stw_start();
	thread_join(t);
	int saw = atomic_load(&asker_saw);
	KEXPECT(mine);
	KEXPECT_EQ(saw, 0);
	KEXPECT(!stw_stopped_by_this_cpu());
}

#if KTEST_HOOKS
/*
 * stw_start returns only once every parked CPU has left the park, its
 * TLB flushed (stw.h): the stopper frees the frames it unmapped during
 * the stop right after it. Without the wait it returned while the others
 * were still in the park, and the next stop counted them as parked while
 * they were leaving it. Several rounds, since a CPU may happen to leave
 * before the stopper looks.
 */
KTEST(stw, start_returns_once_every_cpu_left_the_park)
{
	if (other_online_cpu() == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	unsigned still_parked = 0, none_parked = 0;
	for (int round = 0; round < 20; round++) {
		stw_stop("stw test: start waits for the park to empty");
		none_parked += stw_testing_parked() == 0;
		stw_start();
		still_parked += stw_testing_parked() != 0;
	}
	KEXPECT_EQ(none_parked, 0);
	KEXPECT_EQ(still_parked, 0);
}
#endif

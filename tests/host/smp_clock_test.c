/*
 * arch/x86_64/smp_clock.h: the boot CPU's waits for an AP count the time
 * it ran, not the time the host left it unscheduled. The kernel side (a
 * wait that sees its clock jump 15 s and still gets its AP) is the
 * harness's smp_host_stall case.
 */
#include "../../arch/x86_64/smp_clock.h"
#include "../../kernel/ktest.h"

#define MS 1000000ull

/* Polls every 10 us for 100 ms: all of it counted. */
KTEST(smp_clock, steady_polls_count_in_full)
{
	struct smp_clock c = smp_clock_start(5 * MS);
	for (uint64_t t = 5 * MS; t <= 105 * MS; t += 10000)
		smp_clock_poll(&c, t);
	KEXPECT_EQ(c.ran_ns, 100 * MS);
	KEXPECT_EQ(c.stalled_ns, 0);
	KEXPECT_EQ(smp_clock_wall_ns(&c), 100 * MS);
}

/* A 15 s gap (the host ran neither vCPU) between two polls is stalled
 * time, whatever came before and after; a gap just under the threshold
 * still counts. */
KTEST(smp_clock, a_long_gap_is_not_counted)
{
	struct smp_clock c = smp_clock_start(0);
	smp_clock_poll(&c, MS / 2);
	smp_clock_poll(&c, MS / 2 + 15000 * MS);
	smp_clock_poll(&c, 3 * MS / 2 + 15000 * MS - 1);
	KEXPECT_EQ(c.ran_ns, 3 * MS / 2 - 1);
	KEXPECT_EQ(c.stalled_ns, 15000 * MS);
	smp_clock_poll(&c, 5 * MS / 2 + 15000 * MS - 1); /* exactly the gap */
	KEXPECT_EQ(c.ran_ns, 3 * MS / 2 - 1);
	KEXPECT_EQ(c.stalled_ns, 15001 * MS);
	KEXPECT_EQ(smp_clock_wall_ns(&c), 5 * MS / 2 + 15000 * MS - 1);
}

/* A clock read below the last (counters out of step) counts nothing and
 * does not move the last poll back: the next gap is from the highest. */
KTEST(smp_clock, a_clock_that_goes_back_counts_nothing)
{
	struct smp_clock c = smp_clock_start(10 * MS);
	smp_clock_poll(&c, 9 * MS);
	KEXPECT_EQ(c.ran_ns, 0);
	KEXPECT_EQ(c.stalled_ns, 0);
	smp_clock_poll(&c, 10 * MS + 500);
	KEXPECT_EQ(c.ran_ns, 500);
	KEXPECT_EQ(smp_clock_wall_ns(&c), 500);
}

/*
 * A host that froze the VM for longer than the wall bound (a paused
 * container, a suspended laptop: 700 s here) ran neither the boot CPU nor
 * the AP meanwhile, so the AP has had no chance: the wait goes on, and
 * gives up only once the boot CPU has run its bound after the freeze.
 * Until a review the freeze counted in full against the 600 s of wall
 * clock, and the first poll after it gave the AP up, the flake the clock
 * was made to end, at a longer stall. Slices of a host that gives the VM
 * little CPU (gaps under SMP_CLOCK_STALL_CAP_NS) still count in full, so
 * a VM run a 60th of the time is not waited out for ever.
 */
KTEST(smp_clock, a_freeze_past_the_wall_bound_does_not_give_up)
{
	const uint64_t ran_bound = 10000 * MS, wall_bound = 600000 * MS;
	struct smp_clock c = smp_clock_start(0);
	smp_clock_poll(&c, MS / 2);
	smp_clock_poll(&c, MS / 2 + 700000 * MS); /* the freeze */
	KEXPECT_EQ(c.stalled_ns, 700000 * MS);
	KEXPECT_EQ(smp_clock_verdict(&c, ran_bound, wall_bound),
	           SMP_CLOCK_GOING);
	uint64_t t = MS / 2 + 700000 * MS;
	while (smp_clock_verdict(&c, ran_bound, wall_bound) == SMP_CLOCK_GOING)
		smp_clock_poll(&c, t += MS / 2);
	KEXPECT_EQ(smp_clock_verdict(&c, ran_bound, wall_bound),
	           SMP_CLOCK_RAN_OUT);

	/* 3 ms run in every 300 ms (a 100th of a CPU): the wall bound ends
	 * it, with 6 s run. */
	c = smp_clock_start(0);
	t = 0;
	for (unsigned i = 0; i < 1000000; i++) {
		smp_clock_poll(&c, t += (i % 7 == 6) ? 297 * MS : MS / 2);
		if (smp_clock_verdict(&c, ran_bound, wall_bound) !=
		    SMP_CLOCK_GOING)
			break;
	}
	KEXPECT_EQ(smp_clock_verdict(&c, ran_bound, wall_bound),
	           SMP_CLOCK_WALL_OUT);
	KEXPECT(smp_clock_wall_ns(&c) >= wall_bound);
	KEXPECT(smp_clock_wall_ns(&c) < wall_bound + 300 * MS);
}

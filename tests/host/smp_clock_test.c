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

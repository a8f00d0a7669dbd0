/*
 * time.c's arithmetic against the calibrated counter rate: the counter
 * ticks a delay waits for (the exact count rounded down, plus one for the
 * partial tick the first read may fall in, saturating past 2^64), and the
 * nanoseconds time_now_ns() reports for counter ticks gone by. Checked
 * against 128-bit arithmetic on the rate the boot measured, never against
 * wall time: the host may stall this virtual CPU at any point.
 */
#include <stdint.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/tsc.h"
#include "kernel/ktest.h"
#include "kernel/time.h"
#include "kernel/time_testing.h"

/* n / d by shift and subtract: the freestanding kernel has no 128-bit
 * division, and a check must not share time.c's own split. */
static unsigned __int128 div128(unsigned __int128 n, uint64_t d)
{
	unsigned __int128 q = 0, r = 0;
	for (int i = 127; i >= 0; i--) {
		r = r << 1 | ((n >> i) & 1);
		if (r >= d) {
			r -= d;
			q |= (unsigned __int128)1 << i;
		}
	}
	return q;
}

/* What time_delay_ticks(us) must be at cpm counter ticks per ms. */
static uint64_t delay_ticks_expected(uint64_t us, uint64_t cpm)
{
	unsigned __int128 t = div128((unsigned __int128)us * cpm, 1000) + 1;
	return t > UINT64_MAX ? UINT64_MAX : (uint64_t)t;
}

KTEST(time, delay_ticks_are_the_exact_count_plus_one)
{
	uint64_t cpm = time_tsc_per_ms();
	KASSERT(cpm > 0);
	/* Past 2^64 / cpm microseconds a plain us * cpm wraps: the split
	 * by whole milliseconds must not. */
	uint64_t wrap_us = UINT64_MAX / cpm + 7;
	const uint64_t us[] = {
	        0,
	        1,
	        7,
	        999,
	        1000,
	        1001,
	        123457,
	        1000000,
	        wrap_us,
	        wrap_us * 3,
	        UINT64_MAX / 2,
	        UINT64_MAX,
	};
	for (unsigned i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
		uint64_t want = delay_ticks_expected(us[i], cpm);
		uint64_t got = time_delay_ticks(us[i]);
		if (got != want)
			ktest_diag("us %llu at %llu/ms: %llu ticks, not %llu",
			           (unsigned long long)us[i],
			           (unsigned long long)cpm,
			           (unsigned long long)got,
			           (unsigned long long)want);
		KEXPECT_EQ(got, want);
	}
}

/* ns for n counter ticks at cpm per ms, rounded down. */
static uint64_t ns_of_ticks(uint64_t n, uint64_t cpm)
{
	return (uint64_t)div128((unsigned __int128)n * 1000000, cpm);
}

/*
 * time_now_ns() read between two counter reads, twice, 20 ms of counter
 * apart: the nanoseconds it moved lie between those of the inner and the
 * outer counter spans (a stall between the reads widens both, never
 * breaks the bound), within the conversion's rounding.
 */
KTEST(time, now_ns_moves_with_the_clock_counter)
{
	uint64_t cpm = time_tsc_per_ms();
	KASSERT(cpm > 0);
	uint64_t c0 = arch_counter_read();
	uint64_t n0 = time_now_ns();
	uint64_t c0_after = arch_counter_read();
	while (arch_counter_read() - c0_after < 20 * cpm)
		cpu_pause();
	uint64_t c1 = arch_counter_read();
	uint64_t n1 = time_now_ns();
	uint64_t c1_after = arch_counter_read();
	uint64_t low = ns_of_ticks(c1 - c0_after, cpm);
	uint64_t high = ns_of_ticks(c1_after - c0, cpm);
	/* ns_mult is rounded down: a few ns short over 20 ms at most. */
	const uint64_t slack = 1000;
	if (n1 - n0 + slack < low || n1 - n0 > high + slack)
		ktest_diag("time_now_ns moved %llu ns over %llu..%llu ns of "
		           "counter",
		           (unsigned long long)(n1 - n0),
		           (unsigned long long)low, (unsigned long long)high);
	KEXPECT(n1 - n0 + slack >= low);
	KEXPECT(n1 - n0 <= high + slack);
}

/*
 * Monotonic time on top of the arch clock counter (arch/x86_64/tsc.h: the
 * TSC, calibrated at boot against the PIT); see time.h.
 *
 * Conversion: ns = (counter - base) * ns_mult >> 32, with ns_mult =
 * 10^6 * 2^32 / counter_per_ms computed once; the 128-bit product keeps it
 * exact enough (relative error < 1e-9 at a GHz counter) without a division
 * per call.
 */
#include "time.h"

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/tsc.h"
#include "kernel/printk.h"
#include "kernel/time_testing.h"

/* Immutable after time_init(): */
static uint64_t counter_base;
static uint64_t counter_per_ms;
static uint64_t ns_mult;

void time_init(void)
{
	counter_per_ms = arch_counter_calibrate();
	ns_mult = (1000000ull << 32) / counter_per_ms;
	counter_base = arch_counter_read();
}

uint64_t time_now_ns(void)
{
	if (!ns_mult)
		return 0;
	uint64_t t = arch_counter_read();
	/* Synchronised counters never read below the base taken at init;
	 * the check keeps a skewed one from wrapping to a huge time. */
	if (t < counter_base)
		return 0;
	return (uint64_t)(((unsigned __int128)(t - counter_base) * ns_mult) >>
	                  32);
}

/* By whole milliseconds and the rest: us * counter_per_ms passes 2^64
 * from about 2 * 10^13 us (7 months) at a GHz counter, and wrapped it could be
 * a delay of a few ticks. A count past 2^64 saturates (five centuries at a GHz
 * counter: for good). */
uint64_t time_delay_ticks(uint64_t us)
{
	uint64_t ticks;
	if (__builtin_mul_overflow(us / 1000, counter_per_ms, &ticks) ||
	    __builtin_add_overflow(ticks, us % 1000 * counter_per_ms / 1000 + 1,
	                           &ticks))
		return UINT64_MAX;
	return ticks;
}

void time_delay_us(uint64_t us)
{
	if (!counter_per_ms)
		panic("time_delay_us(%llu) before time_init",
		      (unsigned long long)us);
	uint64_t start = arch_counter_read();
	uint64_t ticks = time_delay_ticks(us);
	while (arch_counter_read() - start < ticks)
		cpu_pause();
}

uint64_t time_tsc_per_ms(void)
{
	return counter_per_ms;
}

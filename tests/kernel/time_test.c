/*
 * The calibration's choice of PIT windows (arch/x86_64/tsc_cal.h),
 * fed windows of known error: the clean ones are averaged, and when too
 * few are, the tightest of the others stand in, never a looser one kept
 * over a tighter. What calibrate makes of the result (more rounds, then
 * a refusal, over TSC_CAL_BOUND) runs against the PIT at boot and is
 * checked by the harness (time_wide_windows, time_refused).
 */
#include "arch/x86_64/tsc_cal.h"
#include "kernel/ktest.h"

#define WINDOW_TSC 1000000u

/* A window of WINDOW_TSC ticks whose brackets leave it off by bp parts
 * per 10^4; its LAPIC count is lapic. */
static struct tsc_window window(unsigned bp, uint32_t lapic)
{
	return (struct tsc_window){
	        .tsc = WINDOW_TSC,
	        .lapic = lapic,
	        .err = (uint64_t)WINDOW_TSC * bp / 10000,
	};
}

/* Feeds the windows (errors in parts per 10^4, 0-ended; each window's
 * LAPIC count is its error) and returns the worst error kept, with the
 * mean LAPIC count in *lapic. */
static uint64_t pick_of(const unsigned *bps, uint64_t *lapic)
{
	struct tsc_cal_pick pick = {0};
	for (const unsigned *bp = bps; *bp; bp++) {
		struct tsc_window w = window(*bp, *bp);
		tsc_cal_pick_add(&pick, &w);
	}
	uint64_t tsc;
	uint64_t worst = tsc_cal_pick_result(&pick, &tsc, lapic);
	KEXPECT_EQ(tsc, WINDOW_TSC);
	return worst;
}

static const struct {
	const char *what;
	unsigned bps[8]; /* the windows' errors, in order, 0-ended */
	uint64_t worst;  /* the worst error kept */
	uint64_t lapic;  /* the mean of the kept windows' errors */
} cases[] = {
        /* 0.1% is clean, 0.2% is not (under 1/TSC_CAL_MAX_ERR). */
        {"three clean", {10, 15, 5, 400, 0}, 15, 10},
        {"no clean: the three others", {100, 500, 300, 0}, 500, 300},
        /* The tighter other replaces the loosest (5%), not the first
         * looser than it (1%). */
        {"a tighter other replaces the loosest",
         {100, 500, 300, 50, 0},
         300,
         150},
        /* A clean window takes the loosest other's place (5%), not the
         * tightest's. */
        {"a clean window evicts the loosest other",
         {100, 500, 300, 10, 0},
         300,
         136},
        {"a looser other is not kept", {100, 50, 30, 900, 0}, 100, 60},
        {"two clean, the tightest other", {500, 10, 300, 15, 100, 0}, 100, 41},
        /* Exactly 1/TSC_CAL_MAX_ERR is not under it: not clean, so the
         * three clean windows after it are kept. */
        {"0.2% exactly is not clean", {20, 10, 15, 5, 0}, 15, 10},
};

KTEST(time, calibration_keeps_the_tightest_windows)
{
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t lapic;
		uint64_t worst = pick_of(cases[i].bps, &lapic);
		if (worst != cases[i].worst || lapic != cases[i].lapic)
			ktest_diag("%s: worst %llu, mean %llu (expected %llu, "
			           "%llu)",
			           cases[i].what, (unsigned long long)worst,
			           (unsigned long long)lapic,
			           (unsigned long long)cases[i].worst,
			           (unsigned long long)cases[i].lapic);
		KEXPECT_EQ(worst, cases[i].worst);
		KEXPECT_EQ(lapic, cases[i].lapic);
	}
}

KTEST(time, calibration_with_no_window_reports_the_worst)
{
	struct tsc_cal_pick pick = {0};
	uint64_t tsc, lapic;
	KEXPECT_EQ(tsc_cal_pick_result(&pick, &tsc, &lapic), 10000u);
}

/*
 * The calibration's choice of PIT windows (tsc.c): which windows it keeps
 * and what it makes of them, apart from the PIT, so that tsc.c and a test
 * that feeds it windows of known error share one definition. Not a
 * testing header: tsc.c builds on it.
 */
#ifndef ARCH_X86_64_TSC_CAL_H
#define ARCH_X86_64_TSC_CAL_H

#include <stdint.h>

/* Windows averaged. */
#define TSC_CAL_GOOD 3

/* A window is clean if its brackets are under 1/TSC_CAL_MAX_ERR of it
 * (0.2%). */
#define TSC_CAL_MAX_ERR 500

/* Beyond this error, in parts per 10^4, the windows kept are not used:
 * more are run, and if they are no better the calibration is refused
 * (1%). */
#define TSC_CAL_BOUND 100

/* One calibration window: its length in ticks of each clock, and the
 * TSC ticks by which the two brackets leave its ends uncertain. */
struct tsc_window {
	uint64_t tsc;
	uint32_t lapic;
	uint64_t err;
};

/* The windows kept so far: best[0, nclean) are clean, in the order they
 * came; best[nclean, TSC_CAL_GOOD) are the tightest of the others seen
 * (tsc == 0: none yet). Zero-initialised to start. */
struct tsc_cal_pick {
	struct tsc_window best[TSC_CAL_GOOD];
	unsigned nclean;
};

/* Takes a window into pick: a clean one while fewer than TSC_CAL_GOOD
 * are, in place of the loosest other kept; another in place of the
 * loosest other kept, if it is tighter. w->tsc must not be 0. */
void tsc_cal_pick_add(struct tsc_cal_pick *pick, const struct tsc_window *w);

/* The mean of the windows kept into *tsc and *lapic; returns the largest
 * error among them in parts per 10^4 (10000 if none is kept). */
uint64_t tsc_cal_pick_result(const struct tsc_cal_pick *pick, uint64_t *tsc,
                             uint64_t *lapic);

#endif

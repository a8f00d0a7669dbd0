/*
 * The TSC as the kernel's clock counter, and its calibration, with the
 * LAPIC timer's, against PIT channel 2 (see tsc.h).
 *
 * Calibration: PIT channel 2 counts down from a known value at 1.193182 MHz
 * in mode 0 ("interrupt on terminal count"), gated on through port 0x61 bit
 * 0; its output, read back in port 0x61 bit 5, goes high when the count
 * runs out. We read the TSC and the LAPIC timer's current count at both
 * ends of that window.
 *
 * Under TCG the host may deschedule the virtual CPU at any instant, and on a
 * loaded host it does, for milliseconds: a stall between loading the count
 * and reading the clocks shortens the window we see, one between the PIT
 * output going high and our reads lengthens it. (Picking the shortest of
 * several windows is therefore wrong: it selects a start stall; we saw
 * "TSC 1025 MHz" that way on a 2.6 GHz host.) So each end of a window is
 * bracketed by TSC reads taken right before and after the events, and a
 * window counts only if both brackets together are under 1/TSC_CAL_MAX_ERR of
 * it; a stall in the middle of a window is harmless, both clocks run on.
 * The result is the mean of TSC_CAL_GOOD such windows.
 *
 * If fewer are clean within CAL_TRIES windows, the tightest of the others
 * stand in for the missing ones, and the worst error kept is printed. Over
 * TSC_CAL_BOUND (1%: a clock that far off would make every sleep and
 * timeout as wrong) they are not used: CAL_TRIES more windows are run,
 * keeping the best of all, up to CAL_ROUNDS times, and then the
 * calibration is refused with a panic, as no time could be trusted.
 */
#include "tsc.h"

#include "cpu.h"
#include "lapic.h"
#include "tsc_cal.h"

#include "kernel/bootinfo.h"
#include "kernel/printk.h"

#define PIT_HZ          1193182u
#define PIT_CH2_DATA    0x42
#define PIT_COMMAND     0x43
#define PIT_CH2_MODE0   0xb0 /* channel 2, lobyte/hibyte, mode 0, binary */
#define PORT_61         0x61
#define PORT_61_GATE2   0x01
#define PORT_61_SPEAKER 0x02
#define PORT_61_OUT2    0x20

#define CAL_WINDOW_MS 10
#define CAL_COUNT     (PIT_HZ * CAL_WINDOW_MS / 1000)
#define CAL_TRIES     100 /* windows tried in a round (1 s) */
#define CAL_ROUNDS    3   /* rounds before a result over the bound is refused */

/* A window longer than this many TSC ticks means the PIT output never went
 * high: 2^30 is 0.1 s even at a 10 GHz TSC. */
#define CAL_TSC_LIMIT (1ull << 30)

_Static_assert(CAL_COUNT < 0x10000, "the PIT count is 16 bits");

_Static_assert(TSC_CAL_BOUND *TSC_CAL_MAX_ERR > 10000,
               "the bound on the result is looser than a clean window");

enum window_result {
	WINDOW_OK,
	WINDOW_NO_PIT,  /* the output was high right after programming */
	WINDOW_TIMEOUT, /* it never went high within CAL_TSC_LIMIT */
};

/* A window that fails may be a stalled vCPU, not a missing PIT: QEMU
 * under host load can deschedule one for longer than CAL_TSC_LIMIT (a
 * timeout), or for longer than the whole window between loading the count
 * and the first read of the output, which then reads high at once (seen
 * once in a `make test` on a loaded host: a boot panic). Either is
 * retried, and only this many failures in a row mean the PIT does not
 * count (an absent PIT reads high every time, so it still fails fast). */
#define CAL_MAX_FAILS 8

/* time.stall_windows=N (0 to 9), for the harness: the first N windows
 * wait after loading the count until it has run out, as a CPU stalled
 * that long would, so that each reads the output high at once. */
static unsigned stall_windows;

/* time.wide_windows=N (0 to 300), for the harness: the first N windows
 * that run count their brackets as 2% of the window wider, as after a
 * stall in one, so that none of them is clean and each is over the
 * bound. */
static unsigned wide_windows;

static void stall_windows_init(void)
{
	uint64_t n;
	if (cmdline_get_uint("time.stall_windows", 0, 9, &n))
		stall_windows = (unsigned)n;
	if (cmdline_get_uint("time.wide_windows", 0, CAL_TRIES * CAL_ROUNDS,
	                     &n))
		wide_windows = (unsigned)n;
}

/* The count loaded at s0 runs out (time.stall_windows), or the TSC passes
 * CAL_TSC_LIMIT. */
static void stall_out(uint64_t s0)
{
	while (!(inb(PORT_61) & PORT_61_OUT2) &&
	       arch_counter_read() - s0 < CAL_TSC_LIMIT)
		cpu_pause();
}

/* Runs one PIT window. */
static enum window_result pit_window(struct tsc_window *w)
{
	uint8_t p61 = inb(PORT_61);
	outb(PORT_61, (uint8_t)((p61 & ~PORT_61_SPEAKER) | PORT_61_GATE2));
	outb(PIT_COMMAND, PIT_CH2_MODE0);
	outb(PIT_CH2_DATA, CAL_COUNT & 0xff);
	/* Start bracket: the count starts with its high byte. */
	uint64_t s0 = arch_counter_read();
	outb(PIT_CH2_DATA, CAL_COUNT >> 8);
	uint32_t l0 = lapic_timer_count();
	uint64_t s1 = arch_counter_read();
	if (stall_windows) {
		stall_windows--;
		stall_out(s0);
	}
	/* Mode 0 drives the output low as soon as it is programmed: high
	 * here means no PIT answers (an absent port reads as 0xff). */
	if (inb(PORT_61) & PORT_61_OUT2)
		return WINDOW_NO_PIT;
	/* End bracket: from before the last read that saw the output low
	 * to after the LAPIC read that follows the first that saw it high. */
	uint64_t before_low = s1, before = s1, after;
	uint32_t l1;
	for (;;) {
		uint8_t v = inb(PORT_61);
		l1 = lapic_timer_count();
		after = arch_counter_read();
		if (v & PORT_61_OUT2)
			break;
		if (after - s0 > CAL_TSC_LIMIT) {
			outb(PORT_61, p61);
			return WINDOW_TIMEOUT;
		}
		before_low = before;
		before = after;
	}
	outb(PORT_61, p61);
	/* Midpoints of the brackets, in halves to stay in integers. */
	w->tsc = ((before_low + after) - (s0 + s1)) / 2;
	w->err = ((after - before_low) + (s1 - s0)) / 2;
	w->lapic = l0 - l1;
	if (wide_windows) {
		wide_windows--;
		w->err += w->tsc / 50;
	}
	return WINDOW_OK;
}

/* Converts ticks counted over CAL_COUNT PIT periods into ticks per ms. */
static uint64_t per_ms(uint64_t ticks)
{
	return ticks * PIT_HZ / (CAL_COUNT * 1000ull);
}

/* Of best[from, TSC_CAL_GOOD), the index of the loosest window (an empty
 * slot first). */
static unsigned loosest(const struct tsc_window *best, unsigned from)
{
	unsigned worst = from;
	for (unsigned i = from; i < TSC_CAL_GOOD; i++) {
		if (best[i].tsc == 0)
			return i;
		if (best[i].err * best[worst].tsc >
		    best[worst].err * best[i].tsc)
			worst = i;
	}
	return worst;
}

void tsc_cal_pick_add(struct tsc_cal_pick *pick, const struct tsc_window *w)
{
	struct tsc_window *best = pick->best;
	if (pick->nclean == TSC_CAL_GOOD)
		return;
	unsigned i = loosest(best, pick->nclean);
	if (w->err * TSC_CAL_MAX_ERR < w->tsc) {
		/* The loosest other makes way: the first free slot takes
		 * the clean window, its other moves to the loosest's. */
		best[i] = best[pick->nclean];
		best[pick->nclean++] = *w;
		return;
	}
	if (best[i].tsc == 0 || w->err * best[i].tsc < best[i].err * w->tsc)
		best[i] = *w;
}

uint64_t tsc_cal_pick_result(const struct tsc_cal_pick *pick, uint64_t *tsc,
                             uint64_t *lapic)
{
	uint64_t worst = 0;
	unsigned n = 0;
	*tsc = *lapic = 0;
	for (unsigned i = 0; i < TSC_CAL_GOOD; i++) {
		const struct tsc_window *w = &pick->best[i];
		if (w->tsc == 0)
			continue;
		*tsc += w->tsc;
		*lapic += w->lapic;
		uint64_t e = w->err * 10000 / w->tsc;
		worst = e > worst ? e : worst;
		n++;
	}
	if (n == 0)
		return 10000;
	*tsc /= n;
	*lapic /= n;
	return worst;
}

/* Runs windows into pick until TSC_CAL_GOOD are clean or CAL_TRIES have
 * run; returns how many ran. Panics if CAL_MAX_FAILS in a row fail. */
static unsigned run_windows(struct tsc_cal_pick *pick, unsigned done)
{
	unsigned ntries, fails = 0;
	for (ntries = 0; ntries < CAL_TRIES && pick->nclean < TSC_CAL_GOOD;
	     ntries++) {
		struct tsc_window w;
		enum window_result r = pit_window(&w);
		if (r != WINDOW_OK && ++fails < CAL_MAX_FAILS) {
			printk("time: PIT window %u: port 0x61 bit 5 %s (a "
			       "stalled CPU?); trying again\n",
			       done + ntries + 1,
			       r == WINDOW_NO_PIT ? "high at once"
			                          : "never set");
			continue;
		}
		if (r != WINDOW_OK)
			panic("time: PIT channel 2 does not count (port 0x61 "
			      "bit 5 %s in %u windows in a row); no reference "
			      "to calibrate the TSC and the LAPIC timer "
			      "against",
			      r == WINDOW_NO_PIT ? "high at once" : "never set",
			      fails);
		fails = 0;
		tsc_cal_pick_add(pick, &w);
	}
	return ntries;
}

/* Averages TSC_CAL_GOOD clean windows; if too few are, the tightest
 * others stand in, up to TSC_CAL_BOUND (more rounds are run while over
 * it, then a panic). Returns the worst error kept, in parts per 10^4, and
 * in *tries the number of windows run. */
static uint64_t calibrate(uint64_t *tsc, uint64_t *lapic, unsigned *tries)
{
	struct tsc_cal_pick pick = {0};
	unsigned ntries = 0;
	uint64_t worst;
	for (unsigned round = 1;; round++) {
		ntries += run_windows(&pick, ntries);
		worst = tsc_cal_pick_result(&pick, tsc, lapic);
		if (pick.nclean == TSC_CAL_GOOD || worst <= TSC_CAL_BOUND)
			break;
		if (round == CAL_ROUNDS)
			panic("time: calibration refused: only %u of %u PIT "
			      "windows were free of stalls, and the tightest "
			      "others leave it off by up to %llu.%02llu%% "
			      "(over the %u%% bound); no time could be "
			      "trusted",
			      pick.nclean, ntries,
			      (unsigned long long)(worst / 100),
			      (unsigned long long)(worst % 100),
			      TSC_CAL_BOUND / 100);
		printk("time: only %u of %u PIT windows were free of stalls, "
		       "and the tightest others leave calibration off by up "
		       "to %llu.%02llu%% (over the %u%% bound); running %u "
		       "more\n",
		       pick.nclean, ntries, (unsigned long long)(worst / 100),
		       (unsigned long long)(worst % 100), TSC_CAL_BOUND / 100,
		       CAL_TRIES);
	}
	*tries = ntries;
	if (pick.nclean < TSC_CAL_GOOD)
		printk("time: only %u of %u PIT windows were free of stalls; "
		       "calibration may be off by %llu.%02llu%%\n",
		       pick.nclean, ntries, (unsigned long long)(worst / 100),
		       (unsigned long long)(worst % 100));
	return worst;
}

uint64_t arch_counter_calibrate(void)
{
	uint64_t tsc, lapic;
	unsigned tries;
	stall_windows_init();
	lapic_timer_count_start();
	uint64_t err = calibrate(&tsc, &lapic, &tries);
	uint64_t tsc_per_ms = per_ms(tsc);
	uint64_t lapic_per_ms = per_ms(lapic);
	if (tsc_per_ms == 0 || lapic_per_ms == 0 ||
	    lapic_per_ms > LAPIC_MAX_TICKS_PER_MS)
		panic("time: calibration gave TSC %llu and LAPIC %llu "
		      "ticks/ms",
		      (unsigned long long)tsc_per_ms,
		      (unsigned long long)lapic_per_ms);
	lapic_timer_set_rate((uint32_t)lapic_per_ms);
	printk("lapic: %s, timer %llu ticks/ms, TSC %llu MHz\n",
	       lapic_mode_name(), (unsigned long long)lapic_per_ms,
	       (unsigned long long)(tsc_per_ms / 1000));
	printk("time: calibrated against PIT channel 2: mean of %d windows "
	       "of %d ms (%u run), ends bracketed to within %llu.%02llu%%\n",
	       TSC_CAL_GOOD, CAL_WINDOW_MS, tries,
	       (unsigned long long)(err / 100),
	       (unsigned long long)(err % 100));
	return tsc_per_ms;
}

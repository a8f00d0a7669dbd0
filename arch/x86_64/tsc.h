/*
 * The clock counter the kernel keeps time with (kernel/time.c): on x86_64
 * the TSC. QEMU keeps the TSCs of all CPUs in step (and so does hardware
 * with an invariant TSC), so readings on different CPUs are comparable.
 *
 * arch_counter_calibrate also measures the LAPIC timer in the same PIT
 * windows and hands its rate to the LAPIC driver: both need the PIT, and
 * one pass costs half the boot time of two.
 */
#ifndef ARCH_X86_64_TSC_H
#define ARCH_X86_64_TSC_H

#include <stdint.h>

#include "cpu.h"

/*
 * Measures the TSC and LAPIC timer rates over the same PIT channel 2
 * windows, sets the LAPIC timer's rate (lapic_timer_set_rate), prints both
 * and returns TSC ticks per millisecond (never 0). Boot CPU, once, after
 * lapic_init(), interrupts off. Panics if the PIT does not count (there is
 * then no reference) or the rates make no sense.
 */
uint64_t arch_counter_calibrate(void);

/* The TSC, read after every earlier load has completed: rdtsc alone may
 * run ahead of them, and lfence keeps a time stamp from being taken before
 * the event it is meant to follow. Any context, NMI included. */
static inline uint64_t arch_counter_read(void)
{
	__asm__ volatile("lfence" ::: "memory");
	return rdtsc();
}

#endif

/*
 * Monotonic time from the TSC, calibrated at boot against the PIT.
 *
 * QEMU keeps the TSCs of all CPUs in step (and so does hardware with an
 * invariant TSC), so time_now_ns() read on different CPUs is comparable.
 * Callable in any context, on any CPU, once time_init() has run.
 */
#ifndef KERNEL_TIME_H
#define KERNEL_TIME_H

#include <stdint.h>

/* The rate of the periodic LAPIC timer kmain starts on every CPU. */
#define TIMER_HZ 100

/*
 * Measures the TSC and LAPIC timer rates over the same PIT channel 2
 * windows and prints them. Boot CPU, once, after lapic_init(), interrupts
 * off. Panics if the PIT does not count (there is then no reference).
 */
void time_init(void);

/* Nanoseconds since time_init(); 0 before it. Never decreases. */
uint64_t time_now_ns(void);

/* Busy-waits at least us microseconds. Panics before time_init(). */
void time_delay_us(uint64_t us);

/* TSC ticks per millisecond (0 before time_init()). */
uint64_t time_tsc_per_ms(void);

#endif

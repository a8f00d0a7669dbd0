/*
 * Monotonic time from the arch clock counter (the TSC on x86_64), which
 * the arch calibrates at boot (against the PIT). The counters of all CPUs
 * run in step, so time_now_ns() read on different CPUs is comparable.
 * Callable in any context, on any CPU, once time_init() has run.
 */
#ifndef KERNEL_TIME_H
#define KERNEL_TIME_H

#include <stdint.h>

/* The rate of the periodic LAPIC timer kmain starts on every CPU. */
#define TIMER_HZ 100

/*
 * Calibrates the clock counter (arch_counter_calibrate: on x86_64 the TSC
 * and the LAPIC timer, over the same PIT channel 2 windows) and starts the
 * clock at 0. Boot CPU, once, after lapic_init(), interrupts off. Panics if
 * there is no reference to calibrate against.
 */
void time_init(void);

/* Nanoseconds since time_init(); 0 before it. Never decreases. */
uint64_t time_now_ns(void);

/* Busy-waits at least us microseconds. Panics before time_init(). A
 * delay past the clock counter's range (2^64 ticks) waits for good. */
void time_delay_us(uint64_t us);

/* Clock counter (TSC) ticks per millisecond (0 before time_init()). */
uint64_t time_tsc_per_ms(void);

#endif

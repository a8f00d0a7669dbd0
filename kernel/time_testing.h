/* time.c's internals for tests only. */
#ifndef KERNEL_TIME_TESTING_H
#define KERNEL_TIME_TESTING_H

#include <stdint.h>

/* The clock-counter ticks time_delay_us(us) waits for. */
uint64_t time_delay_ticks(uint64_t us);

#endif

/* Console input without a UART, for tests that type at the ring; tests
 * only, and only while nothing else reads or fills it (the test kernel
 * never calls conin_init). */
#ifndef KERNEL_CONIN_TESTING_H
#define KERNEL_CONIN_TESTING_H

#include <stdint.h>

#include "kernel/testhook.h"

/* Empties the ring and forgets every drop. */
void conin_testing_reset(void);

/* Offers c to the ring as if the UART had received it: queued (the
 * reader woken), or dropped (and counted) when the ring is full. */
void conin_testing_push(uint8_t c);

/* Counts n bytes dropped before the next byte offered, as a full ring
 * or a UART overrun does, without filling the ring. */
void conin_testing_hole(uint32_t n);

/* Moves what the UART has received into the ring, as its interrupt
 * handler does. */
void conin_testing_drain(void);

#if KTEST_HOOKS
/* Called by the drain after each byte it read from the UART, with the
 * count read so far in this drain: a test sends more (loopback) there,
 * bytes arriving mid-drain. Interrupts off. */
extern _Atomic test_hook_fn conin_testing_drained;
#endif

/* The ring's size in bytes. */
#define CONIN_TESTING_RING 256

#endif

/* Test hooks in printk.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_PRINTK_TESTING_H
#define KERNEL_PRINTK_TESTING_H

#include "kernel/spinlock.h"
#include "kernel/testhook.h"

/* The lock printk takes, for tests that watch who waits for it. */
const struct spinlock *printk_testing_console_lock(void);

/* Called by panic (arg: the panicking CPU's id) right after it printed
 * the "KERNEL PANIC" line, with interrupts off. */
extern _Atomic test_hook_fn panic_testing_after_message;

/* Called by the first CPU to panic (arg: its id) once it has claimed the
 * panic, before it stops the other CPUs and formats its message. */
extern _Atomic test_hook_fn panic_testing_claimed;

/* Called by panic_park (arg: the CPU's id) before the CPU marks itself
 * stopped: a test that spins there plays a CPU that never answers the
 * panic's NMI. */
extern _Atomic test_hook_fn panic_testing_park;

/* Called for every character printk sends to the UART (arg: the
 * character), by the CPU printing it, inside the console lock. */
extern _Atomic test_hook_fn printk_testing_putc;

#endif

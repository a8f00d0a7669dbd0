/* Kernel console output (COM1) and panic. */
#ifndef KERNEL_PRINTK_H
#define KERNEL_PRINTK_H

#include <stdarg.h>
#include <stdint.h>

/* Formats (see kernel/format.h) to the console. Any context; output of
 * CPUs printing at once may interleave. */
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vprintk(const char *fmt, va_list ap);

/*
 * Prints "KERNEL PANIC: <message>" and a backtrace, reports the running test
 * as crashed (test kernels then leave QEMU with the panic code) and stops
 * the CPU. Any context.
 */
__attribute__((noreturn, format(printf, 1, 2))) void panic(const char *fmt,
                                                           ...);

/* Prints a frame-pointer backtrace starting at (rip, rbp). */
void backtrace_print(uint64_t rip, uint64_t rbp);

#endif

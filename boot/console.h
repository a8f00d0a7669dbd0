/* Loader messages: each line goes to the UEFI console and straight to COM1. */
#ifndef BOOT_CONSOLE_H
#define BOOT_CONSOLE_H

#include <stdarg.h>
#include <stddef.h>

/* Programs COM1 for 115200 8N1 once the firmware has drained its output. */
void con_init(void);

/*
 * Prints one formatted line (a "\n" is added) to the UEFI text console and
 * to COM1. Formats: %s %c %d %u %x with the l, ll and z modifiers, and %%.
 * Lines longer than 255 bytes are cut. Only while boot services run.
 */
void con_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Like con_printf, but to COM1 only: safe after ExitBootServices. */
void con_serial_printf(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));

/* Formats into buf[0, cap) (always NUL-terminated when cap > 0), with the
 * conversions con_printf accepts. Returns the length written. */
size_t con_vformat(char *buf, size_t cap, const char *fmt, va_list ap);

#endif

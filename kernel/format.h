/*
 * printf-style formatting without libc, shared by printk and by the host
 * tests (which compare it against the C library's snprintf).
 *
 * Conversions: d i u x X o p s c %; flags - 0 + space #; width and
 * precision as digits or *; length modifiers hh h l ll z t j. %p prints
 * 0x and 16 hex digits. A NULL %s prints "(null)". Anything else is copied
 * through verbatim so a bad format is visible rather than fatal, and so
 * is a conversion whose width or precision (as digits or through *) is
 * past FORMAT_FIELD_MAX (its arguments are still taken, so that later
 * conversions get theirs).
 */
#ifndef KERNEL_FORMAT_H
#define KERNEL_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

/* The largest width or precision a conversion may have. */
#define FORMAT_FIELD_MAX (1 << 20)

typedef void (*format_sink_fn)(void *ctx, char c);

/* Formats into sink; returns the number of characters produced. */
int kvformat(format_sink_fn sink, void *ctx, const char *fmt, va_list ap);

/* Like snprintf: writes at most size bytes including the NUL and returns
 * the length the full output would have had. */
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#endif

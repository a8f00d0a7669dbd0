/*
 * kernel/format.c against the C library's snprintf: every conversion, flag,
 * width, precision and length the kernel uses, plus truncation.
 */
#include "../../kernel/format.h"
#include "../../kernel/ktest.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The cases include flag combinations the compiler warns about on purpose
 * (0 with -, 0 with a precision): both sides must agree on them. */
#pragma GCC diagnostic ignored "-Wformat"

/* Formats with both implementations and compares text and return value. */
#define SAME(fmt, ...)                                                      \
	do {                                                                \
		char want_[256], got_[256];                                 \
		int wn_ = snprintf(want_, sizeof(want_), fmt, __VA_ARGS__); \
		int gn_ = ksnprintf(got_, sizeof(got_), fmt, __VA_ARGS__);  \
		KEXPECT_STREQ(got_, want_);                                 \
		KEXPECT_EQ(gn_, wn_);                                       \
	} while (0)

/* No format attribute: lets tests pass what the compiler would reject. */
static int unchecked(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = kvsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

KTEST(format, integers)
{
	SAME("%d %i %u", 0, -1, 4000000000u);
	SAME("%d %d", INT_MIN, INT_MAX);
	SAME("%ld %lu", LONG_MIN, ULONG_MAX);
	SAME("%lld %llu", LLONG_MIN, ULLONG_MAX);
	SAME("%hhd %hhu %hd %hu", 300, 300, 70000, 70000);
	SAME("%zu %zd %td %jd", (size_t)123, (ssize_t)-5, (ptrdiff_t)-7,
	     (intmax_t)INT64_MIN);
	SAME("%x %X %o", 0xdeadbeefu, 0xdeadbeefu, 0755u);
	SAME("%lx %llX", 0xffffffffffffffffUL, 0x123456789abcdefULL);
}

/* z, t and j name 64-bit types on x86_64 whichever conversion they
 * modify: a value past 32 bits, or a negative one read as unsigned,
 * shows an int read in their place (a %tu took 4294967295 for -1). */
KTEST(format, length_modifiers_read_64_bits)
{
	SAME("%zd %zu %zx", (ssize_t)-5000000000, (size_t)5000000000,
	     (size_t)0x123456789);
	SAME("%tu %tx %td", (ptrdiff_t)-1, (ptrdiff_t)0x987654321,
	     (ptrdiff_t)-5000000000);
	SAME("%ju %jx %jd", UINTMAX_MAX, (uintmax_t)0x123456789,
	     (intmax_t)INT64_MAX);
}

KTEST(format, width_and_flags)
{
	SAME("[%5d] [%-5d] [%05d] [%+d] [% d]", 42, 42, 42, 42, 42);
	SAME("[%05d] [%-05d] [%+05d]", -42, -42, 42);
	SAME("[%#x] [%#X] [%#o] [%#x] [%#o]", 255u, 255u, 8u, 0u, 0u);
	SAME("[%#010x] [%016lx] [%-16lx]", 255u, 0xabcUL, 0xabcUL);
	SAME("[%*d] [%-*d] [%*d]", 6, 7, 6, 7, -6, 7);
	SAME("[%1d] [%0d]", 12345, 12345);
}

/* '+' and ' ' are for signed conversions: the C library drops them on
 * %u, %x and %o, and so must the kernel (a "+5" for an unsigned count). */
KTEST(format, sign_flags_only_on_signed_conversions)
{
	SAME("[%+u] [% u] [%+5u] [% -4u] [%+lu]", 5u, 5u, 5u, 5u, 7ul);
	SAME("[%+x] [% X] [%+#o] [% #x] [%+zu]", 5u, 5u, 5u, 5u, (size_t)9);
	SAME("[%+d] [% d] [%+i] [% 5d]", 5, 5, -5, -5);
}

/* A width or precision past FORMAT_FIELD_MAX (a wrapped length, INT_MIN
 * through '*') is no field at all: the spec is copied through, as an
 * unknown one, instead of overflowing an int while it is parsed or
 * negated, or padding for minutes. */
KTEST(format, huge_fields_are_refused)
{
	char buf[64];
	KEXPECT_EQ(unchecked(buf, sizeof(buf), "[%*d]", INT_MIN, 5), 5);
	KEXPECT_STREQ(buf, "[%*d]");
	KEXPECT_EQ(unchecked(buf, sizeof(buf), "[%99999999999d]", 5), 15);
	KEXPECT_STREQ(buf, "[%99999999999d]");
	unchecked(buf, sizeof(buf), "[%.4294967297d]", 5);
	KEXPECT_STREQ(buf, "[%.4294967297d]");
	unchecked(buf, sizeof(buf), "[%*d|%d]", FORMAT_FIELD_MAX + 1, 5, 6);
	KEXPECT_STREQ(buf, "[%*d|6]");
	/* Digits stop counting past the limit, not at it: "10485760" must
	 * not stop at 1048576, the limit, and be taken as a field. */
	KEXPECT_EQ(unchecked(buf, sizeof(buf), "[%10485760d]", 5), 12);
	KEXPECT_STREQ(buf, "[%10485760d]");
	/* The limit itself is a field. */
	KEXPECT_EQ(unchecked(NULL, 0, "%*d", FORMAT_FIELD_MAX, 5),
	           FORMAT_FIELD_MAX);
	KEXPECT_EQ(unchecked(NULL, 0, "%-*d", -FORMAT_FIELD_MAX, 5),
	           FORMAT_FIELD_MAX);
}

KTEST(format, precision)
{
	SAME("[%.3d] [%.0d] [%5.3d] [%-5.3d] [%05.3d]", 7, 0, 7, 7, 7);
	SAME("[%.0x] [%#.0x] [%.4x] [%#.4x]", 0u, 0u, 0xau, 0xau);
	SAME("[%.3s] [%.0s] [%.*s] [%10.2s]", "abcdef", "abc", 2, "xyz", "hey");
	SAME("[%.*d]", -1, 5);
	/* An array of exactly the precision's bytes needs no NUL (C11
	 * 7.21.6.1): nothing past it is read (ASan's red zone follows; the
	 * shell's heapmap rows are such arrays). */
	char *four = malloc(4), buf[16];
	KASSERT(four);
	memcpy(four, "abcd", 4);
	KEXPECT_EQ(unchecked(buf, sizeof(buf), "[%.*s]", 4, four), 6);
	KEXPECT_STREQ(buf, "[abcd]");
	free(four);
}

/* A negative precision through '*' is taken as none (C11 7.21.6.1): a
 * whole string, and a 0 that still shows. Read as precision 0 they
 * printed nothing. */
KTEST(format, negative_star_precision_is_none)
{
	SAME("[%.*s] [%.*d] [%.*x]", -1, "abc", -3, 0, -2, 0u);
}

KTEST(format, strings_and_chars)
{
	SAME("[%s] [%10s] [%-10s] [%c] [%3c] [%-3c]", "hi", "hi", "hi", 'x',
	     'y', 'z');
	SAME("%s", "");
	SAME("100%% [%%] %c%c", 'o', 'k');
	char buf[32];
	KEXPECT_EQ(unchecked(buf, sizeof(buf), "%s", (char *)NULL), 6);
	KEXPECT_STREQ(buf, "(null)");
}

KTEST(format, pointers)
{
	char buf[64];
	ksnprintf(buf, sizeof(buf), "%p", (void *)0xffffffff80001234ULL);
	KEXPECT_STREQ(buf, "0xffffffff80001234");
	ksnprintf(buf, sizeof(buf), "%p", (void *)0);
	KEXPECT_STREQ(buf, "0x0000000000000000");
	ksnprintf(buf, sizeof(buf), "[%20p]", (void *)0x10);
	KEXPECT_STREQ(buf, "[  0x0000000000000010]");
	/* '-' pads a pointer on the right, as any other conversion. */
	ksnprintf(buf, sizeof(buf), "[%-20p]", (void *)0x10);
	KEXPECT_STREQ(buf, "[0x0000000000000010  ]");
}

KTEST(format, truncation)
{
	char buf[8];
	memset(buf, 'Z', sizeof(buf));
	KEXPECT_EQ(ksnprintf(buf, 5, "%s", "abcdefgh"), 8);
	KEXPECT_STREQ(buf, "abcd");
	KEXPECT_EQ(buf[5], 'Z'); /* nothing past size was written */
	KEXPECT_EQ(ksnprintf(buf, 0, "%d", 12345), 5);
	KEXPECT_EQ(buf[0], 'a');
	KEXPECT_EQ(ksnprintf(buf, 1, "%d", 12345), 5);
	KEXPECT_STREQ(buf, "");
	/* Output exactly size long: the NUL takes its last byte, and
	 * the byte after the buffer is not touched. */
	memset(buf, 'Z', sizeof(buf));
	KEXPECT_EQ(ksnprintf(buf, 4, "%s", "abcd"), 4);
	KEXPECT_STREQ(buf, "abc");
	KEXPECT_EQ(buf[4], 'Z');
}

KTEST(format, unknown_conversion_is_visible)
{
	char buf[32];
	unchecked(buf, sizeof(buf), "a%qb");
	KEXPECT_STREQ(buf, "a%qb");
	unchecked(buf, sizeof(buf), "end%");
	KEXPECT_STREQ(buf, "end%");
	/* Verbatim, flags, width and precision included. */
	KEXPECT_EQ(unchecked(buf, sizeof(buf), "a%-05.3qb"), 9);
	KEXPECT_STREQ(buf, "a%-05.3qb");
	unchecked(buf, sizeof(buf), "[%#8", 1);
	KEXPECT_STREQ(buf, "[%#8");
}

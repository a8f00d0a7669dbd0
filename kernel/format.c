/*
 * The formatting engine behind printk and ksnprintf (see format.h for the
 * conversions). Portable: no libc, no allocation, callable in any context
 * including exception handlers, as long as the sink is.
 */
#include "format.h"

#include <stdbool.h>
#include <stdint.h>

struct spec {
	bool left, zero, plus, space, alt;
	bool pointer;  /* %p: always "0x" */
	int width;     /* -1: none */
	int precision; /* -1: none */
	int length;    /* 'H' hh, 'h', 'l', 'L' ll, 'z', 't', 'j', 0 */
	bool too_big;  /* a width or precision past FORMAT_FIELD_MAX */
};

struct out {
	format_sink_fn sink;
	void *ctx;
	int count;
};

static void put(struct out *o, char c)
{
	o->sink(o->ctx, c);
	o->count++;
}

static void pad(struct out *o, char c, int n)
{
	while (n-- > 0)
		put(o, c);
}

static void emit_string(struct out *o, const struct spec *s, const char *str)
{
	if (str == NULL)
		str = "(null)";
	int len = 0;
	/* The precision first: an array of that many bytes needs no NUL. */
	while ((s->precision < 0 || len < s->precision) && str[len])
		len++;
	if (!s->left)
		pad(o, ' ', s->width - len);
	for (int i = 0; i < len; i++)
		put(o, str[i]);
	if (s->left)
		pad(o, ' ', s->width - len);
}

/* Emits an integer given its magnitude and sign, honouring every flag. */
static void emit_number(struct out *o, const struct spec *s, uint64_t v,
                        bool negative, unsigned base, bool upper)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char buf[24];
	int n = 0;
	while (v) {
		buf[n++] = digits[v % base];
		v /= base;
	}
	/* Precision 0 with value 0 prints no digits; octal '#' keeps a 0. */
	int ndigits = n;
	if (s->precision < 0 && n == 0)
		ndigits = 1;
	if (s->precision > ndigits)
		ndigits = s->precision;
	const char *prefix = "";
	if (negative)
		prefix = "-";
	else if (s->plus && base == 10)
		prefix = "+";
	else if (s->space && base == 10)
		prefix = " ";
	else if (s->alt && base == 16 && (n > 0 || s->pointer))
		prefix = upper ? "0X" : "0x";
	else if (s->alt && base == 8 && ndigits <= n)
		ndigits = n + 1;
	int plen = 0;
	while (prefix[plen])
		plen++;
	int total = plen + ndigits;
	bool zero_pad = s->zero && !s->left && s->precision < 0;
	if (!s->left && !zero_pad)
		pad(o, ' ', s->width - total);
	for (int i = 0; i < plen; i++)
		put(o, prefix[i]);
	if (zero_pad)
		pad(o, '0', s->width - total);
	pad(o, '0', ndigits - n);
	while (n > 0)
		put(o, buf[--n]);
	if (s->left)
		pad(o, ' ', s->width - total);
}

static uint64_t fetch_unsigned(const struct spec *s, va_list *ap)
{
	switch (s->length) {
	case 'H':
		return (unsigned char)va_arg(*ap, unsigned int);
	case 'h':
		return (unsigned short)va_arg(*ap, unsigned int);
	case 'l':
		return va_arg(*ap, unsigned long);
	case 'L':
		return va_arg(*ap, unsigned long long);
	case 'z':
		return va_arg(*ap, size_t);
	case 't':
		return (uint64_t)va_arg(*ap, ptrdiff_t);
	case 'j':
		return va_arg(*ap, uintmax_t);
	default:
		return va_arg(*ap, unsigned int);
	}
}

static int64_t fetch_signed(const struct spec *s, va_list *ap)
{
	switch (s->length) {
	case 'H':
		return (signed char)va_arg(*ap, int);
	case 'h':
		return (short)va_arg(*ap, int);
	case 'l':
		return va_arg(*ap, long);
	case 'L':
		return va_arg(*ap, long long);
	case 'z':
		return (int64_t)va_arg(*ap, size_t);
	case 't':
		return va_arg(*ap, ptrdiff_t);
	case 'j':
		return va_arg(*ap, intmax_t);
	default:
		return va_arg(*ap, int);
	}
}

/* Parses the digits at f into *out, which stops growing past
 * FORMAT_FIELD_MAX (no int overflow); returns the first non-digit. */
static const char *parse_field(const char *f, int *out)
{
	int v = 0;
	for (; *f >= '0' && *f <= '9'; f++)
		if (v <= FORMAT_FIELD_MAX)
			v = v * 10 + (*f - '0');
	*out = v;
	return f;
}

/* Parses flags, width, precision and length; returns the conversion char. */
static const char *parse_spec(const char *f, struct spec *s, va_list *ap)
{
	*s = (struct spec){.width = -1, .precision = -1};
	for (;; f++) {
		if (*f == '-')
			s->left = true;
		else if (*f == '0')
			s->zero = true;
		else if (*f == '+')
			s->plus = true;
		else if (*f == ' ')
			s->space = true;
		else if (*f == '#')
			s->alt = true;
		else
			break;
	}
	if (*f == '*') {
		int w = va_arg(*ap, int);
		/* Negated unsigned: -INT_MIN is no int. */
		unsigned u = w < 0 ? 0u - (unsigned)w : (unsigned)w;
		s->left |= w < 0;
		s->width = u > FORMAT_FIELD_MAX ? FORMAT_FIELD_MAX + 1 : (int)u;
		f++;
	} else if (*f >= '0' && *f <= '9') {
		f = parse_field(f, &s->width);
	}
	if (*f == '.') {
		f++;
		s->precision = 0;
		if (*f == '*') {
			s->precision = va_arg(*ap, int);
			if (s->precision < 0)
				s->precision = -1;
			f++;
		} else {
			f = parse_field(f, &s->precision);
		}
	}
	s->too_big =
	        s->width > FORMAT_FIELD_MAX || s->precision > FORMAT_FIELD_MAX;
	if (f[0] == 'h' && f[1] == 'h') {
		s->length = 'H';
		f += 2;
	} else if (f[0] == 'l' && f[1] == 'l') {
		s->length = 'L';
		f += 2;
	} else if (*f == 'h' || *f == 'l' || *f == 'z' || *f == 't' ||
	           *f == 'j') {
		s->length = *f++;
	}
	return f;
}

/* Converts one spec; returns false, having printed nothing, for a
 * conversion it does not know. */
static bool convert(struct out *o, struct spec *s, char conv, va_list *ap)
{
	switch (conv) {
	case 'd':
	case 'i': {
		int64_t v = fetch_signed(s, ap);
		uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
		emit_number(o, s, mag, v < 0, 10, false);
		break;
	}
	case 'u':
		/* '+' and ' ' are for signed conversions only (C11 7.21.6.1):
		 * emit_number would give a decimal its sign. */
		s->plus = s->space = false;
		emit_number(o, s, fetch_unsigned(s, ap), false, 10, false);
		break;
	case 'x':
	case 'X':
		emit_number(o, s, fetch_unsigned(s, ap), false, 16,
		            conv == 'X');
		break;
	case 'o':
		emit_number(o, s, fetch_unsigned(s, ap), false, 8, false);
		break;
	case 'p': {
		uintptr_t v = (uintptr_t)va_arg(*ap, void *);
		struct spec ps = {.alt = true,
		                  .pointer = true,
		                  .precision = 16,
		                  .width = s->width,
		                  .left = s->left};
		emit_number(o, &ps, v, false, 16, false);
		break;
	}
	case 's':
		emit_string(o, s, va_arg(*ap, const char *));
		break;
	case 'c': {
		/* Not through emit_string: a NUL char still counts as one. */
		char c = (char)va_arg(*ap, int);
		if (!s->left)
			pad(o, ' ', s->width - 1);
		put(o, c);
		if (s->left)
			pad(o, ' ', s->width - 1);
		break;
	}
	default:
		return false;
	}
	return true;
}

static void discard(void *ctx, char c)
{
}

/* Takes the argument of a conversion refused for its field size, so
 * that the ones after it still line up. */
static void skip_argument(struct spec *s, char conv, va_list *ap)
{
	struct out none = {discard, NULL, 0};
	s->width = s->precision = -1;
	convert(&none, s, conv, ap);
}

int kvformat(format_sink_fn sink, void *ctx, const char *fmt, va_list ap)
{
	struct out o = {sink, ctx, 0};
	va_list args;
	va_copy(args, ap);
	while (*fmt) {
		if (*fmt != '%') {
			put(&o, *fmt++);
			continue;
		}
		fmt++;
		if (*fmt == '%') {
			put(&o, *fmt++);
			continue;
		}
		const char *start = fmt - 1;
		struct spec s;
		fmt = parse_spec(fmt, &s, &args);
		char conv = *fmt;
		if (conv)
			fmt++;
		/* An unknown conversion is copied as written, '%' to its
		 * last character. */
		if (s.too_big)
			skip_argument(&s, conv, &args);
		if (s.too_big || !convert(&o, &s, conv, &args))
			while (start < fmt)
				put(&o, *start++);
	}
	va_end(args);
	return o.count;
}

struct buf_sink {
	char *buf;
	size_t size, len;
};

static void buf_put(void *ctx, char c)
{
	struct buf_sink *b = ctx;
	if (b->len + 1 < b->size)
		b->buf[b->len] = c;
	b->len++;
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct buf_sink b = {buf, size, 0};
	int n = kvformat(buf_put, &b, fmt, ap);
	if (size > 0)
		buf[b.len < size ? b.len : size - 1] = '\0';
	return n;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = kvsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

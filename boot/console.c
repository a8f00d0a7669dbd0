/* Loader messages: a small printf, the UEFI text console and COM1 by hand. */
#include <efi.h>
#include <efilib.h>
#include <stdbool.h>

#include "console.h"

#define COM1      0x3f8
#define UART_DATA 0 /* DLL when DLAB is set */
#define UART_IER  1 /* DLM when DLAB is set */
#define UART_FCR  2
#define UART_LCR  3
#define UART_MCR  4
#define UART_LSR  5
#define LSR_THRE  0x20 /* transmit holding register empty */
#define LSR_TEMT  0x40 /* transmitter completely idle */
#define LINE_MAX  256
/* Polls of the line status before giving up: a missing or wedged UART must
 * not hang the loader (an absent port reads 0xff and passes anyway). */
#define UART_SPIN 1000000

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void uart_wait(uint8_t mask)
{
	for (unsigned i = 0; i < UART_SPIN; i++) {
		if (inb(COM1 + UART_LSR) & mask)
			return;
	}
}

void con_init(void)
{
	/* Let the firmware's queued output leave before the FIFO reset. */
	uart_wait(LSR_TEMT);
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x80); /* DLAB: divisor follows */
	outb(COM1 + UART_DATA, 1);   /* 115200 = 115200 / 1 */
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, 0x03); /* 8N1 */
	outb(COM1 + UART_FCR, 0xc7); /* FIFOs on, cleared, 14-byte trigger */
	outb(COM1 + UART_MCR, 0x03); /* DTR, RTS; OUT2 off: we poll */
}

static void serial_write(const char *s)
{
	for (; *s; s++) {
		uart_wait(LSR_THRE);
		outb(COM1 + UART_DATA, (uint8_t)*s);
	}
}

static void serial_line(const char *line)
{
	serial_write(line);
	serial_write("\r\n");
}

/* The UEFI console wants UCS-2 and CRLF; bytes outside ASCII become '?'. */
static void conout_line(const char *line)
{
	CHAR16 wide[LINE_MAX + 2];
	size_t n = 0;

	if (!ST || !ST->ConOut)
		return;
	for (; *line && n < LINE_MAX - 1; line++)
		wide[n++] = (unsigned char)*line < 0x80 ? (CHAR16)*line : '?';
	wide[n++] = '\r';
	wide[n++] = '\n';
	wide[n] = 0;
	ST->ConOut->OutputString(ST->ConOut, wide);
}

struct fmt_out {
	char *buf;
	size_t cap;
	size_t len;
};

static void put_char(struct fmt_out *o, char c)
{
	if (o->len + 1 < o->cap)
		o->buf[o->len++] = c;
}

static void put_str(struct fmt_out *o, const char *s)
{
	if (!s)
		s = "(null)";
	while (*s)
		put_char(o, *s++);
}

static void put_uint(struct fmt_out *o, unsigned long long v, unsigned base)
{
	char digits[24];
	int n = 0;

	do {
		digits[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		put_char(o, digits[--n]);
}

/* Reads one integer argument of the given length (0 int, 1 long, 2 long
 * long), sign-extended when is_signed. */
static unsigned long long get_int(va_list *ap, int length, bool is_signed)
{
	if (length >= 2)
		return va_arg(*ap, unsigned long long);
	if (length == 1)
		return is_signed ? (unsigned long long)va_arg(*ap, long)
		                 : va_arg(*ap, unsigned long);
	return is_signed ? (unsigned long long)va_arg(*ap, int)
	                 : va_arg(*ap, unsigned int);
}

/* Emits one conversion: conv is its letter, length its l count. */
static void put_conv(struct fmt_out *o, char conv, int length, va_list *ap)
{
	unsigned long long v;

	switch (conv) {
	case 'd':
		v = get_int(ap, length, true);
		if ((long long)v < 0) {
			put_char(o, '-');
			v = -v;
		}
		put_uint(o, v, 10);
		break;
	case 'u':
	case 'x':
		put_uint(o, get_int(ap, length, false), conv == 'x' ? 16 : 10);
		break;
	case 's':
		put_str(o, va_arg(*ap, const char *));
		break;
	case 'c':
		put_char(o, (char)va_arg(*ap, int));
		break;
	default: /* "%%" and anything unknown print as written */
		put_char(o, conv);
		break;
	}
}

size_t con_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
	struct fmt_out o = {buf, cap, 0};
	va_list args;

	va_copy(args, ap);
	while (*fmt) {
		int length = 0;

		if (*fmt != '%') {
			put_char(&o, *fmt++);
			continue;
		}
		fmt++;
		for (; *fmt == 'l'; fmt++)
			length++;
		if (*fmt == 'z') { /* size_t is unsigned long here */
			length = 1;
			fmt++;
		}
		if (!*fmt)
			break;
		put_conv(&o, *fmt++, length, &args);
	}
	va_end(args);
	if (cap)
		buf[o.len] = 0;
	return o.len;
}

void con_printf(const char *fmt, ...)
{
	char line[LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	con_vformat(line, sizeof(line), fmt, ap);
	va_end(ap);
	conout_line(line);
	serial_line(line);
}

void con_serial_printf(const char *fmt, ...)
{
	char line[LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	con_vformat(line, sizeof(line), fmt, ap);
	va_end(ap);
	serial_line(line);
}

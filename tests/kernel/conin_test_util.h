/*
 * The console input tests' helpers (conin_test.c, conin_ctrl_c_test.c):
 * bytes queued as if typed, a line editor that echoes nothing, and COM1
 * in loopback for a test that types at itself through the UART.
 */
#ifndef TESTS_KERNEL_CONIN_TEST_UTIL_H
#define TESTS_KERNEL_CONIN_TEST_UTIL_H

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/serial.h"
#include "kernel/conin.h"
#include "kernel/conin_testing.h"
#include "kernel/ktest.h"
#include "kernel/lineedit.h"
#include "kernel/shell_testing.h"
#include "kernel/stw.h"

static inline void push(const char *s)
{
	for (; *s; s++)
		conin_testing_push((uint8_t)*s);
}

static inline void no_echo(void *ctx, const char *s, size_t n, const char *line)
{
}

/* The line editor the tests read lines with (each test file its own). */
static struct lineedit le;

/* COM1's registers, for a test that talks to the UART in loopback. */
#define COM1        0x3f8
#define UART_IER    1
#define UART_MCR    4
#define UART_LSR    5
#define LSR_DR      0x01
#define MCR_LOOP    0x10
#define MCR_DTR_RTS 0x03

/*
 * Puts COM1 in loopback, empty, for a test that types at itself; returns
 * the flags for loopback_end. The UART in loopback receives whatever is
 * sent, so nothing else may print meanwhile: this CPU keeps interrupts
 * off, and every other CPU is parked (stw_stop), which it can be only
 * outside printk (printk holds interrupts off). Until this parked them,
 * any CPU's printk (a background thread's line, a shootdown's "still
 * waiting" while this CPU kept interrupts off) was typed too.
 */
static inline unsigned long loopback_begin(void)
{
	stw_stop("conin test: COM1 in loopback");
	unsigned long flags = read_rflags();
	cpu_cli();
	outb(COM1 + UART_MCR, MCR_DTR_RTS | MCR_LOOP);
	uint8_t c;
	while (serial_rx_byte(&c))
		;
	return flags;
}

/* Waits until the UART in loopback has received what was sent. No time
 * bound: QEMU's UART receives in loopback as the byte is written, a real
 * one within a byte's time, and one that never does hangs the run, which
 * run-ktest's timeout ends naming the test. */
static inline void wait_received(void)
{
	while (!(inb(COM1 + UART_LSR) & LSR_DR))
		cpu_pause();
}

/* Sends 20 bytes in loopback, 4 more than the FIFO holds: an overrun. */
static inline void overrun_the_fifo(void)
{
	for (int i = 0; i < 20; i++)
		serial_putc('x');
}

/* Reads a line at the shell, which must be refused for the bytes lost in
 * it (saying so if it ran); returns the count of them it gave. */
static inline uint64_t expect_line_lost(void)
{
	uint64_t lost = 0;
	enum lineedit_event ev = shell_read_line(&le, &lost);
	if (ev == LINEEDIT_LINE)
		ktest_diag("the line '%s' ran", lineedit_line(&le));
	KEXPECT_EQ(ev, LINEEDIT_LOST);
	return lost;
}

/* Back to polled output, as the test kernel runs, and lets the others go. */
static inline void loopback_end(unsigned long flags)
{
	outb(COM1 + UART_MCR, MCR_DTR_RTS);
	if (flags & RFLAGS_IF)
		cpu_sti();
	stw_start();
}

#endif

/*
 * The 16550 UART on COM1. Output is polled: the console and the KTAP
 * stream of the test runner go here; no lock, callers serialise (printk).
 * Input is read by one consumer (kernel/conin.c), from its interrupt
 * handler or its polling thread: serial_rx_irq_enable turns on the
 * "received data available" interrupt (IRQ 4), serial_rx_byte reads.
 */
#include "serial.h"

#include <stdatomic.h>

#include "cpu.h"

#define COM1       0x3f8
#define UART_THR   0 /* transmit holding register (DLAB=0) */
#define UART_DLL   0 /* divisor latch low (DLAB=1) */
#define UART_IER   1
#define UART_DLH   1
#define UART_FCR   2
#define UART_LCR   3
#define UART_MCR   4
#define UART_LSR   5
#define UART_RBR   0    /* receive buffer register (DLAB=0) */
#define LSR_DR     0x01 /* data ready */
#define LSR_OE     0x02 /* overrun: a byte came to a full FIFO, lost */
#define LSR_THRE   0x20 /* transmit holding register empty */
#define IER_RDA    0x01 /* interrupt on received data available */
#define FCR_ENABLE 0x01 /* FIFOs on; trigger level 1 byte; no resets */
#define MCR_OUT2   0x08 /* gates the UART's interrupt line on PCs */

/* An overrun seen by any line-status read, which clears it in the UART,
 * and not yet taken by serial_rx_take_overrun. Output reads the status
 * too, on any CPU, while it waits to send: until a review it dropped
 * what it saw, and a line that lost bytes while a long printk held the
 * input's interrupt off ran as if whole (test
 * conin.an_overrun_survives_output_before_the_drain). Atomic. */
static _Atomic bool overran;

void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00); /* no interrupts: polled */
	outb(COM1 + UART_LCR, 0x80); /* DLAB on to set the divisor */
	outb(COM1 + UART_DLL, 1);    /* 115200 baud = 115200 / 1 */
	outb(COM1 + UART_DLH, 0);
	outb(COM1 + UART_LCR, 0x03); /* 8N1, DLAB off */
	outb(COM1 + UART_FCR, 0xc7); /* FIFOs on and cleared */
	outb(COM1 + UART_MCR, 0x03); /* DTR, RTS */
}

void serial_putc(char c)
{
	if (c == '\n')
		serial_putc('\r');
	for (int spins = 0; spins < 100000; spins++) {
		uint8_t lsr = inb(COM1 + UART_LSR);
		if (lsr & LSR_OE)
			atomic_store(&overran, true);
		if (lsr & LSR_THRE)
			break;
	}
	outb(COM1 + UART_THR, (uint8_t)c);
}

void serial_rx_irq_enable(void)
{
	/* Trigger at one byte: a keystroke must not wait for 13 more. The
	 * FIFOs stay as they are (no reset bits): the bytes typed while the
	 * kernel booted are waiting there for conin_init's first drain, and
	 * the transmitter may still hold the end of the last line. */
	outb(COM1 + UART_FCR, FCR_ENABLE);
	outb(COM1 + UART_MCR, 0x03 | MCR_OUT2);
	outb(COM1 + UART_IER, IER_RDA);
}

bool serial_rx_byte(uint8_t *out)
{
	uint8_t lsr = inb(COM1 + UART_LSR);
	if (lsr & LSR_OE)
		atomic_store(&overran, true);
	if (!(lsr & LSR_DR))
		return false;
	*out = inb(COM1 + UART_RBR);
	return true;
}

bool serial_rx_take_overrun(void)
{
	return atomic_exchange(&overran, false);
}

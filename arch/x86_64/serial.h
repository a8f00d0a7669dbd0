/* The 16550 UART on COM1: polled output, usable from any context; input
 * for one reader (kernel/conin.c). */
#ifndef ARCH_X86_64_SERIAL_H
#define ARCH_X86_64_SERIAL_H

#include <stdbool.h>
#include <stdint.h>

void serial_init(void);
void serial_putc(char c);

#define SERIAL_COM1_IRQ 4 /* its ISA IRQ */

/* Raises IRQ 4 whenever a received byte waits. Bytes received before
 * stay in the FIFO, for the caller to drain (they raised no interrupt).
 * Boot CPU, once the IRQ is routed. */
void serial_rx_irq_enable(void);

/* Takes one received byte into *out; false when none waits. Any context,
 * one reader at a time. */
bool serial_rx_byte(uint8_t *out);

/* True once if the UART overran since the last call: bytes came while its
 * 16-byte FIFO was full and were lost (how many, it does not say), after
 * those the FIFO held then. The reader of serial_rx_byte. */
bool serial_rx_take_overrun(void);

/* The receive FIFO's bytes (a 16550A's). */
#define SERIAL_RX_FIFO 16

#endif

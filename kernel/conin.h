/*
 * Console input: the bytes typed at COM1, for one reader (the shell).
 *
 * The UART's receive interrupt (ISA IRQ 4) is routed through the I/O APIC
 * to the boot CPU; its handler drains the UART into a ring and wakes the
 * reader. Any CPU may be busy meanwhile: the handler needs only CPU 0 to
 * take interrupts, which every thread there does between its short
 * interrupts-off sections. Without an I/O APIC route (no MADT, or
 * acpi.no_madt) a thread on CPU 0 polls the UART every 10 ms instead.
 *
 * The ring holds 256 bytes: what arrives while it is full is dropped and
 * counted, and conin_getc names the hole with the next byte, so that the
 * shell refuses the line it fell in instead of running what is left. So
 * are bytes the UART itself lost (an overrun of its 16-byte FIFO while
 * the handler or the poller was late), counted as one per overrun.
 *
 * Ctrl-C while a command runs (between conin_command_begin and _end) is
 * not queued: it sets the interrupt flag the command polls. At the prompt
 * it is queued like any byte, for the line editor; one still queued when
 * the command begins (typed after its Enter, before the shell read that
 * far) is the command's too: conin_command_begin takes it out and sets
 * the flag.
 */
#ifndef KERNEL_CONIN_H
#define KERNEL_CONIN_H

#include <stdbool.h>
#include <stdint.h>

#define CONIN_CTRL_C 0x03

/* Routes the interrupt (or starts the polling thread) and enables the
 * UART's receive interrupt. Boot CPU, thread context, after acpi_init
 * and heap_init. Returns "irq" or "polling". */
const char *conin_init(void);

/* The next byte typed; sleeps until there is one. *lost is the number
 * of bytes dropped just before it because the ring was full (0 unless
 * the reader fell 256 bytes behind) or the UART overran: the line it
 * belongs to is not what was typed. Thread context, one reader (where it
 * may not sleep it panics, naming why: in the lock checker's test mode
 * too, having no byte to return). */
uint8_t conin_getc(uint32_t *lost);

/* Brackets a running command: Ctrl-C then sets the interrupt flag, as
 * does one already queued at the begin (taken out of the queue, the
 * bytes around it kept). The reader's thread (the shell's, on CPU 0). */
void conin_command_begin(void);
void conin_command_end(void);

/* True once Ctrl-C was typed during the running command. Any context. */
bool conin_interrupted(void);

/* Bytes dropped because the ring was full, and UART overruns, ever
 * (conin_getc says where). */
uint64_t conin_dropped(void);

#endif

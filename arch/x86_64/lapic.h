/*
 * The local APIC: this CPU's interrupt controller, its timer and the
 * inter-processor interrupts (IPIs).
 *
 * Two register interfaces reach the same device: x2APIC, through MSRs
 * 0x800 + (offset >> 4), used whenever CPUID.1:ECX[21] offers it (or the
 * firmware already switched to it); else xAPIC, a 4 KiB MMIO page at the
 * physical address in IA32_APIC_BASE, mapped uncached at LAPIC_MMIO_VA.
 * Every CPU uses the same mode; the choice is made once by lapic_init().
 *
 * Vectors: the spurious vector is IRQ_VEC_SPURIOUS, the timer raises
 * IRQ_VEC_TIMER. lapic_init() registers a default timer handler that only
 * counts this_cpu()->ticks; the scheduler replaces it with its own tick.
 *
 * Contexts: everything but init is callable from any context but NMI, on
 * any online CPU, with interrupts on or off.
 *
 * The senders below panic, naming the IPI (mode, vector, destination), if
 * an xAPIC does not accept it: its delivery status still pending after a
 * bound of polls means an IPI lost, whose waiter would hang (during a
 * panic, a line instead).
 */
#ifndef ARCH_X86_64_LAPIC_H
#define ARCH_X86_64_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

/* The xAPIC page's virtual address: the first page of the MMIO region.
 * (The ACPI table window starts 1 MiB further; see kernel/acpi.c.) */
#define LAPIC_MMIO_VA MMIO_REGION_BASE

/* Finds the mode, maps the xAPIC page if needed, enables the boot CPU's
 * LAPIC, masks the legacy 8259 PICs, registers the EOI and the default
 * timer handler, and fixes cpus[0].apic_id. Boot CPU, once, interrupts
 * off. */
void lapic_init(void);

/* Enables an application processor's LAPIC in the boot CPU's mode and
 * starts its periodic timer if the boot CPU runs one. The AP itself, once,
 * interrupts off, after its GDT/IDT. Panics if the AP cannot use the boot
 * CPU's mode. */
void lapic_init_ap(void);

/* True in x2APIC mode; xAPIC mode reaches only APIC ids below 255. */
bool lapic_x2apic(void);

/* "x2APIC" or "xAPIC". */
const char *lapic_mode_name(void);

/* This CPU's APIC id. */
uint32_t lapic_id(void);

/* Signals the end of the interrupt being handled (irq_dispatch calls it). */
void lapic_eoi(void);

/* Sends vector (32..255, fixed delivery) to the CPU with apic_id. */
void lapic_send_ipi(uint32_t apic_id, unsigned vector);

/* Sends vector to every CPU but this one (the all-excluding-self
 * shorthand): CPUs that are not online ignore or hold it. */
void lapic_send_ipi_others(unsigned vector);

/* A non-maskable interrupt to the CPU with apic_id: it arrives with
 * interrupts off too (vector 2, on the NMI IST stack). Any context. */
void lapic_send_nmi(uint32_t apic_id);

/* INIT (assert) to apic_id: the AP resets and waits for a SIPI. */
void lapic_send_init(uint32_t apic_id);

/* Start-up IPI: the AP starts in real mode at physical page << 12, which
 * must lie below 1 MiB. */
void lapic_send_sipi(uint32_t apic_id, uint32_t page);

/*
 * The timer. It counts down at a rate found by calibration (kernel/time.c
 * measures it against the PIT in the same window as the TSC): call
 * lapic_timer_count_start(), read lapic_timer_count() at both ends of the
 * window, then lapic_timer_set_rate(), which panics, naming the rate, on
 * 0 or more than LAPIC_MAX_TICKS_PER_MS: the highest rate whose 1 Hz
 * period still fits the 32-bit count (a bus clock over 68 GHz at the
 * divide by 16 used), so a larger one is a broken calibration.
 */
#define LAPIC_MAX_TICKS_PER_MS (0xffffffffu / 1000u)
void lapic_timer_count_start(void);
uint32_t lapic_timer_count(void);
void lapic_timer_set_rate(uint32_t ticks_per_ms);
uint32_t lapic_timer_ticks_per_ms(void);

/* Makes this CPU's timer raise IRQ_VEC_TIMER hz times a second, and
 * remembers hz so that APs started later run theirs at the same rate.
 * Needs the calibration. Panics, naming hz, when its period is no whole
 * timer tick (hz over 1000 * ticks per ms) or hz is 0. */
void lapic_timer_periodic(unsigned hz);

/* Arms this CPU's timer to raise IRQ_VEC_TIMER once, after ns (at least
 * one timer tick); replaces a periodic timer. */
void lapic_timer_oneshot(uint64_t ns);

/* Stops this CPU's timer. */
void lapic_timer_stop(void);

/* The rate set by lapic_timer_periodic(), 0 if none. */
unsigned lapic_timer_hz(void);

#endif

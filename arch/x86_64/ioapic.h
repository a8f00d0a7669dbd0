/*
 * The I/O APICs: the interrupt controllers that turn device interrupt
 * lines (global system interrupts, GSIs) into vectors delivered to a local
 * APIC. The MADT lists them and the ISA IRQs the board wires differently
 * (interrupt source overrides); ioapic_init maps each one's registers
 * uncached into the MMIO region and masks every input, and
 * ioapic_route_isa programs one ISA IRQ.
 *
 * Contexts: boot CPU, thread context, after acpi_init (which parses the
 * MADT) and before the routed device is enabled. Not locked: the routing
 * table is written at boot only.
 */
#ifndef ARCH_X86_64_IOAPIC_H
#define ARCH_X86_64_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

/* Maps and masks the MADT's I/O APICs; returns how many are usable (0
 * without a MADT), printing each. */
unsigned ioapic_init(void);

/*
 * Routes ISA IRQ irq (through its override, if any) to vector on the CPU
 * with local APIC id apic_id, fixed delivery, physical destination, and
 * unmasks it. Returns false, printing why, when no I/O APIC serves its
 * GSI.
 */
bool ioapic_route_isa(uint8_t irq, uint8_t vector, uint32_t apic_id);

#endif

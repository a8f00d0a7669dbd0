/*
 * ioapic_route_isa refuses an ISA IRQ that has no pin: one whose own
 * GSI an MADT override of another IRQ took (IRQ 2 under QEMU's q35 with
 * OVMF, whose IRQ 0, the timer, is overridden onto GSI 2). Routing it
 * would reprogram the owner's redirection entry. The route's owner is a
 * host test's (madt.two_irqs_on_one_gsi_the_first_keeps_it); the kernel's
 * refusal had none: a mutation audit removed it with every test passing.
 */
#include "arch/x86_64/ioapic.h"
#include "kernel/acpi.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/madt_parse.h"

KTEST(ioapic, an_isa_irq_whose_gsi_an_override_took_is_not_routed)
{
	const struct madt_info *m = acpi_madt();
	if (!m)
		KTEST_SKIP("no MADT");
	uint8_t irq = 16;
	for (uint8_t i = 0; i < 16 && irq == 16; i++)
		if (madt_isa_route(m, i).owner != MADT_NO_IRQ)
			irq = i;
	if (irq == 16)
		KTEST_SKIP("every ISA IRQ has a pin in this MADT");
	ktest_diag("ISA IRQ %u: its GSI %u carries ISA IRQ %u", irq,
	           madt_isa_route(m, irq).gsi, madt_isa_route(m, irq).owner);
	KEXPECT(!ioapic_route_isa(irq, IRQ_VEC_COM1, 0));
}

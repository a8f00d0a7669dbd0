/*
 * irq_dispatch's own duties around a handler (irq.c): a handler that
 * turned interrupts on gets them put back off before the EOI, so no
 * interrupt lands between the handler and the return; and irq_register
 * refuses a vector outside 32..255 by name, not by a store past its
 * table. The lock checker's report of such a handler is checked in
 * lockcheck_irq_test.c; here only what dispatch does after it.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "tests/kernel/lockcheck_util.h"

static _Atomic bool handler_ran;
static _Atomic unsigned eoi_with_irqs_on;

/* The EOI hook while the test runs: counts EOIs with interrupts on (on
 * any vector; every one must find them off), then acknowledges. */
static void eoi_watching(void)
{
	if (read_rflags() & RFLAGS_IF)
		atomic_fetch_add(&eoi_with_irqs_on, 1);
	lapic_eoi();
}

static void handler_turning_irqs_on(struct trap_frame *f)
{
	cpu_sti();
	atomic_store(&handler_ran, true);
}

static void self_ipi_turning_irqs_on(void)
{
	atomic_store(&handler_ran, false);
	irq_register(IRQ_VEC_TEST, handler_turning_irqs_on);
	lapic_send_ipi(this_cpu()->apic_id, IRQ_VEC_TEST);
	while (!atomic_load(&handler_ran))
		cpu_pause();
	irq_register(IRQ_VEC_TEST, NULL);
}

KTEST(irq, interrupts_a_handler_turned_on_are_off_for_the_eoi)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	atomic_store(&eoi_with_irqs_on, 0);
	irq_set_eoi(eoi_watching);
	unsigned reports = recorded(self_ipi_turning_irqs_on);
	irq_set_eoi(lapic_eoi);
	KEXPECT_EQ(reports, 1);
	KEXPECT_EQ(atomic_load(&eoi_with_irqs_on), 0);
	KEXPECT(read_rflags() & RFLAGS_IF);
}

#ifdef KTEST_FAIL_DEMO
static void never_called(struct trap_frame *f)
{
}

/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): vector 256 is
 * one past the table; the registration must panic naming it. */
KTEST(demo, irq_register_past_the_last_vector)
{
	irq_register(256, never_called);
	ktest_diag("irq_register(256) returned");
}
#endif

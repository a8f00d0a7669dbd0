/* Test-only control of the local APIC driver (see lapic.h). */
#ifndef ARCH_X86_64_LAPIC_TESTING_H
#define ARCH_X86_64_LAPIC_TESTING_H

#include <stdbool.h>

#include "kernel/testhook.h"

#if KTEST_HOOKS
/*
 * Makes the next IPI sent in xAPIC mode (from any CPU) look unaccepted:
 * its delivery status reads pending until the wait for it runs out, as
 * with a wedged APIC or a lost message. No effect in x2APIC mode, which
 * has no delivery status.
 */
void lapic_testing_wedge_next_ipi(void);
#endif

#endif

/* Test-only control of the online set (see percpu.h). */
#ifndef KERNEL_PERCPU_TESTING_H
#define KERNEL_PERCPU_TESTING_H

#include <stdbool.h>

#include "kernel/testhook.h"

#if KTEST_HOOKS
/*
 * Takes this CPU out of the online set, as if it had not come up yet, so
 * that a test can bring it back with cpu_set_online at a chosen moment.
 * Interrupts off, and kept off until cpu_set_online: nothing may run on
 * this CPU meanwhile but the calling test code. While a holder of the
 * online set is left (a shootdown that counted this CPU may wait for its
 * IPI), it keeps new holders out and turns interrupts on for moments,
 * preemption off. Not CPU 0, which runs the rcu thread: a panic names
 * it (its grace periods would stall until CPU 0 came back).
 */
void cpu_testing_set_offline(void);
/* Whether a change of the online set is pending (a changer waits for
 * the holders to leave, or is changing it). */
bool cpu_testing_online_changing(void);
#endif

#endif

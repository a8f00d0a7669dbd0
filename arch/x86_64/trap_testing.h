/* Test-only views of the trap code (see trap.h). */
#ifndef ARCH_X86_64_TRAP_TESTING_H
#define ARCH_X86_64_TRAP_TESTING_H

#include "kernel/testhook.h"

#if KTEST_HOOKS
/* How many times the IDT's gates were written since boot: the boot CPU's
 * two fills (without IST stacks, then with them), never a later CPU's. */
unsigned idt_testing_fills(void);
#endif

#endif

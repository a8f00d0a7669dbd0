/* Test hooks in spinlock.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_SPINLOCK_TESTING_H
#define KERNEL_SPINLOCK_TESTING_H

#include "kernel/testhook.h"

/* Called (arg: the struct spinlock *) by a CPU that found the lock held,
 * once, before it spins for it: in SPIN_TICKET mode with its ticket
 * taken, in SPIN_TAS mode with none. Interrupts may be off. */
extern _Atomic test_hook_fn spin_testing_waiting;

#endif

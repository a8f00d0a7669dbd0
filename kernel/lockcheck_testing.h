/* Test hooks in lockcheck.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_LOCKCHECK_TESTING_H
#define KERNEL_LOCKCHECK_TESTING_H

#include "kernel/testhook.h"

/* Called (arg: the struct spinlock * being pushed or popped) between the
 * steps that change this CPU's held-lock stack, where a test holds the
 * window open for timer interrupts to land in. */
extern _Atomic test_hook_fn lockcheck_testing_window;

#endif

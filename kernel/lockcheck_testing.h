/* Test hooks in lockcheck.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_LOCKCHECK_TESTING_H
#define KERNEL_LOCKCHECK_TESTING_H

#include "kernel/testhook.h"

/* Called (arg: the struct spinlock * being pushed or popped) between the
 * steps that change this CPU's held-lock stack, where a test holds the
 * window open for timer interrupts to land in. */
extern _Atomic test_hook_fn lockcheck_testing_window;

/* Called (arg: the message) half way through writing a violation's
 * message as the last one, in test (record) mode. */
extern _Atomic test_hook_fn lockcheck_testing_recording;

/* Called (arg: the message) by a violation to be recorded that finds
 * another CPU writing its own, before it waits for it. */
extern _Atomic test_hook_fn lockcheck_testing_record_busy;

#endif

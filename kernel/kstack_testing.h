/* Test hooks in kstack.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_KSTACK_TESTING_H
#define KERNEL_KSTACK_TESTING_H

#include "kernel/testhook.h"

/* Called by a stack's free before it unmaps the stack's pages (arg: the
 * stack's top); thread context, no lock held. The slot must still be
 * taken then: a stack made here must get another. */
extern _Atomic test_hook_fn kstack_testing_unmapping;

#endif

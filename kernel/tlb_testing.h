/* Test hooks in tlb.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_TLB_TESTING_H
#define KERNEL_TLB_TESTING_H

#include "kernel/testhook.h"

/* Called by tlb_shootdown (arg: the sender's CPU id) once it has chosen
 * the CPUs to flush and before it sends them the IPI. */
extern _Atomic test_hook_fn tlb_testing_before_send;

/* Called by tlb_shootdown (arg: the mask of the CPUs that have not
 * flushed yet) each time it has printed the line naming them (every
 * TLB_WAIT_REPORT_NS). */
extern _Atomic test_hook_fn tlb_testing_still_waiting;

#endif

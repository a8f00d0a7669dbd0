/* Test hooks in stw.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_STW_TESTING_H
#define KERNEL_STW_TESTING_H

#include "kernel/percpu.h"
#include "kernel/testhook.h"

/* Called by stw_stop (arg: the stopper's CPU id) once it has sent the
 * park IPIs and before it waits for the CPUs to park. */
extern _Atomic test_hook_fn stw_testing_after_send;

/* Called by stw_stop (arg: the mask of the CPUs not parked yet) each time
 * it has printed the line naming them (every STW_WAIT_REPORT_NS). */
extern _Atomic test_hook_fn stw_testing_still_waiting;

#if KTEST_HOOKS
/* The CPUs in the park now (counted in, not yet counted out). */
cpumask_t stw_testing_parked(void);
#endif

#endif

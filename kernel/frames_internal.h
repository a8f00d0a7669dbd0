/*
 * kernel/frames_internal.h: what the frame pool's files (frames.c,
 * frames_fail.c) share: its failure-injection point. Not for the pool's
 * users (frames.h).
 */
#ifndef KERNEL_FRAMES_INTERNAL_H
#define KERNEL_FRAMES_INTERNAL_H

#include <stdbool.h>

#include "mm/failpoint.h"

/* The pool's failure injection (frames.h): no lock, so that it may be
 * asked under the vm lock, the heap's or none. */
extern struct failpoint frames_failpoint;

/* Whether this call fails by injection. Unarmed, one load and a branch:
 * not a hot path (the pool lock and a bitmap search follow), but paid by
 * every page-table and stack frame, so kept to that. Any context but
 * NMI. */
static inline bool frames_fail_now(void)
{
	return __builtin_expect(failpoint_armed(&frames_failpoint), 0) &&
	       failpoint_should(&frames_failpoint);
}

#endif

/*
 * The frame pool's failure injection (frames.h, Linux's fail_page_alloc):
 * arming, disarming and reading the pool's struct failpoint (mm/
 * failpoint.h, the span heap's decision and counters); frames.c asks it
 * (frames_fail_now, frames_internal.h) before the pool lock in every
 * eligible call. A seam of its own so that frames.c holds the pool.
 *
 * Locking: none; the failpoint's fields are atomics, so that it may be
 * asked under the vm lock, the heap's or none. Arming is thread context.
 */
#include "kernel/frames.h"
#include "kernel/frames_internal.h"
#include "mm/spanheap_fail.h"

struct failpoint frames_failpoint;

bool frames_fail_arm(const struct spanheap_fail_attr *a)
{
	/* A frame has no size class and no MM_ATOMIC flag: only the
	 * default (0) and "all" mean something, every call. */
	const unsigned every = SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE;
	struct spanheap_fail_attr r = *a;
	if (!r.what)
		r.what = every;
	return failpoint_arm(&frames_failpoint, "frames", &r,
	                     r.what == every ? NULL
	                                     : "a frame has no size and no "
	                                       "flags: what is all or absent");
}

void frames_fail_disarm(void)
{
	failpoint_disarm(&frames_failpoint);
}

bool frames_fail_get(struct spanheap_fail_attr *a, struct failpoint_counts *n)
{
	*n = failpoint_counts(&frames_failpoint);
	return failpoint_get(&frames_failpoint, a);
}

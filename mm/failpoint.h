/*
 * mm/failpoint.h: one failure-injection point (Linux's struct fault_attr):
 * the parameters of spanheap_fail_attr, the armed flag and the counters,
 * and the decision whether the next eligible call fails. The span heap
 * (spanheap_fail.c, one in struct spanheap) and the kernel's frame pool
 * (kernel/frames.c) each own one: the decision, the cap and the counters
 * are this file's alone, so that both mean the same by "interval,
 * probability, times, seed". What is eligible (the what filter) is the
 * owner's to decide before it asks failpoint_should.
 */
#ifndef MM_FAILPOINT_H
#define MM_FAILPOINT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spanheap_fail.h"

/*
 * A point's state. Written by failpoint_arm / _disarm (thread context,
 * one at a time); read by failpoint_should in any context but NMI. Atomic,
 * no lock: the parameters are stored relaxed before armed is stored
 * release, and read relaxed after armed is read acquire (a call racing a
 * new arming may still use the old values, and count its failure in the
 * new arming's counts); calls and the failures left
 * are read-modify-written atomically by the callers.
 */
struct failpoint {
	_Atomic bool armed;
	_Atomic uint32_t interval, probability, what;
	_Atomic uint64_t seed;
	_Atomic int64_t left; /* failures left to inject; -1: no cap */
	/* Since the last arming: eligible calls, failures injected */
	_Atomic uint64_t calls, injected;
};

/* Whether fp is armed: the one load an unarmed caller pays. Any context. */
static inline bool failpoint_armed(struct failpoint *fp)
{
	return atomic_load_explicit(&fp->armed, memory_order_acquire);
}

/*
 * Counts one eligible call and says whether it fails: the n-th since the
 * arming fails if n is a multiple of interval, its draw falls below
 * probability and one of the failures left can be taken (a
 * compare-and-swap: concurrent callers never inject more than times).
 * Takes no lock; any context but NMI. Call it only while armed.
 */
bool failpoint_should(struct failpoint *fp);

/*
 * Arms fp with *a (a->what stored as given: the owner has resolved its
 * default) and resets the counters. Returns false, logging "who: failure
 * injection refused: ..." with every field, if the probability is over
 * 10000 or times below -1, or if what_refused is not NULL (the owner's
 * reason for refusing a->what); fp is unchanged then. Thread context.
 */
bool failpoint_arm(struct failpoint *fp, const char *who,
                   const struct spanheap_fail_attr *a,
                   const char *what_refused);

/* Disarms fp; its counters stay. Any context. */
void failpoint_disarm(struct failpoint *fp);

/* The attribute last armed (times: the failures left) and whether fp is
 * armed now. Any context. */
bool failpoint_get(struct failpoint *fp, struct spanheap_fail_attr *a);

/* Since the last arming: eligible calls and failures injected. */
struct failpoint_counts {
	uint64_t calls, injected;
};
struct failpoint_counts failpoint_counts(struct failpoint *fp);

#endif

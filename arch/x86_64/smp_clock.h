/*
 * The clock of the boot CPU's waits for an AP (smp.c): the time the boot
 * CPU itself ran, not the wall clock. Portable: host tests feed it times
 * (tests/host/smp_clock_test.c).
 *
 * Under a hypervisor each CPU is a host thread, and a busy host (CI runs
 * QEMUs side by side; a container may be throttled or frozen) can leave
 * every thread of a VM unscheduled for seconds. The TSC runs on meanwhile
 * (under TCG it is the host's), so a wall-clock bound ran out for an AP
 * whose thread had simply not run yet, and a CPU the test run was given
 * went missing. Counted in the boot CPU's running time, the bound scales
 * with how much of the host the VM gets: the AP's thread, of the same
 * weight, gets as much.
 *
 * Basic algorithm: the waiter polls; the time between two polls counts
 * when it is under SMP_CLOCK_GAP_NS (a poll takes about a microsecond
 * under TCG); a longer gap means the host ran something else (or took an
 * interrupt that long), and it is added to stalled_ns instead. A host
 * that runs the vCPU in slices shorter than the gap has each slice
 * counted whole; that only makes the bound nearer the wall clock's.
 */
#ifndef ARCH_X86_64_SMP_CLOCK_H
#define ARCH_X86_64_SMP_CLOCK_H

#include <stdint.h>

#define SMP_CLOCK_GAP_NS 1000000ull
/* The most of one gap the wall bound counts (smp_clock_verdict): a host
 * that gives the VM a small share leaves gaps of a few to a hundred ms
 * (a CFS slice, a cgroup quota's period), counted in full; a freeze (a
 * paused container, a suspended host) counts this much, since neither
 * vCPU ran in it. Until a review it counted whole, and a freeze past the
 * 600 s bound gave the AP up at the first poll after it. */
#define SMP_CLOCK_STALL_CAP_NS 1000000000ull

struct smp_clock {
	uint64_t start_ns;   /* the wall time the wait began */
	uint64_t last_ns;    /* the wall time of the previous poll */
	uint64_t ran_ns;     /* gaps below SMP_CLOCK_GAP_NS, summed */
	uint64_t stalled_ns; /* the longer gaps, summed */
	uint64_t bound_ns;   /* every gap, each up to SMP_CLOCK_STALL_CAP_NS */
};

static inline struct smp_clock smp_clock_start(uint64_t now_ns)
{
	return (struct smp_clock){now_ns, now_ns, 0, 0, 0};
}

/* Counts the time since the previous poll; a clock that went back (an
 * unsynchronised counter) counts nothing. */
static inline void smp_clock_poll(struct smp_clock *c, uint64_t now_ns)
{
	uint64_t gap = now_ns > c->last_ns ? now_ns - c->last_ns : 0;
	if (gap < SMP_CLOCK_GAP_NS)
		c->ran_ns += gap;
	else
		c->stalled_ns += gap;
	c->bound_ns +=
	        gap < SMP_CLOCK_STALL_CAP_NS ? gap : SMP_CLOCK_STALL_CAP_NS;
	if (now_ns > c->last_ns)
		c->last_ns = now_ns;
}

/* Wall time since the wait began. */
static inline uint64_t smp_clock_wall_ns(const struct smp_clock *c)
{
	return c->last_ns - c->start_ns;
}

/* Where a wait stands after a poll: over once the waiter ran
 * ran_bound_ns, or once wall_bound_ns of wall clock passed, each gap
 * counted up to SMP_CLOCK_STALL_CAP_NS (a host that runs the VM too
 * rarely is not waited out; a frozen one is). */
enum smp_clock_verdict {
	SMP_CLOCK_GOING,    /* poll again */
	SMP_CLOCK_RAN_OUT,  /* the waiter ran ran_bound_ns of it */
	SMP_CLOCK_WALL_OUT, /* the wall bound passed first */
};

static inline enum smp_clock_verdict
smp_clock_verdict(const struct smp_clock *c, uint64_t ran_bound_ns,
                  uint64_t wall_bound_ns)
{
	if (c->ran_ns >= ran_bound_ns)
		return SMP_CLOCK_RAN_OUT;
	if (c->bound_ns >= wall_bound_ns)
		return SMP_CLOCK_WALL_OUT;
	return SMP_CLOCK_GOING;
}

#endif

/* Shared by the lock checker's tests (tests/kernel/lockcheck_*test.c):
 * running a deliberate violation in record mode and reading its message. */
#ifndef TESTS_KERNEL_LOCKCHECK_UTIL_H
#define TESTS_KERNEL_LOCKCHECK_UTIL_H

#include <stdbool.h>

#include "arch/x86_64/lapic.h"
#include "kernel/lockcheck.h"
#include "kernel/spinlock.h"

/* Runs fn in record mode; returns how many violations it caused. */
static inline unsigned recorded(void (*fn)(void))
{
	unsigned before = lockcheck_violations();
	bool old = lockcheck_set_record(true);
	fn();
	lockcheck_set_record(old);
	return lockcheck_violations() - before;
}

/*
 * recorded(), with this CPU's timer stopped, for an fn that holds a lock
 * ranked above the run queues' with interrupts on, on purpose: a tick
 * landing in that hold takes its run queue's lock under it, a violation
 * of its own (seen at -smp 8 under load: 2 recorded where 1 was
 * expected, the last message not the test's). No other interrupt takes a
 * lock (the TLB, stop and reschedule handlers take none), and with
 * preemption off nothing runs on this CPU while its timer is stopped.
 */
static inline unsigned recorded_without_ticks(void (*fn)(void))
{
	unsigned hz = lapic_timer_hz();
	preempt_disable();
	lapic_timer_stop();
	unsigned n = recorded(fn);
	if (hz)
		lapic_timer_periodic(hz);
	preempt_enable();
	return n;
}

static inline bool message_has(const char *a, const char *b)
{
	const char *m = lockcheck_last_violation();
	bool fa = false, fb = false;
	for (const char *p = m; *p; p++) {
		const char *x = a, *q = p;
		while (*x && *q == *x)
			x++, q++;
		fa |= !*x;
		x = b, q = p;
		while (*x && *q == *x)
			x++, q++;
		fb |= !*x;
	}
	return fa && fb;
}

#endif

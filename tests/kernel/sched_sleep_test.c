/*
 * Sleepers on one CPU, several at a time: each is woken by the first
 * tick at or after its own deadline, whatever else sleeps there, longer
 * or due at the same tick. Counted in the CPU's ticks, never in wall
 * time: the tick is what wakes a sleeper, and the host may stall a
 * virtual CPU for any length.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/thread.h"

static uint64_t ticks_of(unsigned cpu)
{
	return *(volatile uint64_t *)&cpus[cpu].ticks;
}

/* A racy read of a live thread's state, for polling. */
static enum thread_state state_of(struct thread_handle h)
{
	return *(volatile enum thread_state *)&h.t->state;
}

/* One sleeper: how long it asked for, and the ticks of its CPU it saw
 * go by while it slept. */
struct sleeper {
	uint64_t ns;
	_Atomic uint64_t ticks; /* ~0 until it woke */
};

static void sleep_and_count(void *arg)
{
	struct sleeper *s = arg;
	uint64_t t0 = ticks_of(this_cpu()->id);
	thread_sleep_ns(s->ns);
	atomic_store(&s->ticks, ticks_of(this_cpu()->id) - t0);
}

/* The most ticks a sleep of ns may see: the first tick at or after the
 * deadline wakes it (sched_test.c's sleep_wakes_within_a_tick), and one
 * more for a stall of this CPU between the wake and the read. */
static uint64_t most_ticks(uint64_t ns)
{
	return (ns + SCHED_TICK_NS - 1) / SCHED_TICK_NS + 2;
}

/* Starts a sleeper on this CPU and returns once it sleeps. */
static struct thread_handle start_sleeper(struct sleeper *s, uint64_t ns)
{
	s->ns = ns;
	atomic_store(&s->ticks, ~0ull);
	struct thread_handle h =
	        thread_create("sleeper", sleep_and_count, s, this_cpu()->id);
	if (!thread_handle_ok(h))
		panic("sched_sleep_test: no memory for a sleeper");
	while (state_of(h) != THREAD_SLEEPING)
		thread_yield();
	return h;
}

/*
 * A short sleep next to a long one, started before it and after it: the
 * short one must not wait for the long one's deadline, as it would if
 * the list were kept in the wrong order (the tick only looks at its
 * head) or a new sleeper went in front of earlier deadlines.
 */
KTEST(sched, short_sleep_beside_a_long_one_wakes_on_time)
{
	const uint64_t short_ns = 2 * SCHED_TICK_NS;
	const uint64_t long_ns = 40 * SCHED_TICK_NS;
	for (int long_first = 0; long_first <= 1; long_first++) {
		struct sleeper a, b;
		struct thread_handle ha, hb;
		ha = start_sleeper(&a, long_first ? long_ns : short_ns);
		hb = start_sleeper(&b, long_first ? short_ns : long_ns);
		thread_join(ha);
		thread_join(hb);
		struct sleeper *s = long_first ? &b : &a,
		               *l = long_first ? &a : &b;
		ktest_diag("long sleep %s: the short one saw %lu ticks, the "
		           "long one %lu",
		           long_first ? "first" : "second",
		           atomic_load(&s->ticks), atomic_load(&l->ticks));
		KEXPECT(atomic_load(&s->ticks) <= most_ticks(short_ns));
	}
}

/*
 * Sleepers due at the same tick are all woken by it, not one a tick. They
 * are put to sleep back to back, so their deadlines fall within a tick
 * or two of each other; a tick that woke one at a time would keep the
 * last waiting for NSAME - 2 ticks more than its bound.
 */
#define NSAME 8

KTEST(sched, sleepers_due_together_wake_together)
{
	static struct sleeper s[NSAME];
	struct thread_handle h[NSAME];
	const uint64_t ns = SCHED_TICK_NS;
	for (unsigned i = 0; i < NSAME; i++)
		h[i] = start_sleeper(&s[i], ns);
	uint64_t worst = 0;
	for (unsigned i = 0; i < NSAME; i++) {
		thread_join(h[i]);
		uint64_t t = atomic_load(&s[i].ticks);
		worst = t > worst ? t : worst;
	}
	ktest_diag("%u sleepers of one tick: the last saw %lu ticks", NSAME,
	           worst);
	KEXPECT(worst <= most_ticks(ns));
}

/*
 * Sleepers on one CPU, several at a time: each is woken by the first
 * tick at or after its own deadline, whatever else sleeps there, longer
 * or due at the same tick; and a wake of a thread homed on an idle CPU
 * gets it running without waiting for that CPU's next tick. Counted in
 * the home CPU's ticks, never in wall time: the tick is what wakes a
 * sleeper, and the host may stall a virtual CPU for any length.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/smp_util.h"
#include "tests/kernel/tick_watch_util.h"

static uint64_t ticks_of(unsigned cpu)
{
	return *(volatile uint64_t *)&cpus[cpu].ticks;
}

/* A racy read of a live thread's state, for polling. */
static enum thread_state state_of(struct thread_handle h)
{
	return *(volatile enum thread_state *)&h.t->state;
}

/* One sleeper: how long it asked for, its tick_watch slot, and the ticks
 * of its CPU its sleep saw (tick_watch_util.h), written before it exits
 * and read after the join. */
struct sleeper {
	uint64_t ns;
	unsigned slot;
	struct tick_watch_count seen;
};

static void sleep_and_count(void *arg)
{
	struct sleeper *s = arg;
	tick_watch_me(s->slot);
	thread_sleep_ns(s->ns);
	s->seen = tick_watch_woken(s->slot);
}

/* Starts a sleeper on this CPU, watched in slot, and returns once it
 * sleeps. */
static struct thread_handle start_sleeper(struct sleeper *s, unsigned slot,
                                          uint64_t ns)
{
	s->ns = ns;
	s->slot = slot;
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
	tick_watch_start();
	for (int long_first = 0; long_first <= 1; long_first++) {
		struct sleeper a, b;
		struct thread_handle ha, hb;
		ha = start_sleeper(&a, 0, long_first ? long_ns : short_ns);
		hb = start_sleeper(&b, 1, long_first ? short_ns : long_ns);
		thread_join(ha);
		thread_join(hb);
		struct sleeper *s = long_first ? &b : &a,
		               *l = long_first ? &a : &b;
		ktest_diag("long sleep %s: the short one saw %lu ticks (%lu "
		           "past its deadline), the long one %lu (%lu)",
		           long_first ? "first" : "second", s->seen.asleep,
		           s->seen.past_deadline, l->seen.asleep,
		           l->seen.past_deadline);
		/* Woken by the first tick at or past its deadline. */
		KEXPECT(s->seen.past_deadline <= 1);
		KEXPECT(l->seen.past_deadline <= 1);
		/* Each was woken by a tick that found it asleep. */
		KEXPECT(s->seen.asleep >= 1);
		KEXPECT(l->seen.asleep >= 1);
	}
	tick_watch_stop();
}

/*
 * Sleepers due at the same tick are all woken by it, not one a tick. They
 * are put to sleep back to back, so their deadlines fall within a tick
 * or two of each other; a tick that woke one at a time would leave the
 * last asleep for several ticks past its deadline.
 */
#define NSAME 8
_Static_assert(NSAME <= TICK_WATCH_MAX, "a slot for each sleeper");

KTEST(sched, sleepers_due_together_wake_together)
{
	static struct sleeper s[NSAME];
	struct thread_handle h[NSAME];
	const uint64_t ns = SCHED_TICK_NS;
	tick_watch_start();
	for (unsigned i = 0; i < NSAME; i++)
		h[i] = start_sleeper(&s[i], i, ns);
	uint64_t worst = 0, most_past = 0, least = ~0ull;
	for (unsigned i = 0; i < NSAME; i++) {
		thread_join(h[i]);
		uint64_t t = s[i].seen.asleep, p = s[i].seen.past_deadline;
		worst = t > worst ? t : worst;
		most_past = p > most_past ? p : most_past;
		least = t < least ? t : least;
	}
	tick_watch_stop();
	ktest_diag("%u sleepers of one tick: the last saw %lu ticks, at most "
	           "%lu past a deadline",
	           NSAME, worst, most_past);
	KEXPECT(most_past <= 1);
	KEXPECT(least >= 1); /* each was woken by a tick that saw it asleep */
}

/*
 * A wake of a thread homed on another CPU, which idles meanwhile, must
 * get that CPU out of its halt at once (sched_kick), not leave the thread
 * queued until the CPU's next tick. The woken thread reads its CPU's tick
 * count as its first act: no tick since the wake shows the kick. A host
 * stall of that CPU can let a tick in first (under load, often), so the
 * test tries until one wake sees no tick, up to NKICK times; with no kick
 * every try sees one, and the NKICK tries take NKICK ticks.
 */
#define NKICK 100

static _Atomic bool kick_stop, kick_woke;
static _Atomic uint64_t kick_woke_at;

static void sleep_until_stopped(void *arg)
{
	while (!atomic_load(&kick_stop)) {
		thread_sleep_ns(UINT64_MAX);
		atomic_store(&kick_woke_at, ticks_of(this_cpu()->id));
		atomic_store(&kick_woke, true);
	}
}

KTEST(sched, wake_gets_an_idle_cpu_running_before_its_tick)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("one CPU");
	struct cpu *c = &cpus[other];
	atomic_store(&kick_stop, false);
	atomic_store(&kick_woke, false);
	struct thread_handle h =
	        thread_create("kicked", sleep_until_stopped, NULL, other);
	KASSERT(thread_handle_ok(h));
	unsigned prompt = 0, tries = 0;
	while (prompt == 0 && tries < NKICK) {
		tries++;
		/* Asleep, and its CPU idle (else no kick is due). */
		while (state_of(h) != THREAD_SLEEPING ||
		       *(struct thread *volatile *)&c->current != c->idle)
			thread_yield();
		uint64_t t0 = ticks_of(other);
		thread_wake(h);
		while (!atomic_load(&kick_woke))
			thread_yield();
		atomic_store(&kick_woke, false);
		prompt += atomic_load(&kick_woke_at) == t0;
	}
	atomic_store(&kick_stop, true);
	while (!atomic_load(&kick_woke)) {
		thread_wake(h);
		thread_yield();
	}
	thread_join(h);
	ktest_diag("%u of %u wakes ran the thread before cpu %u's next tick",
	           prompt, tries, other);
	KEXPECT(prompt > 0);
}

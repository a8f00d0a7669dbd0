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

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "tests/kernel/smp_util.h"
#include "tests/kernel/tick_watch_util.h"

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
 * queued until the CPU's next tick. Told by the order of events, not by
 * time: a tick hook on that CPU notes a tick that comes after the wake
 * began and finds the CPU still idle, before the thread ran, which is
 * what a wake with no kick waits for. A kicked CPU takes the resched IPI
 * before a tick that came meanwhile (its vector is the higher) and
 * switches on the way out of it, so a stall of that vCPU, however long,
 * lets no such tick in. Counting the ticks until the thread ran did: a
 * tick due in the stall came in as soon as the thread turned interrupts
 * on. A tick can still come between the wake's start and its IPI (a
 * stall of the waking vCPU there), so the test tries until one wake is
 * seen through, up to NKICK times.
 *
 * With no kick, a try is seen through only if something else gets the
 * CPU going: its idle loop not yet halted (it finds the thread queued),
 * or another interrupt. So each try waits for a tick that finds the
 * CPU idle, and then KICK_SETTLE_NS for it to get back to its halt;
 * without, a kernel that never kicked passed at 1 try in 10. A stall
 * there can only let such a kernel pass, never fail a correct one. The
 * hook looks at any tick after the wake began, not only one that finds
 * the thread queued: the hook runs before the tick takes the run-queue
 * lock, so a wake that lands between the two is seen asleep by the hook
 * and run by the tick (1 try in 20, with no kick, under load).
 */
#define NKICK          100
#define KICK_SETTLE_NS 1000000ull

static _Atomic bool kick_stop, kick_woke;
static struct thread *_Atomic kick_watched;
static _Atomic unsigned kick_cpu = MAX_CPUS;
/* Set by the test from before its wake until the thread has run: */
static _Atomic bool kick_waking;
/* Set by the hook: */
static _Atomic bool kick_tick_came;     /* a tick in the wake, CPU idle */
static _Atomic uint64_t kick_idle_tick; /* the last to find it asleep */

static void sleep_until_stopped(void *arg)
{
	while (!atomic_load(&kick_stop)) {
		thread_sleep_ns(UINT64_MAX);
		atomic_store(&kick_woke, true);
	}
}

/* The tick hook, on the kicked thread's CPU. The thread lives until the
 * test joins it, after the hook is gone. */
static void kick_tick(void)
{
	struct cpu *c = this_cpu();
	struct thread *t = atomic_load(&kick_watched);
	if (c->id != atomic_load(&kick_cpu) || !t || c->current != c->idle)
		return;
	if (atomic_load(&kick_waking) && !atomic_load(&kick_woke))
		atomic_store(&kick_tick_came, true);
	else if (*(volatile enum thread_state *)&t->state == THREAD_SLEEPING)
		atomic_store(&kick_idle_tick, c->ticks);
}

/* Returns once thread h sleeps on cpu c, idle, halted as far as a tick
 * that found it so and KICK_SETTLE_NS after can tell. */
static void wait_until_halted(struct thread_handle h, struct cpu *c)
{
	while (state_of(h) != THREAD_SLEEPING ||
	       *(struct thread *volatile *)&c->current != c->idle)
		thread_yield();
	uint64_t seen = atomic_load(&kick_idle_tick);
	while (atomic_load(&kick_idle_tick) == seen)
		thread_yield();
	uint64_t t0 = time_now_ns();
	while (time_now_ns() - t0 < KICK_SETTLE_NS)
		cpu_pause();
}

/* Wakes h and waits until it ran; true if no tick came between. */
static bool kick_once(struct thread_handle h, struct cpu *c)
{
	wait_until_halted(h, c);
	atomic_store(&kick_tick_came, false);
	atomic_store(&kick_waking, true);
	thread_wake(h);
	while (!atomic_load(&kick_woke))
		thread_yield();
	atomic_store(&kick_waking, false);
	bool prompt = !atomic_load(&kick_tick_came);
	atomic_store(&kick_woke, false);
	return prompt;
}

KTEST(sched, wake_gets_an_idle_cpu_running_before_its_tick)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("one CPU");
	struct cpu *c = &cpus[other];
	atomic_store(&kick_stop, false);
	atomic_store(&kick_woke, false);
	atomic_store(&kick_waking, false);
	struct thread_handle h =
	        thread_create("kicked", sleep_until_stopped, NULL, other);
	KASSERT(thread_handle_ok(h));
	atomic_store(&kick_watched, h.t);
	atomic_store(&kick_cpu, other);
	atomic_store(&sched_tick_hook, kick_tick);
	unsigned prompt = 0, tries = 0;
	while (prompt == 0 && tries < NKICK) {
		tries++;
		prompt += kick_once(h, c);
	}
	atomic_store(&sched_tick_hook, NULL);
	atomic_store(&kick_watched, NULL);
	atomic_store(&kick_stop, true);
	while (!atomic_load(&kick_woke)) {
		thread_wake(h);
		thread_yield();
	}
	thread_join(h);
	ktest_diag("%u of %u wakes ran the thread before a tick of cpu %u",
	           prompt, tries, other);
	KEXPECT(prompt > 0);
}

/*
 * Which ticks a sleeper slept through, for the sleep tests: from the
 * first tick of its CPU that found it asleep to the one that woke it,
 * and how many of them found it asleep at or past its deadline. The
 * claim "the first tick at or after the deadline wakes it" is the
 * second count being at most 1; it compares the tick's clock with the
 * deadline, as the tick itself does, so no stall can break it. The
 * first count (reported, and at least 1: only a tick wakes a sleeper,
 * and its hook sees it asleep first) has no bound: ticks are not a
 * period apart under TCG. QEMU keeps the LAPIC timer's ticks on their
 * grid, so a tick taken late (its vCPU stalled, or with interrupts off
 * across it) is followed by the next one sooner; a 10 ms sleep saw 3
 * ticks under load, and a bound of 2 failed a correct kernel. The tick
 * hook (sched_tick_hook) runs before the tick wakes anyone, and reads
 * the clock before the tick does, so a tick whose hook finds a sleeper
 * past its deadline wakes it.
 */
#ifndef TESTS_KERNEL_TICK_WATCH_UTIL_H
#define TESTS_KERNEL_TICK_WATCH_UTIL_H

#include <stdatomic.h>
#include <stdint.h>

#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"

#define TICK_WATCH_MAX 8

/* One watched sleeper: its CPU, the thread (NULL: none), the CPU's tick
 * count at the first and the last tick that found it asleep (0: none
 * yet; a tick's count is at least 1), and how many found it asleep at or
 * past its deadline. */
struct tick_watch {
	_Atomic unsigned cpu;
	struct thread *_Atomic t;
	_Atomic uint64_t first_asleep, last_asleep, past_deadline;
};

/* What a watched sleep saw: the ticks it slept through, the one that
 * woke it included (0 if no tick found it asleep), and how many of those
 * found it at or past its deadline. */
struct tick_watch_count {
	uint64_t asleep, past_deadline;
};

static struct tick_watch tick_watches[TICK_WATCH_MAX];

/* The tick hook, on every CPU: a sleeper is looked at only by its own
 * CPU's tick, whose run queue it sleeps on, and which interrupts it or
 * finds it switched out, so it cannot have left its slot and exited
 * while the tick reads its state; its wake_ns was set on this CPU
 * before it was marked asleep. */
static void tick_watch_tick(void)
{
	struct cpu *c = this_cpu();
	for (unsigned i = 0; i < TICK_WATCH_MAX; i++) {
		if (atomic_load(&tick_watches[i].cpu) != c->id)
			continue;
		struct thread *t = atomic_load(&tick_watches[i].t);
		if (!t ||
		    *(volatile enum thread_state *)&t->state != THREAD_SLEEPING)
			continue;
		if (atomic_load(&tick_watches[i].first_asleep) == 0)
			atomic_store(&tick_watches[i].first_asleep, c->ticks);
		atomic_store(&tick_watches[i].last_asleep, c->ticks);
		if (time_now_ns() >= *(volatile uint64_t *)&t->wake_ns)
			atomic_fetch_add(&tick_watches[i].past_deadline, 1);
	}
}

/* Installs the hook, with no thread watched. */
static inline void tick_watch_start(void)
{
	for (unsigned i = 0; i < TICK_WATCH_MAX; i++) {
		atomic_store(&tick_watches[i].t, NULL);
		atomic_store(&tick_watches[i].cpu, MAX_CPUS);
	}
	atomic_store(&sched_tick_hook, tick_watch_tick);
}

static inline void tick_watch_stop(void)
{
	atomic_store(&sched_tick_hook, NULL);
}

/* Called by a thread about to sleep: watches it in slot i. */
static inline void tick_watch_me(unsigned i)
{
	atomic_store(&tick_watches[i].first_asleep, 0);
	atomic_store(&tick_watches[i].last_asleep, 0);
	atomic_store(&tick_watches[i].past_deadline, 0);
	atomic_store(&tick_watches[i].cpu, this_cpu()->id);
	atomic_store(&tick_watches[i].t, thread_current());
}

/* Once the thread in slot i has woken: what its sleep saw, and the slot
 * is free again. */
static inline struct tick_watch_count tick_watch_woken(unsigned i)
{
	atomic_store(&tick_watches[i].t, NULL);
	uint64_t first = atomic_load(&tick_watches[i].first_asleep);
	return (struct tick_watch_count){
	        .asleep = first ? atomic_load(&tick_watches[i].last_asleep) -
	                                  first + 1
	                        : 0,
	        .past_deadline = atomic_load(&tick_watches[i].past_deadline),
	};
}

#endif

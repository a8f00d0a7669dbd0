/*
 * Which ticks a sleeper slept through, for the sleep tests: from the
 * first tick of its CPU that found it asleep to the one that woke it. Not
 * from before its sleep to when it runs again: on either side the host
 * may leave the vCPU unscheduled, and the ticks that come meanwhile (a
 * stall's are merged into one, but a vCPU that runs in bits takes
 * several) are no fault of the scheduler's. Counted so, a correct kernel
 * failed the bound. The tick hook (sched_tick_hook) runs before the tick
 * wakes anyone, so the last tick that finds a watched thread asleep is
 * the one that woke it.
 */
#ifndef TESTS_KERNEL_TICK_WATCH_UTIL_H
#define TESTS_KERNEL_TICK_WATCH_UTIL_H

#include <stdatomic.h>
#include <stdint.h>

#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"

#define TICK_WATCH_MAX 8

/* One watched sleeper: its CPU, the thread (NULL: none), and the CPU's
 * tick count at the first and the last tick that found it asleep (0:
 * none yet; a tick's count is at least 1). */
struct tick_watch {
	_Atomic unsigned cpu;
	struct thread *_Atomic t;
	_Atomic uint64_t first_asleep, last_asleep;
};

static struct tick_watch tick_watches[TICK_WATCH_MAX];

/* The tick hook, on every CPU: a sleeper is looked at only by its own
 * CPU's tick, whose run queue it sleeps on, and which interrupts it or
 * finds it switched out, so it cannot have left its slot and exited
 * while the tick reads its state. */
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
	atomic_store(&tick_watches[i].cpu, this_cpu()->id);
	atomic_store(&tick_watches[i].t, thread_current());
}

/* Once the thread in slot i has woken: the ticks it slept through, the
 * one that woke it included (0 if no tick found it asleep), and the slot
 * is free again. */
static inline uint64_t tick_watch_woken(unsigned i)
{
	atomic_store(&tick_watches[i].t, NULL);
	uint64_t first = atomic_load(&tick_watches[i].first_asleep);
	return first ? atomic_load(&tick_watches[i].last_asleep) - first + 1
	             : 0;
}

#endif

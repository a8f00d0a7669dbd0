/*
 * Thread misuse that must panic, naming what was wrong: built only with
 * KTEST_FAIL_DEMO=1, each run alone by tools/test-harness, which checks
 * the panic message. (A thread joined twice is in sched_test.c.)
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "kernel/thread_testing.h"
#include "tests/kernel/smp_util.h"

#ifdef KTEST_FAIL_DEMO
/* The boot threads never exit, so a join of one must panic naming it
 * rather than wait for good. */
KTEST(demo, thread_join_idle)
{
	struct thread *idle = this_cpu()->idle;
	ktest_diag("joining %s", idle->name);
	thread_join((struct thread_handle){idle, idle->id, idle->cpu->id});
}

static void join_thread(void *arg)
{
	thread_join(*(struct thread_handle *)arg);
}

KTEST(demo, thread_join_main)
{
	static struct thread_handle main_thread;
	main_thread = thread_self();
	struct thread_handle t = thread_create("joins_main", join_thread,
	                                       &main_thread, this_cpu()->id);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
}

/* main must not exit. */
KTEST(demo, thread_exit_in_main)
{
	ktest_diag("thread_exit in %s", thread_current()->name);
	thread_exit();
}

/* In test (record) mode thread_exit cannot refuse as a sleep does: it
 * must panic naming what is wrong (here a preemption count left). */
static void exit_unpreemptible(void *arg)
{
	lockcheck_set_record(true);
	preempt_disable();
	thread_exit();
}

KTEST(demo, thread_exit_in_record_mode)
{
	struct thread_handle t = thread_create(
	        "exit_unpreemptible", exit_unpreemptible, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
}

/* A thread with no function must be refused where it is made, naming it,
 * not crash at address 0 in the new thread, far from its creator. */
KTEST(demo, thread_create_without_a_function)
{
	struct thread_handle t =
	        thread_create("no_fn", NULL, NULL, this_cpu()->id);
	ktest_diag("thread_create returned %p", (void *)t.t);
	if (thread_handle_ok(t))
		thread_join(t);
}

/* thread_create allocates with kmalloc's thread-only path: from an
 * interrupt handler it must panic naming itself, not go on until an
 * allocation needs a new span and mm names that allocation. */
static void runs_and_ends(void *arg)
{
}

static void create_from_tick(void)
{
	sched_tick_hook = NULL;
	thread_create("from_irq", runs_and_ends, NULL, this_cpu()->id);
}

KTEST(demo, thread_create_in_interrupt)
{
	sched_tick_hook = create_from_tick;
	thread_sleep_ns(1000000000);
	sched_tick_hook = NULL;
}

#if KTEST_HOOKS
/* ---- Two joins racing for one thread ------------------------------------ */

#define RACE_FILLERS 200 /* threads made on each side of the victim */

static struct thread_handle race_victim;
static _Atomic bool race_victim_go, race_loser_waiting, race_freed;

static void race_nothing(void *arg)
{
}

static void race_victim_fn(void *arg)
{
	while (!atomic_load(&race_victim_go))
		thread_yield();
}

static void race_join(void *arg)
{
	thread_join(race_victim);
}

/* The losing join, past the threads lock: waits until the winner has
 * freed the struct and its page is gone. */
static void race_loser_hook(uintptr_t t)
{
	if (t != (uintptr_t)race_victim.t)
		return;
	atomic_store(&race_loser_waiting, true);
	while (!atomic_load(&race_freed))
		cpu_pause();
}

static struct thread_handle race_spawn(const char *name, void (*fn)(void *),
                                       unsigned cpu)
{
	struct thread_handle t = thread_create(name, fn, NULL, cpu);
	if (!thread_handle_ok(t))
		panic("demo: thread_create(%s) failed", name);
	return t;
}

/*
 * Two threads join one: the loser must panic naming the thread ("joined
 * by two threads") even though the winner freed the struct meanwhile
 * (with mm.debug_pagealloc its page is unmapped), not fault reading the
 * name. The victim is made between fillers, more than a span's worth on
 * each side, so that its span holds only them and goes back to the page
 * heap once all are joined (not with the boot's threads or the joiners).
 */
KTEST(demo, thread_join_race_two_joiners)
{
	static struct thread_handle fill[2 * RACE_FILLERS];
	unsigned here = this_cpu()->id, other = other_online_cpu();
	if (other == MAX_CPUS)
		other = here; /* the loser then spins on this CPU, preempted */
	for (unsigned i = 0; i < 2 * RACE_FILLERS; i++) {
		if (i == RACE_FILLERS)
			race_victim =
			        race_spawn("join_victim", race_victim_fn, here);
		fill[i] = race_spawn("join_filler", race_nothing, here);
	}
	atomic_store(&thread_testing_join_lost, race_loser_hook);
	struct thread_handle first = race_spawn("first_join", race_join, here);
	while (!((volatile struct thread *)race_victim.t)->join_claimed)
		thread_yield();
	race_spawn("second_join", race_join, other);
	while (!atomic_load(&race_loser_waiting))
		thread_yield();
	atomic_store(&race_victim_go, true);
	thread_join(first);
	for (unsigned i = 0; i < 2 * RACE_FILLERS; i++)
		thread_join(fill[i]);
	heap_release_all();
	if (vm_translate((uintptr_t)race_victim.t, NULL, NULL))
		panic("demo: the victim's struct at %p is still mapped: the "
		      "race cannot be shown (run with mm.debug_pagealloc)",
		      (void *)race_victim.t);
	ktest_diag("thread id %llu at %p: joined, freed, unmapped",
	           (unsigned long long)race_victim.id, (void *)race_victim.t);
	atomic_store(&race_freed, true);
	for (;;)
		thread_yield();
}
#endif
#endif

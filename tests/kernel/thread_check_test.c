/*
 * The scheduler's own checks on what it is handed: a wake of a thread
 * that was joined and freed (or of a struct that was never a thread) is
 * reported naming the call, and leaves the struct alone. Each runs in the
 * lock checker's test mode, which records the report instead of
 * panicking.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/thread.h"
#include "tests/kernel/lockcheck_util.h"

static void nothing(void *arg)
{
}

static struct thread *stale;

static void wake_stale(void)
{
	thread_wake(stale);
}

/*
 * A joined thread's struct is freed, but a pointer kept to it is still
 * handed to thread_wake: before, the wake read the freed struct's CPU and
 * state, took that CPU's run-queue lock and, had the memory been reused
 * as anything but a thread, could queue it. Nothing on this CPU allocates
 * between the join and the wake, so the struct is not reused meanwhile.
 */
KTEST(thread, wake_after_join_is_reported)
{
	struct thread *t =
	        thread_create("joined", nothing, NULL, this_cpu()->id);
	KASSERT(t != NULL);
	thread_join(t);
	stale = t;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "joined and freed already"));
	ktest_diag("%s", lockcheck_last_violation());
}

KTEST(thread, wake_of_no_thread_is_reported)
{
	static struct thread zeroed;
	stale = &zeroed;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "no thread's magic"));
	stale = NULL;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "not a live thread"));
	/* A live thread's wake is no misuse, asleep or not. */
	stale = thread_current();
	KEXPECT_EQ(recorded(wake_stale), 0);
}

/*
 * A sleep needs a thread to put to sleep and another to run meanwhile:
 * before a CPU's scheduler starts there is none, and the idle thread is
 * the one that runs when nothing else can. Each is refused naming it. The
 * test makes this CPU's current thread `pretend` for the one call, with
 * interrupts off so that no tick or wake sees the swap; the check names
 * the context first, before the interrupts.
 */
static struct thread *pretend;
static void (*sleep_call)(void);

static void sleep_a_tick(void)
{
	thread_sleep_ns(0);
}

static void yield(void)
{
	thread_yield();
}

static void call_as_pretend(void)
{
	struct cpu *c = this_cpu();
	unsigned long flags = read_rflags();
	cpu_cli();
	struct thread *real = c->current;
	c->current = pretend;
	sleep_call();
	c->current = real;
	if (flags & RFLAGS_IF)
		cpu_sti();
}

KTEST(thread, sleep_without_a_thread_or_in_idle_is_reported)
{
	static const struct {
		bool idle;
		void (*call)(void);
		const char *what, *reason;
	} cases[] = {
	        {false, sleep_a_tick, "thread_sleep on cpu",
	         "before its scheduler started"},
	        {false, yield, "thread_yield on cpu",
	         "before its scheduler started"},
	        {true, sleep_a_tick, "thread_sleep in cpu", "idle thread"},
	        {true, yield, "thread_yield in cpu", "idle thread"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pretend = cases[i].idle ? this_cpu()->idle : NULL;
		sleep_call = cases[i].call;
		KEXPECT_EQ(recorded(call_as_pretend), 1);
		if (!message_has(cases[i].what, cases[i].reason))
			ktest_diag("case %zu: '%s'", i,
			           lockcheck_last_violation());
		KEXPECT(message_has(cases[i].what, cases[i].reason));
	}
}

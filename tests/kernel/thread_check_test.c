/*
 * The scheduler's own checks on what it is handed: a wake of a thread
 * that was joined and freed (or of a struct that was never a thread) is
 * reported naming the call, and leaves the struct alone. Each runs in the
 * lock checker's test mode, which records the report instead of
 * panicking.
 */
#include <stdatomic.h>
#include <stddef.h>

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

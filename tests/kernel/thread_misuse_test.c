/*
 * Thread misuse that must panic, naming what was wrong: built only with
 * KTEST_FAIL_DEMO=1, each run alone by tools/test-harness, which checks
 * the panic message. (A thread joined twice is in sched_test.c.)
 */
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"

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
#endif

/*
 * tests/real/malloc_hooks_nested.c: malloc-hooks-test's scenarios of a
 * signal handler's call inside the steps by which its thread holds or
 * leaves a slot (malloc_hooks_test.h): the call must neither run beside
 * another thread in the slot nor leave the slot's in word set.
 *
 * Where the slot is shared, every slot is owned (the scenario's thread,
 * the first, has slot 0; threads parked on a gate the rest), so a sharer
 * joins slot 0 (malloc_hooks_share.c says why).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

/* ---- A signal in the owner's slow hold of a shared slot ---------------- */

enum { LIVE_SLOTS = 63 }; /* MM_MAX_CPUS - 1 (LATE_SLOT) */

static struct park_gate gate = {PTHREAD_MUTEX_INITIALIZER, 0};
static pthread_t parked[LIVE_SLOTS];
static int nparked;
static atomic_bool joined, second_go, owner_calling;
static atomic_bool held_armed, handler_done;
static _Thread_local volatile bool is_sharer;

static void in_slow_hold_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_SLOW_HELD &&
	    atomic_exchange(&held_armed, false)) {
		raise(SIGUSR1);
	} else if (is_sharer && where == MM_MALLOC_HOOK_WAIT_IN &&
	           !atomic_load(&owner_calling)) {
		static const char msg[] =
		        "the sharer's call waited for the slot's in word "
		        "while its owner was in no call (a signal handler's "
		        "call in the owner's slow hold left it set)";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(2);
		_exit(1);
	}
}

static void slow_hold_handler(int sig)
{
	(void)sig;
	free(malloc(40));
	atomic_store(&handler_done, true);
}

/* Joins slot 0 as its sharer, then makes a second call when told. */
static void *staying_sharer(void *arg)
{
	is_sharer = true;
	free(malloc(16)); /* joins slot 0 */
	atomic_store(&joined, true);
	while (!atomic_load(&second_go))
		sched_yield();
	free(malloc(24));
	return arg;
}

/* Parks threads on gate until every live slot is owned; 0, or 2. */
static int own_every_slot(void)
{
	pthread_mutex_lock(&gate.mutex);
	while (nparked < LIVE_SLOTS && mm_malloc_threads() < LIVE_SLOTS) {
		if (pthread_create(&parked[nparked], NULL, park_on, &gate) != 0)
			return 2;
		nparked++;
		while (atomic_load(&gate.parked) < nparked)
			sched_yield();
	}
	return mm_malloc_threads() == LIVE_SLOTS ? 0 : 2;
}

static void let_parked_go(void)
{
	pthread_mutex_unlock(&gate.mutex);
	for (int i = 0; i < nparked; i++)
		pthread_join(parked[i], NULL);
}

/*
 * The owner of a shared slot takes it on the slow path (busy), with its
 * held word set to busy. A signal handler's call then passes as nested.
 * If it took held for a fast entry's instead, it stored in = 1 and took
 * the late slot, and its leave never cleared in: the sharer's next call
 * waited for the owner's in, for ever once the owner made no call (a
 * fast entry of the owner's would clear it, backing out).
 */
int signal_in_shared_slow_hold(void)
{
	int skip = fast_path_or_skip(); /* this thread's slot: 0, the first
	                                   claimed */
	if (skip)
		return skip;
	if (!on_signal(SIGUSR1, slow_hold_handler) || own_every_slot() != 0)
		return 2;
	mm_malloc_test_hook = in_slow_hold_window;
	pthread_t s;
	if (pthread_create(&s, NULL, staying_sharer, NULL) != 0)
		return 2;
	while (!atomic_load(&joined))
		sched_yield();
	atomic_store(&owner_calling, true);
	void *p = malloc(32);
	atomic_store(&held_armed, true);
	free(p); /* the slow hold the signal interrupts; the last call */
	atomic_store(&owner_calling, false);
	atomic_store(&second_go, true);
	pthread_join(s, NULL);
	let_parked_go();
	if (!atomic_load(&handler_done)) {
		fprintf(stderr, "the signal handler's call did not run");
		return 2;
	}
	return 0;
}

/* ---- A signal in a sharer's entry while the owner is inside ------------ */

static atomic_bool owner_inside, handler_waited, handler_ran_beside;
static atomic_bool wait_armed;
static _Thread_local volatile bool owner_holding, in_handler;

static void in_sharer_wait_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_FAST_HELD && owner_holding) {
		owner_holding = false;
		atomic_store(&owner_inside, true);
		share_go();
		while (!atomic_load(&handler_waited) &&
		       !atomic_load(&handler_done))
			sched_yield();
		if (atomic_load(&handler_done))
			atomic_store(&handler_ran_beside, true);
		atomic_store(&owner_inside, false);
	} else if (where == MM_MALLOC_HOOK_WAIT_IN && in_handler) {
		atomic_store(&handler_waited, true);
	} else if (where == MM_MALLOC_HOOK_WAIT_IN &&
	           atomic_exchange(&wait_armed, false)) {
		raise(SIGUSR1); /* in the sharer, which waits for in */
	}
}

static void sharer_wait_handler(int sig)
{
	(void)sig;
	in_handler = true;
	free(malloc(40));
	in_handler = false;
	atomic_store(&handler_done, true);
}

/*
 * A sharer's first call takes busy, then waits for the owner's fast call
 * to end (in = 0). A signal handler's call there finds its own token in
 * busy and runs as nested in that hold, which is not yet inside the slot:
 * it must wait for in as the hold does, or it runs beside the owner.
 */
int signal_while_sharer_waits_in(void)
{
	int skip = fast_path_or_skip();
	if (skip)
		return skip;
	if (!on_signal(SIGUSR1, sharer_wait_handler))
		return 2;
	mm_malloc_test_hook = in_sharer_wait_window;
	if (share_prepare(false) != 0)
		return 2;
	atomic_store(&wait_armed, true);
	owner_holding = true;
	free(malloc(32)); /* the fast call the hook holds */
	bool entered = !owner_holding;
	share_end();
	if (!entered || !atomic_load(&handler_done)) {
		fprintf(stderr,
		        "this thread did not enter fast (%d), or the "
		        "handler did not run",
		        entered);
		return 2;
	}
	if (atomic_load(&handler_ran_beside)) {
		fprintf(stderr,
		        "a signal handler's call in a sharer's entry "
		        "ran while the slot's owner was inside its fast "
		        "call (it did not wait for in)");
		return 1;
	}
	return 0;
}

/* ---- A signal in a fast call's leave ----------------------------------- */

static atomic_bool leave_armed, owner_idle, leave_handler_ran;
static _Thread_local volatile bool is_forking;

static void in_leave_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_LEAVING &&
	    atomic_exchange(&leave_armed, false)) {
		raise(SIGUSR1);
	} else if (is_forking && where == MM_MALLOC_HOOK_WAIT_IN &&
	           atomic_load(&owner_idle)) {
		static const char msg[] =
		        "fork waited for the in word of a thread in no call "
		        "(a signal handler's call in its fast leave, between "
		        "held and in, left in set)";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(2);
		_exit(1);
	}
}

static void leave_handler(int sig)
{
	(void)sig;
	free(malloc(40));
	atomic_store(&leave_handler_ran, true);
}

/* Made before: pthread_create allocates in its caller's thread. */
static void *idle_forker(void *arg)
{
	while (!atomic_load(&owner_idle))
		sched_yield();
	is_forking = true;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	is_forking = false;
	int st = -1;
	return pid > 0 && waitpid(pid, &st, 0) == pid && st == 0 ? NULL : arg;
}

/*
 * A fast call's leave clears held, then in. A signal handler's call in
 * between finds held clear and enters on its own: its leave clears in.
 * In the other order (in first) it found held set, passed as nested and
 * stored in = 1 for its check, which nothing cleared: a fork (or a
 * sharer) waited for the thread's in until its next call.
 */
int signal_in_fast_leave(void)
{
	int skip = fast_path_or_skip();
	if (skip)
		return skip;
	if (!on_signal(SIGUSR1, leave_handler))
		return 2;
	pthread_t t;
	if (pthread_create(&t, NULL, idle_forker, (void *)1) != 0)
		return 2;
	void *p = malloc(32);
	mm_malloc_test_hook = in_leave_window;
	atomic_store(&leave_armed, true);
	free(p); /* the leave the signal interrupts; this thread's last call */
	atomic_store(&owner_idle, true);
	void *r = NULL;
	if (pthread_join(t, &r) != 0 || r) {
		fprintf(stderr, "fork or its child failed");
		return 2;
	}
	if (!atomic_load(&leave_handler_ran)) {
		fprintf(stderr, "the signal handler did not run");
		return 2;
	}
	return 0;
}

/*
 * tests/real/malloc_hooks_fork.c: malloc-hooks-test's scenarios of fork's
 * prepare handler (malloc_hooks_test.h): the slots and calls it must take
 * and wait for, and what of them its child must not inherit.
 * MM_MALLOC_HOOK_FORK_TAKEN stops the forking thread once it holds every
 * slot.
 */
#define _GNU_SOURCE
#include <malloc.h>
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

static atomic_bool fork_holds; /* fork stopped with every slot taken */
/* The entering thread has claimed its slot: a fork before that would
 * hold the slot through its first call. */
static atomic_bool entrant_claimed;
static _Thread_local volatile bool is_forker, is_entrant, in_handler;

/* ---- A signal in a fast entry made while fork holds the slots ---------- */

static atomic_bool fork_in_hook; /* fork_holds, and fork not gone on */
static atomic_bool entry_armed, handler_waited, handler_early;
static atomic_bool handler_mask_lost;

static void in_fork_entry_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_FORK_TAKEN && is_forker) {
		atomic_store(&fork_in_hook, true);
		atomic_store(&fork_holds, true);
		while (!atomic_load(&handler_waited) &&
		       !atomic_load(&handler_early))
			sched_yield();
		atomic_store(&fork_in_hook, false);
	} else if (in_handler && (where == MM_MALLOC_HOOK_WAIT_BUSY ||
	                          where == MM_MALLOC_HOOK_WAIT_FORK)) {
		atomic_store(&handler_waited, true);

	} else if (is_entrant && where == MM_MALLOC_HOOK_FAST_ENTERING &&
	           atomic_exchange(&entry_armed, false)) {
		raise(SIGUSR1);
	}
}

static void fork_entry_handler(int sig)
{
	(void)sig;
	in_handler = true;
	void *p = malloc(40);
	/* Its call returned while fork still held every slot: it ran in
	 * mm/ beside a fork that took its slot. */
	if (atomic_load(&fork_in_hook))
		atomic_store(&handler_early, true);
	/* The lent slot's leave put back the mask it found, in which this
	 * handler's own signal is blocked. */
	sigset_t now;
	if (pthread_sigmask(SIG_BLOCK, NULL, &now) != 0 ||
	    !sigismember(&now, SIGUSR1))
		atomic_store(&handler_mask_lost, true);
	free(p);
	in_handler = false;
}

static void *fork_entrant(void *arg)
{
	free(malloc(16)); /* claims its slot, before the fork */
	atomic_store(&entrant_claimed, true);
	while (!atomic_load(&fork_holds))
		sched_yield();
	is_entrant = true;
	atomic_store(&entry_armed, true);
	free(malloc(24)); /* the fast entry the signal interrupts */
	is_entrant = false;
	return arg;
}

/*
 * A thread's fast entry that comes after fork took its slot stores in =
 * 1, then finds the fork flag in the state and backs out. A signal
 * handler's call between those two steps cannot tell whether its thread
 * holds the slot, and must take the late slot, which fork holds too: it
 * waits. The state check of that call must see the fork flag, not only
 * a sharer's count (a check that ignored the flag let the call run in
 * mm/ while fork held the slot: a child could inherit the heap
 * half-changed). The call's leave puts the thread's signal mask and
 * slot index back.
 */
int signal_in_entry_during_fork(void)
{
	int st = fast_path_or_skip();
	if (st)
		return st;
	if (!on_signal(SIGUSR1, fork_entry_handler))
		return 2;
	mm_malloc_test_hook = in_fork_entry_window;
	pthread_t t;
	if (pthread_create(&t, NULL, fork_entrant, NULL) != 0)
		return 2;
	while (!atomic_load(&entrant_claimed))
		sched_yield();
	is_forker = true;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	is_forker = false;
	pthread_join(t, NULL);
	st = fork_verdict("fork", pid, atomic_load(&handler_early),
	                  atomic_load(&handler_waited),
	                  "a signal handler's call, in a fast entry made "
	                  "after fork took the slot, ran in mm/");
	if (st == 0 && atomic_load(&handler_mask_lost)) {
		fprintf(stderr, "the signal mask the late slot's leave put "
		                "back is not the one its call found: the "
		                "handler's own signal was unblocked");
		return 1;
	}
	/* The handler's call put the thread's slot index back: its exit
	 * gave its slot back. */
	unsigned owners = mm_malloc_threads();
	if (st == 0 && owners != 1) {
		fprintf(stderr,
		        "%u slots owned once the entering thread exited, 1 "
		        "expected: the late slot lent to its handler's call "
		        "stayed its slot",
		        owners);
		return 1;
	}
	return st;
}

/* ---- The child of a fork that came between an entry's two steps -------- */

static atomic_bool entrant_parked, fork_returned;
static volatile bool in_child; /* this process is the fork's child */

static void in_child_in_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_FORK_TAKEN && is_forker) {
		atomic_store(&fork_holds, true);
		while (!atomic_load(&entrant_parked))
			sched_yield();
	} else if (is_entrant && where == MM_MALLOC_HOOK_FAST_ENTERING) {
		is_entrant = false;
		atomic_store(&entrant_parked, true);
		while (!atomic_load(&fork_returned))
			sched_yield();
	} else if (in_child && where == MM_MALLOC_HOOK_WAIT_IN) {
		static const char msg[] =
		        "the child's fork waited for a slot's in word, which "
		        "no thread of the child holds (the parent's entry was "
		        "between its store of in and its check when the "
		        "process was copied)";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(2);
		_exit(1);
	}
}

static void *parked_entrant(void *arg)
{
	free(malloc(16));
	atomic_store(&entrant_claimed, true);
	while (!atomic_load(&fork_holds))
		sched_yield();
	is_entrant = true;
	free(malloc(24)); /* stops after its store of in = 1 */
	return arg;
}

/*
 * An entry that comes after fork took its slot stores in = 1 before it
 * sees the fork flag and backs out: copied in that window, the child
 * inherits in = 1 for a slot none of its threads holds. The child's
 * handler must clear it, or the child's own next fork (or a sharer of
 * that slot) waits for it for ever.
 */
int child_clears_in(void)
{
	int st = fast_path_or_skip();
	if (st)
		return st;
	mm_malloc_test_hook = in_child_in_window;
	pthread_t t;
	if (pthread_create(&t, NULL, parked_entrant, NULL) != 0)
		return 2;
	while (!atomic_load(&entrant_claimed))
		sched_yield();
	is_forker = true;
	pid_t pid = fork();
	if (pid == 0) {
		in_child = true;
		is_forker = false;
		pid_t grandchild = fork();
		if (grandchild == 0)
			_exit(0);
		int gst = -1;
		_exit(grandchild > 0 &&
		                      waitpid(grandchild, &gst, 0) ==
		                              grandchild &&
		                      gst == 0
		              ? 0
		              : 3);
	}
	is_forker = false;
	atomic_store(&fork_returned, true);
	pthread_join(t, NULL);
	int cst = -1;
	if (pid < 0 || waitpid(pid, &cst, 0) != pid) {
		fprintf(stderr, "fork failed");
		return 2;
	}
	if (!WIFEXITED(cst) || WEXITSTATUS(cst) != 0) {
		fprintf(stderr, "; the child's status: %#x", cst);
		return 1;
	}
	return 0;
}

/* ---- fork while a thread past its exit is inside a call ----------------- */

static pthread_key_t late_key;
static atomic_bool late_inside, forker_waited;
static _Thread_local volatile bool is_late;

static void in_late_window(enum mm_malloc_hook_point where)
{
	if (is_late && where == MM_MALLOC_HOOK_SLOW_TAKEN) {
		is_late = false;
		atomic_store(&late_inside, true);
		while (!atomic_load(&forker_waited) &&
		       !atomic_load(&fork_returned))
			sched_yield();
		atomic_store(&late_inside, false);
	} else if (is_forker && where == MM_MALLOC_HOOK_WAIT_BUSY) {
		atomic_store(&forker_waited, true);
	}
}

/* Runs after the library's key destructor (keys' destructors run in
 * the order made): its call holds the late slot. */
static void late_destructor(void *arg)
{
	(void)arg;
	is_late = true;
	free(malloc(40));
}

static void *exits_with_late_call(void *arg)
{
	free(malloc(16));
	pthread_setspecific(late_key, (void *)1);
	return arg;
}

/* A call of a thread past its exit holds the late slot (slots.c,
 * "exit"): fork must take that slot too, waiting for such a call, or
 * the process is copied with it inside mm/. */
int fork_waits_for_late_slot(void)
{
	free(malloc(16));
	mm_malloc_test_hook = in_late_window;
	pthread_t t;
	if (pthread_key_create(&late_key, late_destructor) != 0 ||
	    pthread_create(&t, NULL, exits_with_late_call, NULL) != 0)
		return 2;
	while (!atomic_load(&late_inside))
		sched_yield();
	is_forker = true;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	is_forker = false;
	bool early = atomic_load(&late_inside);
	atomic_store(&fork_returned, true);
	pthread_join(t, NULL);
	return fork_verdict("fork", pid, early, atomic_load(&forker_waited),
	                    "a thread past its exit was inside a call on the "
	                    "late slot, without waiting for it");
}

/* ---- fork from a thread whose one call took no slot -------------------- */

static atomic_bool holder_armed, holder_inside, usable_asked;
static void *others_object;

static void in_tokenless_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_SLOW_TAKEN &&
	    atomic_exchange(&holder_armed, false)) {
		atomic_store(&holder_inside, true);
		while (!atomic_load(&forker_waited) &&
		       !atomic_load(&fork_returned))
			sched_yield();
		atomic_store(&holder_inside, false);
	} else if (is_forker && where == MM_MALLOC_HOOK_WAIT_BUSY) {
		atomic_store(&forker_waited, true);
	}
}

/* Its first call, malloc_usable_size, claims its slot and takes none
 * (malloc.c); then it forks while the main thread is inside a call. */
static void *tokenless_forker(void *arg)
{
	(void)arg;
	size_t n = malloc_usable_size(others_object);
	atomic_store(&usable_asked, true);
	if (n < 64) {
		atomic_store(&fork_returned, true); /* no fork: let it go */
		return (void *)1;
	}
	while (!atomic_load(&holder_inside))
		sched_yield();
	is_forker = true;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	is_forker = false;
	bool early = atomic_load(&holder_inside);
	atomic_store(&fork_returned, true);
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
		return (void *)2;
	return early ? (void *)3 : NULL;
}

/*
 * A thread's token is made at its first take of a slot (enter.c); a
 * thread whose only call was malloc_usable_size has claimed a slot and
 * has no token. fork tells an interrupted call of its own thread by its
 * token in its slot's busy word: a token of 0 would match the free word,
 * and such a thread's fork would take itself for interrupted and run
 * without the handlers, beside another thread inside its call. The
 * parent sets MM_MALLOC_MEMBARRIER=0, so that the other thread holds
 * busy.
 */
int fork_from_tokenless_thread(void)
{
	others_object = malloc(64);
	mm_malloc_test_hook = in_tokenless_window;
	pthread_t t;
	if (pthread_create(&t, NULL, tokenless_forker, NULL) != 0)
		return 2;
	while (!atomic_load(&usable_asked))
		sched_yield();
	atomic_store(&holder_armed, true);
	free(malloc(32)); /* stays inside until the fork waited for it */
	void *r;
	pthread_join(t, &r);
	free(others_object);
	if (r == (void *)1 || r == (void *)2) {
		fprintf(stderr, "fork or its child failed (%p)", r);
		return 2;
	}
	if (r || !atomic_load(&forker_waited)) {
		fprintf(stderr, "fork from a thread that never took its slot "
		                "returned while another thread was inside its "
		                "call, without waiting for it");
		return 1;
	}
	return 0;
}

/* ---- A claim in a child made by _Fork alone ---------------------------- */

enum { LIVE_SLOTS = 63 }; /* MM_MAX_CPUS - 1 (LATE_SLOT) */

static struct park_gate child_gate = {PTHREAD_MUTEX_INITIALIZER, 0};

static void *claims_once(void *arg)
{
	free(malloc(16));
	return arg;
}

/* The child: its one thread keeps the slot it owned in the parent (no
 * handler ran), which records the parent's ids. Threads parked on a gate
 * own the other slots, then one more claims: 64 threads, 64 counted. */
static int underscore_fork_child(void)
{
	pthread_t t[LIVE_SLOTS];
	int n = 0;
	pthread_mutex_lock(&child_gate.mutex);
	while (n < LIVE_SLOTS - 1 && mm_malloc_threads() < LIVE_SLOTS) {
		if (pthread_create(&t[n], NULL, park_on, &child_gate) != 0)
			return 2;
		n++;
		while (atomic_load(&child_gate.parked) < n)
			sched_yield();
	}
	pthread_t last;
	void *r;
	if (mm_malloc_threads() != LIVE_SLOTS ||
	    pthread_create(&last, NULL, claims_once, NULL) != 0 ||
	    pthread_join(last, &r) != 0)
		return 2;
	unsigned owners = mm_malloc_threads();
	pthread_mutex_unlock(&child_gate.mutex);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (owners != LIVE_SLOTS) {
		fprintf(stderr,
		        "%u slots owned in a _Fork child once its last "
		        "claimer exited, 63 expected: the claim took the "
		        "parent's ids in this thread's slot for a thread of "
		        "its own gone, and took the slot over",
		        owners);
		return 1;
	}
	return 0;
}

/*
 * _Fork in a process that never had a second thread runs no handler:
 * the child's thread owns its slot under its ids in the parent, another
 * process's, which a claim must never take over (slots.c, invariant 6).
 * Probed as this process's, the parent's thread id is no thread here
 * (ESRCH), and a claim with every slot owned took the live thread's
 * slot for its own; its exit then gave the slot back under the thread
 * that owns it. The parent sets MM_MALLOC_BACKGROUND=0.
 */
int underscore_fork_keeps_parent_ids(void)
{
	free(malloc(16));
	pid_t pid = _Fork();
	if (pid == 0)
		_exit(underscore_fork_child());
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid) {
		fprintf(stderr, "_Fork failed");
		return 2;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "; the child's status: %#x", st);
		return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	}
	return 0;
}

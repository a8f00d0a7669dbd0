/*
 * tests/real/malloc_hooks_signals.c: the scenarios of malloc-hooks-test
 * (malloc_hooks_test.c) in which a signal handler allocates inside a
 * window of the set-up or of a thread's first claim. POSIX does not allow
 * malloc in a handler; programs do it all the same (a handler that logs),
 * and the library must then neither hang nor leak a slot. First, another
 * thread's first call in the set-up's last window.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

/* ---- A thread's first call while the heap's set-up ends ---------------- */

static atomic_int init_hook_runs;
static atomic_bool init_thread_done;
static unsigned init_owners_before;

static void *first_call(void *arg)
{
	free(malloc(16)); /* this thread's first call: claims a slot */
	return arg;
}

/* On the initialising thread, once the heap is ready: another thread
 * makes its first call and exits before set-up has ended. */
static void in_init_window(enum mm_malloc_hook_point where)
{
	if (where != MM_MALLOC_HOOK_INIT_READY)
		return;
	mm_malloc_test_hook = NULL;
	atomic_fetch_add(&init_hook_runs, 1);
	init_owners_before = mm_malloc_threads();
	pthread_t t;
	if (pthread_create(&t, NULL, first_call, NULL) == 0 &&
	    pthread_join(t, NULL) == 0)
		atomic_store(&init_thread_done, true);
}

/* A thread whose first call comes after the heap is ready but before its
 * initialiser has returned from heap_init gives its slot back when it
 * exits: until this version the exit key was made after the heap was
 * published, and such a thread never registered for it (a slot leaked;
 * 63 such threads and every later thread shared a slot). */
int init_window(void)
{
	mm_malloc_test_hook = in_init_window;
	free(malloc(16)); /* the process's first allocation */
	if (atomic_load(&init_hook_runs) != 1) {
		fprintf(stderr,
		        "the hook ran %d times, not once: did "
		        "something allocate before main?",
		        atomic_load(&init_hook_runs));
		return 2;
	}
	if (!atomic_load(&init_thread_done)) {
		fprintf(stderr, "the thread in the window did not run");
		return 3;
	}
	/* This thread's slot only (claimed by pthread_create's allocation
	 * in the window, or after it). */
	unsigned owners = mm_malloc_threads();
	if (owners != init_owners_before + 1) {
		fprintf(stderr,
		        "%u slots owned after the thread in the window "
		        "exited, %u expected (%u before it, and this "
		        "thread's)",
		        owners, init_owners_before + 1, init_owners_before);
		return 1;
	}
	return 0;
}

/* ---- A signal handler's call in a thread's first call ------------------ */

static atomic_int claimed_runs;
static void *claimed_alloc; /* the handler's object, or NULL */

/* As a signal handler that interrupts the thread's first call once it
 * has claimed its slot: it allocates and frees. */
static void in_claimed_window(enum mm_malloc_hook_point where)
{
	if (where != MM_MALLOC_HOOK_CLAIMED)
		return;
	mm_malloc_test_hook = NULL;
	atomic_fetch_add(&claimed_runs, 1);
	claimed_alloc = malloc(24);
	memset(claimed_alloc, 7, 24);
	free(claimed_alloc);
}

/* A signal handler's call between a thread's claim of its slot and its
 * first call's entry takes the slot's magazine by the thread's index
 * (the fast paths index the heap's per-CPU caches with it): until this
 * version the claim set the thread's fast slot before its index, and
 * such a call indexed them with -1 (the process crashed). */
int claimed_window(void)
{
	mm_malloc_test_hook = in_claimed_window;
	void *p = malloc(16); /* the process's first allocation */
	if (atomic_load(&claimed_runs) != 1) {
		fprintf(stderr, "the hook ran %d times, not once",
		        atomic_load(&claimed_runs));
		return 2;
	}
	if (!p || !claimed_alloc || p == claimed_alloc) {
		fprintf(stderr, "first call %p, the handler's %p", p,
		        claimed_alloc);
		return 1;
	}
	free(p);
	for (int i = 0; i < 1000; i++)
		free(malloc(24));
	return 0;
}

/* ---- A real signal during the set-up and during the claim ------------- */

static enum mm_malloc_hook_point raise_point;
static atomic_int handler_calls, handler_failed;

/* SIGUSR1's handler: allocates, writes and frees, as a program's
 * handler that logs might (not async-signal-safe by POSIX; done all the
 * same). */
static void allocating_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&handler_calls, 1);
	char *p = malloc(40);
	if (!p) {
		atomic_fetch_add(&handler_failed, 1);
		return;
	}
	memset(p, 9, 40);
	free(p);
}

/* Raises SIGUSR1, once, in the thread that reaches raise_point. */
static void raise_hook(enum mm_malloc_hook_point where)
{
	if (where != raise_point)
		return;
	mm_malloc_test_hook = NULL;
	raise(SIGUSR1);
}

/* The process's first allocation, with SIGUSR1 raised at point. */
static int first_call_with_signal_at(enum mm_malloc_hook_point point)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = allocating_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0) {
		fprintf(stderr, "sigaction failed");
		return 2;
	}
	raise_point = point;
	mm_malloc_test_hook = raise_hook;
	void *p = malloc(16);
	if (atomic_load(&handler_calls) != 1 || !p ||
	    atomic_load(&handler_failed)) {
		fprintf(stderr,
		        "the handler ran %d times (once expected), its "
		        "malloc failed %d times, the first call gave %p",
		        atomic_load(&handler_calls),
		        atomic_load(&handler_failed), p);
		return 1;
	}
	free(p);
	return 0;
}

/* A signal whose handler allocates, delivered to the thread that is
 * setting the heap up, before the heap is ready: until this version the
 * handler's call waited for the set-up its own thread was making, and the
 * process hung (the set-up now runs with signals blocked: they are
 * delivered once it is done). */
int signal_in_set_up(void)
{
	return first_call_with_signal_at(MM_MALLOC_HOOK_INIT_BEGUN);
}

/* The same just after the set-up's claim (init_state 1), before the
 * set-up began: until a review signals were blocked only after the
 * claim, and a handler's call there waited for its own thread's set-up
 * for good. */
int signal_as_set_up_is_won(void)
{
	return first_call_with_signal_at(MM_MALLOC_HOOK_INIT_WON);
}

/* The same during a thread's first claim of a slot: until this version
 * the handler's call, finding no slot yet, claimed one of its own, and
 * the interrupted claim then claimed a second, the first counted as
 * owned forever (2 slots owned by one thread; the claim now runs with
 * signals blocked). */
int signal_in_claim(void)
{
	int r = first_call_with_signal_at(MM_MALLOC_HOOK_CLAIMING);
	if (r)
		return r;
	unsigned owners = mm_malloc_threads();
	if (owners != 1) {
		fprintf(stderr, "%u slots owned by this process's one thread",
		        owners);
		return 1;
	}
	return 0;
}

/* The same between a thread's first call's check for a slot and its
 * claim (signals not yet blocked): the handler's call claims a slot,
 * which the interrupted claim must find rather than claim a second
 * (until this version it did not look again: 2 slots owned). */
int signal_before_claim(void)
{
	int r = first_call_with_signal_at(MM_MALLOC_HOOK_BEFORE_CLAIM);
	if (r)
		return r;
	unsigned owners = mm_malloc_threads();
	if (owners != 1) {
		fprintf(stderr, "%u slots owned by this process's one thread",
		        owners);
		return 1;
	}
	return 0;
}

/* ---- A signal in a fast entry, before its check, beside a sharer ------- */

static atomic_bool entry_armed, handler_entered, entry_backed_out, entry_held;
static atomic_bool second_armed, second_ran;
static _Thread_local volatile bool is_entering, in_fast_handler;
static _Thread_local volatile bool in_second_handler;

/* The sharer stays inside its first call (share_hook); the entering
 * thread raises SIGUSR1 once, between its store of in and its check of
 * the state; the handler's call notes how it entered. */
static void in_entry_window(enum mm_malloc_hook_point where)
{
	if (share_hook(where))
		return;
	if (in_second_handler && where == MM_MALLOC_HOOK_WAIT_BUSY) {
		static const char msg[] =
		        "a second signal's call, inside the first handler's "
		        "call on the late slot, waited for that slot: its own "
		        "thread holds it (signals were not blocked)";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(2);
		_exit(1);
	}
	if (in_fast_handler) {
		if (where == MM_MALLOC_HOOK_FAST_HELD ||
		    where == MM_MALLOC_HOOK_SLOW_TAKEN ||
		    where == MM_MALLOC_HOOK_LENT ||
		    where == MM_MALLOC_HOOK_WAIT_BUSY)
			atomic_store(&handler_entered, true);
		if (where == MM_MALLOC_HOOK_WAIT_BUSY)
			share_let_go();
		if (where == MM_MALLOC_HOOK_LENT &&
		    atomic_exchange(&second_armed, false))
			raise(SIGUSR2); /* held off until the late slot's leave
			                 */
	} else if (is_entering && where == MM_MALLOC_HOOK_FAST_ENTERING &&
	           atomic_exchange(&entry_armed, false)) {
		raise(SIGUSR1);
	} else if (is_entering && where == MM_MALLOC_HOOK_FAST_BACKOUT) {
		atomic_store(&entry_backed_out, true);
	} else if (is_entering && where == MM_MALLOC_HOOK_FAST_HELD &&
	           share_inside()) {
		atomic_store(&entry_held, true);
	}
}

/* A second signal, raised inside the first handler's call on the late
 * slot: its handler's call takes the late slot too, once the first's
 * leave gave it back (delivered inside that call, it waited for its own
 * thread's hold of the slot for ever). */
static void second_entry_handler(int sig)
{
	(void)sig;
	in_second_handler = true;
	free(malloc(24));
	in_second_handler = false;
	atomic_store(&second_ran, true);
}

static void entry_handler(int sig)
{
	(void)sig;
	in_fast_handler = true;
	free(malloc(40));
	in_fast_handler = false;
	share_let_go();
}

/*
 * A thread's fast entry sets held, stores in = 1, then checks the state.
 * A signal handler's call before the check found held set and passed as
 * nested, holding nothing, while a sharer of the slot (or a fork) could
 * be inside it: two threads in one slot's caches. The handler's call
 * must take a slot. The sharer stays inside its call on this thread's
 * slot while this thread's entry is interrupted.
 */
int signal_in_fast_entry(void)
{
	int skip = fast_path_or_skip();
	if (skip)
		return skip;
	if (!on_signal(SIGUSR1, entry_handler) ||
	    !on_signal(SIGUSR2, second_entry_handler))
		return 2;
	atomic_store(&second_armed, true);
	mm_malloc_test_hook = in_entry_window;
	if (share_start() != 0)
		return 2;
	is_entering = true;
	atomic_store(&entry_armed, true);
	free(malloc(24));
	is_entering = false;
	share_end();
	if (atomic_load(&entry_held) || !atomic_load(&entry_backed_out)) {
		fprintf(stderr, "the sharer did not share this thread's slot");
		return 2;
	}
	if (!atomic_load(&handler_entered)) {
		fprintf(stderr,
		        "a signal handler's call in a fast entry, before its "
		        "check, passed as nested: it ran holding no slot, "
		        "while a sharer was inside the slot");
		return 1;
	}
	if (!atomic_load(&second_ran)) {
		fprintf(stderr, "the second signal's handler did not run");
		return 2;
	}
	return 0;
}

/* ---- A signal while a slow entry holds busy and has not set held ------- */

static atomic_bool own_busy_armed, own_busy_handler_done;
static _Thread_local volatile bool in_own_busy_handler;

static void own_busy_handler(int sig)
{
	(void)sig;
	in_own_busy_handler = true;
	void *p = malloc(40);
	memset(p, 5, 40);
	free(p);
	in_own_busy_handler = false;
	atomic_store(&own_busy_handler_done, true);
}

/* Raises SIGUSR1 once in the window; a handler's wait for busy, with no
 * other thread, is a wait for its own thread: reported, not hung. */
static void in_own_busy_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_SLOW_TAKEN &&
	    atomic_exchange(&own_busy_armed, false)) {
		raise(SIGUSR1);
	} else if (where == MM_MALLOC_HOOK_WAIT_BUSY && in_own_busy_handler) {
		static const char msg[] =
		        "a signal handler's call waited for the busy word "
		        "its own thread held (slow entry between taking busy "
		        "and setting held): the process hung";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(2);
		_exit(1);
	}
}

/* Without membarrier (the driver sets MM_MALLOC_MEMBARRIER=0) every call
 * takes busy on the slow path; a signal handler that allocates, cutting
 * in after the take and before held is set, found held NULL and waited
 * for its own busy for ever. Its call must run, as nested in the slot
 * its thread holds. */
int signal_in_slow_entry(void)
{
	free(malloc(16));
	if (!on_signal(SIGUSR1, own_busy_handler))
		return 2;
	mm_malloc_test_hook = in_own_busy_window;
	atomic_store(&own_busy_armed, true);
	void *p = malloc(24);
	if (!p || !atomic_load(&own_busy_handler_done)) {
		fprintf(stderr, "the handler did not run (%p)", p);
		return 2;
	}
	free(p);
	for (int i = 0; i < 1000; i++)
		free(malloc(24));
	return 0;
}

/* ---- A signal to the forking thread while held is not its slots' ----- */

static atomic_bool fork_in_window, fork_handler_in_window;
static atomic_int fork_windows;

/* A handler that allocates: in a window, its calls would pass as nested
 * and run on the slot beside another thread's. */
static void fork_window_handler(int sig)
{
	(void)sig;
	if (atomic_load(&fork_in_window))
		atomic_store(&fork_handler_in_window, true);
	free(malloc(40));
}

/* The forking thread at each window sends itself SIGUSR1: a signal a
 * thread sends itself is delivered before the call returns, unless it
 * is blocked. */
static void in_fork_window(enum mm_malloc_hook_point where)
{
	if (where != MM_MALLOC_HOOK_FORK_HELD &&
	    where != MM_MALLOC_HOOK_FORK_RELEASED)
		return;
	atomic_fetch_add(&fork_windows, 1);
	atomic_store(&fork_in_window, true);
	pthread_kill(pthread_self(), SIGUSR1);
	atomic_store(&fork_in_window, false);
}

/* fork's prepare sets held (this thread's calls pass as nested) before
 * it takes the slots, and its parent side gives the slots back before it
 * clears held: a signal handler's call in either window ran on the
 * thread's slot without its busy word, beside the slot's other holder (a
 * review's program aborted on a double free in 3 runs of 5). The
 * thread's signals are blocked there: the handler runs once held is
 * true again (the slots all taken) or cleared. */
int signal_in_fork_windows(void)
{
	free(malloc(16));
	if (!on_signal(SIGUSR1, fork_window_handler))
		return 2;
	mm_malloc_test_hook = in_fork_window;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	mm_malloc_test_hook = NULL;
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
		return 2;
	if (atomic_load(&fork_windows) != 2) {
		fprintf(stderr, "%d fork windows reached, not 2",
		        atomic_load(&fork_windows));
		return 2;
	}
	if (atomic_load(&fork_handler_in_window)) {
		fprintf(stderr, "a signal handler ran while the forking "
		                "thread's calls passed as nested without "
		                "its slots");
		return 1;
	}
	return 0;
}

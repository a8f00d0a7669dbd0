/*
 * tests/real/malloc_hooks_waits.c: malloc-hooks-test's scenarios of the
 * waits of fork and of the background threads (malloc_hooks_test.h): a
 * fork beside a thread whose calls follow each other (on its own slot or,
 * past its exit, on the late slot), and the
 * background threads' start beside their check that they are alone,
 * a signal handler's call while its thread backs out of fork's way, and
 * errno across a wait's sleep that a signal cuts short.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"
#include "proc_read.h"

/* ---- fork beside a thread that takes its slot again at once ------------- */

static atomic_bool retaker_stop, retaker_gave_way, retake_measured;
static atomic_long retaker_calls; /* pairs done by the retaker */
static long retaken = -1;         /* pairs done while fork waited */
static _Thread_local bool forking, retaking;

/* The forking thread, waiting for the retaker's busy: lets the retaker
 * run until it either gives way to the fork (its next entry waits,
 * MM_MALLOC_HOOK_WAIT_FORK) or has done 100 more pairs, taking the slot
 * each time before fork could; then counts them, once. */
static void in_retake_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_WAIT_FORK && retaking)
		atomic_store(&retaker_gave_way, true);
	if (where != MM_MALLOC_HOOK_WAIT_BUSY || !forking ||
	    atomic_exchange(&retake_measured, true))
		return;
	long first = atomic_load(&retaker_calls);
	while (!atomic_load(&retaker_gave_way) &&
	       atomic_load(&retaker_calls) - first < 100)
		sched_yield();
	retaken = atomic_load(&retaker_calls) - first;
	atomic_store(&retaker_stop, true);
}

static void *retaker(void *arg)
{
	retaking = true;
	while (!atomic_load(&retaker_stop)) {
		free(malloc(48));
		atomic_fetch_add(&retaker_calls, 1);
	}
	return arg;
}

/* fork waits for a slot's holder once: a call that enters while a fork
 * is being prepared waits for it, so a thread whose calls follow each
 * other cannot keep taking its slot before fork does. Counts the
 * retaker's calls while fork waits for its slot: at most the one it was
 * in (two calls, a pair, which may end once). Forks until one found the
 * slot held (the hook ran), up to 1000. Without membarrier (the parent
 * sets MM_MALLOC_MEMBARRIER=0), so that every call holds busy: a fast
 * holder's next entry would find the flag before fork came to its slot,
 * and fork would never find busy held. */
static int forks_beside(void *(*start)(void *), atomic_bool *ready)
{
	mm_malloc_test_hook = in_retake_window;
	pthread_t t;
	if (pthread_create(&t, NULL, start, NULL) != 0)
		return 2;
	while (ready && !atomic_load(ready))
		sched_yield();
	forking = true;
	for (int i = 0; i < 1000 && !atomic_load(&retake_measured); i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		int st = -1;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0) {
			fprintf(stderr, "fork or its child failed (%#x)", st);
			return 2;
		}
	}
	forking = false;
	atomic_store(&retaker_stop, true);
	pthread_join(t, NULL);
	if (!atomic_load(&retake_measured)) {
		fprintf(stderr, "no fork of 1000 found the slot held");
		return 3;
	}
	if (retaken > 1) {
		fprintf(stderr,
		        "while fork waited for its slot, the retaker took it "
		        "again for %ld pairs of calls (at most 1: it must give "
		        "way)",
		        retaken);
		return 1;
	}
	return 0;
}

int fork_not_starved_by_retaker(void)
{
	free(malloc(16));
	return forks_beside(retaker, NULL);
}

/* The late slot's retaker: a thread past its exit (its slot given back,
 * slots.c "exit"), whose calls in a later key's destructor each take the
 * late slot. */
static pthread_key_t retake_key;
static atomic_bool late_retaking;

static void retake_at_exit(void *arg)
{
	atomic_store(&late_retaking, true);
	(void)retaker(arg);
}

static void *late_retaker(void *arg)
{
	free(malloc(16)); /* claims its slot, after the exit key was made */
	pthread_setspecific(retake_key, (void *)1);
	return arg;
}

/* The same for the late slot, which no thread owns: fork's flag is set in
 * it too, and a call past its thread's exit waits for the fork. */
int fork_not_starved_by_late_retaker(void)
{
	free(malloc(16)); /* the exit key first: its destructor runs first */
	if (pthread_key_create(&retake_key, retake_at_exit) != 0)
		return 2;
	/* Forks once it retakes: a fork before, while it still owned its
	 * slot, met its waits with retaking not yet set, and the hook
	 * waited for it for ever. */
	return forks_beside(late_retaker, &late_retaking);
}

/* ---- A signal handler's call while its thread backs out of fork's way --- */

static atomic_bool backout_seen, handler_over, handler_entered, backout_stop;
/* volatile: the compiler takes malloc for a function that reads none of
 * this program's variables, and dropped in_handler's store before it. */
static _Thread_local volatile bool backing_out, in_handler;

/* The backing-out thread, once: a signal handler's malloc and free. They
 * must enter (a fast entry, or a back-out of their own; then the slow
 * path, which waits for the fork), not pass as nested. */
static void in_backout_window(enum mm_malloc_hook_point where)
{
	if (in_handler && (where == MM_MALLOC_HOOK_FAST_HELD ||
	                   where == MM_MALLOC_HOOK_FAST_BACKOUT)) {
		atomic_store(&handler_entered, true);
	} else if (where == MM_MALLOC_HOOK_FAST_BACKOUT && backing_out &&
	           !atomic_load(&backout_seen)) {
		atomic_store(&backout_seen, true);
		in_handler = true;
		free(malloc(40));
		in_handler = false;
		atomic_store(&handler_over, true);
	}
}

static void *backer(void *arg)
{
	free(malloc(16)); /* claims its slot */
	backing_out = true;
	while (!atomic_load(&backout_seen) && !atomic_load(&backout_stop))
		free(malloc(16));
	return arg;
}

/*
 * A thread entering on the fast path while fork is being prepared backs
 * out (in = 0, held = NULL) and waits on the slow path. A signal
 * handler's call between those two stores passed as nested (held still
 * set) while it held nothing, and ran inside mm/ while fork held the
 * slot: a child could inherit the heap half-changed. The handler's call
 * must enter and take the slot (waiting for the fork if it still holds
 * it).
 */
int backout_call_waits_for_fork(void)
{
	int skip = fast_path_or_skip();
	if (skip)
		return skip;
	mm_malloc_test_hook = in_backout_window;
	pthread_t t;
	if (pthread_create(&t, NULL, backer, NULL) != 0)
		return 2;
	for (int i = 0; i < 20000 && !atomic_load(&handler_over); i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
			return 2;
	}
	atomic_store(&backout_stop, true);
	pthread_join(t, NULL);
	if (!atomic_load(&handler_over)) {
		fprintf(stderr, "no entry met a fork in 20000 forks");
		return 2;
	}
	if (!atomic_load(&handler_entered)) {
		fprintf(stderr,
		        "a call in the back-out window passed as nested: it "
		        "ran holding no slot, while fork held it");
		return 1;
	}
	return 0;
}

/* ---- The background threads' start beside their alone check ----------- */

static atomic_bool sweeper_read, scavenger_counted, sweeper_went_on;
static atomic_bool scenario_done;
static _Thread_local int alone_checks; /* this thread's, in the hook */

/* Which background thread this is, by its name (port_sync.c names them
 * "mm_" and the mm/ name); the hook may not allocate. */
static bool thread_named(const char *name)
{
	char comm[17] = "";
	prctl(PR_GET_NAME, comm);
	return strcmp(comm, name) == 0;
}

/* Holds the starter between the sweeper and the scavenger until the
 * sweeper has read the process's thread count (2: main and itself), and
 * the sweeper, before it reads its siblings' count, until the scavenger
 * has counted itself in. */
static void in_start_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_BG_BETWEEN) {
		while (!atomic_load(&sweeper_read))
			sched_yield();
	} else if (where == MM_MALLOC_HOOK_ALONE_COUNTED) {
		if (thread_named("mm_mheap_scav")) {
			atomic_store(&scavenger_counted, true);
		} else if (thread_named("mm_sweeper") && alone_checks++ == 0) {
			atomic_store(&sweeper_read, true);
			while (!atomic_load(&scavenger_counted))
				sched_yield();
		} else if (thread_named("mm_sweeper")) {
			atomic_store(&sweeper_went_on, true);
		}
	}
}

/* exit(0) from a background thread that took itself for the last:
 * this process's main thread had not returned. */
static void ended_early(void)
{
	static const char msg[] =
	        "the process ended (exit 0 from a background thread that "
	        "thought itself alone) while its main thread ran";
	if (!atomic_load(&scenario_done)) {
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(2);
		_exit(1);
	}
}

/* A background thread that counted the process's threads before its
 * sibling started, and the background threads after the sibling counted
 * itself in, found as many of each: it took itself and its sibling for
 * the only threads left, and ended the process with exit(0) under its
 * main thread (malloc-api-test's env_switches: status 0 and nothing
 * printed, once in about 6 runs of make test on a loaded machine). The
 * hooks hold each thread in that window; the sweeper must go on to its
 * next check, and the process must end by main's return. */
int bg_start_leaves_process_alive(void)
{
	atexit(ended_early);
	mm_malloc_test_hook = in_start_window;
	void *v[64];
	for (int i = 0; i < 64; i++)
		memset(v[i] = malloc(256 << 10), 1, 256 << 10);
	for (int i = 0; i < 64; i++)
		free(v[i]);
	free(malloc(100)); /* past the threads' threshold: they start */
	if (!atomic_load(&sweeper_read)) {
		fprintf(stderr, "the background threads did not start");
		return 3;
	}
	while (!atomic_load(&sweeper_went_on))
		sched_yield();
	atomic_store(&scenario_done, true);
	return 0;
}

/* ---- A signal handler's allocation inside a call, threads wanted ------- */

static atomic_bool bg_armed;
static atomic_int threads_seen = -1;

static void counting_handler(int sig)
{
	(void)sig;
	free(malloc(40));
	atomic_store(&threads_seen, proc_thread_count());
}

static void in_wanted_window(enum mm_malloc_hook_point where)
{
	if ((where == MM_MALLOC_HOOK_FAST_HELD ||
	     where == MM_MALLOC_HOOK_SLOW_HELD) &&
	    atomic_exchange(&bg_armed, false))
		raise(SIGUSR1);
}

/*
 * The background threads start on an allocation's slow path, outside any
 * API call (slots.c, "background"): a signal handler's allocation inside
 * a call (nested in it) must not start them there, where pthread_create
 * would allocate in the interrupted call and the threads' start hold
 * ctl_lock inside it. The heap grows past the threads' threshold and a
 * fork stops them (they are wanted again); a signal in a free's fast
 * call then allocates.
 */
int bg_not_started_inside_call(void)
{
	if (!on_signal(SIGUSR1, counting_handler))
		return 2;
	void *v[64];
	for (int i = 0; i < 64; i++)
		memset(v[i] = malloc(256 << 10), 1, 256 << 10);
	for (int i = 0; i < 64; i++)
		free(v[i]);
	void *p = malloc(100); /* past the threshold: the threads start */
	pid_t pid = fork();    /* stops them */
	if (pid == 0)
		_exit(0);
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0 ||
	    proc_thread_count() != 1) {
		fprintf(stderr, "fork failed, or left %d threads",
		        proc_thread_count());
		return 2;
	}
	mm_malloc_test_hook = in_wanted_window;
	atomic_store(&bg_armed, true);
	free(p); /* the call the signal interrupts */
	int seen = atomic_load(&threads_seen);
	if (seen != 1) {
		fprintf(stderr,
		        "%d threads after a signal handler's allocation inside "
		        "a call: it started the background threads there",
		        seen);
		return 1;
	}
	return 0;
}

/* ---- errno across a wait that a signal cut short ----------------------- */

static atomic_bool sleeper_ready, sleeper_go;
static atomic_uint sleeper_turns;  /* its turns of the wait for fork */
static atomic_int sleeper_signals; /* signals its handler took */
static _Thread_local bool sleeping;
static pthread_t sleeper_thread;

static void sleeper_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&sleeper_signals, 1);
}

/* The waiter counts its turns of the wait for fork. The forking thread,
 * holding every slot, lets it call, and once its turns are the 1 ms
 * sleeps (mm_malloc_backoff, from turn 138) signals it 10 times, 0.7 ms
 * apart: most land in a sleep, which fails with EINTR. */
static void in_sleep_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_WAIT_FORK && sleeping) {
		atomic_fetch_add(&sleeper_turns, 1);
	} else if (where == MM_MALLOC_HOOK_FORK_TAKEN && !sleeping) {
		atomic_store(&sleeper_go, true);
		while (atomic_load(&sleeper_turns) < 140)
			sched_yield();
		for (int i = 0; i < 10; i++) {
			pthread_kill(sleeper_thread, SIGUSR2);
			usleep(700);
		}
	}
}

static void *sleeper_main(void *arg)
{
	(void)arg;
	void *p = malloc(16); /* claims its slot */
	sleeping = true;
	atomic_store(&sleeper_ready, true);
	while (!atomic_load(&sleeper_go))
		sched_yield();
	errno = 4242;
	free(p); /* waits for the fork, signalled in its sleeps */
	return (void *)(intptr_t)errno;
}

/*
 * free keeps errno (malloc.c), also when it waited: a wait's sleep that a
 * signal cuts short fails with EINTR, which the wait must not leave in
 * errno (mm_malloc_backoff saves and restores it). A free waits for a
 * fork being prepared, and is signalled in its sleeps.
 */
int wait_keeps_errno(void)
{
	if (!on_signal(SIGUSR2, sleeper_handler))
		return 2;
	free(malloc(16));
	if (pthread_create(&sleeper_thread, NULL, sleeper_main, NULL) != 0)
		return 2;
	/* Its slot claimed first: a claim waits for the fork too. */
	while (!atomic_load(&sleeper_ready))
		sched_yield();
	mm_malloc_test_hook = in_sleep_window;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	int st = -1;
	void *r = NULL;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0 ||
	    pthread_join(sleeper_thread, &r) != 0 ||
	    atomic_load(&sleeper_signals) == 0) {
		fprintf(stderr, "fork failed, or the waiter took no signal");
		return 2;
	}
	if ((intptr_t)r != 4242) {
		fprintf(stderr,
		        "errno %d after a free that waited for fork, its "
		        "sleeps cut short by %d signals: the wait set it "
		        "(EINTR is %d)",
		        (int)(intptr_t)r, atomic_load(&sleeper_signals), EINTR);
		return 1;
	}
	return 0;
}

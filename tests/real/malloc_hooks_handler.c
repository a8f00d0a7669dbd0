/*
 * tests/real/malloc_hooks_handler.c: malloc-hooks-test's scenarios of a
 * signal handler's call inside a call of its own thread that holds its
 * slot alone (malloc_hooks_nested.c has those beside a sharer): the
 * handler's call must run in a slot of its own, never in the caches the
 * interrupted call is in the middle of (API test signal_handler_allocs
 * shows the object given twice that made); it must never wait for the
 * interrupted call: a lock that call holds or is taking is reported, the
 * late slot is not held by a visit meanwhile, a growth under way makes
 * it fail (MM_ATOMIC), and a thread already on the late slot (past its
 * exit) has its handler's call reported.
 */
#define _GNU_SOURCE
#include <malloc.h>
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

static atomic_bool armed, in_handler, lent, handler_ran;
static enum mm_malloc_hook_point raise_at;
static _Thread_local volatile bool is_main;
static size_t handler_size = 40; /* what the handler allocates */

static void in_own_call(enum mm_malloc_hook_point where)
{
	if (!is_main)
		return;
	if (atomic_load(&in_handler)) {
		if (where == MM_MALLOC_HOOK_LENT)
			atomic_store(&lent, true);
	} else if (where == raise_at && atomic_exchange(&armed, false)) {
		raise(SIGUSR1);
	}
}

static void alloc_handler(int sig)
{
	(void)sig;
	atomic_store(&in_handler, true);
	free(malloc(handler_size));
	atomic_store(&in_handler, false);
	atomic_store(&handler_ran, true);
}

/* A signal at where in this thread's call of malloc(40); the handler's
 * call must be lent the late slot. */
static int handler_call_at(enum mm_malloc_hook_point where)
{
	if (!on_signal(SIGUSR1, alloc_handler))
		return 2;
	is_main = true;
	raise_at = where;
	mm_malloc_test_hook = in_own_call;
	atomic_store(&armed, true);
	free(malloc(40));
	mm_malloc_test_hook = NULL;
	if (!atomic_load(&handler_ran)) {
		fprintf(stderr, "the signal was not raised in the call");
		return 2;
	}
	if (!atomic_load(&lent)) {
		fprintf(stderr,
		        "a signal handler's call inside its thread's own "
		        "call ran in the slot that call holds (passed as "
		        "nested), not the late slot");
		return 1;
	}
	/* The thread's calls after it are its own again, not MM_ATOMIC
	 * (which refuses more than MHEAP_ATOMIC_MAX_PAGES, 64 pages). */
	void *big = malloc((size_t)1 << 20);
	if (!big) {
		fprintf(stderr, "a 1 MiB malloc after the handler's call "
		                "failed: the call's MM_ATOMIC outlived it");
		return 1;
	}
	free(big);
	return 0;
}

/* The thread alone on its slot, on the fast path: until this version the
 * handler's call passed as nested (this failed). */
int handler_call_in_fast_hold(void)
{
	int skip = fast_path_or_skip();
	if (skip)
		return skip;
	return handler_call_at(MM_MALLOC_HOOK_FAST_HELD);
}

/* The same on the slow path (MM_MALLOC_MEMBARRIER=0: exchange mode). */
int handler_call_in_slow_hold(void)
{
	free(malloc(16)); /* the slot claimed: the next call's entry */
	return handler_call_at(MM_MALLOC_HOOK_SLOW_HELD);
}

static void lock_window_at(enum mm_malloc_hook_point where)
{
	is_main = true;
	free(malloc(16));
	if (!on_signal(SIGUSR1, alloc_handler))
		_exit(2);
	raise_at = where;
	handler_size = 3000;
	mm_malloc_test_hook = in_own_call;
	atomic_store(&armed, true);
	/* A class not used yet: its refill takes the class's locks; the
	 * handler's malloc of the same class, its late slot's cache
	 * empty too, takes the same first lock. */
	free(malloc(3000));
}

static void lock_window_child(void)
{
	lock_window_at(MM_MALLOC_HOOK_LOCK_TAKEN);
}

static void unlock_window_child(void)
{
	lock_window_at(MM_MALLOC_HOOK_LOCK_RELEASED);
}

/* Runs fn in a child, its stderr into out; returns its wait status. A
 * hung call has every signal blocked (the late slot's): the child is
 * killed after 90 s, a hang guard only (what passes takes no time). */
static int run_child(void (*fn)(void), char *out, size_t outsz)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		fn();
		_exit(0);
	}
	close(fd[1]);
	int st = -1;
	for (int i = 0; waitpid(pid, &st, WNOHANG) == 0; i++) {
		if (i == 9000) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			fprintf(stderr, "the child hung: ");
			break;
		}
		usleep(10000);
	}
	read_to_end(fd[0], out, outsz);
	return st;
}

/* Runs child: it must abort with the report of a handler's call. */
static int lock_window_reported(void (*child)(void))
{
	char out[512];
	int st = run_child(child, out, sizeof(out));
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
	    strstr(out, "by a signal handler that interrupted"))
		return 0;
	fprintf(stderr, "status %#x (want SIGABRT with a report), stderr: %s",
	        st, out);
	return 1;
}

/*
 * A signal between an mm lock's take and its note in the thread's held
 * mask (mm_lock_acquire), whose handler allocates the same class: the
 * lock's rank check must see the lock as held and report it (abort with
 * "by a signal handler that interrupted"). Until this version the mask
 * was set after the take, and the handler's call waited for its own
 * thread's lock for ever, every signal blocked (this child was killed).
 */
int handler_call_in_lock_window(void)
{
	return lock_window_reported(lock_window_child);
}

/*
 * The same at the other end, the lock's word given back and its bit not
 * cleared yet: reported too. Until the bit is cleared after the word a
 * signal between the two found the lock free here, and one a moment
 * earlier (bit cleared, word still held) waited for its own thread's
 * lock for ever, every signal blocked. With the old order this child
 * exited 0.
 */
int handler_call_in_unlock_window(void)
{
	return lock_window_reported(unlock_window_child);
}

/* The visit takes the slots ever a thread's but its own, the late slot
 * (MM_MAX_CPUS - 1) last: a signal at each (the handler's call takes the
 * late slot, so at the last it must wait for the visit to give it back). */
static void in_visit(enum mm_malloc_hook_point where)
{
	if (is_main && where == MM_MALLOC_HOOK_VISIT_HELD)
		raise(SIGUSR1);
}

static atomic_int late_visits;

/* A slot visited: in a one-thread process, none but the late slot
 * (malloc_hooks_visit.c's trim_alone_visits_no_slot). */
static void count_late_visit(enum mm_malloc_hook_point where)
{
	if (is_main && where == MM_MALLOC_HOOK_VISIT_HELD)
		atomic_fetch_add(&late_visits, 1);
}

/*
 * A one-thread process whose signal handler allocated in its thread's
 * call (on the late slot lent to it, whose cache then holds the object):
 * a malloc_trim visits the late slot (it was used: enter.c marks it
 * before its take). Without that mark the visit passed it by, its cache
 * kept from every trim and the sweeper's visits.
 */
int trim_visits_a_late_slot_a_handler_used(void)
{
	free(malloc(16)); /* the slot claimed: the next call's slow entry */
	int r = handler_call_at(MM_MALLOC_HOOK_SLOW_HELD);
	if (r)
		return r;
	mm_malloc_test_hook = count_late_visit;
	malloc_trim(0);
	mm_malloc_test_hook = NULL;
	if (atomic_load(&late_visits) != 1) {
		fprintf(stderr,
		        "malloc_trim after a handler's call on the late slot "
		        "visited it %d times (1 expected)",
		        atomic_load(&late_visits));
		return 1;
	}
	return 0;
}

static pthread_key_t past_exit_key;

/* A key's destructor after the library's: an allocation on the late
 * slot, which a visit then takes too. */
static void past_exit_alloc(void *arg)
{
	(void)arg;
	free(malloc(24));
}

static void *past_exit_thread(void *arg)
{
	(void)arg;
	free(malloc(16));
	pthread_setspecific(past_exit_key, (void *)1);
	return NULL;
}

static void visit_child(void)
{
	is_main = true;
	free(malloc(16));
	if (!on_signal(SIGUSR1, alloc_handler) ||
	    pthread_key_create(&past_exit_key, past_exit_alloc) != 0)
		_exit(2);
	pthread_t t;
	if (pthread_create(&t, NULL, past_exit_thread, NULL) != 0)
		_exit(2);
	pthread_join(t, NULL);
	mm_malloc_test_hook = in_visit;
	malloc_trim(0);
	mm_malloc_test_hook = NULL;
	if (!atomic_load(&handler_ran))
		_exit(3);
}

/*
 * A signal while a malloc_trim's visit (visit.c) holds the late slot,
 * whose handler allocates: its call takes the late slot, so the signal
 * must wait for the visit to give it back. Until this version it did
 * not: the handler's call waited for its own thread's hold of the late
 * slot for ever, every signal blocked (this child was killed). The call
 * may then be reported (the trim's pin: it may not wait under it),
 * which passes too.
 */
int handler_call_in_visit(void)
{
	char out[512];
	int st = run_child(visit_child, out, sizeof(out));
	if ((WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
	    (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
	     strstr(out, "by a signal handler that interrupted")))
		return 0;
	fprintf(stderr, "status %#x, stderr: %s", st, out);
	return 1;
}

static pthread_key_t late_key;

/* A key's destructor after the library's (a later key): the thread runs
 * on the late slot now; a signal in its free's slow hold. */
static void late_destructor(void *arg)
{
	(void)arg;
	is_main = true;
	raise_at = MM_MALLOC_HOOK_SLOW_HELD;
	atomic_store(&armed, true);
	free(malloc(40));
}

static void *late_thread(void *arg)
{
	(void)arg;
	free(malloc(16)); /* a slot claimed, the library's key set */
	pthread_setspecific(late_key, (void *)1);
	return NULL;
}

static void late_child(void)
{
	if (!on_signal(SIGUSR1, alloc_handler) ||
	    pthread_key_create(&late_key, late_destructor) != 0)
		_exit(2);
	free(malloc(16)); /* the heap and the library's key first */
	mm_malloc_test_hook = in_own_call;
	pthread_t t;
	if (pthread_create(&t, NULL, late_thread, NULL) != 0)
		_exit(2);
	pthread_join(t, NULL);
	_exit(atomic_load(&handler_ran) ? 4 : 3);
}

/*
 * A signal handler's call that interrupts its thread's call on the late
 * slot (the thread past its exit): there is no other slot to lend it, so
 * it is reported ("past its exit"), where until this version it ran in
 * the interrupted call's caches.
 */
int handler_call_past_exit(void)
{
	char out[512];
	int st = run_child(late_child, out, sizeof(out));
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
	    strstr(out, "the thread is past its exit"))
		return 0;
	fprintf(stderr, "status %#x (want SIGABRT with a report), stderr: %s",
	        st, out);
	return 1;
}

/* Large objects a growth handler allocates: at most 256 KiB (the page
 * heap's MHEAP_ATOMIC_MAX_PAGES), up to 2 GiB in all. */
enum { GROWTH_OBJ = 128 << 10, GROWTH_MAX = 1 << 14 };
static void *growth_objs[GROWTH_MAX];
static atomic_int growth_got;

/* Allocates until the heap, which its thread is growing, has no more. */
static void growth_handler(int sig)
{
	(void)sig;
	atomic_store(&in_handler, true);
	int n = 0;
	while (n < GROWTH_MAX && (growth_objs[n] = malloc(GROWTH_OBJ)))
		n++;
	for (int i = 0; i < n; i++)
		free(growth_objs[i]);
	atomic_store(&growth_got, n);
	atomic_store(&in_handler, false);
	atomic_store(&handler_ran, true);
}

static void growth_child(void)
{
	is_main = true;
	free(malloc(16));
	if (!on_signal(SIGUSR1, growth_handler))
		_exit(2);
	raise_at = MM_MALLOC_HOOK_GROWING;
	mm_malloc_test_hook = in_own_call;
	atomic_store(&armed, true);
	/* Large objects until one grows the heap (the hook's raise). */
	for (int i = 0; i < 64 && !atomic_load(&handler_ran); i++)
		if (!malloc(64 << 20))
			_exit(3);
	if (!atomic_load(&handler_ran))
		_exit(4);
	/* The handler must have met the heap's end, not its own limit. */
	if (atomic_load(&growth_got) == GROWTH_MAX)
		_exit(5);
}

/*
 * A signal while its thread grows the heap (the page heap's growing flag
 * its own), whose handler allocates until the heap has no more: a call
 * that needs a growth then must not wait for the one under way, its own
 * thread's. Until this version it waited a second at a time for ever,
 * every signal blocked (this child was killed); now a handler's call
 * that cut into its thread's is atomic (MM_ATOMIC), as an interrupt
 * handler's allocation in the kernel, and gets NULL instead.
 */
int handler_call_in_growth(void)
{
	char out[512];
	int st = run_child(growth_child, out, sizeof(out));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(stderr, "status %#x, stderr: %s", st, out);
	return 1;
}

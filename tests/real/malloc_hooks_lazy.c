/*
 * tests/real/malloc_hooks_lazy.c: malloc-hooks-test's scenarios of a
 * slot's cache set up at its first use (mm/spanheap_init.c,
 * spanheap_cache_set_up) beside what else reads or takes a slot: a
 * thread stopped inside its set-up (the hook MM_MALLOC_HOOK_CACHE_SETTING_UP:
 * every field written, the fast paths' table not yet) while a signal
 * handler's call allocates, reads the statistics and trims, while another
 * thread trims (its visit must pass the slot by) and reads the
 * statistics, or while a handler forks; the late slot's own first use, in
 * a handler's call, beside another thread's visit; and the checkers
 * (mm_malloc_test_check: spanheap_check requires a cache not set up to be
 * all zero) after each, in a fork child whose parent's threads left their
 * slots' caches, and after slots were given back and claimed again.
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

extern void mm_malloc_test_check(void) __attribute__((weak));

/* volatile: glibc declares malloc and malloc_trim leaf functions (they
 * call back into no function of this file), and the compiler may drop a
 * store of a flag the hook reads (malloc_hooks_visit.c). */
static _Thread_local volatile bool is_setter, in_handler, is_visitor;
static atomic_bool armed, lent, handler_ran;
/* Set-ups seen: of the setter's slot, of the late one (in the handler). */
static atomic_int own_set_ups, late_set_ups, visits_passed;

/* Objects of a few classes allocated, written and freed; false if an
 * allocation failed. */
static bool churn(void)
{
	static const size_t sizes[] = {16, 40, 200, 3000, 20000};
	void *p[5];
	for (int i = 0; i < 5; i++)
		if (!(p[i] = malloc(sizes[i])))
			return false;
	for (int i = 0; i < 5; i++)
		memset(p[i], 0x5a, sizes[i]);
	for (int i = 4; i >= 0; i--)
		free(p[i]);
	return true;
}

/* ---- A signal handler's calls inside a set-up ---------------------------- */

static void handler_calls(int sig)
{
	(void)sig;
	in_handler = true;
	bool ok = churn();
	struct mallinfo2 mi = mallinfo2();
	malloc_trim(0);
	in_handler = false;
	atomic_store(&handler_ran, ok && mi.uordblks > 0);
}

static void in_set_up(enum mm_malloc_hook_point where)
{
	if (!is_setter)
		return;
	if (in_handler) {
		if (where == MM_MALLOC_HOOK_LENT)
			atomic_store(&lent, true);
		if (where == MM_MALLOC_HOOK_CACHE_SETTING_UP)
			atomic_fetch_add(&late_set_ups, 1);
	} else if (where == MM_MALLOC_HOOK_CACHE_SETTING_UP) {
		atomic_fetch_add(&own_set_ups, 1);
		if (atomic_exchange(&armed, false))
			raise(SIGUSR1);
	}
}

static void *set_up_with_signal(void *arg)
{
	(void)mallinfo2(); /* claims the slot; sets nothing of its cache up */
	is_setter = true;
	atomic_store(&armed, true);
	bool ok = churn();
	is_setter = false;
	return ok ? arg : NULL;
}

/*
 * A signal handler's calls (allocations and frees of several classes,
 * mallinfo2, malloc_trim) made while its thread's first call sets its
 * slot's cache up: they must run on the late slot, set up by them (its
 * first use), and leave the interrupted set-up to finish; then the checkers
 * find every cache set up or all zero.
 */
int signal_in_cache_set_up(void)
{
	if (!mm_malloc_test_check)
		return 2;
	if (!on_signal(SIGUSR1, handler_calls))
		return 2;
	free(malloc(16));
	mm_malloc_test_hook = in_set_up;
	pthread_t t;
	void *ok = NULL;
	if (pthread_create(&t, NULL, set_up_with_signal, &armed) != 0 ||
	    pthread_join(t, &ok) != 0)
		return 2;
	mm_malloc_test_hook = NULL;
	if (atomic_load(&own_set_ups) != 1 || !atomic_load(&handler_ran)) {
		fprintf(stderr,
		        "the thread's set-ups: %d (want 1), the handler "
		        "ran: %d",
		        atomic_load(&own_set_ups), atomic_load(&handler_ran));
		return 2;
	}
	if (!ok || !atomic_load(&lent) || atomic_load(&late_set_ups) != 1) {
		fprintf(stderr,
		        "thread's allocations %s; the handler's call lent the "
		        "late slot: %d; set-ups of it: %d (want 1)",
		        ok ? "made" : "failed", atomic_load(&lent),
		        atomic_load(&late_set_ups));
		return 1;
	}
	malloc_trim(0);
	mm_malloc_test_check();
	return churn() ? 0 : 1;
}

/* ---- Another thread's visit and statistics beside a set-up -------------- */

static atomic_bool setter_stopped, setter_go, setter_done, all_done;

static void stop_in_set_up(enum mm_malloc_hook_point where)
{
	if (is_visitor && where == MM_MALLOC_HOOK_VISIT_PASSED)
		atomic_fetch_add(&visits_passed, 1);
	if (!is_setter || where != MM_MALLOC_HOOK_CACHE_SETTING_UP)
		return;
	atomic_fetch_add(in_handler ? &late_set_ups : &own_set_ups, 1);
	if (!atomic_exchange(&armed, false))
		return;
	atomic_store(&setter_stopped, true);
	while (!atomic_load(&setter_go))
		sched_yield();
}

/* Its thread's first allocation sets its slot's cache up, stopped there
 * (stop_in_set_up); then it stays outside any call until all_done. */
static void *stopped_setter(void *arg)
{
	(void)mallinfo2(); /* claims the slot; sets nothing of its cache up */
	is_setter = true;
	atomic_store(&armed, true);
	bool ok = churn();
	is_setter = false;
	atomic_store(&setter_done, true);
	while (!atomic_load(&all_done))
		sched_yield();
	return ok ? arg : NULL;
}

/* The statistics and a trim while the setter is stopped: the trim's
 * visit must pass its slot by (held by the call), never flush it half
 * set up; false if it did not (saying so). */
static bool visit_beside(int want_passed)
{
	while (!atomic_load(&setter_stopped))
		sched_yield();
	is_visitor = true;
	struct mallinfo2 mi = mallinfo2();
	malloc_trim(0);
	is_visitor = false;
	atomic_store(&setter_go, true);
	int passed = atomic_load(&visits_passed);
	if (passed >= want_passed && mi.uordblks > 0)
		return true;
	fprintf(stderr,
	        "the trim's visit passed %d slots by (want at least %d: "
	        "those held inside a set-up); mallinfo2's uordblks %zu",
	        passed, want_passed, mi.uordblks);
	return false;
}

/* After the set-up: the setter outside any call, a trim visits its slot
 * now, the checkers run, the setter ends. */
static int after_set_up(pthread_t t)
{
	while (!atomic_load(&setter_done))
		sched_yield();
	malloc_trim(0);
	mm_malloc_test_check();
	atomic_store(&all_done, true);
	void *ok = NULL;
	pthread_join(t, &ok);
	if (!ok) {
		fprintf(stderr, "the setter's allocations failed");
		return 1;
	}
	return churn() ? 0 : 1;
}

/*
 * A thread stopped inside its slot's set-up (held on the fast path, or on
 * busy with MM_MALLOC_MEMBARRIER=0) while another reads the statistics and
 * trims: the trim's visit must pass the slot by within its bound, and the
 * cache, once set up, checks clean and is flushed by the next trim.
 */
int visit_beside_cache_set_up(void)
{
	if (!mm_malloc_test_check)
		return 2;
	free(malloc(16));
	mm_malloc_test_hook = stop_in_set_up;
	pthread_t t;
	if (pthread_create(&t, NULL, stopped_setter, &all_done) != 0)
		return 2;
	bool ok = visit_beside(1);
	int st = after_set_up(t);
	mm_malloc_test_hook = NULL;
	if (atomic_load(&own_set_ups) != 1) {
		fprintf(stderr, "the setter's set-ups: %d (want 1)",
		        atomic_load(&own_set_ups));
		return 2;
	}
	return ok ? st : 1;
}

/* ---- The late slot's first use, in a handler's call, beside a visit ------ */

static void handler_sets_late_up(int sig)
{
	(void)sig;
	in_handler = true;
	atomic_store(&armed, true); /* stop in the late slot's set-up */
	bool ok = churn();
	in_handler = false;
	atomic_store(&handler_ran, ok);
}

static atomic_bool raised;

static void raise_in_call(enum mm_malloc_hook_point where)
{
	if (is_setter && !in_handler &&
	    (where == MM_MALLOC_HOOK_FAST_HELD ||
	     where == MM_MALLOC_HOOK_SLOW_HELD) &&
	    !atomic_exchange(&raised, true)) {
		raise(SIGUSR1);
		return;
	}
	stop_in_set_up(where);
}

static void *late_setter(void *arg)
{
	free(malloc(16)); /* its slot's cache set up */
	if (!on_signal(SIGUSR1, handler_sets_late_up))
		return NULL;
	in_handler = false;
	is_setter = true;
	bool ok = churn(); /* the signal in its first call's hold */
	is_setter = false;
	atomic_store(&setter_done, true);
	while (!atomic_load(&all_done))
		sched_yield();
	return ok ? arg : NULL;
}

/*
 * A signal handler's call, in a call of its thread, makes the late slot's
 * first use: stopped inside that set-up, the late slot and the thread's
 * own are both held, and another thread's trim must pass both by; then
 * the late slot's cache checks clean and a trim visits it.
 */
int late_set_up_beside_visit(void)
{
	if (!mm_malloc_test_check)
		return 2;
	free(malloc(16));
	mm_malloc_test_hook = raise_in_call;
	pthread_t t;
	if (pthread_create(&t, NULL, late_setter, &all_done) != 0)
		return 2;
	bool ok = visit_beside(2);
	int st = after_set_up(t);
	mm_malloc_test_hook = NULL;
	if (!atomic_load(&handler_ran) || atomic_load(&late_set_ups) != 1) {
		fprintf(stderr,
		        "the handler ran: %d; late slot set-ups: %d "
		        "(want 1)",
		        atomic_load(&handler_ran), atomic_load(&late_set_ups));
		return 2;
	}
	return ok ? st : 1;
}

/* ---- A fork from a handler inside a set-up ------------------------------ */

static volatile pid_t forked = -1;

static void fork_handler(int sig)
{
	(void)sig;
	forked = fork();
}

static void raise_in_set_up(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_CACHE_SETTING_UP) {
		atomic_fetch_add(&own_set_ups, 1);
		if (atomic_exchange(&armed, false))
			raise(SIGUSR1);
	}
}

/*
 * A single-threaded process (MM_MALLOC_BACKGROUND=0) whose first
 * allocation's set-up is interrupted by a handler that forks: the fork's
 * handlers pass (the thread is inside a call), and the child, its only
 * thread returning from the handler, finishes the set-up and the call as
 * the parent does; there the checkers must find the cache set up, the
 * rest all zero, and the heap usable.
 */
int fork_in_cache_set_up(void)
{
	if (!mm_malloc_test_check)
		return 2;
	if (!on_signal(SIGUSR1, fork_handler))
		return 2;
	mm_malloc_test_hook = raise_in_set_up;
	atomic_store(&armed, true);
	void *p = malloc(16); /* this process's first allocation */
	mm_malloc_test_hook = NULL;
	if (forked == 0) {
		free(p);
		mm_malloc_test_check();
		_exit(churn() && atomic_load(&own_set_ups) == 1 ? 0 : 3);
	}
	if (forked < 0 || atomic_load(&own_set_ups) != 1) {
		fprintf(stderr,
		        "the first allocation's set-ups: %d (want 1; "
		        "an allocation before the scenario's?), fork: %d",
		        atomic_load(&own_set_ups), (int)forked);
		return 2;
	}
	free(p);
	int st = -1;
	waitpid(forked, &st, 0);
	mm_malloc_test_check();
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return churn() ? 0 : 1;
	fprintf(stderr, "the child that forked inside the set-up: status %#x",
	        st);
	return 1;
}

/* ---- The checkers after slots changed hands ------------------------------ */

static pthread_mutex_t park_mutex = PTHREAD_MUTEX_INITIALIZER;
static atomic_int parked_threads;

/* Uses its slot (objects left in its magazines), then parks outside any
 * call until park_mutex is unlocked, or (arg NULL) exits at once, its
 * slot given back with its cache set up. */
static void *slot_user(void *arg)
{
	void *keep[64];
	for (int i = 0; i < 64; i++)
		keep[i] = malloc(16 + (size_t)i * 24);
	for (int i = 0; i < 64; i += 2)
		free(keep[i]);
	if (arg) {
		atomic_fetch_add(&parked_threads, 1);
		pthread_mutex_lock(&park_mutex);
		pthread_mutex_unlock(&park_mutex);
	}
	for (int i = 1; i < 64; i += 2)
		free(keep[i]);
	return NULL;
}

/* n threads of slot_user, joined if they exit; false if one did not
 * start. */
static bool slot_users(int n, bool park, pthread_t *t)
{
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], NULL, slot_user, park ? t : NULL))
			return false;
	if (!park)
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
	return true;
}

/*
 * Slots used by threads that exited (given back, caches set up and
 * flushed), claimed again by new threads, and used by threads parked
 * outside any call: the checkers must pass. Then a fork, whose child
 * finds every other thread's slot free: there the checkers must pass, and
 * again once new threads claimed those slots (their caches as the
 * parent's threads left them), trimmed. Run in poison mode too.
 */
int check_after_slots_change_hands(void)
{
	if (!mm_malloc_test_check)
		return 2;
	pthread_t gone[8], parked[4];
	pthread_mutex_lock(&park_mutex);
	if (!slot_users(8, false, gone) || !slot_users(8, false, gone) ||
	    !slot_users(4, true, parked))
		return 2;
	while (atomic_load(&parked_threads) < 4)
		sched_yield();
	mm_malloc_test_check();
	pid_t pid = fork();
	if (pid == 0) {
		mm_malloc_test_check();
		bool ok = slot_users(8, false, gone);
		malloc_trim(0);
		mm_malloc_test_check();
		_exit(ok && churn() ? 0 : 3);
	}
	pthread_mutex_unlock(&park_mutex);
	for (int i = 0; i < 4; i++)
		pthread_join(parked[i], NULL);
	int st = -1;
	if (pid > 0)
		waitpid(pid, &st, 0);
	malloc_trim(0);
	mm_malloc_test_check();
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(stderr, "the fork child: status %#x", st);
	return 1;
}

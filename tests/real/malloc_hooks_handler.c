/*
 * tests/real/malloc_hooks_handler.c: malloc-hooks-test's scenarios of a
 * signal handler's call inside a call of its own thread that holds its
 * slot alone (malloc_hooks_nested.c has those beside a sharer): the
 * handler's call must run in a slot of its own, never in the caches the
 * interrupted call is in the middle of (API test signal_handler_allocs
 * shows the object given twice that made).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

static atomic_bool armed, in_handler, lent, handler_ran;
static enum mm_malloc_hook_point raise_at;
static _Thread_local volatile bool is_main;

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
	free(malloc(40));
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

/*
 * tests/real/malloc_hooks_test.c: the windows of the hosted malloc's
 * thread slots (malloc/slots.c) that no test hits by chance, run under the
 * test variant libmm_malloc_hooks.so (tests/real/run-quick), whose hooks
 * (malloc/malloc_testing.h) stop a thread at a named point while this
 * program runs another through the window.
 *
 * A hook at the heap's set-up fires once per process, at its first
 * allocation, so each test runs as a scenario in a fresh process (this
 * program again, with the scenario's name as argv[1]) that sets the hook
 * before it allocates. The parent prints one line a test ("ok name" /
 * "not ok name: why", why being the scenario's stderr) and last
 * "N passed, N failed", as malloc_api_test.c does.
 *
 * This file holds the driver and the scenarios of a thread's slot (the
 * heap's set-up window is malloc_hooks_signals.c's); the other
 * malloc_hooks_*.c files theirs, each file a topic (malloc_hooks_test.h
 * lists them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

/* ---- The hooks every scenario below shares ------------------------------ */

/* Which part this thread plays when a hook fires in it. */
static _Thread_local enum {
	ROLE_NONE,
	ROLE_HOLDER,    /* stays inside its next fast entry until let go */
	ROLE_PAST_EXIT, /* its slot given back: must never enter fast */
} role;
static atomic_bool holder_inside, holder_let_go, taker_waited;
static atomic_int past_exit_fast; /* fast entries by a ROLE_PAST_EXIT */
static atomic_int both_inside;    /* ... while the holder was inside */

static void in_slot_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_WAIT_IN && atomic_load(&holder_inside))
		atomic_store(&taker_waited, true);
	if (where != MM_MALLOC_HOOK_FAST_HELD)
		return;
	if (role == ROLE_PAST_EXIT) {
		atomic_fetch_add(&past_exit_fast, 1);
		if (atomic_load(&holder_inside))
			atomic_fetch_add(&both_inside, 1);
	} else if (role == ROLE_HOLDER) {
		role = ROLE_NONE; /* once */
		atomic_store(&holder_inside, true);
		while (!atomic_load(&holder_let_go) &&
		       !atomic_load(&taker_waited))
			sched_yield();
		atomic_store(&holder_inside, false);
	}
}

/* 77: the scenario does not apply (no fast path without membarrier). */
static int need_fast_path(void)
{
	int skip = fast_path_or_skip();
	if (skip)
		return skip;
	mm_malloc_test_hook = in_slot_window;
	return 0;
}

/* ---- fork while a thread is inside its fast path ------------------------ */

static atomic_bool holder_claimed;

static void *fast_holder(void *arg)
{
	free(malloc(16)); /* claims its slot (slow path) */
	atomic_store(&holder_claimed, true);
	role = ROLE_HOLDER;
	free(malloc(32)); /* the fast entry the hook holds */
	return arg;
}

/* fork takes every slot: it must wait for a thread inside its fast path
 * (slots.c, "fork": busy, then in == 0), so the process is never copied
 * with that thread inside mm/. The holder stays inside until fork has
 * waited for it (the hook saw the wait) or until fork has returned in
 * the parent, which it must not do first. */
static int fork_waits_for_fast_holder(void)
{
	int st = need_fast_path();
	if (st)
		return st;
	pthread_t t;
	if (pthread_create(&t, NULL, fast_holder, NULL) != 0)
		return 2;
	while (!atomic_load(&holder_inside))
		sched_yield();
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	bool early = atomic_load(&holder_inside);
	atomic_store(&holder_let_go, true);
	pthread_join(t, NULL);
	return fork_verdict("fork", pid, early, atomic_load(&taker_waited),
	                    "a thread was inside its fast path, without "
	                    "waiting for it (in)");
}

/* ---- A late call of an exited thread while its slot's new owner is in --- */

/* Holders of every slot but one, parked on gate (no call meanwhile). */
static struct park_gate gate = {PTHREAD_MUTEX_INITIALIZER, 0};
static pthread_key_t late_key;
static pthread_t new_owner;
static atomic_bool new_owner_made;

/* Claims the one free slot, the exited thread's, and stays inside its
 * next fast entry until let go. */
static void *claim_freed_slot(void *arg)
{
	free(malloc(16));
	role = ROLE_HOLDER;
	free(malloc(32));
	return arg;
}

/* Runs after slot_exit (keys' destructors run in the order made; the
 * heap's key was made at its set-up, before this one). */
static void late_call(void *arg)
{
	(void)arg;
	role = ROLE_PAST_EXIT;
	if (pthread_create(&new_owner, NULL, claim_freed_slot, NULL) != 0)
		return;
	atomic_store(&new_owner_made, true);
	while (!atomic_load(&holder_inside))
		sched_yield();
	free(malloc(48)); /* on LATE_SLOT, never the slot it gave back */
	atomic_store(&holder_let_go, true);
}

static void *exiting(void *arg)
{
	free(malloc(16)); /* claims the last free slot */
	pthread_setspecific(late_key, (void *)1);
	return arg;
}

/* A thread's exit gives its slot back, and its calls after that (later
 * keys' destructors) hold LATE_SLOT: its fast pointer must go with the
 * slot, or its next call finds the slot's new owner's state (one owner,
 * no flag), takes the fast path and is inside the slot with that owner.
 * All slots but one are owned, so the thread that exits has the last
 * and the thread its destructor starts claims that slot. */
static int exit_clears_fast_path(void)
{
	int st = need_fast_path();
	if (st)
		return st;
	if (pthread_key_create(&late_key, late_call) != 0)
		return 2;
	pthread_mutex_lock(&gate.mutex);
	enum { LIVE_SLOTS = 63 }; /* MM_MAX_CPUS - 1 (LATE_SLOT) */
	pthread_t t[LIVE_SLOTS];
	int n = 0;
	while (n < LIVE_SLOTS && mm_malloc_threads() < LIVE_SLOTS - 1) {
		if (pthread_create(&t[n], NULL, park_on, &gate) != 0)
			return 2;
		n++;
		while (atomic_load(&gate.parked) < n)
			sched_yield();
	}
	pthread_t x;
	if (mm_malloc_threads() != LIVE_SLOTS - 1 ||
	    pthread_create(&x, NULL, exiting, NULL) != 0)
		return 2;
	pthread_join(x, NULL);
	if (atomic_load(&new_owner_made))
		pthread_join(new_owner, NULL);
	pthread_mutex_unlock(&gate.mutex);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (!atomic_load(&new_owner_made)) {
		fprintf(stderr, "no thread claimed the freed slot");
		return 2;
	}
	if (atomic_load(&both_inside) || atomic_load(&past_exit_fast)) {
		fprintf(stderr,
		        "a thread past its exit entered its old slot on the "
		        "fast path (%d times, %d while the slot's new owner "
		        "was inside)",
		        atomic_load(&past_exit_fast),
		        atomic_load(&both_inside));
		return 1;
	}
	return 0;
}

/* ---- fork from a thread past its exit ----------------------------------- */

static atomic_int child_status = -1;

/* The forking thread is past its exit, on LATE_SLOT, in the child too,
 * which must leave that slot unowned (invariant 4), so that no call of
 * the child takes it on the fast path while another holds it on the slow
 * one. */
static void fork_in_destructor(void *arg)
{
	(void)arg;
	role = ROLE_PAST_EXIT;
	pid_t pid = fork();
	if (pid == 0) {
		void *p = malloc(64);
		free(p);
		unsigned owners = mm_malloc_threads();
		if (!p || owners != 0 || atomic_load(&past_exit_fast)) {
			fprintf(stderr,
			        "child of a fork from a thread past its exit: "
			        "%u slots owned (0 expected), %d fast entries "
			        "(0 expected)",
			        owners, atomic_load(&past_exit_fast));
			_exit(1);
		}
		_exit(0);
	}
	int st = -1;
	if (pid > 0 && waitpid(pid, &st, 0) == pid)
		atomic_store(&child_status, st);
}

static void *fork_at_exit(void *arg)
{
	free(malloc(16));
	pthread_setspecific(late_key, (void *)1);
	return arg;
}

static int fork_from_exit_destructor(void)
{
	int st = need_fast_path();
	if (st)
		return st;
	pthread_t t;
	if (pthread_key_create(&late_key, fork_in_destructor) != 0 ||
	    pthread_create(&t, NULL, fork_at_exit, NULL) != 0)
		return 2;
	pthread_join(t, NULL);
	st = atomic_load(&child_status);
	if (st != 0) {
		fprintf(stderr, "; the child's status: %#x", st);
		return 1;
	}
	return 0;
}

/* ---- Driver ------------------------------------------------------------- */

/* env: NAME=VALUE for the scenario's process, or NULL. */
static const struct {
	const char *name;
	int (*fn)(void);
	const char *env;
} scenarios[] = {
        {"init_window_exit_gives_slot_back", init_window, NULL},
        {"signal_call_in_first_claim", claimed_window, NULL},
        {"signal_in_set_up", signal_in_set_up, NULL},
        {"signal_as_set_up_is_won", signal_as_set_up_is_won, NULL},
        {"signal_in_claim", signal_in_claim, NULL},
        {"signal_before_claim", signal_before_claim, NULL},
        {"fork_waits_for_fast_holder", fork_waits_for_fast_holder, NULL},
        {"exit_clears_fast_path", exit_clears_fast_path, NULL},
        {"fork_from_exit_destructor", fork_from_exit_destructor, NULL},
        {"fork_not_starved_by_retaker", fork_not_starved_by_retaker,
         "MM_MALLOC_MEMBARRIER=0"},
        {"fork_not_starved_by_late_retaker", fork_not_starved_by_late_retaker,
         "MM_MALLOC_MEMBARRIER=0"},
        {"bg_start_leaves_process_alive", bg_start_leaves_process_alive, NULL},
        {"backout_call_waits_for_fork", backout_call_waits_for_fork, NULL},
        {"bg_not_started_inside_call", bg_not_started_inside_call, NULL},
        {"wait_keeps_errno", wait_keeps_errno, NULL},
        {"signal_in_fast_entry", signal_in_fast_entry, NULL},
        {"signal_in_slow_entry", signal_in_slow_entry,
         "MM_MALLOC_MEMBARRIER=0"},
        {"signal_in_fork_windows", signal_in_fork_windows, NULL},
        {"fork_beside_sharer", fork_beside_sharer, NULL},
        {"sharer_waits_for_fast_holder", sharer_waits_for_fast_holder, NULL},
        {"token_wrap_keeps_threads_apart", token_wrap_keeps_threads_apart,
         NULL},
        {"claim_beside_counted_claim", claim_beside_counted_claim, NULL},
        {"signal_in_entry_during_fork", signal_in_entry_during_fork, NULL},
        {"child_clears_in", child_clears_in, NULL},
        {"fork_waits_for_late_slot", fork_waits_for_late_slot, NULL},
        {"fork_from_tokenless_thread", fork_from_tokenless_thread,
         "MM_MALLOC_MEMBARRIER=0"},
        {"underscore_fork_keeps_parent_ids", underscore_fork_keeps_parent_ids,
         "MM_MALLOC_BACKGROUND=0"},
        {"signal_in_shared_slow_hold", signal_in_shared_slow_hold, NULL},
        {"signal_while_sharer_waits_in", signal_while_sharer_waits_in, NULL},
        {"signal_in_fast_leave", signal_in_fast_leave, NULL},
        {"alone_without_proc", alone_without_proc, NULL},
        {"trim_inside_call", trim_inside_call, NULL},
        {"stats_overtaken_by_release", stats_overtaken_by_release,
         "MM_MALLOC_BACKGROUND=0"},
        {"second_panic_waits", second_panic_waits, NULL},
        {"panic_inside_panic", panic_inside_panic, NULL},
        {"fast_entry_backs_out_of_a_visit", fast_entry_backs_out_of_a_visit,
         "MM_MALLOC_BACKGROUND=0"},
        {"visit_passes_a_held_slot", visit_passes_a_held_slot,
         "MM_MALLOC_BACKGROUND=0"},
        /* Its holder on the slow path (busy, not in): the visit's
         * bounded wait for busy. */
        {"visit_passes_a_busy_slot", visit_passes_a_held_slot,
         "MM_MALLOC_MEMBARRIER=0"},
        {"trim_alone_visits_no_slot", trim_alone_visits_no_slot,
         "MM_MALLOC_BACKGROUND=0"},
        {"trim_waits_for_the_sweepers_visit", trim_waits_for_the_sweepers_visit,
         NULL},
        {"claims_race_for_a_free_slot", claims_race_for_a_free_slot,
         "MM_MALLOC_BACKGROUND=0"},
        {"reclaims_race_for_a_gone_owner", reclaims_race_for_a_gone_owner,
         "MM_MALLOC_BACKGROUND=0"},
        {"reclaims_race_for_an_ownerless_slot",
         reclaims_race_for_an_ownerless_slot, "MM_MALLOC_BACKGROUND=0"},
        {"fork_beside_shootdown", fork_beside_shootdown,
         "MM_MALLOC_BACKGROUND=0"},
        {"shootdown_blocks_signals", shootdown_blocks_signals,
         "MM_MALLOC_BACKGROUND=0"},
        {"fork_beside_guard_report", fork_beside_guard_report,
         "MM_MALLOC_GUARD=1"},
        {"lock_order_checked", lock_order_checked, "MM_MALLOC_BACKGROUND=0"},
        {"handler_call_in_fast_hold", handler_call_in_fast_hold,
         "MM_MALLOC_BACKGROUND=0"},
        {"handler_call_in_slow_hold", handler_call_in_slow_hold,
         "MM_MALLOC_MEMBARRIER=0"},
        {"handler_call_in_lock_window", handler_call_in_lock_window,
         "MM_MALLOC_BACKGROUND=0"},
        {"handler_call_in_unlock_window", handler_call_in_unlock_window,
         "MM_MALLOC_BACKGROUND=0"},
        {"handler_call_in_visit", handler_call_in_visit,
         "MM_MALLOC_BACKGROUND=0"},
        {"handler_call_past_exit", handler_call_past_exit,
         "MM_MALLOC_BACKGROUND=0"},
        {"handler_call_in_growth", handler_call_in_growth,
         "MM_MALLOC_BACKGROUND=0"},
        {"trim_visits_a_late_slot_a_handler_used",
         trim_visits_a_late_slot_a_handler_used, "MM_MALLOC_MEMBARRIER=0"},
        {"others_progress_beside_a_held_slot",
         others_progress_beside_a_held_slot, NULL},
        /* The holder on busy (slow path), every worker's call a CAS. */
        {"others_progress_beside_a_busy_slot",
         others_progress_beside_a_held_slot, "MM_MALLOC_MEMBARRIER=0"},
        {"signal_in_cache_set_up", signal_in_cache_set_up,
         "MM_MALLOC_BACKGROUND=0"},
        {"visit_beside_cache_set_up", visit_beside_cache_set_up,
         "MM_MALLOC_BACKGROUND=0"},
        /* The setter holds busy (slow path), not in. */
        {"visit_beside_cache_set_up_on_busy", visit_beside_cache_set_up,
         "MM_MALLOC_MEMBARRIER=0"},
        {"late_set_up_beside_visit", late_set_up_beside_visit,
         "MM_MALLOC_BACKGROUND=0"},
        {"fork_in_cache_set_up", fork_in_cache_set_up,
         "MM_MALLOC_BACKGROUND=0"},
        {"signal_in_cache_set_up_poison", signal_in_cache_set_up,
         "MM_MALLOC_POISON=1"},
        {"check_after_slots_change_hands", check_after_slots_change_hands,
         NULL},
        {"check_after_slots_change_hands_poison",
         check_after_slots_change_hands, "MM_MALLOC_POISON=1"},
};

enum { NSCENARIOS = sizeof(scenarios) / sizeof(scenarios[0]) };

/* Runs scenario i in a fresh process; returns NULL, why it failed, or
 * "# SKIP why" if it does not apply (exit status 77). */
static const char *run_scenario(const char *self, int i)
{
	static char why[512];
	int fd[2];
	if (pipe(fd) != 0)
		return "pipe failed";
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		char arg[16];
		snprintf(arg, sizeof(arg), "%d", i);
		if (scenarios[i].env)
			putenv((char *)scenarios[i].env);
		execl(self, self, arg, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	char err[400];
	read_to_end(fd[0], err, sizeof(err));
	int st = -1; /* no exit, if it cannot be waited for */
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return NULL;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		snprintf(why, sizeof(why), "# SKIP %s", err);
		return why;
	}
	snprintf(why, sizeof(why), "status %#x: %s", st, err);
	return why;
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		/* A hang in a window ends as a failure, named here, long
		 * before run-quick's limit ends the whole program. It was
		 * 20 s, which a scenario on a machine loaded as make test
		 * loads it can take without hanging (malloc_api_fresh.c's
		 * first_scenario has 120 s for that reason). */
		alarm(120);
		int i = atoi(argv[1]);
		return i >= 0 && i < NSCENARIOS ? scenarios[i].fn() : 126;
	}
	if (&mm_malloc_test_hook == NULL || !mm_malloc_threads ||
	    !mm_malloc_slot_mode) {
		printf("not ok preload: mm_malloc_test_hook not found (run "
		       "under LD_PRELOAD=libmm_malloc_hooks.so)\n"
		       "0 passed, 1 failed\n");
		return 1;
	}
	int pass = 0, fail = 0, skip = 0;
	for (int i = 0; i < NSCENARIOS; i++) {
		const char *e = run_scenario(argv[0], i);
		if (e && strncmp(e, "# SKIP", 6) == 0) {
			/* A skip, counted as one (run-quick reads the "N
			 * skipped" line), not as a pass. */
			printf("ok %s %s\n", scenarios[i].name, e);
			skip++;
		} else if (e) {
			printf("not ok %s: %s\n", scenarios[i].name, e);
			fail++;
		} else {
			printf("ok %s\n", scenarios[i].name);
			pass++;
		}
		fflush(stdout);
	}
	if (skip)
		printf("%d skipped\n", skip);
	printf("%d passed, %d failed\n", pass, fail);
	return fail != 0;
}

/*
 * tests/real/malloc_hooks_test.h: what the files of malloc-hooks-test
 * (malloc.mk) share: the test variant's exports, found through weak
 * references, and the scenarios the other malloc_hooks_*.c files lend
 * the driver (malloc_hooks_test.c), listed by file.
 */
#ifndef MALLOC_HOOKS_TEST_H
#define MALLOC_HOOKS_TEST_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "malloc/malloc_testing.h"

/* Weak: found in the preloaded test variant, NULL under any other. */
extern void (*_Atomic mm_malloc_test_hook)(enum mm_malloc_hook_point where)
        __attribute__((weak));
extern unsigned mm_malloc_threads(void) __attribute__((weak));
extern const char *mm_malloc_slot_mode(void) __attribute__((weak));
extern void mm_malloc_test_set_next_token(unsigned long next)
        __attribute__((weak));

/* 77 (the scenario does not apply) unless exclusive owners take the fast
 * path (membarrier), saying so on stderr; else 0. Claims this thread's
 * slot first (an allocation). */
static inline int fast_path_or_skip(void)
{
	free(malloc(16));
	if (strcmp(mm_malloc_slot_mode(), "membarrier") != 0) {
		fprintf(stderr, "slot mode %s: no fast path",
		        mm_malloc_slot_mode());
		return 77;
	}
	return 0;
}

/* Sets fn as this process's handler of signal sig (no flags, no mask);
 * false if sigaction refuses. */
static inline bool on_signal(int sig, void (*fn)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	return sigaction(sig, &sa, NULL) == 0;
}

/* Reads fd to its end (or until out is full, a NUL kept), through
 * EINTR, and closes it; out is NUL-terminated. */
static inline size_t read_to_end(int fd, char *out, size_t outsz)
{
	size_t n = 0;
	while (n + 1 < outsz) {
		ssize_t r = read(fd, out + n, outsz - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = 0;
	close(fd);
	return n;
}

/* Runs child(fd) in a fork child (it never returns) with fd the write
 * end of a pipe, collects what it writes there into out (NUL-ended) and
 * returns its wait status; -1 if it could not run. The heap is set up
 * first, so the child's first call is no set-up (malloc_hooks_alone.c). */
int hooks_child(void (*child)(int), char *out, size_t outsz);

/* Scenarios: each runs in a fresh process and returns its exit status
 * (0 passed, 77 does not apply), saying what went wrong on stderr. */
int fork_not_starved_by_retaker(void);
int fork_not_starved_by_late_retaker(void);
int bg_start_leaves_process_alive(void);
int backout_call_waits_for_fork(void);
int bg_not_started_inside_call(void);
int wait_keeps_errno(void);
/* malloc_hooks_signals.c: */
int init_window(void);
int claimed_window(void);
int signal_in_set_up(void);
int signal_as_set_up_is_won(void);
int signal_in_claim(void);
int signal_before_claim(void);
int signal_in_fast_entry(void);
int signal_in_slow_entry(void);
int signal_in_fork_windows(void);
/* malloc_hooks_share.c: */
/* A gate slot holders park on: park_on(gate) claims a slot (a malloc),
 * counts itself in parked, then waits, making no call, until the test
 * unlocks mutex (which it locked before starting them). */
struct park_gate {
	pthread_mutex_t mutex;
	atomic_int parked;
};
void *park_on(void *gate);
int fork_beside_sharer(void);
int sharer_waits_for_fast_holder(void);
int token_wrap_keeps_threads_apart(void);
int claim_beside_counted_claim(void);
/* malloc_hooks_fork.c: */
int signal_in_entry_during_fork(void);
int child_clears_in(void);
int fork_waits_for_late_slot(void);
int fork_from_tokenless_thread(void);
int underscore_fork_keeps_parent_ids(void);
/* malloc_hooks_alone.c: */
int alone_without_proc(void);
int trim_inside_call(void);
int stats_overtaken_by_release(void);
int second_panic_waits(void);
int panic_inside_panic(void);
/* malloc_hooks_nested.c: */
int signal_in_shared_slow_hold(void);
int signal_while_sharer_waits_in(void);
int signal_in_fast_leave(void);
/* malloc_hooks_visit.c: */
int fast_entry_backs_out_of_a_visit(void);
int visit_passes_a_held_slot(void);
int trim_alone_visits_no_slot(void);
int trim_waits_for_the_sweepers_visit(void);
/* malloc_hooks_reclaim.c: */
int claims_race_for_a_free_slot(void);
int reclaims_race_for_a_gone_owner(void);
int reclaims_race_for_an_ownerless_slot(void);
/* malloc_hooks_copied.c: */
int fork_beside_shootdown(void);
int fork_beside_guard_report(void);
int shootdown_blocks_signals(void);
/* malloc_hooks_order.c: */
int lock_order_checked(void);
/* malloc_hooks_handler.c: */
int handler_call_in_fast_hold(void);
int handler_call_in_slow_hold(void);
int handler_call_in_lock_window(void);
int handler_call_in_unlock_window(void);
int handler_call_in_visit(void);
int handler_call_past_exit(void);
int handler_call_in_growth(void);
int trim_visits_a_late_slot_a_handler_used(void);
/* malloc_hooks_progress.c: */
int others_progress_beside_a_held_slot(void);
/* malloc_hooks_lazy.c: */
int signal_in_cache_set_up(void);
int visit_beside_cache_set_up(void);
int late_set_up_beside_visit(void);
int fork_in_cache_set_up(void);
int check_after_slots_change_hands(void);

/* malloc_hooks_share.c's shared slot: share_start makes every slot owned,
 * this thread's (slot 0) by a second thread too, which stays inside a
 * call on it until share_let_go (0, or 2 if a thread did not start);
 * share_end lets it go and joins every thread. A scenario's hook calls
 * share_hook first (true: the sharer's, consumed). */
int share_start(void);
/* Or in two steps: share_prepare starts the threads, the sharer waiting
 * (parks: it stays inside its call, as share_start's does), share_go
 * lets it make its first call; share_done: that call has returned. */
int share_prepare(bool parks);
void share_go(void);
bool share_done(void);
bool share_hook(enum mm_malloc_hook_point where);
bool share_inside(void);
void share_let_go(void);
void share_end(void);

/* A fork scenario's verdict: 2 if the child pid (what the fork call
 * named returned) failed or was not had, 1 (saying why) if the fork
 * returned early, while the other thread was inside, or without the
 * wait it had to make (waited), else 0. */
int fork_verdict(const char *call, int pid, bool early, bool waited,
                 const char *why);

#endif

/*
 * tests/real/malloc_api_test.h: what the translation units of one test
 * program, malloc-api-test (malloc.mk), share: the CHECK convention, the
 * library's extensions, the ways to run code in a child or a fresh
 * process, the helpers one topic lends another, and every test the
 * runner (malloc_api_test.c) calls; the fresh processes (run_scenario,
 * run_with, the hang guard) and the scenarios first_scenario runs in
 * them by name are in malloc_api_scenarios.h, included below.
 *
 * The program's files, by topic:
 *   malloc_api_test.c    the runner, its child-process helpers and the
 *                        misuse aborts
 *   malloc_api_errors.c  errors (errno), alignment and sizes
 *   malloc_api_edges.c   edges of the conventions and of the port that
 *                        mutation reviews of malloc/ found untested
 *   malloc_api_threads.c threads, fork, and the fork handlers' order
 *   malloc_api_churn.c   thousands of short-lived threads in
 *                        waves, ended every way a thread ends
 *   malloc_api_slots.c   the slots under fork and sharing, and a thread's
 *                        teardown after it gave its slot back
 *   malloc_api_late.c    threads that share a slot from their last key
 *                        round
 *   malloc_api_seccomp.c claims under a seccomp filter that refuses
 *                        tgkill(2), the probe of a slot's threads, or
 *                        membarrier; a guarded pool with no room
 *   malloc_api_glibc.c   glibc's __libc_ names, mallinfo2,
 *                        malloc_stats and malloc_info
 *   malloc_api_fresh.c   the background threads and the scenarios that
 *                        need a fresh process (run_scenario)
 *   malloc_api_env.c     the environment's switches (MM_MALLOC_*),
 *                        failure injection (MM_MALLOC_FAIL)
 *   malloc_api_background.c  the background threads' signal masks
 *   malloc_api_trim.c    malloc_trim
 *   malloc_api_blowup.c  bounds on memory blowup (Hoard's, Larson's,
 *                        a phase change of sizes; blowup_work.c)
 *   malloc_api_guard.c   the guarded pool (MM_MALLOC_GUARD)
 *   malloc_api_signal.c  allocations in signal handlers that cut into
 *                        their thread's calls
 *   malloc_api_altstack.c  a signal handler's allocations on a
 *                        sigaltstack of SIGSTKSZ, and the stack they use
 *   malloc_api_diff.c    the randomized differential test of the whole
 *                        API (with malloc_api_diff_shadow.c and
 *                        malloc_api_diff_ops.c)
 */
#ifndef MALLOC_API_TEST_H
#define MALLOC_API_TEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

/* What went wrong in the failing test; one at a time, as tests run in
 * turn. */
extern char why[512];

#define CHECK(cond, ...)                                         \
	do {                                                     \
		if (!(cond)) {                                   \
			snprintf(why, sizeof(why), __VA_ARGS__); \
			return why;                              \
		}                                                \
	} while (0)

/* The library's extensions (mm_malloc.h), found by find_extensions. */
extern unsigned (*threads_owned)(void);
extern const char *(*slot_mode)(void);
extern void (*describe)(const void *p);
bool find_extensions(void);

/* This program's path, for run_scenario. */
extern const char *self_exe;

int in_child(void (*fn)(void), char *out, size_t outsz);
/* NULL if fn, run in a child (in_child), exits 0; else its status and
 * stderr. */
const char *child_passes(void (*fn)(void));
/* The wait status of child pid, waited for through any signal; -1 (no
 * exit) if it cannot be waited for. */
int wait_status(pid_t pid);
int collect_child(pid_t pid, int fd[2], char *out, size_t outsz);

/* Lent by malloc_api_threads.c: a thread that allocates and frees, and
 * returns an object for its joiner to free. */
void *child_thread(void *arg);
/* Lent by malloc_api_fresh.c: which background threads this process has
 * (1 the sweeper, 2 the scavenger), found by system calls alone. */
int background_threads_raw(void);
/* Waits for both, with no time bound (the caller's alarm ends a wait
 * that never ends); returns 3. */
int background_threads_wait(void);
/* Grows the heap past the size that starts them, then waits for both;
 * returns 3. */
int background_threads_up(void);
/* Lent by malloc_api_late.c: starts n threads into h that each own a slot
 * (a first malloc) and stay alive; returns once each does, false if one
 * cannot start. holders_stop ends and joins them. */
bool holders_start(pthread_t *h, unsigned n);
void holders_stop(pthread_t *h, unsigned n);

/* The tests, in the runner's order. Each returns NULL or what went
 * wrong. */
const char *test_errno(void);
const char *test_malloc_zero(void);
const char *test_free_keeps_errno(void);
const char *test_alignment(void);
const char *test_realloc_calloc(void);
const char *test_thread_churn(void);
const char *test_threads_share(void);
const char *test_churn_waves(void);
const char *test_churn_exits(void);
const char *test_fork(void);
const char *test_fork_handler_order(void);
const char *test_fork_background(void);
const char *test_fork_stdio_lock(void);
const char *test_slot_mode(void);
const char *test_fork_stress(void);
const char *test_fork_shared(void);
const char *test_exchange_mode(void);
const char *test_exit_late(void);
const char *test_last_round_claim(void);
const char *test_late_sharers(void);
const char *test_fifth_sharer(void);
const char *test_passing_sharers(void);
const char *test_fork_clears_sharers(void);
const char *test_probe_refused(void);
const char *test_membarrier_refused_later(void);
const char *test_misuse(void);
const char *test_misuse_matrix(void);
const char *test_background(void);
const char *test_realloc_background(void);
const char *test_no_background(void);
const char *test_underscore_fork(void);
const char *test_signal_fork(void);
const char *test_handler_fork(void);
const char *test_clone_child(void);
const char *test_first_allocations(void);
const char *test_address_limit(void);
const char *test_rt_fork(void);
const char *test_rt_guard_trim(void);
/* malloc_api_signal.c */
const char *test_signal_handler_allocs(void);
const char *test_altstack_allocs(void);
const char *test_calloc_large_untouched(void);
const char *test_errno_setup(void);
const char *test_errno_data_limit(void);
const char *test_setup_fails(void);
const char *test_overflow_wraps_small(void);
const char *test_memalign_top_alignment(void);
const char *test_realloc_zero(void);
const char *test_calloc_large_dirty(void);
const char *test_calloc_large_reused(void);
const char *test_pvalloc_whole_pages(void);
const char *test_small_heap_no_threads(void);
const char *test_partial_mprotect(void);
const char *test_calloc_locked(void);
const char *test_env_switches(void);
const char *test_hugepage_switch(void); /* malloc_api_thp.c */
const char *test_rss_baseline(void);    /* malloc_api_rss.c */
const char *test_env_switch_edges(void);
const char *test_env_report_keeps_errno(void);
const char *test_poison_mode(void);
const char *test_poison_overrun(void);
const char *test_fail_injection(void);
const char *test_malloc_trim(void);
const char *test_blowup(void);
const char *test_libc_names(void);
const char *test_mallinfo(void);
const char *test_malloc_stats_info(void);
const char *test_stats_agree(void);
const char *test_background_signals(void);
const char *test_background_after_forks(void);
const char *test_background_cancel_in_fork(void);
const char *test_background_after_failed_starts(void);
const char *test_background_at_threshold(void);
const char *test_background_initfirst(void);
const char *test_background_lone_exit(void);
const char *test_diff(void);
const char *test_describe(void);
const char *test_guard_overrun(void);
const char *test_guard_slack(void);
const char *test_guard_other_signals(void);
const char *test_guard_own_handler(void);
const char *test_guard_dispositions(void);
const char *test_guard_stats(void);
const char *test_guard_no_room(void);

#include "malloc_api_scenarios.h"

#endif

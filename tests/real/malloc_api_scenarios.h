/*
 * tests/real/malloc_api_scenarios.h: how malloc-api-test
 * (malloc_api_test.h) runs code in a fresh process (run_scenario,
 * run_with, the hang guard), and the scenarios that its topics' files
 * lend first_scenario (malloc_api_fresh.c), which runs each by name in
 * the fresh process; each returns the process's exit status (0 passed)
 * and says on stderr what went wrong.
 */
#ifndef MALLOC_API_SCENARIOS_H
#define MALLOC_API_SCENARIOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

/* Runs this program (self_exe) in a fresh process with argv[1] what and
 * env=val set (env NULL: nothing set), under RLIMIT_AS as_limit if not 0;
 * returns its wait status. */
int run_scenario(const char *what, const char *env, const char *val,
                 size_t as_limit);
/* The fresh process's side of run_scenario: argv[1] names the scenario;
 * returns its exit status. */
int first_scenario(const char *what);

/* A scenario's hang guard: SIGALRM ends the process HANG_SECS after the
 * last call. first_scenario calls it once; a scenario that loops calls
 * it at every round, so that the bound is on one round (a hang), not on
 * the whole run, whose time grows with the machine's load: the 100
 * rounds of underscore-fork took 20 s at a load of 12 and more than 120
 * s at 25 (SIGALRM), each round well under a second. */
enum { HANG_SECS = 120 };
static inline void hang_guard(void)
{
	alarm(HANG_SECS);
}

/* Runs scenario what in a fresh process with name=val, its stderr into
 * out (NUL-terminated); returns its wait status (malloc_api_env.c). */
int run_with(const char *what, const char *name, const char *val, char *out,
             size_t outsz);

/* Lent by malloc_api_fresh_fork.c: the fresh-process scenarios
 * "signal-fork" and "clone-child"; 0 if they held. */
int scenario_signal_fork(void);
int scenario_clone_child(void);
/* Scenarios of other topics' tests, which first_scenario runs. */
int scenario_errno_setup(void);
int scenario_handler_fork(void);
int scenario_fork_background(void);
int scenario_calloc_untouched(void);
int scenario_calloc_reused(void);
int scenario_errno_data_limit(void);
int scenario_small_heap(void);
int scenario_partial_mprotect(void);
int scenario_calloc_locked(void);
int scenario_env(void);
int scenario_thp(void);          /* malloc_api_thp.c */
int scenario_rss_baseline(void); /* malloc_api_rss.c */
int scenario_poison_write(void);
int scenario_poison_overrun(void);
int scenario_fail_count(void);
int scenario_fail_api(void);
int scenario_trim(void);
int scenario_trim_idle(void);
int scenario_quiet_idle(void);
int scenario_trim_first(void);
int scenario_trim_threads(void);
int scenario_trim_underscore_fork(void);
int scenario_stats_agree(void);
int scenario_background_signals(void);
int scenario_background_after_forks(void);
int scenario_background_cancel_in_fork(void);
int seccomp_filter_one(int nr, uint32_t action, unsigned flags);
int scenario_guard_no_room(void); /* malloc_api_seccomp.c */
int scenario_background_failed_starts(void);
int scenario_background_at_threshold(void);
int scenario_background_initfirst(void);
int scenario_background_lone_exit(void);
int scenario_setup_fails(void);
int scenario_setup_fails_free(void);
int scenario_mallinfo_meta(void);
int scenario_background_lone_exit_fork(void);
int scenario_background_lone_exit_deep(void);
int scenario_errno_at_start(void);
int scenario_diff(void);
int scenario_describe_poison(void);
int scenario_rt_fork(void); /* malloc_api_rt.c */
int scenario_rt_guard_trim(void);
/* malloc_api_limits.c's scenarios, and its tests (the runner's). */
int scenario_as_sweep(void);
int scenario_poison_reserve(void);
const char *test_address_sweep(void);
const char *test_poison_reserve(void);
/* malloc_api_atfork.c's scenario, and its test. */
int scenario_atfork_fails(void);
const char *test_atfork_fails(void);
/* Lent by malloc_api_fresh.c: limits the address space to extra bytes
 * past what this process has (its VmSize); false if it cannot. Allocates
 * nothing. */
bool limit_past_vm(rlim_t extra);

/* A scenario first_scenario runs by name: its exit status. */
struct scenario {
	const char *name;
	int (*fn)(void);
};
/* The guarded pool's scenarios (malloc_api_guard.c). */
extern const struct scenario guard_scenarios[];
extern const size_t guard_nscenarios;
/* The blowup bounds' scenarios (malloc_api_blowup.c). */
extern const struct scenario blowup_scenarios[];
extern const size_t blowup_nscenarios;

#endif

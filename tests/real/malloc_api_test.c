/*
 * tests/real/malloc_api_test.c: the conventions of libmm_malloc.so's entry
 * points, run under LD_PRELOAD by tests/real/run-quick.
 *
 * Each test is a function returning NULL or what went wrong. Tests that
 * abort on purpose (misuse) or that must start from a fresh process run
 * in a child; the parent checks its exit and its stderr. Prints one line a
 * test ("ok name" / "not ok name: why" / "ok name # SKIP why") and last
 * "N passed, N failed" (after "N skipped" if any were).
 * Built with -fno-builtin so that the compiler does not fold calls away.
 *
 * This file is the runner, with the ways to run code in a child or a
 * fresh process and the misuse aborts; the other tests are in the files
 * malloc_api_test.h lists, one topic each.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

char why[512];

unsigned (*threads_owned)(void);
const char *(*slot_mode)(void);
void (*describe)(const void *p);

/* The library's extensions (mm_malloc.h); false if not preloaded. */
bool find_extensions(void)
{
	threads_owned =
	        (unsigned (*)(void))dlsym(RTLD_DEFAULT, "mm_malloc_threads");
	slot_mode = (const char *(*)(void))dlsym(RTLD_DEFAULT,
	                                         "mm_malloc_slot_mode");
	describe = (void (*)(const void *))dlsym(RTLD_DEFAULT,
	                                         "mm_malloc_describe");
	return threads_owned && slot_mode && describe;
}
const char *self_exe;

/* The wait status of child pid, waited for through any signal; a status
 * that is no exit (-1) if it cannot be waited for. */
int wait_status(pid_t pid)
{
	int st;
	pid_t r;
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	return r == pid ? st : -1;
}

/* Runs this program again as scenario what (its argv[1]) in a fresh
 * process, with the environment variable env set to val first (env not
 * NULL) and its address space limited to as_limit bytes (not 0); returns
 * its wait status. */
int run_scenario(const char *what, const char *env, const char *val,
                 size_t as_limit)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		if (env)
			setenv(env, val, 1);
		struct rlimit rl = {.rlim_cur = as_limit, .rlim_max = as_limit};
		if (as_limit && setrlimit(RLIMIT_AS, &rl) != 0)
			_exit(126);
		execl(self_exe, self_exe, what, (char *)NULL);
		_exit(127);
	}
	return wait_status(pid);
}

/* ---- Children that must die ------------------------------------------- */

static int static_object;

/* The parent's side of a child whose stderr goes to the pipe fd: reads
 * it into out (NUL-terminated, cut at outsz - 1), then waits for the
 * child; returns its wait status. */
int collect_child(pid_t pid, int fd[2], char *out, size_t outsz)
{
	close(fd[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < outsz) {
		r = read(fd[0], out + n, outsz - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = 0;
	close(fd[0]);
	return wait_status(pid);
}

/* Runs fn in a child with stderr captured into out; returns its status. */
int in_child(void (*fn)(void), char *out, size_t outsz)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		hang_guard(); /* a hang fails the test */
		fn();
		_exit(0);
	}
	return collect_child(pid, fd, out, outsz);
}

const char *child_passes(void (*fn)(void))
{
	char out[512];
	int st = in_child(fn, out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, stderr: %s",
	      st, out);
	return NULL;
}

static void *misuse_ptr; /* the pointer the child passes, for the check */

static void free_stack(void)
{
	int x;
	misuse_ptr = &x;
	free(&x);
}

static void free_static(void)
{
	free(&static_object);
}

static void double_free_small(void)
{
	free(misuse_ptr);
	free(misuse_ptr);
}

static void *free_it(void *p)
{
	free(p);
	return NULL;
}

static void double_free_remote(void)
{
	/* Freed by another thread, then here: the pending-bit path. */
	pthread_t t;
	pthread_create(&t, NULL, free_it, misuse_ptr);
	pthread_join(t, NULL);
	free(misuse_ptr);
}

static void double_free_large(void)
{
	free(misuse_ptr);
	free(misuse_ptr);
}

static void free_interior(void)
{
	free((char *)misuse_ptr + 16);
}

struct misuse {
	const char *name;
	void (*fn)(void);
	size_t alloc; /* misuse_ptr = malloc(alloc) first, if not 0 */
	const char *says;
};

static const char *check_misuse(const struct misuse *m)
{
	char out[2048];
	misuse_ptr = m->alloc ? malloc(m->alloc) : NULL;
	if (m->fn == free_static)
		misuse_ptr = &static_object;
	int st = in_child(m->fn, out, sizeof(out));
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
	      "%s: child status %#x, stderr: %s", m->name, st, out);
	CHECK(strstr(out, "mm_malloc: ") && strstr(out, m->says),
	      "%s: stderr lacks \"%s\": %s", m->name, m->says, out);
	if (m->fn != free_stack) { /* the child's stack address differs */
		char addr[32];
		snprintf(addr, sizeof(addr), "%p",
		         m->fn == free_interior ? (char *)misuse_ptr + 16
		                                : misuse_ptr);
		CHECK(strstr(out, addr), "%s: stderr lacks the address %s: %s",
		      m->name, addr, out);
	}
	return NULL;
}

const char *test_misuse(void)
{
	static const struct misuse cases[] = {
	        {"stack", free_stack, 0, "foreign pointer"},
	        {"static", free_static, 0, "foreign pointer"},
	        {"double free", double_free_small, 48, "double free"},
	        {"double free remote", double_free_remote, 48, "double free"},
	        {"double free large", double_free_large, 1 << 20,
	         "freed twice"},
	        {"interior", free_interior, 64, "interior pointer"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *e = check_misuse(&cases[i]);
		if (e)
			return e;
	}
	return NULL;
}

/* Every test, in the order they run. */
static const struct {
	const char *name;
	const char *(*fn)(void);
} tests[] = {
        {"errno", test_errno},
        {"malloc_zero", test_malloc_zero},
        {"free_keeps_errno", test_free_keeps_errno},
        {"alignment", test_alignment},
        {"realloc_calloc", test_realloc_calloc},
        {"thread_churn", test_thread_churn},
        {"threads_share", test_threads_share},
        {"churn_waves", test_churn_waves},
        {"churn_exits", test_churn_exits},
        {"fork", test_fork},
        {"fork_handler_order", test_fork_handler_order},
        {"fork_background", test_fork_background},
        {"fork_stdio_lock", test_fork_stdio_lock},
        {"slot_mode", test_slot_mode},
        {"fork_stress", test_fork_stress},
        {"fork_shared", test_fork_shared},
        {"exchange_mode", test_exchange_mode},
        {"exit_late", test_exit_late},
        {"last_round_claim", test_last_round_claim},
        {"late_sharers", test_late_sharers},
        {"fifth_sharer", test_fifth_sharer},
        {"passing_sharers", test_passing_sharers},
        {"fork_clears_sharers", test_fork_clears_sharers},
        {"probe_refused", test_probe_refused},
        {"membarrier_refused_later", test_membarrier_refused_later},
        {"misuse", test_misuse},
        {"misuse_matrix", test_misuse_matrix},
        {"background", test_background},
        {"realloc_background", test_realloc_background},
        {"no_background", test_no_background},
        {"background_signals", test_background_signals},
        {"background_after_forks", test_background_after_forks},
        {"background_cancel_in_fork", test_background_cancel_in_fork},
        {"background_after_failed_starts", test_background_after_failed_starts},
        {"background_at_threshold", test_background_at_threshold},
        {"background_initfirst", test_background_initfirst},
        {"background_lone_exit", test_background_lone_exit},
        {"underscore_fork", test_underscore_fork},
        {"signal_fork", test_signal_fork},
        {"handler_fork", test_handler_fork},
        {"clone_child", test_clone_child},
        {"first_allocations", test_first_allocations},
        {"address_limit", test_address_limit},
        {"address_sweep", test_address_sweep},
        {"poison_reserve", test_poison_reserve},
        {"calloc_large_untouched", test_calloc_large_untouched},
        {"errno_setup", test_errno_setup},
        {"errno_data_limit", test_errno_data_limit},
        {"setup_fails", test_setup_fails},
        {"atfork_fails", test_atfork_fails},
        {"overflow_wraps_small", test_overflow_wraps_small},
        {"memalign_top_alignment", test_memalign_top_alignment},
        {"realloc_zero", test_realloc_zero},
        {"calloc_large_dirty", test_calloc_large_dirty},
        {"calloc_large_reused", test_calloc_large_reused},
        {"pvalloc_whole_pages", test_pvalloc_whole_pages},
        {"small_heap_no_threads", test_small_heap_no_threads},
        {"partial_mprotect", test_partial_mprotect},
        {"calloc_locked", test_calloc_locked},
        {"env_switches", test_env_switches},
        {"env_switch_edges", test_env_switch_edges},
        {"env_report_keeps_errno", test_env_report_keeps_errno},
        {"hugepage_switch", test_hugepage_switch},
        {"rss_baseline", test_rss_baseline},
        {"poison_mode", test_poison_mode},
        {"poison_overrun", test_poison_overrun},
        {"fail_injection", test_fail_injection},
        {"malloc_trim", test_malloc_trim},
        {"blowup", test_blowup},
        {"libc_names", test_libc_names},
        {"mallinfo", test_mallinfo},
        {"malloc_stats_info", test_malloc_stats_info},
        {"stats_agree", test_stats_agree},
        {"diff", test_diff},
        {"describe", test_describe},
        {"guard_overrun", test_guard_overrun},
        {"guard_slack", test_guard_slack},
        {"guard_other_signals", test_guard_other_signals},
        {"guard_own_handler", test_guard_own_handler},
        {"guard_dispositions", test_guard_dispositions},
        {"guard_stats", test_guard_stats},
        {"guard_no_room", test_guard_no_room},
        {"rt_fork", test_rt_fork},
        {"rt_guard_trim", test_rt_guard_trim},
        {"signal_handler_allocs", test_signal_handler_allocs},
        {"altstack_allocs", test_altstack_allocs},
};

/* Runs every test in tests, printing a line for each and the totals;
 * the program's exit status: 0 if all passed, else 1. A test that
 * cannot run here returns "SKIP why": "ok name # SKIP why", counted on a
 * line "N skipped" before the totals. MALLOC_API_ONLY=name runs that test
 * alone (while fixing one). */
static int run_tests(void)
{
	int pass = 0, fail = 0, skip = 0;
	const char *only = getenv("MALLOC_API_ONLY");
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (only && *only && strcmp(only, tests[i].name) != 0)
			continue;
		const char *e = tests[i].fn();
		if (e && strncmp(e, "SKIP ", 5) == 0) {
			printf("ok %s # SKIP %s\n", tests[i].name, e + 5);
			skip++;
		} else if (e) {
			printf("not ok %s: %s\n", tests[i].name, e);
			fail++;
		} else {
			printf("ok %s\n", tests[i].name);
			pass++;
		}
		fflush(stdout);
	}
	if (skip)
		printf("%d skipped\n", skip);
	printf("%d passed, %d failed\n", pass, fail);
	return fail != 0;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		return first_scenario(argv[1]);
	self_exe = argv[0];
	if (!find_extensions()) {
		printf("not ok preload: mm_malloc_threads or "
		       "mm_malloc_slot_mode not found (run "
		       "under LD_PRELOAD=libmm_malloc.so)\n0 passed, 1 "
		       "failed\n");
		return 1;
	}
	return run_tests();
}

/*
 * tests/real/malloc_api_fresh.c: malloc-api-test's background threads
 * and the scenarios that run in a fresh process: this program again, with
 * the scenario's name as argv[1] (run_scenario, first_scenario;
 * malloc_api_test.h). The scenarios that fork from a signal handler and
 * clone a child are malloc_api_fresh_fork.c's.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"
#include "proc_read.h"

/* Allocates and frees 16 MiB: past the heap size (8 MiB) from which the
 * background threads run. */
static void grow_heap(void)
{
	void *v[256];
	for (int i = 0; i < 256; i++)
		memset(v[i] = malloc(64 << 10), 1, 64 << 10);
	for (int i = 0; i < 256; i++)
		free(v[i]);
}

/* The background threads found among this process's threads, as
 * background_threads_up returns them, by system calls alone: no
 * allocation, which would start them. */
int background_threads_raw(void)
{
	char buf[4096], path[64], comm[32];
	int found = 0, d = open("/proc/self/task", O_RDONLY | O_DIRECTORY);
	long n;
	while (d >= 0 && (n = syscall(SYS_getdents64, d, buf, sizeof(buf))) > 0)
		for (long off = 0; off < n;) {
			/* linux_dirent64: ino, off, reclen, type, name */
			unsigned short reclen;
			memcpy(&reclen, buf + off + 16, sizeof(reclen));
			snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			         buf + off + 19);
			off += reclen;
			proc_read(path, comm, sizeof(comm));
			found |= strstr(comm, "mm_sweeper") ? 1 : 0;
			found |= strstr(comm, "mm_mheap_scav") ? 2 : 0;
		}
	if (d >= 0)
		close(d);
	return found;
}

/* Waits for the background threads with no time bound (the caller's
 * 120 s alarm ends a wait that never ends); returns 3. Allocates
 * nothing, which would start them. */
int background_threads_wait(void)
{
	int found;
	while ((found = background_threads_raw()) != 3)
		usleep(20000);
	return found;
}

int background_threads_up(void)
{
	grow_heap();
	for (int i = 0; i < 1000; i++)
		free(malloc(100));
	return background_threads_wait();
}

/*
 * A heap grown past the threshold by realloc alone starts the threads,
 * as one grown by malloc does: a program that reads a file into a buffer
 * it doubles, then shrinks it and idles, gets the memory back. Until
 * this version only malloc, calloc and the aligned calls started them,
 * so such a program never did (not until its next malloc).
 */
static int scenario_realloc_background(void)
{
	char *p = malloc(16);
	for (size_t n = 64 << 10; p && n <= (32u << 20); n *= 2)
		p = realloc(p, n);
	if (!p)
		return 2;
	return background_threads_wait() == 3 ? 0 : 3;
}

const char *test_realloc_background(void)
{
	int st = run_scenario("realloc-background", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a heap grown to 32 MiB by realloc alone: status %#x "
	      "(SIGALRM: no background threads)",
	      st);
	return NULL;
}

/* The background threads are running (after the heap grew). */
const char *test_background(void)
{
	hang_guard(); /* their absence ends the test binary */
	int found = background_threads_up();
	alarm(0);
	CHECK(found == 3, "background threads not found (mask %d)", found);
	return NULL;
}

/* Fresh processes whose first allocations come from pthread_create or
 * dlopen, or whose threads all pthread_exit (argv[1] names the scenario):
 * they must finish, with status 0. */

/* MM_MALLOC_MEMBARRIER=0: every call takes the exchange. */
static int scenario_exchange(void)
{
	const char *e = !find_extensions() ? "no mm_malloc extensions"
	                : strcmp(slot_mode(), "exchange") != 0
	                        ? "MM_MALLOC_MEMBARRIER=0 ignored"
	                        : test_fork_stress();
	if (!e)
		e = test_fork_shared();
	if (!e)
		e = test_threads_share();
	if (e)
		fprintf(stderr, "%s\n", e);
	return e != NULL;
}

/* _Fork runs no fork handlers: its child has none of the background
 * threads, and its next fork must not wait for them (it joined them,
 * forever). Bursts of frees keep the sweeper busy (taking the heap's and
 * the classes' locks) while the program forks: a child could inherit a
 * lock held by a thread it does not have. */
static int scenario_underscore_fork(void)
{
	if (background_threads_up() != 3)
		return 4;
	enum { N = 50000 };
	static void *v[N];
	for (int it = 0; it < 100; it++) {
		hang_guard(); /* a bound on a round, not on all 100 */
		for (int i = 0; i < N; i++)
			v[i] = malloc(16 + (size_t)(i % 500));
		for (int i = 0; i < N; i++)
			free(v[(i * 7919L) % N]);
		pid_t pid = _Fork();
		if (pid == 0) {
			hang_guard(); /* not inherited */
			for (int i = 0; i < 1000; i++)
				free(malloc((size_t)i));
			pid_t g = fork();
			if (g == 0)
				_exit(malloc(10) ? 0 : 1);
			int gs;
			waitpid(g, &gs, 0);
			_exit(WIFEXITED(gs) && WEXITSTATUS(gs) == 0 ? 0 : 5);
		}
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 6;
	}
	return 0;
}

/* MM_MALLOC_BACKGROUND=0 (the parent set it): past the size that starts
 * them, no thread but this one. */
static int scenario_no_background(void)
{
	grow_heap();
	for (int i = 0; i < 1000; i++)
		free(malloc(100));
	usleep(100000);
	unsigned n = 0;
	DIR *d = opendir("/proc/self/task");
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n == 3 ? 0 : 3; /* ".", ".." and this thread */
}

/* Under RLIMIT_AS (the parent set it): the heap settles for a smaller
 * arena and works. */
static int scenario_address_limit(void)
{
	char *p = malloc(64 << 20);
	if (!p)
		return 2;
	memset(p, 1, 64 << 20);
	free(p);
	return 0;
}

/* Under a limit too small for a 256 MiB arena (the parent set 128 MiB):
 * the heap still sets up, and an allocation larger than the limit
 * fails with ENOMEM rather than ending the process. */
static int scenario_address_limit_small(void)
{
	char *p = malloc(16 << 20);
	if (!p)
		return 2;
	memset(p, 1, 16 << 20);
	free(p);
	errno = 0;
	if (malloc((size_t)256 << 20) || errno != ENOMEM)
		return 3;
	return 0;
}

bool limit_past_vm(rlim_t extra)
{
	char status[4096];
	const char *vm =
	        proc_read("/proc/self/status", status, sizeof(status)) > 0
	                ? strstr(status, "\nVmSize:")
	                : NULL;
	unsigned long kb = vm ? strtoul(vm + 8, NULL, 10) : 0;
	struct rlimit rl;
	rl.rlim_cur = rl.rlim_max = ((rlim_t)kb << 10) + extra;
	return kb && setrlimit(RLIMIT_AS, &rl) == 0;
}

/* Under a limit the scenario sets itself, before its first allocation,
 * at 1 MiB past the address space it has: not even the smallest arena
 * (one 2 MiB chunk) fits, so the heap's set-up must end the program
 * with its report. Tight on purpose, and the same every run: whatever
 * the process maps or its stack grows by before the set-up asks for its
 * arena must fit in that 1 MiB, and a margin of 2 MiB or more could let
 * the chunk in. Returns 2 if the limit cannot be set, 3 if the
 * allocation returned. */
static int scenario_no_arena(void)
{
	if (!limit_past_vm((rlim_t)1 << 20))
		return 2;
	errno = 0;
	void *p = malloc(16);
	if (p || errno != ENOMEM)
		return 3;
	return 0;
}

static void *headroom_thread(void *arg)
{
	return arg;
}

/* Starts and joins a thread with an 8 MiB stack (glibc's default); 0,
 * or the error on stderr and 4. */
static int thread_fits(const char *when)
{
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, (size_t)8 << 20);
	pthread_t t;
	int err = pthread_create(&t, &a, headroom_thread, NULL);
	pthread_attr_destroy(&a);
	if (err) {
		fprintf(stderr, "pthread_create %s: %s\n", when, strerror(err));
		return 4;
	}
	pthread_join(t, NULL);
	return 0;
}

/* Under a limit the scenario sets itself, before its first allocation,
 * at 134 MiB past the address space it has (or HEADROOM_PAST_MIB): room
 * for an arena of 128 MiB and 6 MiB more. After its first malloc the program
 * must still have room for a thread with an 8 MiB stack, as it has under
 * glibc's malloc; until this version the arena took the largest power of two
 * that fitted, here 128 MiB, and pthread_create failed with EAGAIN (so
 * did every limit a little past a power of two; past the default arena
 * and its 132 MiB of metadata by a few MiB, the whole arena was taken).
 * And still once the
 * heap grew past 8 MiB and the background threads run: until this
 * version they had glibc's default stacks, 8 MiB of address space each,
 * and took that room. Returns 2 if the limit cannot be set, 3 if an
 * allocation failed, 4 if the thread could not start. */
static int scenario_address_headroom(void)
{
	const char *mib = getenv("HEADROOM_PAST_MIB");
	if (!limit_past_vm((rlim_t)(mib ? strtoul(mib, NULL, 10) : 134) << 20))
		return 2;
	void *p = malloc(100);
	if (!p)
		return 3;
	free(p);
	int st = thread_fits("after the first malloc");
	if (st)
		return st;
	background_threads_up();
	return thread_fits("beside the background threads");
}

/* The first allocation comes from pthread_create. */
static int scenario_first_pthread(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, child_thread, NULL))
		return 1;
	void *r;
	pthread_join(t, &r);
	free(r);
	free(malloc(10));
	return 0;
}

/* Every thread exits with pthread_exit, main first: glibc then ends the
 * process with status 0, and our background threads must not keep it
 * alive. */
static int scenario_pthread_exit(void)
{
	grow_heap();
	free(malloc(100)); /* starts them */
	pthread_t t;
	pthread_create(&t, NULL, child_thread, NULL);
	pthread_exit(NULL);
}

/* The first allocation comes from dlopen. */
static int scenario_dlopen(void)
{
	void *h = dlopen("libz.so.1", RTLD_NOW);
	if (!h)
		h = dlopen("libm.so.6", RTLD_NOW);
	if (!h)
		return 1;
	dlclose(h);
	free(malloc(10));
	return 0;
}

static const struct scenario scenarios[] = {
        {"calloc-untouched", scenario_calloc_untouched},
        {"calloc-reused", scenario_calloc_reused},
        {"calloc-locked", scenario_calloc_locked},
        {"env", scenario_env},
        {"thp", scenario_thp},
        {"rss-baseline", scenario_rss_baseline},
        {"poison-write", scenario_poison_write},
        {"poison-overrun", scenario_poison_overrun},
        {"describe-poison", scenario_describe_poison},
        {"fail-count", scenario_fail_count},
        {"fail-api", scenario_fail_api},
        {"signal-fork", scenario_signal_fork},
        {"clone-child", scenario_clone_child},
        {"underscore-fork", scenario_underscore_fork},
        {"no-background", scenario_no_background},
        {"address-limit", scenario_address_limit},
        {"address-limit-small", scenario_address_limit_small},
        {"no-arena", scenario_no_arena},
        {"address-headroom", scenario_address_headroom},
        {"first-pthread", scenario_first_pthread},
        {"pthread-exit", scenario_pthread_exit},
        {"errno-setup", scenario_errno_setup},
        {"errno-data-limit", scenario_errno_data_limit},
        {"realloc-background", scenario_realloc_background},
        {"handler-fork", scenario_handler_fork},
        {"fork-background", scenario_fork_background},
        {"small-heap", scenario_small_heap},
        {"partial-mprotect", scenario_partial_mprotect},
        {"trim", scenario_trim},
        {"trim-idle", scenario_trim_idle},
        {"quiet-idle", scenario_quiet_idle},
        {"trim-first", scenario_trim_first},
        {"trim-threads", scenario_trim_threads},
        {"trim-underscore-fork", scenario_trim_underscore_fork},
        {"stats-agree", scenario_stats_agree},
        {"background-signals", scenario_background_signals},
        {"background-after-forks", scenario_background_after_forks},
        {"background-cancel-in-fork", scenario_background_cancel_in_fork},
        {"background-failed-starts", scenario_background_failed_starts},
        {"background-at-threshold", scenario_background_at_threshold},
        {"background-initfirst", scenario_background_initfirst},
        {"background-lone-exit", scenario_background_lone_exit},
        {"background-lone-exit-fork", scenario_background_lone_exit_fork},
        {"background-lone-exit-deep", scenario_background_lone_exit_deep},
        {"errno-at-start", scenario_errno_at_start},
        {"rt-fork", scenario_rt_fork},
        {"rt-guard-trim", scenario_rt_guard_trim},
        {"guard-no-room", scenario_guard_no_room},
        {"first-dlopen", scenario_dlopen},
        {"setup-fails", scenario_setup_fails},
        {"setup-fails-free", scenario_setup_fails_free},
        {"mallinfo-meta", scenario_mallinfo_meta},
        {"as-sweep", scenario_as_sweep},
        {"poison-reserve", scenario_poison_reserve},
        {"atfork-fails", scenario_atfork_fails},
};

/* The scenario of table[0..n) named what, or NULL. */
static const struct scenario *find_scenario(const struct scenario *table,
                                            size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(what, table[i].name) == 0)
			return &table[i];
	return NULL;
}

/* The scenario what names; any other name is refused (status 2, named
 * on stderr: until a review it ran the dlopen scenario, and a mistyped
 * name passed). Every
 * scenario but the exchange mode's runs under the hang guard (hang_guard,
 * malloc_api_test.h: why it is on a round), which turns a hang into a
 * failure naming the scenario; those that loop re-arm it every round. A
 * child of fork or _Fork inherits no alarm: each that allocates sets its
 * own. */
int first_scenario(const char *what)
{
	if (strcmp(what, "exchange") == 0)
		return scenario_exchange();
	if (strcmp(what, "diff") == 0) /* its length is the caller's */
		return scenario_diff();
	hang_guard();
	const struct scenario *s = find_scenario(
	        scenarios, sizeof scenarios / sizeof scenarios[0], what);
	if (!s)
		s = find_scenario(guard_scenarios, guard_nscenarios, what);
	if (!s)
		s = find_scenario(blowup_scenarios, blowup_nscenarios, what);
	if (!s) {
		fprintf(stderr,
		        "malloc-api-test: no scenario '%s' (the argument "
		        "names one; with none, every test runs)\n",
		        what);
		return 2;
	}
	return s->fn();
}

/* The fork and sharing stresses again in a process told not to use
 * membarrier: the fallback must stay correct too. */
const char *test_exchange_mode(void)
{
	int st = run_scenario("exchange", "MM_MALLOC_MEMBARRIER", "0", 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "exchange mode: status %#x (its reason on stderr)", st);
	return NULL;
}

const char *test_first_allocations(void)
{
	static const char *const what[] = {"first-pthread", "first-dlopen",
	                                   "pthread-exit"};
	for (int i = 0; i < 3; i++) {
		int st = run_scenario(what[i], NULL, NULL, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %#x",
		      what[i], st);
	}
	return NULL;
}

/* Children made by _Fork (no fork handlers) of a process whose background
 * threads run and sweep allocate and fork in turn. */
const char *test_underscore_fork(void)
{
	int st = run_scenario("underscore-fork", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "_Fork's child forking: status %#x (SIGALRM: it hung)", st);
	return NULL;
}

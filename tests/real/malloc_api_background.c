/*
 * tests/real/malloc_api_background.c: malloc-api-test's checks of the
 * background threads as threads of the program (malloc/port_sync.c,
 * malloc/background.c): the signals they leave to the program's own
 * threads, their restart after fork after fork, and after starts that
 * failed (pthread_create refused by a seccomp filter), and the heap size
 * that starts them. Their first start and their stop around fork are in
 * malloc_api_fresh.c and malloc_api_threads.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"
#include "proc_read.h"

/* The signals a background thread must block: every one a program may
 * catch (glibc keeps its two internal ones, SIGCANCEL and SIGSETXID, and
 * the kernel SIGKILL and SIGSTOP, unblockable). */
static const int program_signals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGUSR1,
                                      SIGUSR2, SIGPIPE, SIGALRM, SIGTERM,
                                      SIGCHLD, SIGWINCH};

/* Task tid's name (comm) and blocked-signal mask (SigBlk) from its
 * /proc status; false if it cannot be read. */
static bool task_mask(const char *tid, char *name, size_t namesz,
                      unsigned long long *blocked)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
	if (proc_read(path, buf, sizeof(buf)) <= 0)
		return false;
	const char *nm = strstr(buf, "Name:\t");
	const char *bl = strstr(buf, "\nSigBlk:\t");
	if (!nm || !bl)
		return false;
	nm += 6;
	size_t len = strcspn(nm, "\n");
	len = len < namesz - 1 ? len : namesz - 1;
	memcpy(name, nm, len);
	name[len] = 0;
	*blocked = strtoull(bl + 9, NULL, 16);
	return true;
}

/* Whether mask (SigBlk's bit sig - 1 per signal) blocks every one of
 * program_signals. */
static bool blocks_all(unsigned long long mask)
{
	for (size_t i = 0; i < sizeof(program_signals) / sizeof(int); i++)
		if (!(mask >> (program_signals[i] - 1) & 1))
			return false;
	return true;
}

/*
 * The background threads, once up, block every signal the program may
 * catch (a SIGINT or SIGCHLD sent to the process must reach one of its
 * own threads), and the thread whose allocation started them has its
 * own mask back (empty here). Exits 0, 2 if the threads did not come,
 * or 3 naming the thread whose mask was wrong.
 */
int scenario_background_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	void *v[256];
	for (int i = 0; i < 256; i++)
		if (!(v[i] = malloc(64 << 10)) || !memset(v[i], 1, 64 << 10))
			return 2;
	for (int i = 0; i < 256; i++)
		free(v[i]);
	free(malloc(100)); /* starts them, past the heap's 8 MiB */
	if (background_threads_wait() != 3)
		return 2;
	int found = 0, bad = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char name[32];
		unsigned long long blocked;
		if (e->d_name[0] == '.' ||
		    !task_mask(e->d_name, name, sizeof(name), &blocked))
			continue;
		bool bg = strncmp(name, "mm_", 3) == 0;
		found += bg;
		if (bg ? !blocks_all(blocked) : blocked != 0) {
			fprintf(stderr,
			        "thread %s (%s): SigBlk %016llx; want %s\n",
			        e->d_name, name, blocked,
			        bg ? "every signal a program may catch blocked"
			           : "none blocked, as before its malloc");
			bad = 3;
		}
	}
	if (d)
		closedir(d);
	if (found != 2) {
		fprintf(stderr, "%d background threads in /proc/self/task\n",
		        found);
		return 3;
	}
	return bad;
}

/* The background threads' signal masks (scenario_background_signals),
 * in a fresh process. */
const char *test_background_signals(void)
{
	int st = run_scenario("background-signals", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "background-signals: status %#x (2: no background threads; "
	      "3: a mask was wrong, on stderr)",
	      st);
	return NULL;
}

/* The threads of this process named mm_* (the background threads). */
static int background_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char name[32];
		unsigned long long blocked;
		if (e->d_name[0] != '.' &&
		    task_mask(e->d_name, name, sizeof(name), &blocked) &&
		    strncmp(name, "mm_", 3) == 0)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

/* Allocates (a large object: the slow path, which starts them) until
 * both background threads run; a hang if they never come, which the
 * scenario's alarm turns into a failure. */
static void until_background_up(void)
{
	while (background_threads_raw() != 3) {
		free(malloc(64 << 10));
		sched_yield();
	}
}

/*
 * Each fork stops the background threads (joined, their handles given
 * back to the port's pool of four) and the next allocation starts them
 * again: after six forks they still run. With the handles not given
 * back, the third start found the pool empty and the process went on
 * without them (no memory given back while it idles). And they are
 * stopped, not left running beside the new ones: two after each fork.
 */
int scenario_background_after_forks(void)
{
	void *v[256];
	for (int i = 0; i < 256; i++)
		if (!(v[i] = malloc(64 << 10)) || !memset(v[i], 1, 64 << 10))
			return 2;
	for (int i = 0; i < 256; i++)
		free(v[i]);
	until_background_up();
	for (int round = 0; round < 6; round++) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		int st = -1;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
			return 2;
		until_background_up();
		/* A joined thread may linger in /proc a moment after its
		 * join: wait for it; one never stopped never goes. */
		while (background_count() > 2)
			sched_yield();
	}
	return 0;
}

/* The background threads come back after every fork
 * (scenario_background_after_forks), in a fresh process. */
const char *test_background_after_forks(void)
{
	int st = run_scenario("background-after-forks", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "background-after-forks: status %#x (SIGALRM: the threads "
	      "did not come back after a fork, or more than two stayed)",
	      st);
	return NULL;
}

/* ---- Cancellation ----------------------------------------------------- */

static atomic_int cancel_go;

/* Forks when told, with its cancellation already pending: fork is no
 * cancellation point, waitpid is, so the thread ends there. */
static void *fork_cancelled(void *arg)
{
	(void)arg;
	while (!atomic_load(&cancel_go))
		;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		wait_status(pid);
	return NULL;
}

/*
 * A thread whose cancellation is pending forks while the background
 * threads run: the library's fork handler joins them, and pthread_join
 * is a cancellation point, so the thread ended inside the handler with
 * the library's control lock held, and the next fork hung for good. No
 * call of the library may be a cancellation point (POSIX lists none of
 * malloc's): the fork completes, and the next one too.
 */
int scenario_background_cancel_in_fork(void)
{
	void *v = malloc(16 << 20);
	if (!v || !memset(v, 1, 16 << 20))
		return 2;
	free(v);
	until_background_up();
	pthread_t t;
	if (pthread_create(&t, NULL, fork_cancelled, NULL) != 0)
		return 2;
	pthread_cancel(t);
	atomic_store(&cancel_go, 1);
	pthread_join(t, NULL);
	until_background_up();
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	return pid > 0 && wait_status(pid) == 0 ? 0 : 2;
}

/* scenario_background_cancel_in_fork, in a fresh process. */
const char *test_background_cancel_in_fork(void)
{
	int st = run_scenario("background-cancel-in-fork", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "background-cancel-in-fork: status %#x (SIGALRM: the fork "
	      "after the cancelled one hung)",
	      st);
	return NULL;
}

/* ---- Starts that fail ------------------------------------------------- */

/* This process's tasks (its threads, /proc/self/task), -1 if unknown. A
 * thread pthread_create made is listed once that returns. */
static int task_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return d ? n : -1;
}

/* Fails clone3(2) with EAGAIN in this thread only (no TSYNC), so that
 * its pthread_create fails as at a thread limit, and fork (clone) works;
 * false if the filter cannot be installed. */
static bool refuse_threads_here(void)
{
	return seccomp_filter_one(__NR_clone3, SECCOMP_RET_ERRNO | EAGAIN, 0) ==
	       0;
}

/* Under refuse_threads_here: grows the heap past the threshold, so
 * that an allocation starts the background threads, which fail; forks
 * (the parent allows them again) and fails them once more. 0, 77 if the
 * filter is refused, 2 if a thread started anyway. */
static void *fail_starts(void *st)
{
	*(int *)st = 77;
	if (!refuse_threads_here())
		return NULL;
	*(int *)st = 2;
	void *v[256];
	for (int i = 0; i < 256; i++)
		if (!(v[i] = malloc(64 << 10)) || !memset(v[i], 1, 64 << 10))
			return NULL;
	for (int i = 0; i < 256; i++)
		free(v[i]);
	for (int round = 0; round < 2; round++) {
		free(malloc(100)); /* the start, which fails */
		if (task_count() != 2)
			return NULL;
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 || wait_status(pid) != 0)
			return NULL;
	}
	*(int *)st = 0;
	return NULL;
}

/*
 * A background thread that pthread_create cannot make gives its handle
 * back to the port's pool of four (port_sync.c): two starts of both
 * threads failed in one thread (a seccomp filter's EAGAIN, as at a
 * thread limit), and the next start, by a thread allowed to make
 * threads, must make both (3 tasks right after its allocation). With
 * the handles kept, the pool was empty and that start made none.
 */
int scenario_background_failed_starts(void)
{
	int st = 2;
	pthread_t t;
	if (pthread_create(&t, NULL, fail_starts, &st) != 0 ||
	    pthread_join(t, NULL) != 0)
		return 2;
	if (st != 0)
		return st;
	free(malloc(100)); /* the start, allowed again by the fork */
	int n = task_count();
	if (n != 3) {
		fprintf(stderr,
		        "%d tasks after the start that followed two failed "
		        "ones; want 3 (this thread and both background "
		        "threads)\n",
		        n);
		return 3;
	}
	return 0;
}

/* The background threads start after starts that failed
 * (scenario_background_failed_starts), in a fresh process. */
const char *test_background_after_failed_starts(void)
{
	int st = run_scenario("background-failed-starts", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "background-failed-starts: status %#x (3: the threads "
	      "did not start, said on stderr; 77: no seccomp filter; 2: a "
	      "start under the filter made a thread)",
	      st);
	return NULL;
}

/* ---- When they may start ---------------------------------------------- */

/* The bytes the heap has grown (malloc_info's maximum system size), or 0
 * if malloc_info says none. */
static size_t heap_grown(void)
{
	static char xml[2048];
	FILE *f = fmemopen(xml, sizeof(xml) - 1, "w");
	if (!f || malloc_info(0, f) != 0)
		return 0;
	fclose(f);
	static const char key[] = "<system type=\"max\" size=\"";
	const char *p = strstr(xml, key);
	return p ? strtoull(p + sizeof(key) - 1, NULL, 10) : 0;
}

/*
 * The threads start once the heap has grown to 8 MiB, not only past it:
 * growths are whole 2 MiB chunks, so a heap of exactly 8 MiB is one a
 * program holds (a mutant that wanted more waited for a fifth chunk).
 * Grows 64 KiB at a time until it has grown 8 MiB. Exits 0, 2 if an
 * allocation failed, 10 if the heap passed 8 MiB at one step (nothing
 * to tell); hangs (SIGALRM) if the threads do not come.
 */
int scenario_background_at_threshold(void)
{
	static void *v[256];
	size_t grown = 0;
	for (int n = 0; n < 256 && (grown = heap_grown()) < (8u << 20); n++)
		if (!(v[n] = malloc(64 << 10)))
			return 2;
	if (grown != (8u << 20)) {
		fprintf(stderr, "grown %zu bytes, not 8 MiB\n", grown);
		return 10;
	}
	/* They start in the allocation that grew the heap, and name
	 * themselves soon after: no bound on that wait (the scenario's
	 * alarm ends it if they never come). */
	while (background_threads_raw() != 3)
		usleep(20000);
	return 0;
}

const char *test_background_at_threshold(void)
{
	int st = run_scenario("background-at-threshold", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a heap grown to 8 MiB exactly: status %#x (SIGALRM: no "
	      "background threads; 10: the heap passed 8 MiB at one step)",
	      st);
	return NULL;
}

/*
 * The threads wait for our constructor, which reads MM_MALLOC_BACKGROUND
 * (here 0: none at all), even where the heap grew past 8 MiB before it
 * ran: in another library's initialiser that the loader runs first (one
 * linked with -z initfirst, preloaded after ours: initfirst_lib.c). With
 * the wait dropped, that growth started them against the switch. Exits
 * 0, or 3 with the count of tasks.
 */
int scenario_background_initfirst(void)
{
	free(malloc(64 << 10));
	int n = task_count();
	if (n != 1) {
		fprintf(stderr,
		        "%d tasks under MM_MALLOC_BACKGROUND=0 after an "
		        "earlier initialiser's 8 MiB; want 1\n",
		        n);
		return 3;
	}
	return 0;
}

const char *test_background_initfirst(void)
{
	char preload[4096];
	const char *ours = getenv("LD_PRELOAD"),
	           *slash = strrchr(self_exe, '/');
	CHECK(ours, "no LD_PRELOAD to add initfirst_lib to");
	snprintf(preload, sizeof(preload), "%s:%.*slibmm_initfirst_lib.so",
	         ours, slash ? (int)(slash - self_exe + 1) : 0, self_exe);
	setenv("MM_MALLOC_BACKGROUND", "0", 1);
	int st = run_scenario("background-initfirst", "LD_PRELOAD", preload, 0);
	unsetenv("MM_MALLOC_BACKGROUND");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "background threads started before our constructor: status "
	      "%#x (3: threads under MM_MALLOC_BACKGROUND=0, on stderr)",
	      st);
	return NULL;
}

/*
 * tests/real/malloc_api_fresh_fork.c: two of malloc-api-test's scenarios
 * in a fresh process (malloc_api_fresh.c runs them): _Fork from a signal
 * handler that interrupted an allocation, and a child made by clone(2)
 * without the fork handlers, each with the background threads running.
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
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"
#include "proc_read.h"

/*
 * _Fork is async-signal-safe: a crash handler may call it while its
 * thread was inside malloc. With the background threads running, the
 * library's _Fork ran the fork handlers there, which waited for the slot
 * the interrupted call held: for ever. A timer signal every 2 ms forks
 * from its handler while the program allocates.
 */
static volatile sig_atomic_t signal_forks, signal_fork_bad;

static void fork_from_handler(int sig)
{
	(void)sig;
	pid_t p = _Fork();
	if (p == 0)
		_exit(0);
	if (p > 0) {
		int st;
		waitpid(p, &st, 0);
		signal_fork_bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
		signal_forks++;
	}
}

int scenario_signal_fork(void)
{
	if (background_threads_up() != 3)
		return 4;
	struct sigaction sa = {.sa_handler = fork_from_handler};
	sigaction(SIGPROF, &sa, NULL);
	struct itimerval it = {{0, 2000}, {0, 2000}};
	setitimer(ITIMER_PROF, &it, NULL);
	for (long i = 0, seen = 0; signal_forks < 200; i++) {
		if (signal_forks != seen) {
			seen = signal_forks;
			hang_guard(); /* a bound on a fork, not on all 200 */
		}
		free(malloc(16 + (size_t)(i % 2000)));
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_PROF, &off, NULL);
	return signal_fork_bad ? 5 : 0;
}

const char *test_signal_fork(void)
{
	int st = run_scenario("signal-fork", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "_Fork from a signal handler: status %#x (SIGALRM: it hung)", st);
	return NULL;
}

/* Returns once every background thread has been asleep ('S' in its
 * /proc/self/task stat) in 5 samples running, 10 ms apart (or after
 * 1000 samples). */
static void background_asleep(void)
{
	for (int quiet = 0, tries = 0; quiet < 5 && tries < 1000; tries++) {
		bool all = true;
		DIR *d = opendir("/proc/self/task");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char path[300], st[512];
			snprintf(path, sizeof(path), "/proc/self/task/%s/stat",
			         e->d_name);
			if (proc_read(path, st, sizeof(st)) <= 0)
				continue;
			char *end = strrchr(st, ')');
			if (strstr(st, "(mm_") && end && end[2] != 'S')
				all = false;
		}
		if (d)
			closedir(d);
		quiet = all ? quiet + 1 : 0;
		usleep(10000);
	}
}

/*
 * A child made by a raw clone (no fork handlers: sandboxes and container
 * tools make them so) inherits "background threads running" but none of
 * the threads; its next fork forgets them and lets it start its own. It
 * also inherited the count of running background threads, so its own
 * two counted four, and took the process's three threads for background
 * ones only: they ended the child with exit(0) (at once, in a review's
 * run). The child exits 9 after a second with its threads running. The
 * parent clones while its own threads sleep, holding no lock.
 */
int scenario_clone_child(void)
{
	if (background_threads_up() != 3)
		return 4;
	background_asleep();
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		hang_guard(); /* not inherited */
		free(malloc(10));
		pid_t g = fork();
		if (g == 0)
			_exit(0);
		waitpid(g, NULL, 0);
		if (background_threads_up() != 3)
			_exit(5);
		for (int i = 0; i < 10; i++)
			usleep(100000); /* the threads check every 100 ms */
		_exit(9);
	}
	int st;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 9)
		return 0;
	fprintf(stderr, "clone child: status %#x\n", (unsigned)st);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 6 : 7;
}

const char *test_clone_child(void)
{
	int st = run_scenario("clone-child", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a raw clone's child that forks and restarts the background "
	      "threads: status %#x (6: they ended it with exit(0))",
	      st);
	return NULL;
}

/* MM_MALLOC_BACKGROUND=0 keeps a program single-threaded (a program that
 * will unshare(CLONE_NEWUSER) needs that). */
const char *test_no_background(void)
{
	int st = run_scenario("no-background", "MM_MALLOC_BACKGROUND", "0", 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "MM_MALLOC_BACKGROUND=0: status %#x (3: threads started)", st);
	return NULL;
}

/* A program whose address space is limited below the default arena
 * (ulimit -v, as batch systems set): it aborted at its first malloc, and
 * under a limit below 256 MiB (the smallest arena tried until then), it
 * still did ("cannot set up the heap"), where glibc's malloc works.
 * Under a limit the arena must not take all the room left: a thread's
 * stack must still fit, as under glibc. Under one that leaves no room
 * for the smallest arena (one chunk), that report and ENOMEM: until
 * this version, the report and an abort. */
const char *test_address_limit(void)
{
	int st = run_scenario("address-limit", NULL, NULL, (size_t)4 << 30);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "under a 4 GiB address-space limit: status %#x", st);
	st = run_scenario("address-limit-small", NULL, NULL, (size_t)128 << 20);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "under a 128 MiB address-space limit: status %#x (signal 6: "
	      "the set-up found no arena; 3: a 256 MiB malloc did not fail "
	      "with ENOMEM)",
	      st);
	/* Past a power of two, and past the default arena (64 GiB) with
	 * its metadata: until this version that took the arena whole. */
	static const char *const past_mib[] = {"134", "65672", "65676"};
	for (size_t i = 0; i < sizeof(past_mib) / sizeof(past_mib[0]); i++) {
		st = run_scenario("address-headroom", "HEADROOM_PAST_MIB",
		                  past_mib[i], 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "under a limit %s MiB past the address space in use: "
		      "status %#x (4: no room left for a thread's 8 MiB "
		      "stack, after the first malloc or beside the background "
		      "threads, as stderr says; 3: an allocation failed)",
		      past_mib[i], st);
	}
	/* No room for one chunk: the set-up's report and ENOMEM, not a
	 * crash in a heap left half made (nor a hang). */
	char out[1024];
	st = run_with("no-arena", "MM_MALLOC_VERBOSE", "0", out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              strstr(out, "mm_malloc: cannot set up the heap: no "
	                          "address space for an arena of 2 MiB, "
	                          "the smallest tried\n"),
	      "with no room for one chunk: status %#x (want exit 0: 2, "
	      "the limit not set; 3, the allocation did not fail with "
	      "ENOMEM), stderr '%s'",
	      st, out);
	return NULL;
}

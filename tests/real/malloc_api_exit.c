/*
 * The API test's scenarios of a process whose program threads are all
 * gone (main's pthread_exit), which the background threads end with
 * exit(0) as glibc's last thread would: once, whatever the program's
 * atexit handlers do on that thread (sleep, fork).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "malloc_api_test.h"

/*
 * Every program thread gone (main's pthread_exit), the background threads
 * end the process with exit(0), as glibc's last thread would: one of them.
 * exit runs the program's atexit handlers on that thread; a handler that
 * takes longer than the threads' check (100 ms) must not be cut short by
 * the other background thread, which also finds itself among background
 * threads only and called exit(0) too: with the first handler still
 * running, the second exit found the handler list empty, flushed stdio
 * and ended the process under it. Here the handler ends the process with
 * 42 after 600 ms; status 0 means it was cut short.
 */
static void slow_atexit(void)
{
	struct timespec ts = {0, 600 * 1000 * 1000};
	nanosleep(&ts, NULL);
	_exit(42);
}

int scenario_background_lone_exit(void)
{
	if (background_threads_up() != 3)
		return 4;
	atexit(slow_atexit);
	pthread_exit(NULL);
}

const char *test_background_lone_exit(void)
{
	for (int run = 0; run < 3; run++) {
		int st = run_scenario("background-lone-exit", NULL, NULL, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42,
		      "run %d: the program's atexit handler cut short by a "
		      "second background thread's exit(0): status %#x "
		      "(want exit 42)",
		      run, st);
	}
	int st = run_scenario("background-lone-exit-fork", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42,
	      "an atexit handler run by a background thread's exit(0) "
	      "forks: status %#x (want exit 42; SIGABRT: the fork joined "
	      "the thread running it)",
	      st);
	st = run_scenario("background-lone-exit-deep", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42,
	      "an atexit handler using 2 MiB of stack, run by the lone "
	      "exit: status %#x (want exit 42; SIGSEGV: it ran on a "
	      "background thread's 1 MiB stack)",
	      st);
	return NULL;
}

/*
 * The same lone exit, whose atexit handler forks (a daemon's last
 * clean-up): the handler runs on the background thread that called
 * exit, and fork's prepare handler stops the background threads, that
 * one too: it joined itself (EDEADLK) and the library aborted. Exits
 * 42 from the handler once the child is reaped.
 */
static void forking_atexit(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		free(malloc(100));
		_exit(0);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		_exit(5);
	_exit(42);
}

int scenario_background_lone_exit_fork(void)
{
	if (background_threads_up() != 3)
		return 4;
	atexit(forking_atexit);
	pthread_exit(NULL);
}

/*
 * The same lone exit, whose atexit handler takes 2 MiB of stack: under
 * glibc it runs on the last program thread's stack (8 MiB by default).
 * Once the background threads had 1 MiB stacks, a handler run by their
 * exit(0) overran its stack (SIGSEGV). Exits 42 from the handler.
 */
static void deep_atexit(void)
{
	volatile char buf[(size_t)2 << 20];
	memset((char *)buf, 1, sizeof(buf));
	_exit(buf[sizeof(buf) - 1] == 1 ? 42 : 5);
}

int scenario_background_lone_exit_deep(void)
{
	if (background_threads_up() != 3)
		return 4;
	atexit(deep_atexit);
	pthread_exit(NULL);
}

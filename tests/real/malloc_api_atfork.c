/*
 * tests/real/malloc_api_atfork.c: malloc-api-test's scenario of a heap
 * whose fork handlers cannot be registered (malloc/fork.c): the set-up
 * does not finish without them, and says so.
 *
 * How the failure is made: glibc's pthread_atfork is linked into each
 * object (libc_nonshared.a) and calls __register_atfork, which this
 * program defines. The executable comes first in the dynamic linker's
 * lookup order, so the library's calls come here too (the definition is
 * exported because libmm_fork_lib.so, which the program links, refers
 * to it). With MM_TEST_ATFORK_FAILS=n in the environment the library's
 * first n calls (those whose prepare handler is its own) fail with
 * ENOMEM; every other call goes on to glibc's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

/* MM_TEST_ATFORK_FAILS's value, read from /proc/self/environ with system
 * calls alone: the library's constructor registers before the C library
 * is initialised (environ is not set yet). 0 if unset. */
static int fails_asked(void)
{
	static char buf[16384];
	static const char name[] = "MM_TEST_ATFORK_FAILS=";
	int fd = open("/proc/self/environ", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
		if (strncmp(buf + i, name, sizeof(name) - 1) == 0)
			return atoi(buf + i + sizeof(name) - 1);
	return 0;
}

/* True if f is the library's (libmm_malloc*.so). */
static bool in_library(void (*f)(void))
{
	Dl_info info;
	return f && dladdr((void *)f, &info) && info.dli_fname &&
	       strstr(info.dli_fname, "libmm_malloc");
}

/* The library's calls so far, and whether one registered. */
static atomic_int atfork_calls;
static atomic_bool registered;

int __register_atfork(void (*prepare)(void), void (*parent)(void),
                      void (*child)(void), void *dso)
{
	static int (*real)(void (*)(void), void (*)(void), void (*)(void),
	                   void *);
	static int fails = -1;
	if (fails < 0)
		fails = fails_asked();
	bool ours = in_library(prepare);
	if (ours && atomic_fetch_add(&atfork_calls, 1) < fails)
		return ENOMEM;
	if (!real)
		real = (int (*)(void (*)(void), void (*)(void), void (*)(void),
		                void *))dlsym(RTLD_NEXT, "__register_atfork");
	int err = real ? real(prepare, parent, child, dso) : ENOSYS;
	if (ours && err == 0)
		atomic_store(&registered, true);
	return err;
}

static atomic_bool churn_stop;

static void *churn(void *arg)
{
	while (!atomic_load(&churn_stop))
		free(malloc(16 + (size_t)rand() % 4000));
	return arg;
}

/*
 * Run with MM_TEST_ATFORK_FAILS=n: the constructor's registration and the
 * set-ups' until the n-th fail, so the first n - 1 mallocs fail with
 * ENOMEM (status 3 if one worked: the set-up finished without the
 * handlers), the n-th works (4 if not) and the handlers are then
 * registered (5 if not); then forks beside a thread allocating, whose
 * children allocate (6 if one did not exit 0; SIGALRM: a child hung on
 * a heap copied locked).
 */
int scenario_atfork_fails(void)
{
	const char *n = getenv("MM_TEST_ATFORK_FAILS");
	for (int i = 1; n && i < atoi(n); i++) {
		errno = 0;
		if (malloc(100) || errno != ENOMEM)
			return 3;
	}
	void *p = malloc(100);
	if (!p)
		return 4;
	free(p);
	if (!atomic_load(&registered))
		return 5;
	pthread_t t;
	if (pthread_create(&t, NULL, churn, NULL))
		return 2;
	int bad = 0;
	for (int i = 0; i < 50 && !bad; i++) {
		hang_guard();
		pid_t pid = fork();
		if (pid == 0) {
			hang_guard(); /* a child inherits no alarm */
			for (int k = 0; k < 100; k++)
				free(malloc(16 + (size_t)k * 40));
			_exit(0);
		}
		int st = wait_status(pid);
		bad = !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	atomic_store(&churn_stop, true);
	pthread_join(t, NULL);
	return bad ? 6 : 0;
}

/*
 * The fork handlers could not be registered (pthread_atfork's ENOMEM):
 * until a review the failure was ignored and never retried, and a fork
 * while another thread was in the heap copied it locked into the child.
 * Now the set-up retries, does not finish without them, and says why
 * once.
 */
const char *test_atfork_fails(void)
{
	static const char *const fails[] = {"1", "2", "3"};
	for (int i = 0; i < 3; i++) {
		static char out[2048];
		int st = run_with("atfork-fails", "MM_TEST_ATFORK_FAILS",
		                  fails[i], out, sizeof(out));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "pthread_atfork failing %s times: status %#x (3: the "
		      "heap set up without the fork handlers; 4: not set up "
		      "once they could be; 5: never registered; 6 or "
		      "SIGALRM: a fork's child could not allocate); "
		      "stderr: %.300s",
		      fails[i], st, out);
		const char *line = strstr(out, "cannot register the fork "
		                               "handlers");
		CHECK(line && !strstr(line + 1, "cannot register the fork "
		                                "handlers"),
		      "pthread_atfork failing %s times: want one line on "
		      "stderr saying so, got: %.300s",
		      fails[i], out);
	}
	return NULL;
}

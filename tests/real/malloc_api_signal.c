/*
 * tests/real/malloc_api_signal.c: malloc-api-test's test of allocations
 * in a signal handler that interrupts its own thread's calls anywhere
 * (malloc is not async-signal-safe, but programs do it): the library must
 * never give one object to two holders, whatever it does instead.
 *
 * A second thread sends SIGUSR1 to the main thread, one signal at a time,
 * while the main thread allocates and frees objects of one class, each
 * filled with its own tag, checked before its free; the handler allocates
 * eight of the same class (as a first call in its slot would refill from
 * the class's central list), fills, checks and frees them. Until the
 * handler's call took a slot of its own (enter.c, mm_malloc_enter_nested),
 * it ran in the slot its thread's interrupted call held, and an object
 * popped by both was overwritten: "main: object ... byte 0 is 0xa6"
 * within 100 signals, every run. A handler's call that needs an mm lock
 * its interrupted call holds (or a wait it may not make under one) is
 * reported ("... by a signal handler that interrupted ...") and aborts,
 * a clear error the test accepts; a tag overwritten, another signal or
 * a hang (the child's hang guard) fails it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

enum { OBJS = 64, OBJ_SIZE = 48, IN_HANDLER = 8, SIGNALS = 1000 };

static atomic_ulong handled;
static atomic_bool sending_done;
static pthread_t target;

/* Exits 3 naming the object if p's OBJ_SIZE bytes are not all tag. */
static void check_tag(const unsigned char *p, unsigned char tag,
                      const char *who)
{
	for (int i = 0; i < OBJ_SIZE; i++) {
		if (p[i] == tag)
			continue;
		char b[200];
		int n = snprintf(b, sizeof(b),
		                 "%s: object %p byte %d is %#x, want %#x after "
		                 "%lu signals\n",
		                 who, (const void *)p, i, p[i], tag,
		                 atomic_load(&handled));
		if (n > 0 && write(2, b, (size_t)n) < 0)
			_exit(4);
		_exit(3);
	}
}

static void alloc_handler(int sig)
{
	(void)sig;
	int saved = errno;
	unsigned char *q[IN_HANDLER];
	for (int i = 0; i < IN_HANDLER; i++) {
		/* NULL is allowed: a handler's call never waits (MM_ATOMIC),
		 * and fails where it would have to. */
		q[i] = malloc(OBJ_SIZE);
		if (q[i])
			memset(q[i], 0xa0 + i, OBJ_SIZE);
		else if (errno != ENOMEM)
			_exit(5);
	}
	for (int i = 0; i < IN_HANDLER; i++) {
		if (!q[i])
			continue;
		check_tag(q[i], (unsigned char)(0xa0 + i), "handler");
		free(q[i]);
	}
	atomic_fetch_add(&handled, 1);
	errno = saved;
}

/* Sends SIGUSR1 to the main thread, the next once the last was handled. */
static void *send_signals(void *arg)
{
	(void)arg;
	while (!atomic_load(&sending_done)) {
		unsigned long h = atomic_load(&handled);
		pthread_kill(target, SIGUSR1);
		while (atomic_load(&handled) == h &&
		       !atomic_load(&sending_done))
			__builtin_ia32_pause();
	}
	return NULL;
}

static void allocs_under_signals(void)
{
	struct sigaction sa = {.sa_handler = alloc_handler};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		_exit(6);
	target = pthread_self();
	pthread_t sender;
	if (pthread_create(&sender, NULL, send_signals, NULL) != 0)
		_exit(6);
	unsigned char *objs[OBJS] = {0};
	unsigned char tags[OBJS];
	for (unsigned long k = 0; atomic_load(&handled) < SIGNALS; k++) {
		unsigned i = (unsigned)(k % OBJS);
		if (objs[i]) {
			check_tag(objs[i], tags[i], "main");
			free(objs[i]);
		}
		objs[i] = malloc(OBJ_SIZE);
		if (!objs[i])
			_exit(5);
		tags[i] = (unsigned char)(k % 63 + 1);
		memset(objs[i], tags[i], OBJ_SIZE);
	}
	atomic_store(&sending_done, true);
	pthread_join(sender, NULL);
	for (unsigned i = 0; i < OBJS; i++)
		if (objs[i]) {
			check_tag(objs[i], tags[i], "main");
			free(objs[i]);
		}
}

const char *test_signal_handler_allocs(void)
{
	char out[512];
	int st = in_child(allocs_under_signals, out, sizeof(out));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return NULL;
	/* The report of a lock (or wait) of the interrupted call's:
	 * clear, and allowed. */
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
	              strstr(out, "by a signal handler that interrupted"),
	      "status %#x, stderr: %s", st, out);
	return NULL;
}

/*
 * tests/real/malloc_hooks_alone.c: malloc-hooks-test's scenarios of the
 * background threads' check that they are not the process's last
 * threads (port_sync.c, exit_if_alone), held at its hook
 * (MM_MALLOC_HOOK_ALONE_COUNTED, after the thread count is read), of
 * malloc_trim from a signal handler inside a call and of a report whose
 * walk a release overtakes (malloc_info.c), and of a second thread's
 * panic during the first's and of a panic inside a panic on one thread
 * (port_prod.c, mm_panic).
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

/* Alone checks made (the hook's calls) since counting began. */
static atomic_int alone_checks = -1;
static atomic_bool alone_done;

static void count_alone_checks(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_ALONE_COUNTED &&
	    atomic_load(&alone_checks) >= 0)
		atomic_fetch_add(&alone_checks, 1);
}

/* An exit(0) from a background thread that took itself for the last
 * ends the process before alone_done: status 1, said on stderr. */
static void ended_by_background(void)
{
	static const char msg[] =
	        "the process ended (exit 0 from a background thread that "
	        "thought itself alone) while its main thread ran";
	if (!atomic_load(&alone_done)) {
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(2);
		_exit(1);
	}
}

/* Starts the background threads (a 16 MiB burst, then a call past the
 * threshold), with the hook counting their checks from then on. */
static void start_counted(void)
{
	void *v[64];
	for (int i = 0; i < 64; i++)
		memset(v[i] = malloc(256 << 10), 1, 256 << 10);
	for (int i = 0; i < 64; i++)
		free(v[i]);
	mm_malloc_test_hook = count_alone_checks;
	atomic_store(&alone_checks, 0);
	free(malloc(100));
}

/* Waits until the background threads have made n more alone checks:
 * each ran the whole check (had one ended the process, main would not
 * see the next). */
static void wait_alone_checks(int n)
{
	int until = atomic_load(&alone_checks) + n;
	while (atomic_load(&alone_checks) < until)
		sched_yield();
}

/*
 * A background thread that cannot read /proc/self/stat (here: no file
 * descriptor left, RLIMIT_NOFILE at the lowest free one) counts 0
 * threads, which means "unknown", not "none but us": it must not end
 * the process under its main thread. Four checks pass with the limit on.
 */
int alone_without_proc(void)
{
	atexit(ended_by_background);
	start_counted();
	int lowest = dup(0);
	struct rlimit old, rl;
	if (lowest < 0 || close(lowest) != 0 ||
	    getrlimit(RLIMIT_NOFILE, &old) != 0)
		return 2;
	rl = old;
	rl.rlim_cur = (rlim_t)lowest; /* no open() succeeds now */
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 2;
	wait_alone_checks(4);
	setrlimit(RLIMIT_NOFILE, &old);
	atomic_store(&alone_done, true);
	return 0;
}

static atomic_bool trim_armed;
static atomic_int trim_in_handler = -1;

static void trimming_handler(int sig)
{
	(void)sig;
	atomic_store(&trim_in_handler, malloc_trim(0));
}

static void in_trim_window(enum mm_malloc_hook_point where)
{
	if ((where == MM_MALLOC_HOOK_FAST_HELD ||
	     where == MM_MALLOC_HOOK_SLOW_HELD) &&
	    atomic_exchange(&trim_armed, false))
		raise(SIGUSR1);
}

/*
 * malloc_trim from a signal handler that interrupted an API call (mm/
 * may be in the middle of something there) gives nothing back and
 * returns 0, though free pages wait (a 4 MiB object just freed: the
 * same trim outside the call returns 1).
 */
int trim_inside_call(void)
{
	if (!on_signal(SIGUSR1, trimming_handler))
		return 2;
	void *big = malloc(4 << 20), *p = malloc(100);
	if (!big || !p || !memset(big, 1, 4 << 20))
		return 2;
	free(big);
	mm_malloc_test_hook = in_trim_window;
	atomic_store(&trim_armed, true);
	free(p); /* the call the signal interrupts */
	mm_malloc_test_hook = NULL;
	int inside = atomic_load(&trim_in_handler), outside = malloc_trim(0);
	if (inside != 0 || outside != 1) {
		fprintf(stderr,
		        "malloc_trim returned %d in a handler inside a call, "
		        "%d after it, with 4 MiB free",
		        inside, outside);
		return 1;
	}
	return 0;
}

/* ---- A report overtaken by a release ---------------------------------- */

static void *stats_big;
static atomic_int stats_step; /* 1: free and trim now; 2: done */

static void *free_and_trim(void *arg)
{
	while (atomic_load(&stats_step) != 1)
		sched_yield();
	free(stats_big);
	atomic_store(&stats_step, malloc_trim(0) ? 2 : 3);
	return arg;
}

/* The report has counted the 64 MiB object in use: the other thread
 * frees it and gives its pages back before the report reads the heap's
 * totals. Once. */
static void in_stats_window(enum mm_malloc_hook_point where)
{
	int armed = 0;
	if (where != MM_MALLOC_HOOK_STATS_COUNTED ||
	    !atomic_compare_exchange_strong(&stats_step, &armed, 1))
		return;
	while (atomic_load(&stats_step) == 1)
		sched_yield();
}

/*
 * mallinfo2 reads the bytes in use before the heap's totals, without
 * stopping the heap: a release in between leaves the arena smaller than
 * what it counted, and the bytes in use are clamped to the arena, so
 * that fordblks (the arena less them) does not wrap. Without the clamp
 * uordblks was 64 MiB in a few MiB of arena, and fordblks near 2^64.
 * The cached objects' bytes (fsmblks, read before the release: this
 * thread's magazine filled first) are part of fordblks, as glibc's are,
 * so never more than it: once they were, with fordblks 0.
 */
int stats_overtaken_by_release(void)
{
	pthread_t t;
	static void *small[32];
	for (int i = 0; i < 32; i++)
		small[i] = malloc(64);
	for (int i = 0; i < 32; i++)
		free(small[i]);
	stats_big = malloc(64 << 20);
	if (!stats_big || !memset(stats_big, 1, 64 << 20) ||
	    pthread_create(&t, NULL, free_and_trim, NULL) != 0)
		return 2;
	mm_malloc_test_hook = in_stats_window;
	struct mallinfo2 m = mallinfo2();
	mm_malloc_test_hook = NULL;
	pthread_join(t, NULL);
	if (atomic_load(&stats_step) != 2) {
		fprintf(stderr,
		        "the window was not reached, or the trim "
		        "gave nothing back (step %d)",
		        atomic_load(&stats_step));
		return 2;
	}
	if (m.uordblks > m.arena || m.fordblks != m.arena - m.uordblks ||
	    m.fsmblks > m.fordblks) {
		fprintf(stderr,
		        "mallinfo2 overtaken by a release: arena %zu, "
		        "uordblks %zu, fordblks %zu, fsmblks %zu",
		        m.arena, m.uordblks, m.fordblks, m.fsmblks);
		return 1;
	}
	return 0;
}

/* ---- Two threads panicking --------------------------------------------- */

static int first_bad, second_bad; /* statics: free() of either panics */
static atomic_bool first_armed = true, second_go, second_waits;

/* The first to panic, its report written, lets the second panic and
 * waits until the second waits for its abort (with a report of its own
 * instead, the process ends from there). */
static void in_panic_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_PANIC_REPORTED &&
	    atomic_exchange(&first_armed, false)) {
		atomic_store(&second_go, true);
		while (!atomic_load(&second_waits))
			sched_yield();
	} else if (where == MM_MALLOC_HOOK_PANIC_WAITS) {
		atomic_store(&second_waits, true);
	}
}

static void *panics_second(void *arg)
{
	free(malloc(16)); /* its slot, before it waits */
	while (!atomic_load(&second_go))
		sched_yield();
	free(&second_bad);
	return arg;
}

/* In a child whose stderr is the pipe's end out: two threads free a
 * static each, the second while the first is inside its panic. */
static void two_panics(int out)
{
	dup2(out, 2);
	alarm(120); /* a hang dies of SIGALRM (not inherited from fork); 120 s
	             * as main gives every scenario */
	pthread_t t;
	if (pthread_create(&t, NULL, panics_second, NULL) != 0)
		_exit(2);
	mm_malloc_test_hook = in_panic_window;
	free(&first_bad);
	_exit(3);
}

/* malloc_hooks_test.h */
int hooks_child(void (*child)(int), char *out, size_t outsz)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	free(malloc(16));
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		child(fd[1]);
	close(fd[1]);
	read_to_end(fd[0], out, outsz);
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

/*
 * mm_panic reports once: a second thread that panics while the first
 * reports waits for the first's abort, so that their lines do not
 * interleave. The first, its report written, holds on until the second
 * waits; the child must die of SIGABRT with one report, naming the
 * first pointer.
 */
int second_panic_waits(void)
{
	char out[2048];
	int st = hooks_child(two_panics, out, sizeof(out));
	if (st == -1)
		return 2;
	char first[32], second[32];
	snprintf(first, sizeof(first), "%p", (void *)&first_bad);
	snprintf(second, sizeof(second), "%p", (void *)&second_bad);
	const char *line = strstr(out, "mm_malloc: ");
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT || !line ||
	    !strstr(out, first) || strstr(line + 1, "mm_malloc: ") ||
	    strstr(out, second)) {
		fprintf(stderr,
		        "two threads panicking: status %#x, want SIGABRT "
		        "and one report naming %s; stderr: %s",
		        st, first, out);
		return 1;
	}
	return 0;
}

/* ---- A panic inside a panic, on one thread ----------------------------- */

static int outer_bad, inner_bad; /* statics: free() of either panics */
static atomic_bool inner_armed = true;

/* The nested panic's thread is the one whose panic waits for its own
 * abort: it would wait for ever. Said, and the child ends with 4. */
static void waits_for_itself(enum mm_malloc_hook_point where)
{
	static const char msg[] = "the nested panic waits for its own "
	                          "thread's abort\n";
	if (where == MM_MALLOC_HOOK_PANIC_REPORTED &&
	    atomic_exchange(&inner_armed, false))
		raise(SIGUSR1); /* its handler panics on this thread */
	else if (where == MM_MALLOC_HOOK_PANIC_WAITS) {
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(5);
		_exit(4);
	}
}

static void free_inner(int sig)
{
	(void)sig;
	free(&inner_bad);
}

/* In a child whose stderr is the pipe's end out: a free of a static
 * panics; inside that panic, a signal handler's free of another. */
static void nested_panic(int out)
{
	dup2(out, 2);
	alarm(120); /* as two_panics */
	signal(SIGUSR1, free_inner);
	mm_malloc_test_hook = waits_for_itself;
	free(&outer_bad);
	_exit(3);
}

/*
 * A misuse inside the report of another on the same thread (a signal
 * handler's) is reported too, and the process aborts:
 * there is no other thread's abort to wait for. Until a review the
 * nested mm_panic took the first for another thread's and paused for
 * ever, before the first one's abort (a hang; if the signal came before
 * the first report was written, with no line at all).
 */
int panic_inside_panic(void)
{
	char out[2048];
	int st = hooks_child(nested_panic, out, sizeof(out));
	if (st == -1)
		return 2;
	char outer[32], inner[32];
	snprintf(outer, sizeof(outer), "%p", (void *)&outer_bad);
	snprintf(inner, sizeof(inner), "%p", (void *)&inner_bad);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT ||
	    !strstr(out, outer) || !strstr(out, inner)) {
		fprintf(stderr,
		        "a panic inside a panic: status %#x, want SIGABRT "
		        "and reports naming %s and %s; stderr: %s",
		        st, outer, inner, out);
		return 1;
	}
	return 0;
}

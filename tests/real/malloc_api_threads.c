/*
 * tests/real/malloc_api_threads.c: malloc-api-test's threads (slots
 * given back, shared), fork from a multi-threaded parent, and the fork
 * handlers' order (malloc_api_test.h).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

/* ---- Threads ------------------------------------------------------------ */

static void *churn(void *arg)
{
	uintptr_t seed = (uintptr_t)arg * 2654435761u + 1;
	void *keep[64] = {0};
	for (int i = 0; i < 400; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		unsigned k = (unsigned)(seed >> 58);
		free(keep[k]);
		keep[k] = malloc((seed >> 20) % 3000);
	}
	for (int k = 0; k < 64; k++)
		free(keep[k]);
	return malloc(64); /* freed by the joiner: a remote free */
}

const char *test_thread_churn(void)
{
	/* 4000 threads, 16 at a time: each claims a slot and must give it
	 * back when it exits. This thread owns its slot before the count:
	 * its first allocation may come in the run (a free of a joined
	 * thread's object), and run alone (MALLOC_API_ONLY=thread_churn)
	 * the test failed, "0 before, 1 after". */
	free(malloc(1));
	unsigned before = threads_owned();
	for (int round = 0; round < 250; round++) {
		pthread_t t[16];
		for (int i = 0; i < 16; i++)
			CHECK(pthread_create(
			              &t[i], NULL, churn,
			              (void *)(uintptr_t)(round * 16 + i)) == 0,
			      "pthread_create");
		for (int i = 0; i < 16; i++) {
			void *r;
			pthread_join(t[i], &r);
			free(r);
		}
	}
	unsigned after = threads_owned();
	CHECK(after <= before, "slots owned: %u before, %u after 4000 threads",
	      before, after);
	return NULL;
}

/* test_threads_share's threads: all of them are alive at once. */
enum { SHARE_N = 100 };
static pthread_barrier_t share_barrier;

/* Holds 16 objects filled with its own bytes across the barrier that
 * keeps every thread alive, churns, and returns how many of its objects
 * changed meanwhile (as a pointer). */
static void *share_churn(void *arg)
{
	enum { HELD = 16 };
	unsigned id = (unsigned)(uintptr_t)arg;
	unsigned char *held[HELD];
	size_t len[HELD];
	for (unsigned k = 0; k < HELD; k++) {
		len[k] = 16 + (id * 131 + k * 977) % 3000;
		held[k] = malloc(len[k]);
		if (held[k])
			memset(held[k], (int)(id * 16 + k) | 1, len[k]);
	}
	pthread_barrier_wait(&share_barrier); /* every thread owns slots */
	pthread_barrier_wait(&share_barrier); /* the count has been read */
	free(churn(arg));
	uintptr_t bad = 0;
	for (unsigned k = 0; k < HELD; k++) {
		unsigned char b = (unsigned char)((id * 16 + k) | 1);
		for (size_t i = 0; held[k] && i < len[k]; i++)
			if (held[k][i] != b) {
				bad++;
				break;
			}
		bad += held[k] == NULL;
		free(held[k]);
	}
	return (void *)bad;
}

const char *test_threads_share(void)
{
	/* More live threads than slots (63): all SHARE_N are alive at once
	 * (a barrier), so most slots get a second owner, which the owner
	 * count shows; objects that each thread holds and churns around
	 * stay its own. Without the barrier the threads came and went, and
	 * none may ever have shared. */
	pthread_t t[SHARE_N];
	unsigned before = threads_owned();
	CHECK(pthread_barrier_init(&share_barrier, NULL, SHARE_N + 1) == 0,
	      "pthread_barrier_init");
	for (int i = 0; i < SHARE_N; i++)
		CHECK(pthread_create(&t[i], NULL, share_churn,
		                     (void *)(uintptr_t)i) == 0,
		      "pthread_create %d", i);
	pthread_barrier_wait(&share_barrier);
	unsigned owned = threads_owned();
	pthread_barrier_wait(&share_barrier);
	uintptr_t bad = 0;
	for (int i = 0; i < SHARE_N; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad += (uintptr_t)r;
	}
	pthread_barrier_destroy(&share_barrier);
	CHECK(owned >= before + SHARE_N,
	      "%d live threads own %u slots (%u before they started): "
	      "the sharers are not counted",
	      SHARE_N, owned, before);
	CHECK(bad == 0, "%lu objects changed (or NULL) while live",
	      (unsigned long)bad);
	return NULL;
}

/* ---- fork --------------------------------------------------------------- */

/*
 * fork stops the background threads (its prepare joins them) and the
 * parent's and child's next allocation starts them again. A process whose
 * allocations after the fork all come from its per-thread caches (a
 * server in its steady state that runs a command now and then) must get
 * them back too: until this version only an allocation on malloc's slow
 * path (an empty cache, the heap grown) restarted them, and such a
 * process never took it again, so the memory it freed after the fork
 * was never given back.
 */
int scenario_fork_background(void)
{
	enum { N = 256 };
	static void *big[N];
	for (int i = 0; i < N; i++) /* 16 MiB: past the threads' 8 */
		memset(big[i] = malloc(64 << 10), 1, 64 << 10);
	for (int i = 0; i < 1000; i++) /* this cache's 16-byte objects */
		free(malloc(16));
	if (background_threads_wait() != 3)
		return 2;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0 || wait_status(pid) != 0)
		return 4;
	/* From the cache alone, as before the fork. */
	for (int i = 0; i < 1000; i++)
		free(malloc(16));
	for (int i = 0; i < N; i++)
		free(big[i]);
	return background_threads_wait() == 3 ? 0 : 3;
}

const char *test_fork_background(void)
{
	int st = run_scenario("fork-background", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "after a fork, allocations from the cache alone: status %#x "
	      "(SIGALRM: no background threads before the fork, or none "
	      "after it)",
	      st);
	return NULL;
}

static atomic_bool stop_churn;

static void *churn_forever(void *arg)
{
	while (!stop_churn)
		free(churn(arg));
	return NULL;
}

void *child_thread(void *arg)
{
	return churn(arg);
}

const char *test_fork(void)
{
	pthread_t t[3];
	stop_churn = false;
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, churn_forever,
		               (void *)(uintptr_t)i);
	const char *err = NULL;
	for (int k = 0; k < 30 && !err; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* The child of a multi-threaded parent allocates,
			 * frees, makes threads, and forks again. */
			hang_guard(); /* not inherited */
			free(churn((void *)1));
			void *big = malloc(10 << 20);
			memset(big, 1, 10 << 20);
			free(big);
			pthread_t c;
			void *r;
			pthread_create(&c, NULL, child_thread, NULL);
			pthread_join(c, &r);
			free(r);
			pid_t g = fork();
			if (g == 0)
				_exit(malloc(100) ? 0 : 1);
			int gs;
			waitpid(g, &gs, 0);
			_exit(WIFEXITED(gs) && WEXITSTATUS(gs) == 0 ? 0 : 2);
		}
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			snprintf(why, sizeof(why), "fork %d: child status %#x",
			         k, st);
			err = why;
		}
	}
	stop_churn = true;
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	return err;
}

/*
 * A library makes its state fork-safe the usual way: a prepare handler
 * takes its mutex, registered from its constructor, before the process's
 * first malloc. Another thread holds that mutex while it allocates. The
 * allocator's own prepare handler must run after the library's (last,
 * as glibc takes its malloc locks after every handler): run first, it
 * held every slot while the library's waited for the mutex, whose holder
 * waited in malloc for its slot, and fork never returned. Two such
 * libraries: this program (its constructor runs after the allocator's)
 * and a shared library it links (tests/real/fork_lib.c), whose
 * constructor the dynamic loader runs before the allocator's, an
 * LD_PRELOAD library's: that one hung 3 runs of 3 until the allocator
 * was linked with -z initfirst.
 */
pthread_mutex_t *fork_lib_mutex(void);

static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t *user_lock; /* the lock lib_user allocates under */
static atomic_bool lib_stop;

static void lib_prepare(void)
{
	pthread_mutex_lock(&lib_lock);
}

static void lib_release(void)
{
	pthread_mutex_unlock(&lib_lock);
}

__attribute__((constructor)) static void lib_constructor(void)
{
	pthread_atfork(lib_prepare, lib_release, lib_release);
}

static void *lib_user(void *arg)
{
	(void)arg;
	while (!atomic_load(&lib_stop)) {
		pthread_mutex_lock(user_lock);
		free(malloc(64));
		pthread_mutex_unlock(user_lock);
	}
	return NULL;
}

/* Forks n children in turn, each of which mallocs and exits; exits 3 if
 * one fails or dies (a fork that left a lock held hangs it: the
 * alarm in_child sets then ends the run). */
static void fork_children_that_malloc(int n)
{
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(malloc(32) ? 0 : 1);
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			_exit(3);
	}
}

static void fork_under_lib_lock(void)
{
	pthread_t t;
	pthread_create(&t, NULL, lib_user, NULL);
	fork_children_that_malloc(300);
	atomic_store(&lib_stop, true);
	pthread_join(t, NULL);
}

const char *test_fork_handler_order(void)
{
	pthread_mutex_t *locks[] = {&lib_lock, fork_lib_mutex()};
	const char *whose[] = {"the program's", "a linked library's"};
	for (int i = 0; i < 2; i++) {
		char out[256];
		user_lock = locks[i];
		int st = in_child(fork_under_lib_lock, out, sizeof(out));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "300 forks while a thread allocates under a lock that "
		      "%s prepare handler takes: status %#x (SIGALRM: "
		      "deadlock) %s",
		      whose[i], st, out);
	}
	return NULL;
}

/*
 * glibc's fork takes its stdio list lock after every prepare handler, and
 * its own malloc's locks after that ("the libio list lock has an indirect
 * malloc dependency", posix/fork.c): a thread may hold that lock (or a
 * stream's, which fflush(NULL) waits for under it) while it allocates, as
 * getline does under its stream's lock. Here one thread allocates with a
 * stream locked, another flushes every stream, and the main thread
 * forks. The allocator's prepare handler held every slot while glibc
 * then waited for the list lock: its holder waited for the stream, whose
 * holder waited in malloc for its slot, and fork never returned (every
 * run here, within the first forks).
 */
static FILE *stdio_stream;
static atomic_bool stdio_stop;

static void *stdio_allocator(void *arg)
{
	(void)arg;
	while (!atomic_load(&stdio_stop)) {
		flockfile(stdio_stream);
		for (int i = 0; i < 64; i++)
			free(malloc(100));
		funlockfile(stdio_stream);
	}
	return NULL;
}

static void *stdio_flusher(void *arg)
{
	(void)arg;
	while (!atomic_load(&stdio_stop))
		fflush(NULL);
	return NULL;
}

static void fork_under_stdio_lock(void)
{
	stdio_stream = fopen("/dev/null", "w");
	if (!stdio_stream)
		_exit(2);
	pthread_t a, f;
	pthread_create(&a, NULL, stdio_allocator, NULL);
	pthread_create(&f, NULL, stdio_flusher, NULL);
	fork_children_that_malloc(100);
	atomic_store(&stdio_stop, true);
	pthread_join(a, NULL);
	pthread_join(f, NULL);
}

const char *test_fork_stdio_lock(void)
{
	char out[256];
	int st = in_child(fork_under_stdio_lock, out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "100 forks while a thread allocates holding a stream's lock "
	      "and another flushes every stream: status %#x (SIGALRM: "
	      "deadlock) %s",
	      st, out);
	return NULL;
}

/*
 * fork() from a signal handler of a single-threaded process, which may
 * interrupt the thread inside malloc or free: glibc's fork skips its
 * locks there ("to make fork safer to use in signal handlers") and the
 * child may exec or _exit. Our prepare handler took every slot, this
 * thread's own included, which the interrupted call held: it waited for
 * itself, and the process hung (every run here, within the first few
 * forks). In a fresh process without background threads
 * (MM_MALLOC_BACKGROUND=0, set by the parent).
 */
static volatile sig_atomic_t handler_forks, handler_fork_bad;

static void fork_in_handler(int sig)
{
	(void)sig;
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	if (p > 0) {
		int st;
		waitpid(p, &st, 0);
		handler_fork_bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
		handler_forks++;
	}
}

int scenario_handler_fork(void)
{
	const char *mb = getenv("MM_MALLOC_MEMBARRIER");
	if (mb && strcmp(mb, "0") == 0 &&
	    (!find_extensions() || strcmp(slot_mode(), "exchange") != 0))
		return 6; /* the mode asked for is not the one tested */
	struct sigaction sa = {.sa_handler = fork_in_handler};
	sigaction(SIGPROF, &sa, NULL);
	struct itimerval it = {{0, 2000}, {0, 2000}};
	setitimer(ITIMER_PROF, &it, NULL);
	for (long i = 0; handler_forks < 200; i++)
		free(malloc(16 + (size_t)(i % 2000)));
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_PROF, &off, NULL);
	/* The heap is still sound after forks that cut into its calls. */
	for (int i = 0; i < 10000; i++)
		free(malloc(16 + (size_t)(i % 3000)));
	/* A skipped fork's parent handler matches it alone: a fork after
	 * it gives the slots back, and another thread's calls go on (they
	 * waited for its fork for ever, the hang guard's SIGALRM, when a
	 * skip was counted for good). */
	hang_guard();
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	int st = -1;
	pthread_t t;
	void *r = NULL;
	if (p < 0 || waitpid(p, &st, 0) != p || st != 0 ||
	    pthread_create(&t, NULL, child_thread, NULL) != 0 ||
	    pthread_join(t, &r) != 0)
		return 5;
	free(r);
	return handler_fork_bad ? 5 : 0;
}

/*
 * In both slot modes. With MM_MALLOC_MEMBARRIER=0 every call takes its
 * slot's busy word on the slow path, and the signal may come after the
 * exchange took it and before held said so, or after the leave cleared
 * held and before busy: the prepare handler then waited for this
 * thread's own busy (every run, within 20 s, until this version; the
 * membarrier mode's own word, in, was already told). The child inherits
 * the switch from this process's environment, set for the run alone.
 */
const char *test_handler_fork(void)
{
	const char *old = getenv("MM_MALLOC_MEMBARRIER");
	char *saved = old ? strdup(old) : NULL;
	int st[2];
	for (int exchange = 0; exchange < 2; exchange++) {
		if (exchange)
			setenv("MM_MALLOC_MEMBARRIER", "0", 1);
		st[exchange] = run_scenario("handler-fork",
		                            "MM_MALLOC_BACKGROUND", "0", 0);
	}
	if (saved)
		setenv("MM_MALLOC_MEMBARRIER", saved, 1);
	else
		unsetenv("MM_MALLOC_MEMBARRIER");
	free(saved);
	for (int exchange = 0; exchange < 2; exchange++)
		CHECK(WIFEXITED(st[exchange]) && WEXITSTATUS(st[exchange]) == 0,
		      "fork() from a signal handler of a single-threaded "
		      "process, %s mode: status %#x (SIGALRM: it hung; 6: "
		      "MM_MALLOC_MEMBARRIER=0 ignored)",
		      exchange ? "exchange" : "default", st[exchange]);
	return NULL;
}

/*
 * tests/real/malloc_api_test.c: the conventions of libmm_malloc.so's entry
 * points, run under LD_PRELOAD by tests/real/run-quick.
 *
 * Each test is a function returning NULL or what went wrong. Tests that
 * abort on purpose (misuse) or that must start from a fresh process run
 * in a child; the parent checks its exit and its stderr. Prints one line a
 * test ("ok name" / "not ok name: why") and last "N passed, N failed".
 * Built with -fno-builtin so that the compiler does not fold calls away.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char why[512];

#define CHECK(cond, ...)                                         \
	do {                                                     \
		if (!(cond)) {                                   \
			snprintf(why, sizeof(why), __VA_ARGS__); \
			return why;                              \
		}                                                \
	} while (0)

static unsigned (*threads_owned)(void);

/* ---- Errors ----------------------------------------------------------- */

/* Sizes the compiler cannot see, so that it does not warn about them. */
static volatile size_t size_max = SIZE_MAX;
static volatile size_t odd_align = 100;

static const char *test_errno(void)
{
	const size_t smax = size_max;
	errno = 0;
	CHECK(!malloc(smax) && errno == ENOMEM, "malloc(SIZE_MAX)");
	errno = 0;
	CHECK(!malloc((size_t)1 << 62) && errno == ENOMEM, "malloc(2^62)");
	errno = 0;
	CHECK(!calloc(smax / 2, 3) && errno == ENOMEM, "calloc overflow");
	errno = 0;
	CHECK(!calloc((size_t)1 << 30, (size_t)1 << 20) && errno == ENOMEM,
	      "calloc 1 PiB");
	void *p = malloc(100);
	CHECK(p, "malloc(100)");
	memset(p, 7, 100);
	errno = 0;
	CHECK(!realloc(p, smax - 4096) && errno == ENOMEM, "realloc huge");
	CHECK(((unsigned char *)p)[99] == 7, "a failed realloc kept p");
	errno = 0;
	CHECK(!reallocarray(p, smax / 2, 4) && errno == ENOMEM,
	      "reallocarray overflow");
	free(p);
	errno = 0;
	CHECK(!memalign(smax / 2 + 2, 8) && errno == EINVAL,
	      "memalign(> SIZE_MAX / 2 + 1)");
	errno = 0;
	CHECK(!aligned_alloc(smax / 4 + 1, 8) && errno == ENOMEM,
	      "aligned_alloc(2^62) %d", errno);
	void *q = (void *)1;
	CHECK(posix_memalign(&q, 0, 8) == EINVAL && q == (void *)1,
	      "posix_memalign align 0");
	CHECK(posix_memalign(&q, 4, 8) == EINVAL, "posix_memalign align 4");
	CHECK(posix_memalign(&q, 24, 8) == EINVAL, "posix_memalign align 24");
	CHECK(posix_memalign(&q, 64, SIZE_MAX / 2) == ENOMEM && q == (void *)1,
	      "posix_memalign huge");
	errno = 0;
	CHECK(!pvalloc(SIZE_MAX - 10) && errno == ENOMEM, "pvalloc overflow");
	return NULL;
}

static const char *test_malloc_zero(void)
{
	void *a = malloc(0), *b = malloc(0);
	CHECK(a && b && a != b, "malloc(0) gives unique objects: %p %p", a, b);
	CHECK(malloc_usable_size(a) >= 1, "usable size of malloc(0)");
	free(a);
	free(b);
	CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
	free(NULL);
	return NULL;
}

/*
 * free() leaves errno alone (POSIX.1-2024; glibc since 2.33): a caller may
 * free a buffer between a failing call and reading its errno. Large
 * objects (40 to 140 KB) go from thread to thread through a shared array,
 * so that frees contend for the page heap's lock and wait for it: the
 * futex wait of a lock just released fails with EAGAIN, which free passed
 * on (3 to 70 frees in 800,000, in a review's runs). Each thread stops at
 * the first change.
 */
enum { ERRNO_POOL = 256, ERRNO_SENTINEL = 4242 };
static _Atomic(void *) errno_pool[ERRNO_POOL];
static atomic_uint errno_changed;
static atomic_int errno_seen;

static void *free_errno_worker(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 7919 + 1;
	for (long i = 0; i < 300000 && !errno_changed; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		size_t n = 40000 + (seed >> 20) % 100000;
		void *old = atomic_exchange(
		        &errno_pool[(seed >> 33) % ERRNO_POOL], malloc(n));
		errno = ERRNO_SENTINEL;
		free(old);
		if (errno != ERRNO_SENTINEL) {
			atomic_store(&errno_seen, errno);
			atomic_fetch_add(&errno_changed, 1);
		}
	}
	return NULL;
}

static const char *test_free_keeps_errno(void)
{
	errno = ERRNO_SENTINEL;
	free(NULL);
	free(malloc(100));
	free(malloc(1 << 20));
	CHECK(errno == ERRNO_SENTINEL, "free changed errno to %d", errno);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, free_errno_worker,
		                     (void *)(uintptr_t)i) == 0,
		      "pthread_create");
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int k = 0; k < ERRNO_POOL; k++)
		free(atomic_exchange(&errno_pool[k], NULL));
	CHECK(errno_changed == 0, "free changed errno (to %d) under contention",
	      errno_seen);
	return NULL;
}

/* ---- Alignment and sizes ---------------------------------------------- */

static const char *test_alignment(void)
{
	static const size_t sizes[] = {0,    1,    15,    16,    100,    4095,
	                               4096, 5000, 32768, 40000, 1 << 20};
	for (size_t align = 1; align <= ((size_t)1 << 22); align <<= 1) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t n = sizes[i];
			void *p = memalign(align, n);
			CHECK(p && (uintptr_t)p % align == 0,
			      "memalign(%zu, %zu) = %p", align, n, p);
			memset(p, 0xab, n);
			CHECK(malloc_usable_size(p) >= n, "usable size");
			free(p);
			p = aligned_alloc(align, n);
			CHECK(p && (uintptr_t)p % align == 0,
			      "aligned_alloc(%zu, %zu) = %p", align, n, p);
			free(p);
			if (align >= sizeof(void *)) {
				CHECK(posix_memalign(&p, align, n) == 0 &&
				              (uintptr_t)p % align == 0,
				      "posix_memalign(%zu, %zu)", align, n);
				free(p);
			}
		}
	}
	/* glibc rounds an alignment that is not a power of two up. */
	void *p = memalign(odd_align, 10);
	CHECK(p && (uintptr_t)p % 128 == 0, "memalign(100) = %p", p);
	free(p);
	long page = sysconf(_SC_PAGESIZE);
	p = valloc(10);
	CHECK(p && (uintptr_t)p % (uintptr_t)page == 0, "valloc");
	free(p);
	p = pvalloc(page + 1);
	CHECK(p && (uintptr_t)p % (uintptr_t)page == 0 &&
	              malloc_usable_size(p) >= 2 * (size_t)page,
	      "pvalloc rounds up to pages");
	free(p);
	for (size_t n = 1; n < 70000; n = n * 5 / 4 + 1) {
		p = malloc(n);
		CHECK(p && (uintptr_t)p % 16 == 0, "malloc(%zu) = %p", n, p);
		size_t u = malloc_usable_size(p);
		CHECK(u >= n, "usable %zu < %zu", u, n);
		memset(p, 1, u); /* all of it is ours */
		free(p);
	}
	return NULL;
}

static const char *test_realloc_calloc(void)
{
	unsigned char *p = realloc(NULL, 10);
	CHECK(p, "realloc(NULL, 10)");
	for (int i = 0; i < 10; i++)
		p[i] = (unsigned char)i;
	for (size_t n = 10; n < (8u << 20); n = n * 3 / 2) {
		p = realloc(p, n);
		CHECK(p, "realloc to %zu", n);
		for (int i = 0; i < 10; i++)
			CHECK(p[i] == i, "contents kept at %zu", n);
	}
	p = realloc(p, 5);
	CHECK(p && p[4] == 4, "shrink");
	errno = 0;
	CHECK(realloc(p, 0) == NULL, "realloc(p, 0) frees, returns NULL");
	for (int round = 0; round < 200; round++) {
		size_t n = 8 + (size_t)round * 97;
		unsigned char *d = malloc(n);
		memset(d, 0xff, n);
		free(d);
		unsigned char *z = calloc(1, n);
		CHECK(z, "calloc");
		for (size_t i = 0; i < n; i++)
			CHECK(z[i] == 0, "calloc(%zu) byte %zu not zero", n, i);
		free(z);
	}
	return NULL;
}

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

static const char *test_thread_churn(void)
{
	/* 4000 threads, 16 at a time: each claims a slot and must give it
	 * back when it exits. */
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

static const char *test_threads_share(void)
{
	/* More live threads than slots: they share slots and still work. */
	enum { N = 100 };
	pthread_t t[N];
	for (int i = 0; i < N; i++)
		CHECK(pthread_create(&t[i], NULL, churn,
		                     (void *)(uintptr_t)i) == 0,
		      "pthread_create %d", i);
	for (int i = 0; i < N; i++) {
		void *r;
		pthread_join(t[i], &r);
		free(r);
	}
	return NULL;
}

/* ---- fork --------------------------------------------------------------- */

static atomic_bool stop_churn;

static void *churn_forever(void *arg)
{
	while (!stop_churn)
		free(churn(arg));
	return NULL;
}

static void *child_thread(void *arg)
{
	return churn(arg);
}

static const char *test_fork(void)
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
			alarm(20);
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

static void fork_under_lib_lock(void)
{
	pthread_t t;
	pthread_create(&t, NULL, lib_user, NULL);
	for (int i = 0; i < 300; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(malloc(32) ? 0 : 1);
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			_exit(3);
	}
	atomic_store(&lib_stop, true);
	pthread_join(t, NULL);
}

static int in_child(void (*fn)(void), char *out, size_t outsz);

static const char *test_fork_handler_order(void)
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

/* ---- Slots under fork and sharing --------------------------------------- */

/* A thread that owns its slot alone holds it without a locked instruction;
 * fork and threads that share a slot must still keep it out (slots.c).
 * These run threads that allocate, fill, check and free as fast as they
 * can while the main thread forks: an object whose bytes changed, a heap
 * error (mm_panic aborts the process) or a child that cannot allocate
 * shows two threads inside one slot, or a fork taken mid-call. */

static atomic_bool hammer_stop;
static atomic_uint hammer_bad;       /* objects found changed */
static atomic_uint hammer_ready;     /* threads past their first allocation */
static atomic_ulong hammer_progress; /* rounds done, in steps of 16 */
/* Set while a fork child runs: the hammers wait, so that the child is not
 * one runnable thread among 80 on a small machine. */
static atomic_bool hammer_paused;
static pthread_mutex_t pause_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pause_cond = PTHREAD_COND_INITIALIZER;

static void hammer_pause(bool on)
{
	pthread_mutex_lock(&pause_lock);
	hammer_paused = on;
	if (!on)
		pthread_cond_broadcast(&pause_cond);
	pthread_mutex_unlock(&pause_lock);
}

static void hammer_wait_paused(void)
{
	pthread_mutex_lock(&pause_lock);
	while (hammer_paused)
		pthread_cond_wait(&pause_cond, &pause_lock);
	pthread_mutex_unlock(&pause_lock);
}

static void fill(unsigned char *p, size_t n, unsigned tag)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(tag + i * 31);
}

static bool intact(const unsigned char *p, size_t n, unsigned tag)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(tag + i * 31))
			return false;
	return true;
}

/* rounds of allocate-fill / check-free over 32 live objects (8 B to
 * 2 KiB, one in 64 of 64 KiB), or until
 * hammer_stop if rounds is 0; returns the objects found changed. */
static unsigned hammer_rounds(uint64_t seed, unsigned long rounds)
{
	enum { LIVE = 32 };
	unsigned char *obj[LIVE] = {0};
	size_t len[LIVE] = {0};
	unsigned bad = 0;
	bool counted = false;
	for (unsigned long r = 0; rounds ? r < rounds : !hammer_stop; r++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		unsigned k = (unsigned)(seed >> 59);
		if (obj[k]) {
			bad += !intact(obj[k], len[k], k + (unsigned)len[k]);
			free(obj[k]);
		}
		len[k] = (seed >> 20) % 64 == 0 ? (size_t)64 << 10
		                                : 8 + (seed >> 30) % 2041;
		obj[k] = malloc(len[k]);
		if (!obj[k])
			return bad + 1;
		fill(obj[k], len[k], k + (unsigned)len[k]);
		if (!counted && !rounds) {
			atomic_fetch_add(&hammer_ready, 1);
			counted = true;
		}
		if (!rounds && r % 16 == 0) {
			atomic_fetch_add(&hammer_progress, 16);
			if (hammer_paused)
				hammer_wait_paused();
		}
	}
	for (unsigned k = 0; k < LIVE; k++)
		if (obj[k]) {
			bad += !intact(obj[k], len[k], k + (unsigned)len[k]);
			free(obj[k]);
		}
	return bad;
}

static void *hammer(void *arg)
{
	unsigned bad = hammer_rounds((uintptr_t)arg * 2654435761u + 7, 0);
	atomic_fetch_add(&hammer_bad, bad);
	return NULL;
}

static void *hammer_some(void *arg)
{
	return (void *)(uintptr_t)hammer_rounds((uintptr_t)arg + 1, 2000);
}

static const char *(*slot_mode)(void);

/* The library's extensions (mm_malloc.h); false if not preloaded. */
static bool find_extensions(void)
{
	threads_owned =
	        (unsigned (*)(void))dlsym(RTLD_DEFAULT, "mm_malloc_threads");
	slot_mode = (const char *(*)(void))dlsym(RTLD_DEFAULT,
	                                         "mm_malloc_slot_mode");
	return threads_owned && slot_mode;
}

/* In a fork child: the parent's objects are intact and can be freed; the
 * child allocates, from a new thread too. Exit status: 0 fine, 1 changed
 * bytes, 2 thread trouble, 3 a different slot mode than the parent's. */
static void fork_child_check(unsigned char **mine, size_t n, const char *mode)
{
	alarm(60); /* a deadlock fails the test instead of hanging it */
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		bad |= !intact(mine[i], 100 + i, (unsigned)i);
		free(mine[i]);
	}
	bad |= hammer_rounds(99, 3000) != 0;
	pthread_t t;
	void *r;
	if (pthread_create(&t, NULL, hammer_some, NULL) || pthread_join(t, &r))
		_exit(2);
	bad |= r != NULL;
	if (strcmp(slot_mode(), mode) != 0)
		_exit(3);
	_exit(bad);
}

/* nthreads hammer while this thread forks nforks times. With more than
 * 64 threads, some share a slot (checked by the owner count). */
static const char *fork_while_hammering(unsigned nthreads, int nforks)
{
	enum { MINE = 16 };
	pthread_t *t = calloc(nthreads, sizeof(*t));
	CHECK(t, "calloc");
	hammer_stop = false;
	hammer_bad = 0;
	hammer_ready = 0;
	for (unsigned i = 0; i < nthreads; i++)
		CHECK(pthread_create(&t[i], NULL, hammer,
		                     (void *)(uintptr_t)i) == 0,
		      "pthread_create %u", i);
	while (hammer_ready < nthreads)
		sched_yield();
	unsigned owned = threads_owned();
	const char *mode = slot_mode();
	const char *err = NULL;
	if (nthreads > 64 && owned <= 64) {
		snprintf(why, sizeof(why), "%u threads own only %u slots",
		         nthreads, owned);
		err = why;
	}
	unsigned char *mine[MINE];
	for (int k = 0; k < nforks && !err; k++) {
		for (size_t i = 0; i < MINE; i++)
			fill(mine[i] = malloc(100 + i), 100 + i, (unsigned)i);
		pid_t pid = fork();
		if (pid == 0)
			fork_child_check(mine, MINE, mode);
		hammer_pause(true);
		int st;
		waitpid(pid, &st, 0);
		hammer_pause(false);
		/* The next fork finds the hammers inside their calls. */
		unsigned long seen = hammer_progress;
		while (hammer_progress - seen < 64ul * nthreads)
			sched_yield();
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			snprintf(why, sizeof(why),
			         "fork %d of %d with %u threads: child status "
			         "%#x",
			         k, nforks, nthreads, st);
			err = why;
		}
		for (size_t i = 0; i < MINE; i++)
			free(mine[i]);
	}
	hammer_stop = true;
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	free(t);
	if (!err && hammer_bad) {
		snprintf(why, sizeof(why), "%u objects changed while live",
		         hammer_bad);
		err = why;
	}
	return err;
}

/* Threads that own their slot alone, and fork. */
static const char *test_fork_stress(void)
{
	return fork_while_hammering(3, 100);
}

/* More threads than slots: slots go from one owner to shared, and fork
 * must keep the sharers out too. */
static const char *test_fork_shared(void)
{
	return fork_while_hammering(80, 12);
}

/* The mode is membarrier wherever the kernel offers it, unless the
 * environment says MM_MALLOC_MEMBARRIER=0 (the whole test may run so). */
static const char *test_slot_mode(void)
{
	long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	const char *env = getenv("MM_MALLOC_MEMBARRIER");
	bool can = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	           !(env && env[0] == '0');
	const char *want = can ? "membarrier" : "exchange";
	CHECK(strcmp(slot_mode(), want) == 0,
	      "slot mode %s, expected %s (membarrier query %#lx)", slot_mode(),
	      want, cmds);
	return NULL;
}

/* ---- A thread's teardown after it gave its slot back ------------------- */

static pthread_key_t late_key;
static atomic_uint late_bad;     /* objects found changed */
static atomic_uint late_running; /* late threads not yet through teardown */
static atomic_uint sleepers_ready;
static atomic_bool sleepers_go;

/* A key made after the library's: glibc runs its destructor after the
 * library's, which gave the thread's slot back (a new thread may own it
 * alone by now); this one still allocates and frees. */
static void late_destructor(void *arg)
{
	atomic_fetch_add(&late_bad, hammer_rounds((uintptr_t)arg, 300));
	atomic_fetch_sub(&late_running, 1);
}

static void *late_thread(void *arg)
{
	pthread_setspecific(late_key, arg);
	atomic_fetch_add(&late_bad, hammer_rounds((uintptr_t)arg * 3, 300));
	return NULL;
}

static void *sleeper(void *arg)
{
	free(malloc(16)); /* owns a slot from here on */
	atomic_fetch_add(&sleepers_ready, 1);
	while (!sleepers_go)
		usleep(1000);
	return arg;
}

static const char *test_exit_late(void)
{
	/* Sleepers own all but two slots, so that a new thread takes a slot
	 * just given back, while its last owner is still in its teardown. */
	enum { SLOTS = 63, MAX_SLEEPERS = SLOTS };
	unsigned owned = threads_owned();
	unsigned nsleep = owned + 2 < SLOTS ? SLOTS - 2 - owned : 0;
	pthread_t sl[MAX_SLEEPERS];
	sleepers_go = false;
	sleepers_ready = 0;
	for (unsigned i = 0; i < nsleep; i++)
		CHECK(pthread_create(&sl[i], NULL, sleeper, NULL) == 0,
		      "pthread_create sleeper %u", i);
	while (sleepers_ready < nsleep)
		sched_yield();
	CHECK(pthread_key_create(&late_key, late_destructor) == 0,
	      "pthread_key_create");
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	late_bad = 0;
	const char *err = NULL;
	for (uintptr_t k = 1; k <= 400 && !err; k++) {
		while (late_running >= 3)
			sched_yield();
		atomic_fetch_add(&late_running, 1);
		pthread_t t;
		if (pthread_create(&t, &attr, late_thread, (void *)k) != 0) {
			atomic_fetch_sub(&late_running, 1);
			err = "pthread_create late thread";
		}
	}
	while (late_running)
		sched_yield();
	pthread_attr_destroy(&attr);
	pthread_key_delete(late_key);
	sleepers_go = true;
	for (unsigned i = 0; i < nsleep; i++)
		pthread_join(sl[i], NULL);
	CHECK(!err, "%s", err);
	CHECK(late_bad == 0, "%u objects changed while live", late_bad);
	return NULL;
}

/* ---- Children that must die, or start fresh ---------------------------- */

static int static_object;

/* Runs fn in a child with stderr captured into out; returns its status. */
static int in_child(void (*fn)(void), char *out, size_t outsz)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		alarm(20);
		fn();
		_exit(0);
	}
	close(fd[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < outsz && (r = read(fd[0], out + n, outsz - n - 1)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
	return st;
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

static const char *test_misuse(void)
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

/* Grows the heap past the threads' threshold and waits for them (up to
 * 10 s: they start at once, but a loaded machine may stall a process);
 * returns which were found: 1 the sweeper, 2 the scavenger. */
static int background_threads_up(void)
{
	grow_heap();
	for (int i = 0; i < 1000; i++)
		free(malloc(100));
	int found = 0;
	for (int tries = 0; tries < 500 && found != 3; tries++) {
		found = 0;
		char path[300], comm[32];
		DIR *d = opendir("/proc/self/task");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			         e->d_name);
			FILE *f = fopen(path, "r");
			if (!f)
				continue;
			if (fgets(comm, sizeof(comm), f)) {
				found |= strstr(comm, "mm_sweeper") ? 1 : 0;
				found |= strstr(comm, "mm_mheap_scav") ? 2 : 0;
			}
			fclose(f);
		}
		if (d)
			closedir(d);
		if (found != 3)
			usleep(20000);
	}
	return found;
}

/* The background threads are running (after the heap grew). */
static const char *test_background(void)
{
	int found = background_threads_up();
	CHECK(found == 3, "background threads not found (mask %d)", found);
	return NULL;
}

/* Fresh processes whose first allocations come from pthread_create or
 * dlopen, or whose threads all pthread_exit (argv[1] names the scenario):
 * they must finish, with status 0. */
static int calloc_untouched(void);
static int signal_fork(void);
static int clone_child(void);

static int first_scenario(const char *what)
{
	if (strcmp(what, "exchange") == 0) {
		/* MM_MALLOC_MEMBARRIER=0: every call takes the exchange. */
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
	alarm(20);
	if (strcmp(what, "calloc-untouched") == 0)
		return calloc_untouched();
	if (strcmp(what, "signal-fork") == 0)
		return signal_fork();
	if (strcmp(what, "clone-child") == 0)
		return clone_child();
	if (strcmp(what, "underscore-fork") == 0) {
		/* _Fork runs no fork handlers: its child has none of the
		 * background threads, and its next fork must not wait for
		 * them (it joined them, forever). */
		if (background_threads_up() != 3)
			return 4;
		/* Bursts of frees keep the sweeper busy (taking the heap's
		 * and the classes' locks) while the program forks: a child
		 * could inherit a lock held by a thread it does not have. */
		enum { N = 50000 };
		static void *v[N];
		for (int it = 0; it < 100; it++) {
			for (int i = 0; i < N; i++)
				v[i] = malloc(16 + (size_t)(i % 500));
			for (int i = 0; i < N; i++)
				free(v[(i * 7919L) % N]);
			pid_t pid = _Fork();
			if (pid == 0) {
				alarm(20); /* not inherited */
				for (int i = 0; i < 1000; i++)
					free(malloc((size_t)i));
				pid_t g = fork();
				if (g == 0)
					_exit(malloc(10) ? 0 : 1);
				int gs;
				waitpid(g, &gs, 0);
				_exit(WIFEXITED(gs) && WEXITSTATUS(gs) == 0
				              ? 0
				              : 5);
			}
			int st;
			waitpid(pid, &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				return WIFEXITED(st) ? WEXITSTATUS(st) : 6;
		}
		return 0;
	}
	if (strcmp(what, "no-background") == 0) {
		/* MM_MALLOC_BACKGROUND=0 (the parent set it): past the size
		 * that starts them, no thread but this one. */
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
	if (strcmp(what, "address-limit") == 0) {
		/* Under RLIMIT_AS (the parent set it): the heap settles for
		 * a smaller arena and works. */
		char *p = malloc(64 << 20);
		if (!p)
			return 2;
		memset(p, 1, 64 << 20);
		free(p);
		return 0;
	}
	if (strcmp(what, "first-pthread") == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, child_thread, NULL))
			return 1;
		void *r;
		pthread_join(t, &r);
		free(r);
	} else if (strcmp(what, "pthread-exit") == 0) {
		/* Every thread exits with pthread_exit, main first: glibc
		 * then ends the process with status 0, and our background
		 * threads must not keep it alive. */
		grow_heap();
		free(malloc(100)); /* starts them */
		pthread_t t;
		pthread_create(&t, NULL, child_thread, NULL);
		pthread_exit(NULL);
	} else {
		void *h = dlopen("libz.so.1", RTLD_NOW);
		if (!h)
			h = dlopen("libm.so.6", RTLD_NOW);
		if (!h)
			return 1;
		dlclose(h);
	}
	free(malloc(10));
	return 0;
}

static const char *self_exe;

/* Runs this program again as scenario what (its argv[1]) in a fresh
 * process, with the environment variable env set to val first (env not
 * NULL) and its address space limited to as_limit bytes (not 0); returns
 * its wait status. */
static int run_scenario(const char *what, const char *env, const char *val,
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
	int st;
	waitpid(pid, &st, 0);
	return st;
}

/* The fork and sharing stresses again in a process told not to use
 * membarrier: the fallback must stay correct too. */
static const char *test_exchange_mode(void)
{
	int st = run_scenario("exchange", "MM_MALLOC_MEMBARRIER", "0", 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "exchange mode: status %#x (its reason on stderr)", st);
	return NULL;
}

static const char *test_first_allocations(void)
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
static const char *test_underscore_fork(void)
{
	int st = run_scenario("underscore-fork", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "_Fork's child forking: status %#x (SIGALRM: it hung)", st);
	return NULL;
}

/* calloc of a large block of fresh memory writes none of it: it stays
 * out of memory until used (it was all written: 4 GiB took 11.6 s and
 * 4 GiB of memory). In a fresh process, whose heap holds no freed (dirty)
 * pages that the block could reuse. */
static int calloc_untouched(void)
{
	const size_t n = (size_t)1 << 30;
	unsigned char *p = calloc(1, n);
	if (!p)
		return 2;
	size_t np = n / 4096, resident = 0;
	unsigned char *v = malloc(np);
	if (!v || mincore(p, n, v) != 0)
		return 3;
	for (size_t i = 0; i < np; i++)
		resident += v[i] & 1;
	free(v);
	bool zero = p[0] == 0 && p[n / 2] == 0 && p[n - 1] == 0;
	free(p);
	if (!zero)
		return 4;
	if (resident >= np / 100) {
		fprintf(stderr, "%zu of %zu pages resident after calloc\n",
		        resident, np);
		return 5;
	}
	return 0;
}

static const char *test_calloc_large_untouched(void)
{
	int st = run_scenario("calloc-untouched", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "calloc of 1 GiB: status %#x (5: written)", st);
	return NULL;
}

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

static int signal_fork(void)
{
	if (background_threads_up() != 3)
		return 4;
	struct sigaction sa = {.sa_handler = fork_from_handler};
	sigaction(SIGPROF, &sa, NULL);
	struct itimerval it = {{0, 2000}, {0, 2000}};
	setitimer(ITIMER_PROF, &it, NULL);
	for (long i = 0; signal_forks < 200; i++)
		free(malloc(16 + (size_t)(i % 2000)));
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_PROF, &off, NULL);
	return signal_fork_bad ? 5 : 0;
}

static const char *test_signal_fork(void)
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
			char path[300], st[512] = "";
			snprintf(path, sizeof(path), "/proc/self/task/%s/stat",
			         e->d_name);
			FILE *f = fopen(path, "r");
			if (!f)
				continue;
			size_t n = fread(st, 1, sizeof(st) - 1, f);
			st[n] = 0;
			fclose(f);
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
static int clone_child(void)
{
	if (background_threads_up() != 3)
		return 4;
	background_asleep();
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		alarm(20);
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

static const char *test_clone_child(void)
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
static const char *test_no_background(void)
{
	int st = run_scenario("no-background", "MM_MALLOC_BACKGROUND", "0", 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "MM_MALLOC_BACKGROUND=0: status %#x (3: threads started)", st);
	return NULL;
}

/* A program whose address space is limited below the default arena
 * (ulimit -v, as batch systems set): it aborted at its first malloc. */
static const char *test_address_limit(void)
{
	int st = run_scenario("address-limit", NULL, NULL, (size_t)4 << 30);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "under a 4 GiB address-space limit: status %#x", st);
	return NULL;
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
	        {"fork", test_fork},
	        {"fork_handler_order", test_fork_handler_order},
	        {"slot_mode", test_slot_mode},
	        {"fork_stress", test_fork_stress},
	        {"fork_shared", test_fork_shared},
	        {"exchange_mode", test_exchange_mode},
	        {"exit_late", test_exit_late},
	        {"misuse", test_misuse},
	        {"background", test_background},
	        {"no_background", test_no_background},
	        {"underscore_fork", test_underscore_fork},
	        {"signal_fork", test_signal_fork},
	        {"clone_child", test_clone_child},
	        {"first_allocations", test_first_allocations},
	        {"address_limit", test_address_limit},
	        {"calloc_large_untouched", test_calloc_large_untouched},
	};
	int pass = 0, fail = 0;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const char *e = tests[i].fn();
		if (e) {
			printf("not ok %s: %s\n", tests[i].name, e);
			fail++;
		} else {
			printf("ok %s\n", tests[i].name);
			pass++;
		}
		fflush(stdout);
	}
	printf("%d passed, %d failed\n", pass, fail);
	return fail != 0;
}

/*
 * tests/real/malloc_api_trim.c: malloc-api-test's malloc_trim
 * (malloc_api_test.h): it gives the heap's free memory back and says so,
 * with no background threads to do it, and it is safe before the first
 * allocation, with threads allocating meanwhile, and across fork.
 *
 * Each scenario runs in a fresh process (run_scenario); a failure says
 * why on stderr and exits non-zero.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"
#include "proc_read.h"

/* This process's resident set in bytes (/proc/self/statm's second
 * field), read without allocating; 0 if it cannot be read. */
static size_t rss_bytes(void)
{
	char buf[128];
	if (proc_read("/proc/self/statm", buf, sizeof(buf)) <= 0)
		return 0;
	char *p = strchr(buf, ' ');
	if (!p)
		return 0;
	return strtoul(p + 1, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

#define MIB ((size_t)1 << 20)
/* 64 MiB of 256-byte objects; the pointers in a mapping of their own,
 * outside the heap being measured. */
enum { OBJ = 256, NOBJ = (int)(64 * MIB / OBJ) };

/*
 * MM_MALLOC_BACKGROUND=0 (no scavenger): 64 MiB of small objects,
 * written and freed, stay resident until malloc_trim(0), which returns 1
 * and gives most of it back; a second call, with nothing freed since,
 * returns 0.
 */
int scenario_trim(void)
{
	void **v = mmap(NULL, NOBJ * sizeof(void *), PROT_READ | PROT_WRITE,
	                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v == MAP_FAILED)
		return 2;
	free(malloc(100));
	size_t base = rss_bytes();
	for (int i = 0; i < NOBJ; i++)
		if (!(v[i] = malloc(OBJ)) || !memset(v[i], 1, OBJ))
			return 2;
	size_t full = rss_bytes();
	for (int i = 0; i < NOBJ; i++)
		free(v[i]);
	size_t freed = rss_bytes();
	if (full < base + 60 * MIB || freed < base + 48 * MIB) {
		fprintf(stderr,
		        "RSS %zu MiB at the start, %zu with 64 MiB allocated, "
		        "%zu after the frees: not kept resident\n",
		        base / MIB, full / MIB, freed / MIB);
		return 3;
	}
	int r = malloc_trim(0);
	size_t trimmed = rss_bytes();
	if (r != 1 || trimmed > base + 16 * MIB) {
		fprintf(stderr,
		        "malloc_trim(0) returned %d; RSS %zu MiB after the "
		        "frees, %zu after it (%zu at the start)\n",
		        r, freed / MIB, trimmed / MIB, base / MIB);
		return 4;
	}
	if ((r = malloc_trim(0)) != 0) {
		fprintf(stderr, "a second malloc_trim(0) returned %d\n", r);
		return 5;
	}
	/* The heap still works where it gave its pages back. */
	for (int i = 0; i < NOBJ / 16; i++)
		if (!(v[i] = calloc(1, OBJ)) || ((char *)v[i])[OBJ - 1])
			return 6;
	for (int i = 0; i < NOBJ / 16; i++)
		free(v[i]);
	return 0;
}

/* Before this process's first allocation of its own: the result is
 * whatever the start-up left, and the heap works after. */
int scenario_trim_first(void)
{
	int r = malloc_trim(0);
	if (r != 0 && r != 1)
		return 2;
	void *p = malloc(1000);
	if (!p)
		return 3;
	free(p);
	r = malloc_trim(4096);
	return r == 0 || r == 1 ? 0 : 4;
}

static atomic_bool churn_stop;

/* The byte at offset k of an object stamped stamp. */
static unsigned char churn_byte(unsigned stamp, size_t k)
{
	return (unsigned char)(stamp + k * 5 + (k >> 8));
}

/* False, with the first wrong byte on stderr, if the object at p of n
 * bytes does not hold what stamp put there. */
static bool churn_intact(const unsigned char *p, size_t n, unsigned stamp)
{
	for (size_t k = 0; k < n; k++)
		if (p[k] != churn_byte(stamp, k)) {
			fprintf(stderr,
			        "churn: %zu-byte object %p: byte %zu is %#x, "
			        "not %#x\n",
			        n, (const void *)p, k, p[k],
			        churn_byte(stamp, k));
			return false;
		}
	return true;
}

/* Allocates and frees a mixture of sizes until churn_stop, each object
 * filled with a pattern of its own and checked before it is freed (a
 * trim that gave back or reused a live page would show). Returns 1 if
 * malloc failed, 2 if an object changed. */
static void *churn(void *arg)
{
	unsigned seed = (unsigned)(size_t)arg, stamps = seed << 24;
	unsigned char *v[256] = {0};
	size_t len[256] = {0};
	unsigned stamp[256] = {0};
	void *r = NULL;
	while (!r && !atomic_load(&churn_stop)) {
		unsigned i = (seed = seed * 1103515245u + 12345u) >> 8 & 255;
		if (v[i] && !churn_intact(v[i], len[i], stamp[i]))
			r = (void *)2;
		free(v[i]);
		len[i] = 16 + (seed >> 16) % 4096;
		stamp[i] = ++stamps;
		if (!(v[i] = malloc(len[i]))) {
			r = (void *)1;
			break;
		}
		for (size_t k = 0; k < len[i]; k++)
			v[i][k] = churn_byte(stamp[i], k);
	}
	for (int i = 0; i < 256; i++) {
		if (v[i] && !r && !churn_intact(v[i], len[i], stamp[i]))
			r = (void *)2;
		free(v[i]);
	}
	return r;
}

/* A forked child's work: a large object, its own malloc_trim and a small
 * object; an alarm of secs seconds ends it if any of them hangs. */
static void __attribute__((noreturn)) trim_child(unsigned secs)
{
	alarm(secs);
	void *p = malloc(1 << 20);
	memset(p, 2, 1 << 20);
	free(p);
	(void)malloc_trim(0);
	free(malloc(300));
	_exit(0);
}

/* A child forked while others trim: its heap is whole, and its own
 * malloc_trim and allocations finish (an inherited cycle or scavenge
 * left half done would hang them; the alarm ends it then). */
static int fork_and_trim_child(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		trim_child(HANG_SECS); /* not inherited */
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : st;
}

/* Trims until churn_stop. */
static void *trimmer(void *arg)
{
	(void)arg;
	while (!atomic_load(&churn_stop))
		(void)malloc_trim(0);
	return NULL;
}

/* Four threads churn and one trims while this one forks, children
 * trimming in their turn. Exits 4 if a churning thread found one of its
 * objects changed (stderr says where), 3 for any other failure. */
int scenario_trim_threads(void)
{
	pthread_t t[5];
	bool corrupt = false;
	for (size_t i = 0; i < 5; i++)
		if (pthread_create(&t[i], NULL, i < 4 ? churn : trimmer,
		                   (void *)(i + 1)) != 0)
			return 2;
	int bad = 0;
	for (int round = 0; round < 20 && !bad; round++) {
		hang_guard(); /* a bound on a round, not on all 20 */
		usleep(2000);
		if ((bad = fork_and_trim_child()) != 0)
			fprintf(stderr,
			        "a child forked in round %d: status %#x\n",
			        round, bad);
	}
	(void)malloc_trim(0);
	atomic_store(&churn_stop, true);
	for (int i = 0; i < 5; i++) {
		void *r;
		pthread_join(t[i], &r);
		if (r == (void *)2)
			corrupt = true;
		else if (r)
			bad = 3;
	}
	return corrupt ? 4 : bad ? 3 : 0;
}

/* Background threads up (both), by a 16 MiB burst written and freed,
 * waited for with no time bound (the scenario's alarm ends a run whose
 * threads never come); false if the burst could not be allocated. */
static bool background_up(void)
{
	void *v[256];
	for (int i = 0; i < 256; i++)
		if (!(v[i] = malloc(64 << 10)) || !memset(v[i], 1, 64 << 10))
			return false;
	for (int i = 0; i < 256; i++)
		free(v[i]);
	while (free(malloc(100)), background_threads_raw() != 3)
		usleep(20000);
	return true;
}

/*
 * _Fork while another thread trims, the background threads started
 * (each _Fork stops them until an allocation starts them again). Each
 * child allocates, trims and frees under an alarm; one that inherited
 * the trim half done (ctl_lock held, a sweep or scavenge in the middle)
 * hangs in its own (SIGALRM). Exits 5 naming the round a child failed
 * in, 3 for any other failure.
 */
int scenario_trim_underscore_fork(void)
{
	if (!background_up())
		return 2;
	pthread_t t;
	if (pthread_create(&t, NULL, trimmer, NULL) != 0)
		return 2;
	int bad = 0;
	for (int round = 0; round < 200 && !bad; round++) {
		hang_guard(); /* a bound on a round, not on all 200 */
		/* Frees for the trim to give back. */
		void *v[64];
		for (int i = 0; i < 64; i++)
			v[i] = malloc(16 << 10);
		for (int i = 0; i < 64; i++)
			free(v[i]);
		pid_t pid = _Fork();
		if (pid == 0)
			trim_child(HANG_SECS);
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid)
			bad = 3;
		else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr,
			        "a child of _Fork in round %d: status %#x%s\n",
			        round, st,
			        WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM
			                ? " (SIGALRM: it hung)"
			                : "");
			bad = 5;
		}
	}
	atomic_store(&churn_stop, true);
	pthread_join(t, NULL);
	return bad;
}

/* The idle threads of scenario_trim_idle: each allocates IDLE_OBJS
 * objects of IDLE_OBJ bytes, writes them, frees every one but each
 * eighth, then those, so that its magazine keeps objects of many spans,
 * and blocks until idle_go. */
enum { IDLE_THREADS = 4, IDLE_OBJ = 1024, IDLE_OBJS = 8192 };
static atomic_int idle_ready;
static atomic_bool idle_go;

static void *idle_thread(void *arg)
{
	void **v = arg;
	for (int i = 0; i < IDLE_OBJS; i++)
		if (!(v[i] = malloc(IDLE_OBJ)) || !memset(v[i], 7, IDLE_OBJ))
			return (void *)1;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < IDLE_OBJS; i++)
			if ((i % 8 == 0) == (pass == 1))
				free(v[i]);
	atomic_fetch_add(&idle_ready, 1);
	while (!atomic_load(&idle_go))
		usleep(1000);
	return NULL;
}

/* Starts the idle threads and waits until each has freed and blocks;
 * false if one could not be made. */
static bool idle_threads_start(pthread_t *t)
{
	static void *v[IDLE_THREADS][IDLE_OBJS];
	for (int i = 0; i < IDLE_THREADS; i++)
		if (pthread_create(&t[i], NULL, idle_thread, v[i]) != 0)
			return false;
	while (atomic_load(&idle_ready) < IDLE_THREADS)
		usleep(1000);
	return true;
}

/* Lets them exit and joins them; false if one failed. */
static bool idle_threads_end(pthread_t *t)
{
	atomic_store(&idle_go, true);
	bool ok = true;
	for (int i = 0; i < IDLE_THREADS; i++) {
		void *r;
		if (pthread_join(t[i], &r) != 0 || r)
			ok = false;
	}
	return ok;
}

/*
 * MM_MALLOC_BACKGROUND=0: threads that freed what they allocated and then
 * block (not exiting) keep objects in their magazines, and those keep
 * their spans' pages. malloc_trim from another thread hands their caches
 * back too (the port's visit of their slots, malloc/visit.c): no object
 * is left in any magazine, and the heap keeps backed at most 64 KiB more
 * than a trim once the threads exited (which flushed their caches).
 * Until then each thread's 16 objects, in 16 spans, and its cached span
 * stayed (the port reached no other slot): 64 objects and about 500 KiB.
 */
int scenario_trim_idle(void)
{
	pthread_t t[IDLE_THREADS];
	if (!idle_threads_start(t))
		return 2;
	struct mallinfo2 before = mallinfo2();
	(void)malloc_trim(0);
	struct mallinfo2 after = mallinfo2();
	if (!idle_threads_end(t))
		return 2;
	/* Their exits flushed their caches: what a trim keeps then (their
	 * slots' magazine slabs stay) is the mark. */
	(void)malloc_trim(0);
	size_t exited = mallinfo2().arena;
	if (before.smblks == 0 || after.smblks != 0 || after.fsmblks != 0 ||
	    after.arena > exited + 64 * 1024) {
		fprintf(stderr,
		        "before malloc_trim: %zu objects (%zu bytes) in "
		        "magazines, %zu KiB backed; after: %zu (%zu bytes), "
		        "%zu KiB backed (%zu once the threads exited)\n",
		        before.smblks, before.fsmblks, before.arena >> 10,
		        after.smblks, after.fsmblks, after.arena >> 10,
		        exited >> 10);
		return 3;
	}
	return 0;
}

/*
 * Background threads on, no malloc_trim: the same idle threads' caches go
 * back by themselves once the heap is quiet (the sweeper's visit of
 * stale caches, spanheap_config.flush_quiet_cpus): no object is left in
 * any magazine. Polls mallinfo2 every 50 ms until they are, with no
 * bound but the scenario's hang guard (a second or two here; a 60 s cap
 * failed a correct heap whose sweeper the host starved that long). Until
 * then the objects stayed until the threads ran again or exited.
 */
int scenario_quiet_idle(void)
{
	pthread_t t[IDLE_THREADS];
	if (!idle_threads_start(t))
		return 2;
	size_t first = mallinfo2().smblks;
	while (mallinfo2().smblks != 0)
		usleep(50000);
	if (!idle_threads_end(t))
		return 2;
	if (first == 0) {
		fprintf(stderr, "no object in a magazine once the threads went "
		                "idle: nothing to hand back\n");
		return 3;
	}
	return 0;
}

const char *test_malloc_trim(void)
{
	static const struct {
		const char *name, *env, *val;
	} runs[] = {
	        {"trim", "MM_MALLOC_BACKGROUND", "0"},
	        {"trim-idle", "MM_MALLOC_BACKGROUND", "0"},
	        {"quiet-idle", NULL, NULL},
	        {"trim-first", NULL, NULL},
	        {"trim-threads", NULL, NULL},
	        {"trim-threads", "MM_MALLOC_BACKGROUND", "0"},
	        {"trim-underscore-fork", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		int st =
		        run_scenario(runs[i].name, runs[i].env, runs[i].val, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "%s%s%s%s: status %#x (its reason on stderr)",
		      runs[i].name, runs[i].env ? " with " : "",
		      runs[i].env ? runs[i].env : "", runs[i].env ? "=0" : "",
		      st);
	}
	return NULL;
}

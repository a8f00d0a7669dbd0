/*
 * tests/real/malloc_api_slots.c: malloc-api-test's slots under fork and
 * sharing, and a thread's teardown after it gave its slot back
 * (malloc_api_test.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

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

/* In a fork child: the parent's objects are intact and can be freed; the
 * child allocates, from a new thread too. Exit status: 0 fine, 1 changed
 * bytes, 2 thread trouble, 3 a different slot mode than the parent's. */
static void fork_child_check(unsigned char **mine, size_t n, const char *mode)
{
	hang_guard(); /* a deadlock fails the test */
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
const char *test_fork_stress(void)
{
	return fork_while_hammering(3, 100);
}

/* More threads than slots: slots go from one owner to shared, and fork
 * must keep the sharers out too. */
const char *test_fork_shared(void)
{
	return fork_while_hammering(80, 12);
}

/* The mode is membarrier wherever the kernel offers it, unless the
 * environment says MM_MALLOC_MEMBARRIER=0 (the whole test may run so). */
const char *test_slot_mode(void)
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

const char *test_exit_late(void)
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

/* ---- A thread whose first allocation is in glibc's last key round ------ */

static pthread_key_t round_key;
static atomic_int round_errno; /* a claim's errno, if it changed it */

/* Sets itself again until glibc's last round of key destructors
 * (PTHREAD_DESTRUCTOR_ITERATIONS), and allocates only then: the thread's
 * first call, which claims a slot (from the 64th thread on, by taking
 * over a gone thread's, whose probe failed with ESRCH: a malloc that
 * succeeds leaves errno as it was, as at the heap's set-up). */
static void allocate_in_last_round(void *arg)
{
	uintptr_t round = (uintptr_t)arg;
	if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
		pthread_setspecific(round_key, (void *)(round + 1));
		return;
	}
	errno = 4242;
	void *p = malloc(16);
	if (errno != 4242)
		atomic_store(&round_errno, errno);
	free(p);
}

static void *last_round_thread(void *arg)
{
	*(pid_t *)arg = gettid();
	pthread_setspecific(round_key, (void *)1); /* allocates nothing */
	return NULL;
}

/* 100 such threads one after another, each gone (from the kernel too)
 * before the next starts; then a thread that allocates at once. */
static void last_round_child(void)
{
	if (pthread_key_create(&round_key, allocate_in_last_round) != 0)
		_exit(2);
	for (int i = 0; i < 100; i++) {
		pid_t tid = 0;
		pthread_t t;
		if (pthread_create(&t, NULL, last_round_thread, &tid) != 0 ||
		    pthread_join(t, NULL) != 0)
			_exit(2);
		while (syscall(SYS_tgkill, getpid(), tid, 0) == 0)
			sched_yield();
	}
	pthread_t t;
	if (pthread_create(&t, NULL, sleeper, NULL) != 0)
		_exit(2);
	while (sleepers_ready < 1)
		sched_yield();
	unsigned owners = threads_owned();
	sleepers_go = true;
	pthread_join(t, NULL);
	if (owners > 63) {
		fprintf(stderr,
		        "%u owners of 63 slots with two threads alive: the "
		        "slots of threads that claimed them in their last "
		        "key round stayed owned",
		        owners);
		_exit(1);
	}
	if (atomic_load(&round_errno)) {
		fprintf(stderr,
		        "errno %d after a malloc that claimed a gone thread's "
		        "slot (4242 before; ESRCH is %d): the claim's probe "
		        "set it",
		        atomic_load(&round_errno), ESRCH);
		_exit(1);
	}
}

/* A thread's first allocation in glibc's last round of key destructors
 * claims a slot, and registers for the exit key too late for its
 * destructor to run: the slot stayed owned, and after 63 such threads
 * every later thread shared a slot, on the slow path. Run in a child:
 * one thread, every other slot free (the fork handlers). */
const char *test_last_round_claim(void)
{
	sleepers_go = false;
	sleepers_ready = 0;
	return child_passes(last_round_child);
}

/*
 * tests/real/malloc_api_late.c: malloc-api-test's threads whose first
 * call comes in glibc's last round of key destructors while every slot
 * is owned, so that they share one (malloc_api_test.h). The library's
 * exit key, set that late, never runs its destructor for them.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

/* MM_SHARER_WORDS: the sharers a slot records (malloc/enter.h). */
enum { SLOTS = 63, LATE_SHARERS = 10, MM_SHARER_WORDS = 4 };

static pthread_key_t round_key;
static atomic_uint holders_ready;
static atomic_bool holders_go;

/* Sets itself again until glibc's last round (PTHREAD_DESTRUCTOR_ITERATIONS)
 * and makes the thread's first call only then. */
static void share_in_last_round(void *arg)
{
	uintptr_t round = (uintptr_t)arg;
	if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
		pthread_setspecific(round_key, (void *)(round + 1));
		return;
	}
	free(malloc(16));
}

static void *late_sharer(void *arg)
{
	*(pid_t *)arg = gettid();
	pthread_setspecific(round_key, (void *)1); /* allocates nothing */
	return NULL;
}

/* Owns a slot until holders_go. */
static void *holder(void *arg)
{
	free(malloc(16));
	atomic_fetch_add(&holders_ready, 1);
	while (!holders_go)
		usleep(1000);
	return arg;
}

/* Starts n holders into h and waits until each owns its slot; false if
 * one cannot start (malloc_api_test.h). */
bool holders_start(pthread_t *h, unsigned n)
{
	holders_go = false;
	holders_ready = 0;
	for (unsigned i = 0; i < n; i++)
		if (pthread_create(&h[i], NULL, holder, NULL) != 0)
			return false;
	while (holders_ready < n)
		sched_yield();
	return true;
}

void holders_stop(pthread_t *h, unsigned n)
{
	holders_go = true;
	for (unsigned i = 0; i < n; i++)
		pthread_join(h[i], NULL);
}

/* Runs n late sharers one after another, each waited for until the kernel
 * has no thread by its id. */
static void late_sharers_run(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		pid_t tid = 0;
		pthread_t t;
		if (pthread_create(&t, NULL, late_sharer, &tid) != 0 ||
		    pthread_join(t, NULL) != 0)
			_exit(2);
		while (syscall(SYS_tgkill, getpid(), tid, 0) == 0)
			sched_yield();
	}
}

/* In a fork child (one thread, one slot owned): holders own the other
 * 62, late sharers come and go, the holders exit; then 62 new holders
 * own the 62 slots again. The child's own thread, alive throughout,
 * keeps the count of a late sharer that joined its slot (slots_gone.c,
 * "Limits"): 63 owners in all, 64 if one did. */
static void late_sharers_child(void)
{
	pthread_t h[SLOTS - 1];
	if (pthread_key_create(&round_key, share_in_last_round) != 0 ||
	    !holders_start(h, SLOTS - 1))
		_exit(2);
	late_sharers_run(LATE_SHARERS);
	holders_stop(h, SLOTS - 1);
	if (!holders_start(h, SLOTS - 1))
		_exit(2);
	unsigned owners = threads_owned();
	holders_stop(h, SLOTS - 1);
	if (owners > SLOTS + 1) {
		fprintf(stderr,
		        "%u owners counted with 63 threads alive, each "
		        "owning a slot: the shares of threads gone stayed",
		        owners);
		_exit(1);
	}
}

/* A thread whose first call came in its last key round with every slot
 * owned shared a slot, and was gone without giving its share back: the
 * share stayed counted for good, so that the slot was never claimed
 * alone again (73 owners counted here, one a late sharer). */
const char *test_late_sharers(void)
{
	return child_passes(late_sharers_child);
}

/* As late_sharers_child, with four late sharers of every slot and one
 * more: the slots' live owners keep the four recorded ones (the child's
 * thread keeps its four for good: 67 owners at most once 62 new holders
 * own the rest), and the last one joins a slot whose sharer words are
 * all taken. */
static void fifth_sharer_child(void)
{
	pthread_t h[SLOTS - 1];
	if (pthread_key_create(&round_key, share_in_last_round) != 0 ||
	    !holders_start(h, SLOTS - 1))
		_exit(2);
	late_sharers_run(SLOTS * MM_SHARER_WORDS + 1);
	holders_stop(h, SLOTS - 1);
	if (!holders_start(h, SLOTS - 1))
		_exit(2);
	unsigned owners = threads_owned();
	holders_stop(h, SLOTS - 1);
	if (owners > SLOTS + MM_SHARER_WORDS) {
		fprintf(stderr,
		        "%u owners counted with 63 threads alive, each "
		        "owning a slot: a fifth sharer's count stayed",
		        owners);
		_exit(1);
	}
}

/* Runs fifth_sharer_child in a fork child of a second thread: that
 * child's one thread owns another slot than the first (slot 0, this
 * process's thread's: the test's first claim), to which the fifth late
 * sharer goes, owned by a holder that exits. */
static void *fifth_from_thread(void *arg)
{
	char out[512];
	int st = in_child(fifth_sharer_child, out, sizeof(out));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "%s", out);
	*(int *)arg = st;
	return NULL;
}

static void fifth_elsewhere_child(void)
{
	int st = -1;
	pthread_t t;
	if (pthread_create(&t, NULL, fifth_from_thread, &st) != 0 ||
	    pthread_join(t, NULL) != 0)
		_exit(2);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 3);
}

/* A late sharer that joined a slot whose four sharer words were taken
 * was not recorded, and its count stayed for good once it was gone: its
 * slot was never claimed alone again (68 owners counted here). Run
 * twice: once with the fifth in the slot of the child's thread (which
 * keeps what its slot counts), once in a holder's, so that a fifth
 * left unrecorded after its reclaim made room shows. */
const char *test_fifth_sharer(void)
{
	const char *bad = child_passes(fifth_sharer_child);
	if (bad)
		return bad;
	char out[512];
	int st = in_child(fifth_elsewhere_child, out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "in a holder's slot: status %#x, stderr: %s", st, out);
	return NULL;
}

/* Joins a slot as a sharer (every slot is owned), makes its one call and
 * exits, giving its share back. */
static void *passing_sharer(void *arg)
{
	*(pid_t *)arg = gettid();
	free(malloc(16));
	return NULL;
}

/* In a fork child: holders own the 62 other slots, then sharers of the
 * child's thread's slot come and exit one after another (each gone from
 * the kernel before the next starts), more than its sharer words; a last
 * one stays, a holder. */
static void passing_sharers_child(void)
{
	pthread_t h[SLOTS];
	if (!holders_start(h, SLOTS - 1))
		_exit(2);
	for (unsigned i = 0; i < MM_SHARER_WORDS + 1; i++) {
		pid_t tid = 0;
		pthread_t t;
		if (pthread_create(&t, NULL, passing_sharer, &tid) != 0 ||
		    pthread_join(t, NULL) != 0)
			_exit(2);
		while (syscall(SYS_tgkill, getpid(), tid, 0) == 0)
			sched_yield();
	}
	holders_ready = 0;
	if (pthread_create(&h[SLOTS - 1], NULL, holder, NULL) != 0)
		_exit(2);
	while (holders_ready < 1)
		sched_yield();
	unsigned owners = threads_owned();
	holders_stop(h, SLOTS);
	if (owners > SLOTS + 1) {
		fprintf(stderr,
		        "%u owners counted with 64 threads alive: the counts "
		        "of sharers that exited were dropped again",
		        owners);
		_exit(1);
	}
}

/* A sharer's exit clears the sharer word it recorded before its count
 * drops (slots.c, "exit"). A word left set is taken for a sharer gone
 * without giving its share back once the slot's words are all held, and
 * its count is dropped a second time: the counts of live threads went
 * with it. */
const char *test_passing_sharers(void)
{
	return child_passes(passing_sharers_child);
}

/* The fork child of sharers_forgotten_child: holders own the 62 slots
 * its one thread does not, two late sharers come and go (at least one
 * in a slot a holder owns), the holders exit and 62 new ones claim. */
static void words_cleared_grandchild(void)
{
	pthread_t h[SLOTS - 1];
	if (!holders_start(h, SLOTS - 1))
		_exit(2);
	late_sharers_run(2);
	holders_stop(h, SLOTS - 1);
	if (!holders_start(h, SLOTS - 1))
		_exit(2);
	unsigned owners = threads_owned();
	holders_stop(h, SLOTS - 1);
	if (owners > SLOTS + 1) {
		fprintf(stderr,
		        "%u owners counted in a fork child with 63 threads "
		        "alive: its late sharers found their slots' sharer "
		        "words held by the parent's threads and went "
		        "unrecorded",
		        owners);
		_exit(1);
	}
}

/* In a fork child: four late sharers recorded in every slot (the slots'
 * live owners keep them), then a fork, whose child runs the above. */
static void sharers_forgotten_child(void)
{
	pthread_t h[SLOTS - 1];
	if (pthread_key_create(&round_key, share_in_last_round) != 0 ||
	    !holders_start(h, SLOTS - 1))
		_exit(2);
	late_sharers_run(SLOTS * MM_SHARER_WORDS);
	char out[512];
	int st = in_child(words_cleared_grandchild, out, sizeof(out));
	holders_stop(h, SLOTS - 1);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "%s", out);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 3);
	}
}

/* A fork child has none of its parent's other threads: its handler
 * clears every slot's sharer words, which hold the parent's ids. Left,
 * a slot whose four words held them recorded no sharer in the child,
 * and the count of one gone in its last key round stayed for good. */
const char *test_fork_clears_sharers(void)
{
	return child_passes(sharers_forgotten_child);
}

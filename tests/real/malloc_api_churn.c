/*
 * tests/real/malloc_api_churn.c: malloc-api-test's thread churn: tens of
 * thousands of short-lived threads, in waves of 16 to 64 at once on a
 * machine of a few CPUs, each allocating a mix of sizes (small classes,
 * large spans, aligned, calloc, realloc), handing objects to long-lived
 * threads and freeing objects that threads already gone allocated; and
 * the ways a thread ends besides returning: detached, cancelled while it
 * allocates, with every signal blocked, and in pthread key destructors
 * that allocate after the library's own exit key ran (malloc_api_test.h).
 *
 * What must hold (malloc/slots.c, "exit"): every object keeps its bytes
 * while it lives (a pattern of its own); at each checkpoint, with every
 * short thread gone and every object handed on freed, the slots owned
 * are back to the count before the run, the bytes in use (mallinfo2's
 * uordblks) back to the first checkpoint's, and the resident set has not
 * climbed past the first checkpoint's by more than a bound no real leak
 * stays under (a lost 64-byte object a thread is 512 KiB over 8,000
 * threads, eight times the bytes in use allowed). mm_panic aborts the
 * process on a heap error it finds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "malloc_api_churn.h"
#include "malloc_api_test.h"

/* ---- The short-lived threads ----------------------------------------------
 */

enum { LIVE = 6, OPS = 24, MAX_WAVE = 64 };

/* How a short thread ends (wave_kind). */
enum kind {
	K_JOINED,     /* returns; joined */
	K_DETACHED,   /* returns, detached; the wave waits until it is gone */
	K_BLOCKED,    /* every signal blocked, then as K_DETACHED or joined */
	K_KEYS,       /* its keys' destructors allocate after the library's */
	K_KEYS_FIRST, /* its first allocation is in a key destructor */
	K_CANCELLED,  /* cancelled in a loop of allocations */
};

struct short_arg {
	unsigned tag;
	enum kind kind;
	bool detached;
	_Atomic pid_t tid; /* set first by detached threads */
};

/* One step on the live objects: a new one, or a free, realloc, burial or
 * hand-off of one. */
static void step(struct obj *live, uint64_t *s, unsigned tag)
{
	struct obj *o = &live[rnd(s) % LIVE];
	if (!o->p) {
		obj_new(o, s, tag);
		return;
	}
	switch (rnd(s) % 5) {
	case 0:
		obj_realloc(o, s);
		break;
	case 1:
		bury(o, s);
		break;
	case 2:
		hand_to((unsigned)rnd(s), o);
		break;
	default:
		obj_free(o);
	}
}

/* The rest of the live objects: some left to later threads and the
 * keepers, the others freed. */
static void leave_all(struct obj *live, uint64_t *s)
{
	for (unsigned k = 0; k < LIVE; k++) {
		if (!live[k].p)
			continue;
		unsigned how = (unsigned)(rnd(s) % 3);
		if (how == 0)
			bury(&live[k], s);
		else if (how == 1)
			hand_to((unsigned)rnd(s), &live[k]);
		else
			obj_free(&live[k]);
	}
}

static void work(uint64_t seed, unsigned tag, unsigned ops)
{
	struct obj live[LIVE] = {0};
	uint64_t s = seed;
	for (unsigned i = 0; i < ops; i++)
		step(live, &s, tag);
	leave_all(live, &s);
}

/* Keys made after the library's exit key: glibc runs their destructors
 * after its own in each round, on a thread that gave its slot back. Each
 * allocates, frees and hands on, and sets itself again until the round
 * before glibc's last (a first allocation in the last round is
 * malloc_api_slots.c's last_round_claim). */
enum { NKEYS = 3 };
static pthread_key_t churn_keys[NKEYS];

static void key_destructor(void *arg)
{
	uintptr_t v = (uintptr_t)arg, round = v & 7, tag = v >> 3;
	work(v * 0x9e3779b97f4a7c15u, (unsigned)tag, 10);
	if (round + 1 < PTHREAD_DESTRUCTOR_ITERATIONS)
		for (unsigned k = 0; k < NKEYS; k++)
			if (pthread_getspecific(churn_keys[k]) == NULL) {
				pthread_setspecific(churn_keys[k],
				                    (void *)(v + 1));
				break;
			}
}

static void keys_set(unsigned tag)
{
	for (unsigned k = 0; k < NKEYS; k++)
		pthread_setspecific(churn_keys[k],
		                    (void *)((uintptr_t)(tag + k) << 3 | 1));
}

/* A cancelled thread's cleanup: its live objects go as a returning
 * thread's do. */
static void cancel_cleanup(void *arg)
{
	uint64_t s = (uintptr_t)arg;
	leave_all(arg, &s);
}

static void *cancelled_main(struct short_arg *a)
{
	struct obj live[LIVE] = {0};
	uint64_t s = a->tag * 2654435761u + 5;
	struct timespec zero = {0, 0};
	pthread_cleanup_push(cancel_cleanup, live);
	for (unsigned i = 0;; i++) {
		struct obj *o = &live[rnd(&s) % LIVE];
		if (o->p && i % 3)
			obj_free(o);
		else if (o->p)
			obj_realloc(o, &s);
		else
			obj_new(o, &s, a->tag);
		if (i % 4 == 0)
			pthread_testcancel();
		else if (i % 4 == 1)
			nanosleep(&zero, NULL);
	}
	pthread_cleanup_pop(1);
	return NULL;
}

static void *short_main(void *arg)
{
	/* Copied before a detached thread publishes its id: the next wave
	 * reuses the arg once the thread is gone. */
	struct short_arg *in = arg, copy = {.tag = in->tag, .kind = in->kind};
	struct short_arg *a = &copy;
	if (in->detached)
		in->tid = gettid();
	if (a->kind == K_BLOCKED) {
		sigset_t all;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, NULL);
	}
	if (a->kind == K_CANCELLED)
		return cancelled_main(a);
	if (a->kind == K_KEYS || a->kind == K_KEYS_FIRST)
		keys_set(a->tag);
	if (a->kind != K_KEYS_FIRST)
		work(a->tag * 2654435761u + 1, a->tag, OPS);
	return NULL;
}

/* ---- Waves ----------------------------------------------------------------
 */

/* Which kind the i-th thread of a wave is: mostly plain ones. */
static enum kind wave_kind(uint64_t *s, const enum kind *kinds, unsigned nk)
{
	unsigned r = (unsigned)(rnd(s) % 16);
	return r < 8 ? K_JOINED : kinds[r % nk];
}

/* Waits until the kernel knows no thread by tid (it ran its last
 * instruction, its teardown done). */
static void wait_gone(pid_t tid)
{
	while (syscall(SYS_tgkill, getpid(), tid, 0) == 0)
		sched_yield();
}

/* Starts n short threads of kinds drawn from kinds, cancels those of
 * K_CANCELLED, and waits until every one is gone; false if one could not
 * start or a cancelled one returned. */
static bool wave(unsigned n, uint64_t *s, unsigned *tag, const enum kind *kinds,
                 unsigned nk)
{
	static struct short_arg args[MAX_WAVE];
	pthread_t t[MAX_WAVE];
	pthread_attr_t detached;
	pthread_attr_init(&detached);
	pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
	bool ok = true;
	for (unsigned i = 0; i < n; i++) {
		struct short_arg *a = &args[i];
		a->tag = (*tag)++;
		a->kind = wave_kind(s, kinds, nk);
		a->detached = (a->kind == K_DETACHED || a->kind == K_BLOCKED) &&
		              rnd(s) % 2;
		a->tid = 0;
		if (pthread_create(&t[i], a->detached ? &detached : NULL,
		                   short_main, a) != 0) {
			a->detached = true; /* nothing to wait for */
			a->tid = -1;
			ok = false;
		} else if (a->kind == K_CANCELLED) {
			pthread_cancel(t[i]);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct short_arg *a = &args[i];
		if (a->detached) {
			while (a->tid == 0)
				sched_yield();
			if (a->tid > 0)
				wait_gone(a->tid);
			continue;
		}
		void *r = NULL;
		pthread_join(t[i], &r);
		if ((a->kind == K_CANCELLED) != (r == PTHREAD_CANCELED))
			ok = false;
	}
	pthread_attr_destroy(&detached);
	return ok;
}

/* A checkpoint's marks against the first's: NULL if they hold. */
static const char *mark_check(const struct mark *first, const struct mark *m,
                              unsigned threads)
{
	/* The bytes in use may differ by what glibc keeps for threads (a
	 * cached stack's thread vector, a few hundred bytes each); a
	 * thread's lost object is a multiple of 8,000 of that. */
	enum { IN_USE_SLACK = 64 << 10 };
	CHECK(m->owned <= first->owned,
	      "after %u threads %u slots owned, %u at the first checkpoint: "
	      "threads gone left theirs",
	      threads, m->owned, first->owned);
	CHECK(m->in_use <= first->in_use + IN_USE_SLACK,
	      "after %u threads %zu bytes in use, %zu at the first "
	      "checkpoint: threads gone left objects counted",
	      threads, m->in_use, first->in_use);
	CHECK(m->rss <= first->rss + (8 << 20),
	      "after %u threads %zu KiB resident, %zu KiB at the first "
	      "checkpoint: the process's memory climbs wave over wave",
	      threads, m->rss >> 10, first->rss >> 10);
	return NULL;
}

/* Runs waves of 16 to 64 threads of kinds until total threads ran,
 * with a checkpoint every total / 8 (the first after the first wave). */
static const char *churn(unsigned total, const enum kind *kinds, unsigned nk,
                         uint64_t seed)
{
	uint64_t s = seed;
	free(malloc(1)); /* this thread owns its slot before the count */
	unsigned tag = 1, threads = 0, next = 0, owned0 = threads_owned();
	struct mark first = {0};
	atomic_store(&churn_bad, 0);
	atomic_store(&churn_nulls, 0);
	CHECK(keepers_start(), "keeper threads: pthread_create");
	const char *err = NULL;
	while (!err && threads < total) {
		unsigned n = 16 + (unsigned)(rnd(&s) % (MAX_WAVE - 15));
		if (!wave(n, &s, &tag, kinds, nk))
			err = "a thread could not start, or a cancelled one "
			      "returned";
		threads += n;
		if (err || threads < next)
			continue;
		struct mark m = checkpoint();
		if (next == 0)
			first = m;
		else
			err = mark_check(&first, &m, threads);
		next = threads + total / 8;
	}
	checkpoint();
	keepers_stop();
	if (err)
		return err; /* why, or a string of its own */
	CHECK(atomic_load(&churn_bad) == 0,
	      "%lu objects changed while live (or misaligned, or calloc's "
	      "not zero)",
	      atomic_load(&churn_bad));
	CHECK(atomic_load(&churn_nulls) == 0, "%lu allocations refused",
	      atomic_load(&churn_nulls));
	CHECK(threads_owned() <= owned0, "%u slots owned after, %u before",
	      threads_owned(), owned0);
	return NULL;
}

/* 8,000 threads that return, joined or detached, some with every signal
 * blocked; waves of 16 to 64 at once, beside three keepers. It was
 * 20,000 (5.5 s of CPU, 3.2 now): the checks catch within 2,500 threads
 * a slot_exit that keeps its count (1077 slots owned after 1073
 * threads) and a 64-byte object lost by each thread's exit (137056
 * bytes in use after 2101), each a mutant. */
const char *test_churn_waves(void)
{
	static const enum kind kinds[] = {K_DETACHED, K_BLOCKED};
	return churn(8000, kinds, 2, 1);
}

/* Threads cancelled while they allocate (their cleanup handlers free and
 * hand on), and threads whose key destructors allocate after the
 * library's exit key gave their slot back, or make their first
 * allocation there. */
const char *test_churn_exits(void)
{
	static const enum kind kinds[] = {K_CANCELLED, K_KEYS, K_KEYS_FIRST,
	                                  K_BLOCKED};
	for (unsigned k = 0; k < NKEYS; k++)
		CHECK(pthread_key_create(&churn_keys[k], key_destructor) == 0,
		      "pthread_key_create");
	const char *err = churn(6000, kinds, 4, 2);
	for (unsigned k = 0; k < NKEYS; k++)
		pthread_key_delete(churn_keys[k]);
	return err;
}

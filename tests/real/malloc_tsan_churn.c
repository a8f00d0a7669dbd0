/*
 * tests/real/malloc_tsan_churn.c: make test-malloc-tsan's thread churn:
 * waves of 16 to 64 short-lived threads at once (more than a 2-CPU
 * machine runs, and past the 63 slots with the keeper and the main
 * thread), each allocating every kind of object, leaving some for
 * later threads to free and handing some to a long-lived keeper, and
 * ending every way a thread ends: joined, detached, cancelled while it
 * allocates, with every signal blocked, or allocating in a key's
 * destructor after the library's exit key gave its slot back. Under
 * TSan, so that a race of a thread's exit (slots.c, "exit") with another
 * thread's claim, share or free of its objects is reported; at the end
 * the heap's checks pass, the bytes in use are back to what they were
 * and the slots owned too (malloc-api-test's churn_waves runs the same
 * at 20,000 threads, outside TSan).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include "malloc_tsan_test.h"

enum { CHURN_THREADS = 1500, MAX_WAVE = 64, GRAVES = 128, CHURN_LIVE = 4 };

enum kind { K_JOINED, K_DETACHED, K_CANCELLED, K_KEYS, K_BLOCKED, K_KINDS };

struct short_arg {
	enum kind kind;
	unsigned tag;
	_Atomic pid_t tid; /* set first by a detached thread */
};

/* Objects left by threads for later ones (and the end) to free. */
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obj graves[GRAVES];
static pthread_key_t churn_key;
static atomic_bool keeper_stop;

/* Swaps o into a grave and frees what it displaces, most often an object
 * of a thread gone. */
static void bury(struct obj *o, unsigned g, struct stress_failures *f)
{
	pthread_mutex_lock(&grave_lock);
	struct obj old = graves[g % GRAVES];
	graves[g % GRAVES] = *o;
	pthread_mutex_unlock(&grave_lock);
	o->p = NULL;
	if (old.p)
		obj_free(&old, f);
}

/* Gives up o: to the keeper, a grave or a free. */
static void leave(struct obj *o, uint64_t *rng, struct stress_failures *f)
{
	uint64_t r = stress_random(rng);
	if (!o->p)
		return;
	if (r % 3 == 0 && stress_inbox_put(&inboxes[0], o))
		o->p = NULL;
	else if (r % 3 == 1)
		bury(o, (unsigned)(r >> 8), f);
	else
		obj_free(o, f);
}

static void work(uint64_t seed, unsigned ops)
{
	struct stress_failures f = {0};
	uint64_t rng = seed | 1;
	unsigned next_class = (unsigned)seed;
	struct obj live[CHURN_LIVE] = {0};
	for (unsigned i = 0; i < ops; i++) {
		struct obj *o = &live[stress_random(&rng) % CHURN_LIVE];
		if (o->p)
			leave(o, &rng, &f);
		else
			obj_new(o, &rng, &next_class, &f);
	}
	for (unsigned k = 0; k < CHURN_LIVE; k++)
		leave(&live[k], &rng, &f);
	if (f.n)
		side_failed(f.first, NULL);
}

/* Made after the library's exit key: runs after it, on a thread whose
 * slot is given back, and allocates. */
static void churn_key_destructor(void *arg)
{
	work((uintptr_t)arg * 0x9e3779b97f4a7c15u, 6);
}

static void cancel_cleanup(void *arg)
{
	struct obj *live = arg;
	struct stress_failures f = {0};
	uint64_t rng = (uintptr_t)arg | 1;
	for (unsigned k = 0; k < CHURN_LIVE; k++)
		leave(&live[k], &rng, &f);
	if (f.n)
		side_failed(f.first, NULL);
}

/* Allocates until it is cancelled, at a cancellation point of its loop. */
static void cancelled(unsigned tag)
{
	struct stress_failures f = {0};
	uint64_t rng = tag * 2654435761u + 1;
	unsigned next_class = tag;
	struct obj live[CHURN_LIVE] = {0};
	pthread_cleanup_push(cancel_cleanup, live);
	for (unsigned i = 0;; i++) {
		struct obj *o = &live[stress_random(&rng) % CHURN_LIVE];
		if (o->p)
			obj_free(o, &f);
		else
			obj_new(o, &rng, &next_class, &f);
		if (f.n)
			side_failed(f.first, NULL);
		f.n = 0;
		pthread_testcancel();
	}
	pthread_cleanup_pop(1);
}

static void *short_main(void *arg)
{
	/* Read before a detached thread publishes its id: the wave reuses
	 * the arg once it has the id and the thread is gone, which TSan
	 * cannot see ordered but through this release and its acquire. */
	struct short_arg *arg_in = arg;
	struct short_arg copy = {.kind = arg_in->kind, .tag = arg_in->tag};
	struct short_arg *a = &copy;
	if (a->kind == K_DETACHED)
		atomic_store_explicit(&arg_in->tid, gettid(),
		                      memory_order_release);
	if (a->kind == K_BLOCKED) {
		sigset_t all;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, NULL);
	}
	if (a->kind == K_CANCELLED)
		cancelled(a->tag);
	if (a->kind == K_KEYS)
		pthread_setspecific(churn_key, (void *)(uintptr_t)a->tag);
	work(a->tag * 0x2545f4914f6cdd1du, 12);
	return NULL;
}

/* Frees what the short threads hand it until told to stop, then the
 * rest. */
static void *keeper_main(void *arg)
{
	(void)arg;
	static struct obj got[INBOX];
	struct stress_failures f = {0};
	for (bool last = false; !last;) {
		last = atomic_load(&keeper_stop);
		size_t n = stress_inbox_take(&inboxes[0], got);
		for (size_t i = 0; i < n; i++)
			obj_free(&got[i], &f);
		if (!n)
			sched_yield();
	}
	if (f.n)
		side_failed(f.first, NULL);
	return NULL;
}

/* One wave of n threads; waits until every one is gone (a detached one
 * until the kernel has no thread by its id). */
static void wave(unsigned n, uint64_t *rng, unsigned *tag)
{
	static struct short_arg args[MAX_WAVE];
	pthread_t t[MAX_WAVE];
	pthread_attr_t detached;
	pthread_attr_init(&detached);
	pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
	for (unsigned i = 0; i < n; i++) {
		struct short_arg *a = &args[i];
		a->kind = (enum kind)(stress_random(rng) % K_KINDS);
		a->tag = (*tag)++;
		atomic_store(&a->tid, 0);
		bool det = a->kind == K_DETACHED;
		if (pthread_create(&t[i], det ? &detached : NULL, short_main,
		                   a) != 0) {
			side_failed("pthread_create", NULL);
			a->kind = K_DETACHED;
			atomic_store(&a->tid, -1);
		} else if (a->kind == K_CANCELLED) {
			pthread_cancel(t[i]);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct short_arg *a = &args[i];
		if (a->kind != K_DETACHED) {
			void *r = NULL;
			pthread_join(t[i], &r);
			if ((a->kind == K_CANCELLED) != (r == PTHREAD_CANCELED))
				side_failed("a thread cancelled returned, or "
				            "another was cancelled",
				            r);
			continue;
		}
		pid_t tid;
		while ((tid = atomic_load_explicit(&a->tid,
		                                   memory_order_acquire)) == 0)
			sched_yield();
		while (tid > 0 && syscall(SYS_tgkill, getpid(), tid, 0) == 0)
			sched_yield();
	}
	pthread_attr_destroy(&detached);
}

KTEST(malloc_tsan, thread_churn_in_waves_keeps_slots_and_heap)
{
	setup();
	stop_background(); /* no background thread claims a slot meanwhile */
	atomic_store(&mm_malloc_bg_state, MM_BG_NOT_YET);
	KASSERT_EQ(pthread_key_create(&churn_key, churn_key_destructor), 0);
	mmt_free(mmt_malloc(16)); /* this thread owns its slot */
	static struct spanheap_stats before;
	spanheap_stats(&mm_malloc_sh, &before);
	unsigned owned = mm_malloc_threads();
	atomic_store(&keeper_stop, false);
	pthread_t keeper;
	KASSERT_EQ(pthread_create(&keeper, NULL, keeper_main, NULL), 0);
	uint64_t rng = 0x5eed;
	unsigned tag = 1, threads = 0;
	while (threads < CHURN_THREADS) {
		unsigned n = 16 + (unsigned)(stress_random(&rng) % 49);
		wave(n, &rng, &tag);
		threads += n;
	}
	atomic_store(&keeper_stop, true);
	pthread_join(keeper, NULL);
	struct stress_failures left = {0};
	/* Under the lock, which orders the detached threads' last burials
	 * before this for TSan (the wait for their ids does not). */
	pthread_mutex_lock(&grave_lock);
	for (unsigned g = 0; g < GRAVES; g++)
		if (graves[g].p)
			obj_free(&graves[g], &left);
	pthread_mutex_unlock(&grave_lock);
	KEXPECT_EQ(left.n, 0);
	pthread_key_delete(churn_key);
	if (side_fail.n)
		ktest_fail_at(__FILE__, __LINE__, "%lu failures, first: %s",
		              side_fail.n, side_fail.first);
	KEXPECT(mm_malloc_threads() <= owned);
	check_heap_back_to(&before);
	atomic_store(&mm_malloc_bg_state, MM_BG_ALLOWED);
}

/*
 * tests/real/malloc_hooks_reclaim.c: malloc-hooks-test's races of two
 * claims for one slot (malloc_hooks_test.h). A slot's takers swap its
 * state or its owner word by compare-and-swap (slots.c, "claim";
 * slots_gone.c): the first claimer stops between its read of the word and
 * its swap (MM_MALLOC_HOOK_CLAIM_FREE or MM_MALLOC_HOOK_RECLAIM_READ)
 * while a second takes the slot, then goes on. The slot must keep one
 * owner, and the first claimer share a slot (every slot is owned by
 * then): 64 threads counted in the 63 slots. A plain store in place of
 * any of the three swaps made both claimers the slot's one owner, both
 * on its fast path, counted once.
 * (The ownerless race counts one more: a live sharer of slot 0.)
 *
 * The slots fill in claim order (the hint, slots.c): this process's
 * first thread claims slot 0 first, the n-th thread it starts slot n
 * (malloc_hooks_share.c relies on it too).
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

enum { LIVE_SLOTS = 63 }; /* MM_MAX_CPUS - 1 (LATE_SLOT) */

static struct park_gate gate = {PTHREAD_MUTEX_INITIALIZER, 0};
static pthread_t parked_threads[LIVE_SLOTS];
static int nparked;

/* Starts holders (park_on) until n slots are owned; false if one cannot
 * start. gate.mutex stays locked until holders_end. */
static bool holders_fill(unsigned n)
{
	pthread_mutex_lock(&gate.mutex);
	while (nparked < LIVE_SLOTS && mm_malloc_threads() < n) {
		if (pthread_create(&parked_threads[nparked], NULL, park_on,
		                   &gate) != 0)
			return false;
		nparked++;
		while (atomic_load(&gate.parked) < nparked)
			sched_yield();
	}
	return mm_malloc_threads() == n;
}

static void holders_end(void)
{
	pthread_mutex_unlock(&gate.mutex);
	for (int i = 0; i < nparked; i++)
		pthread_join(parked_threads[i], NULL);
}

/* ---- Threads gone without giving their slot or share back ------------- */

static pthread_key_t round_key;

/* Sets itself again until glibc's last round of key destructors and
 * makes the thread's first call only then, too late for the library's
 * exit key to run: its slot or share stays counted. */
static void first_call_in_last_round(void *arg)
{
	uintptr_t round = (uintptr_t)arg;
	if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
		pthread_setspecific(round_key, (void *)(round + 1));
		return;
	}
	free(malloc(16));
}

static void *gone_late(void *tid)
{
	*(pid_t *)tid = gettid();
	pthread_setspecific(round_key, (void *)1); /* allocates nothing */
	return NULL;
}

/* Runs a thread whose first call comes in its last key round, and waits
 * until the kernel has no thread by its id; false if it cannot. */
static bool late_thread_run(void)
{
	static bool key_made;
	if (!key_made &&
	    pthread_key_create(&round_key, first_call_in_last_round) != 0)
		return false;
	key_made = true;
	pid_t tid = 0;
	pthread_t t;
	if (pthread_create(&t, NULL, gone_late, &tid) != 0 ||
	    pthread_join(t, NULL) != 0)
		return false;
	while (syscall(SYS_tgkill, getpid(), tid, 0) == 0)
		sched_yield();
	return true;
}

/* ---- The race --------------------------------------------------------- */

static _Atomic enum mm_malloc_hook_point race_point;
static atomic_bool race_armed, first_stopped, first_let_go;
static atomic_int turn, fast_holders;
static atomic_bool racers_go;
static _Thread_local volatile bool checking, was_fast;

/* The first claimer to reach race_point stops there until let go; a
 * racer's second calls note whether they enter on the fast path. */
static void in_race_window(enum mm_malloc_hook_point where)
{
	if (where == atomic_load(&race_point) &&
	    atomic_exchange(&race_armed, false)) {
		atomic_store(&first_stopped, true);
		while (!atomic_load(&first_let_go))
			sched_yield();
	} else if (where == MM_MALLOC_HOOK_FAST_HELD && checking) {
		was_fast = true;
	}
}

/* Claims a slot (its first call), then, at its turn (1 or 2: arg),
 * makes two more (counted in fast_holders if on the fast path), and
 * stays until racers_go. */
static void *racer(void *arg)
{
	int me = (int)(intptr_t)arg;
	free(malloc(16));
	atomic_fetch_add(&turn, 1);
	while (atomic_load(&turn) != 2 + me)
		sched_yield();
	checking = true;
	free(malloc(16));
	checking = false;
	if (was_fast)
		atomic_fetch_add(&fast_holders, 1);
	atomic_fetch_add(&turn, 1);
	while (!atomic_load(&racers_go))
		sched_yield();
	return NULL;
}

/*
 * Every slot but the one raced for is owned (and that one is free,
 * nobody's or a gone thread's, as the scenario left it). The first racer
 * stops at point, the second claims meanwhile, then the first goes on;
 * each makes a second call in turn, the first's first. Returns 1
 * (saying what broke, of what) if the 63 slots count other than expect
 * threads or both racers hold a slot on the fast path.
 */
static int race(enum mm_malloc_hook_point point, unsigned expect,
                const char *what)
{
	pthread_t first, second;
	atomic_store(&race_point, point);
	atomic_store(&race_armed, true);
	mm_malloc_test_hook = in_race_window;
	if (pthread_create(&first, NULL, racer, (void *)1) != 0)
		return 2;
	while (!atomic_load(&first_stopped))
		sched_yield();
	if (pthread_create(&second, NULL, racer, (void *)2) != 0)
		return 2;
	while (atomic_load(&turn) < 1)
		sched_yield(); /* the second has claimed */
	atomic_store(&first_let_go, true);
	while (atomic_load(&turn) < 2)
		sched_yield();
	unsigned owners = mm_malloc_threads();
	atomic_store(&turn, 3); /* the first's second call */
	while (atomic_load(&turn) < 5)
		sched_yield();
	atomic_store(&racers_go, true);
	pthread_join(first, NULL);
	pthread_join(second, NULL);
	holders_end();
	if (owners != expect) {
		fprintf(stderr,
		        "%u threads counted in 63 slots held by %u: the "
		        "claim stopped before its swap of %s took the slot "
		        "another had just taken",
		        owners, expect, what);
		return 1;
	}
	if (atomic_load(&fast_holders) > 1) {
		fprintf(stderr,
		        "both claims of one slot entered on its fast path (the "
		        "swap of %s)",
		        what);
		return 1;
	}
	return 0;
}

/* slots.c, slot_claim: the one slot nobody owns, raced for. */
int claims_race_for_a_free_slot(void)
{
	free(malloc(16));
	if (!holders_fill(LIVE_SLOTS - 1))
		return 2;
	return race(MM_MALLOC_HOOK_CLAIM_FREE, LIVE_SLOTS + 1,
	            "a free slot's state (slot_claim)");
}

/* slots_gone.c, mm_malloc_slot_reclaim: the one slot not owned by a live
 * thread is a gone owner's, raced for by two takeovers. */
int reclaims_race_for_a_gone_owner(void)
{
	free(malloc(16));
	if (!holders_fill(LIVE_SLOTS - 1) || !late_thread_run() ||
	    mm_malloc_threads() != LIVE_SLOTS)
		return 2;
	return race(MM_MALLOC_HOOK_RECLAIM_READ, LIVE_SLOTS + 1,
	            "a gone owner's ids (mm_malloc_slot_reclaim)");
}

static atomic_bool slot1_go;

static void *holds_slot1(void *arg)
{
	free(malloc(16));
	atomic_store((atomic_bool *)arg, true);
	while (!atomic_load(&slot1_go))
		sched_yield();
	return NULL;
}

static void *shares_slot0(void *arg)
{
	free(malloc(16));
	atomic_store((atomic_bool *)arg, true);
	while (!atomic_load(&racers_go))
		sched_yield();
	return NULL;
}

/*
 * slots_gone.c, ownerless_claim: slot 1 is left with no owner and one
 * count, a gone sharer's, which a reclaim drops before it claims the
 * slot; the second racer claims it meanwhile. A live sharer of slot 0
 * makes slot 1 the least-owned slot of lowest index, which the gone
 * sharer joins; slot 1's owner then exits.
 */
int reclaims_race_for_an_ownerless_slot(void)
{
	free(malloc(16)); /* slot 0 */
	atomic_bool h_in = false, s_in = false;
	pthread_t h, s;
	if (pthread_create(&h, NULL, holds_slot1, &h_in) != 0)
		return 2;
	while (!atomic_load(&h_in))
		sched_yield();
	if (!holders_fill(LIVE_SLOTS) ||
	    pthread_create(&s, NULL, shares_slot0, &s_in) != 0)
		return 2;
	while (!atomic_load(&s_in))
		sched_yield();
	if (!late_thread_run())
		return 2;
	atomic_store(&slot1_go, true);
	pthread_join(h, NULL);
	if (mm_malloc_threads() != LIVE_SLOTS + 1)
		return 2;
	/* The gone sharer's count dropped, the slot claimed, and the
	 * first racer a sharer: one more than now. */
	int st = race(MM_MALLOC_HOOK_CLAIM_FREE, LIVE_SLOTS + 2,
	              "an ownerless slot's state (ownerless_claim)");
	pthread_join(s, NULL);
	return st;
}

/*
 * tests/real/malloc_hooks_share.c: malloc-hooks-test's shared slot (a
 * thread that stays inside a call on the slot of the scenario's thread,
 * which it shares), and the scenarios that need it beside a fork
 * (malloc_hooks_test.h).
 *
 * Every slot is owned (MM_MAX_CPUS - 1 of them: LATE_SLOT is never),
 * the scenario's thread's first (slot 0: it claims first), so the next
 * thread shares the least-owned slot of lowest index, slot 0 (slots.c,
 * "claim"). Its first call parks in the hook at MM_MALLOC_HOOK_SLOW_TAKEN,
 * holding the slot's busy word, until let go.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

enum { LIVE_SLOTS = 63 }; /* MM_MAX_CPUS - 1 (LATE_SLOT) */

static struct park_gate gate = {PTHREAD_MUTEX_INITIALIZER, 0};
static atomic_bool sharer_inside, sharer_let_go, sharer_go, sharer_done;
static _Thread_local volatile bool is_sharer;
static bool sharer_parks;
static pthread_t parked_threads[LIVE_SLOTS], sharer_thread;
static int nparked;

bool share_hook(enum mm_malloc_hook_point where)
{
	if (!is_sharer || where != MM_MALLOC_HOOK_SLOW_TAKEN)
		return false;
	is_sharer = false;
	atomic_store(&sharer_inside, true);
	while (!atomic_load(&sharer_let_go))
		sched_yield();
	atomic_store(&sharer_inside, false);
	return true;
}

bool share_inside(void)
{
	return atomic_load(&sharer_inside);
}

void share_let_go(void)
{
	atomic_store(&sharer_let_go, true);
}

void *park_on(void *gate)
{
	struct park_gate *g = gate;
	free(malloc(16)); /* claims a slot */
	atomic_fetch_add(&g->parked, 1);
	pthread_mutex_lock(&g->mutex);
	pthread_mutex_unlock(&g->mutex);
	return NULL;
}

static void *sharer(void *arg)
{
	while (!atomic_load(&sharer_go))
		sched_yield();
	is_sharer = sharer_parks;
	free(malloc(16)); /* shares slot 0 (and stays inside if it parks) */
	atomic_store(&sharer_done, true);
	return arg;
}

int share_start(void)
{
	if (share_prepare(true) != 0)
		return 2;
	share_go();
	while (!atomic_load(&sharer_inside))
		sched_yield();
	return 0;
}

void share_go(void)
{
	atomic_store(&sharer_go, true);
}

bool share_done(void)
{
	return atomic_load(&sharer_done);
}

int share_prepare(bool parks)
{
	sharer_parks = parks;
	pthread_mutex_lock(&gate.mutex);
	while (nparked < LIVE_SLOTS && mm_malloc_threads() < LIVE_SLOTS) {
		if (pthread_create(&parked_threads[nparked], NULL, park_on,
		                   &gate) != 0)
			return 2;
		nparked++;
		while (atomic_load(&gate.parked) < nparked)
			sched_yield();
	}
	if (pthread_create(&sharer_thread, NULL, sharer, NULL) != 0)
		return 2;
	return 0;
}

void share_end(void)
{
	share_go();
	share_let_go();
	pthread_join(sharer_thread, NULL);
	pthread_mutex_unlock(&gate.mutex);
	for (int i = 0; i < nparked; i++)
		pthread_join(parked_threads[i], NULL);
}

/* ---- _Fork beside a sharer inside this thread's slot ------------------- */

static _Thread_local volatile bool forking;
static atomic_bool fork_waited;

static void in_fork_window(enum mm_malloc_hook_point where)
{
	if (share_hook(where))
		return;
	if (forking && where == MM_MALLOC_HOOK_WAIT_BUSY) {
		atomic_store(&fork_waited, true);
		share_let_go();
	}
}

/*
 * _Fork in a multi-threaded process runs the fork handlers, which take
 * every slot, so that no child is copied with another thread inside the
 * heap. It skipped them when this thread's slot was held: meant for a
 * signal handler that interrupted this thread's own call, it also held
 * for another thread sharing the slot, inside a call, and the child
 * inherited the slot's busy word held by a thread it does not have (its
 * next call on the slot waited for ever). _Fork must wait for the
 * sharer: it is let go when fork's prepare waits for its busy.
 */
int fork_beside_sharer(void)
{
	free(malloc(16));
	mm_malloc_test_hook = in_fork_window;
	if (share_start() != 0)
		return 2;
	forking = true;
	pid_t pid = _Fork();
	if (pid == 0)
		_exit(0);
	forking = false;
	bool early = share_inside();
	share_end();
	return fork_verdict("_Fork", pid, early, atomic_load(&fork_waited),
	                    "another thread was inside its slot (it shares "
	                    "it), without the fork handlers");
}

int fork_verdict(const char *call, int pid, bool early, bool waited,
                 const char *why)
{
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0) {
		fprintf(stderr, "%s or its child failed (status %#x)", call,
		        st);
		return 2;
	}
	if (early || !waited) {
		fprintf(stderr, "%s returned while %s", call, why);
		return 1;
	}
	return 0;
}

/* ---- A sharer joining while the owner is inside its fast path ---------- */

/* volatile: the compiler takes malloc for a function that touches none
 * of this program's variables (malloc_hooks_waits.c). */
static _Thread_local volatile bool holding, checking_fast;
static atomic_bool owner_inside, sharer_waited, owner_fast_again;

/* The owner, inside its fast entry, starts the sharer's first call and
 * stays inside until the sharer waits for its in (or has finished: it
 * must not). */
static void in_join_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_WAIT_IN && atomic_load(&owner_inside))
		atomic_store(&sharer_waited, true);
	if (where == MM_MALLOC_HOOK_FAST_HELD && checking_fast)
		atomic_store(&owner_fast_again, true);
	if (where != MM_MALLOC_HOOK_FAST_HELD || !holding)
		return;
	holding = false;
	atomic_store(&owner_inside, true);
	share_go();
	while (!atomic_load(&sharer_waited) && !share_done())
		sched_yield();
	atomic_store(&owner_inside, false);
}

/*
 * The membarrier handshake for a sharer (slots.c, "Why"; the model's
 * owner and sharer, tests/model/slots.pml): a thread that joins the slot
 * of an owner inside its fast path adds itself to the state, calls
 * membarrier, takes busy and waits for the owner's in: its first call
 * must not run until the owner has left. Once the sharer has exited,
 * the owner, alone again, takes the fast path again.
 */
int sharer_waits_for_fast_holder(void)
{
	int skip = fast_path_or_skip();
	if (skip)
		return skip;
	mm_malloc_test_hook = in_join_window;
	if (share_prepare(false) != 0)
		return 2;
	holding = true;
	free(malloc(32)); /* the fast entry the hook holds */
	bool entered = !holding;
	share_end();
	checking_fast = true;
	free(malloc(48));
	checking_fast = false;
	if (!entered) {
		fprintf(stderr, "this thread did not enter on the fast path");
		return 2;
	}
	if (!atomic_load(&sharer_waited)) {
		fprintf(stderr,
		        "a sharer's first call ran while the slot's owner "
		        "was inside its fast path (it did not wait for in)");
		return 1;
	}
	if (!atomic_load(&owner_fast_again)) {
		fprintf(stderr, "the owner, alone again after its sharer "
		                "exited, did not take the fast path");
		return 1;
	}
	return 0;
}

/* ---- Two threads whose tokens a 32-bit count made equal ---------------- */

static _Thread_local volatile bool calling;
static atomic_bool caller_waited;

static void in_token_window(enum mm_malloc_hook_point where)
{
	if (share_hook(where))
		return;
	if (calling && where == MM_MALLOC_HOOK_WAIT_BUSY) {
		atomic_store(&caller_waited, true);
		share_let_go();
	}
}

/*
 * A slow entry that finds its own token in its slot's busy word runs as
 * nested in its own thread's hold (enter.c, enter_own_busy); fork skips
 * its handlers then (fork.c, own_busy). The tokens came from a 32-bit
 * count: the thread made after 2^32 others got this thread's token
 * (the first, 1) again and, sharing its slot, its hold passed for this
 * thread's own: this thread's call ran beside it. The count is set where
 * a 32-bit one wraps before the sharer makes its token; this thread's
 * call must wait for the sharer's busy (it is let go once it does).
 */
int token_wrap_keeps_threads_apart(void)
{
	free(malloc(16)); /* this thread's token: the process's first */
	if (!mm_malloc_test_set_next_token)
		return 2;
	mm_malloc_test_hook = in_token_window;
	if (share_prepare(true) != 0)
		return 2;
	mm_malloc_test_set_next_token(0xffffffffUL);
	share_go();
	while (!share_inside())
		sched_yield();
	calling = true;
	void *p = malloc(24);
	calling = false;
	bool early = share_inside();
	free(p);
	share_end();
	if (early || !atomic_load(&caller_waited)) {
		fprintf(stderr, "a call ran while another thread held its slot "
		                "(their tokens equal after the count wrapped)");
		return 1;
	}
	return 0;
}

/* ---- A claim beside another's, in a slot its last owner gave back ------ */

static atomic_bool counted_armed, first_counted, second_claimed, claimers_go;
static _Thread_local volatile bool second_claimer;

/* The first claimer stops once it has counted itself in the free slot,
 * until the second has claimed. */
static void in_counted_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_CLAIM_COUNTED &&
	    atomic_exchange(&counted_armed, false)) {
		atomic_store(&first_counted, true);
		while (!atomic_load(&second_claimed))
			sched_yield();
	} else if (where == MM_MALLOC_HOOK_CLAIMED && second_claimer) {
		atomic_store(&second_claimed, true);
	}
}

/* Claims a slot (second: as the second claimer), then stays until
 * claimers_go. */
static void *claimer(void *second)
{
	second_claimer = second != NULL;
	free(malloc(16));
	while (!atomic_load(&claimers_go))
		sched_yield();
	return NULL;
}

static void *exits_at_once(void *tid)
{
	*(pid_t *)tid = gettid();
	free(malloc(16)); /* claims the one free slot */
	return NULL;
}

/*
 * A thread's exit clears its slot's owner word before it gives its count
 * back, so that a claim never takes the slot for one whose owner is gone.
 * Left set, a claim that found every slot owned took a slot over from
 * the thread gone while another claim had just counted itself in it
 * (before it wrote its ids): two threads owned the slot alone, both on
 * the fast path. Here the one free slot's last owner exited (gone from
 * the kernel too); the first claimer stops once counted in it, and the
 * second claims meanwhile: it must share a slot (64 counted).
 */
int claim_beside_counted_claim(void)
{
	free(malloc(16));
	pthread_mutex_lock(&gate.mutex);
	while (nparked < LIVE_SLOTS && mm_malloc_threads() < LIVE_SLOTS - 1) {
		if (pthread_create(&parked_threads[nparked], NULL, park_on,
		                   &gate) != 0)
			return 2;
		nparked++;
		while (atomic_load(&gate.parked) < nparked)
			sched_yield();
	}
	pid_t tid = 0;
	pthread_t x, first, second;
	if (mm_malloc_threads() != LIVE_SLOTS - 1 ||
	    pthread_create(&x, NULL, exits_at_once, &tid) != 0 ||
	    pthread_join(x, NULL) != 0)
		return 2;
	while (syscall(SYS_tgkill, getpid(), tid, 0) == 0)
		sched_yield();
	mm_malloc_test_hook = in_counted_window;
	atomic_store(&counted_armed, true);
	if (pthread_create(&first, NULL, claimer, NULL) != 0)
		return 2;
	while (!atomic_load(&first_counted))
		sched_yield();
	if (pthread_create(&second, NULL, claimer, (void *)1) != 0)
		return 2;
	while (!atomic_load(&second_claimed))
		sched_yield();
	unsigned owners = mm_malloc_threads();
	atomic_store(&claimers_go, true);
	pthread_join(first, NULL);
	pthread_join(second, NULL);
	pthread_mutex_unlock(&gate.mutex);
	for (int i = 0; i < nparked; i++)
		pthread_join(parked_threads[i], NULL);
	if (owners != LIVE_SLOTS + 1) {
		fprintf(stderr,
		        "%u slots owned by 64 threads: the second claim took "
		        "over the slot the first had counted itself in, from "
		        "its last owner, gone",
		        owners);
		return 1;
	}
	return 0;
}

/*
 * tests/real/malloc_tsan_late.c: make test-malloc-tsan's sharers gone
 * without giving their share back (malloc/slots_gone.c). Once the slots'
 * owners have given them back, new threads find every slot counted and
 * reclaim the gone sharers' counts: the claim's reclaim, which the other
 * tests never reach (it needs every slot owned), under TSan.
 *
 * Outside TSan such a sharer is a thread whose first call comes in
 * glibc's last round of key destructors (malloc_api_late.c); here TSan's
 * own teardown of the thread runs in that round, before the test's key,
 * and an instrumented call after it crashed in TSan's runtime. So the
 * sharer makes its calls in its body and then moves itself to the late
 * slot, as its exit does: its exit key's destructor then leaves the
 * share and its record as a key set too late would.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>

#include "malloc_tsan_test.h"

enum { SLOTS = MM_MALLOC_LATE_SLOT, LATE_SHARERS = 10, LATE_OWNERS = 6 };

static atomic_uint holders_ready;
static atomic_bool holders_go;

/* Shares a slot (its first call finds every slot owned), and is gone
 * with its share counted and recorded. */
static void *late_sharer(void *arg)
{
	atomic_store((_Atomic pid_t *)arg, gettid());
	mmt_free(mmt_malloc(48));
	mm_malloc_self.slot_id = MM_MALLOC_LATE_SLOT;
	return NULL;
}

/* Owns a slot (or shares one) until holders_go, with an object of its
 * own live, checked at the end. */
static void *holder(void *arg)
{
	struct stress_failures f = {0};
	uint64_t rng = (uintptr_t)arg * 7 + 1;
	unsigned next_class = (unsigned)(uintptr_t)arg;
	struct obj o;
	obj_new(&o, &rng, &next_class, &f);
	atomic_fetch_add(&holders_ready, 1);
	while (!atomic_load(&holders_go))
		usleep(1000);
	obj_free(&o, &f);
	if (f.n)
		side_failed(f.first, NULL);
	return NULL;
}

static void holders_start(pthread_t *h, unsigned n)
{
	atomic_store(&holders_go, false);
	atomic_store(&holders_ready, 0);
	for (uintptr_t i = 0; i < n; i++)
		if (pthread_create(&h[i], NULL, holder, (void *)i) != 0)
			side_failed("pthread_create", NULL);
	while (atomic_load(&holders_ready) < n)
		sched_yield();
}

static void holders_stop(pthread_t *h, unsigned n)
{
	atomic_store(&holders_go, true);
	for (unsigned i = 0; i < n; i++)
		pthread_join(h[i], NULL);
}

/* Owns a slot alone (a free one is left for it), leaves objects in its
 * cache, and is gone still owning it, as a thread whose first call
 * came in its last key round (malloc_api_late.c, last_round_claim). */
static void *late_owner(void *arg)
{
	atomic_store((_Atomic pid_t *)arg, gettid());
	struct stress_failures f = {0};
	uint64_t rng = (uintptr_t)arg;
	unsigned next_class = 3;
	struct obj o[8];
	for (int i = 0; i < 8; i++)
		obj_new(&o[i], &rng, &next_class, &f);
	for (int i = 0; i < 8; i++)
		obj_free(&o[i], &f);
	if (f.n)
		side_failed(f.first, NULL);
	mm_malloc_self.slot_id = MM_MALLOC_LATE_SLOT;
	return NULL;
}

/* Runs n threads of fn one after another, each waited for until the
 * kernel has no thread by its id (what the reclaim asks). */
static void late_run(void *(*fn)(void *), unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		_Atomic pid_t tid = 0;
		pthread_t t;
		if (pthread_create(&t, NULL, fn, (void *)&tid) != 0) {
			side_failed("pthread_create", NULL);
			return;
		}
		pthread_join(t, NULL);
		while (syscall(SYS_tgkill, getpid(), atomic_load(&tid), 0) == 0)
			sched_yield();
	}
}

KTEST(malloc_tsan, claims_reclaim_the_shares_of_late_sharers)
{
	setup();
	/* No background thread may claim a slot meanwhile. */
	stop_background();
	atomic_store(&mm_malloc_bg_state, MM_BG_NOT_YET);
	unsigned owned = mm_malloc_threads();
	KASSERT(owned <= SLOTS);
	unsigned n = SLOTS - owned;
	static pthread_t h[SLOTS];
	holders_start(h, n);
	late_run(late_sharer, LATE_SHARERS);
	KEXPECT_EQ(mm_malloc_threads(), SLOTS + LATE_SHARERS);
	holders_stop(h, n);
	/* The gone sharers' counts keep their slots owned: these claims
	 * find every slot owned and reclaim them. */
	holders_start(h, n);
	unsigned after = mm_malloc_threads();
	holders_stop(h, n);
	atomic_store(&mm_malloc_bg_state, MM_BG_ALLOWED);
	/* This thread's slot keeps a gone sharer's count while it lives
	 * (slots_gone.c, "Limits"): one at most, the sharers spread. */
	KEXPECT(after <= SLOTS + 1);
	if (side_fail.n)
		ktest_fail_at(__FILE__, __LINE__, "%lu failures, first: %s",
		              side_fail.n, side_fail.first);
}

/* Slots with an owner. Not mm_malloc_threads(): the test before leaves
 * a gone sharer's count on this thread's slot if one of its sharers
 * joined that slot (they did under clang), and a count of threads then
 * left a slot free here, which a late holder took instead of a gone
 * owner's: 64 threads after, not 63. */
static unsigned owned_slots(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < SLOTS; i++)
		n += atomic_load(&mm_malloc_slots[i].state) >= MM_SLOT_ONE;
	return n;
}

KTEST(malloc_tsan, claims_take_over_the_slots_of_late_owners)
{
	setup();
	stop_background();
	atomic_store(&mm_malloc_bg_state, MM_BG_NOT_YET);
	unsigned owned = owned_slots();
	KASSERT(owned + LATE_OWNERS <= SLOTS);
	unsigned n = SLOTS - owned - LATE_OWNERS;
	/* The counts of gone sharers this thread's slot keeps. */
	unsigned kept = mm_malloc_threads() - owned;
	static pthread_t h[SLOTS], late[LATE_OWNERS];
	holders_start(h, n);
	late_run(late_owner, LATE_OWNERS);
	KEXPECT_EQ(owned_slots(), SLOTS);
	KEXPECT_EQ(mm_malloc_threads(), SLOTS + kept);
	/* Every slot is owned: these take over the gone owners' slots,
	 * and their caches, rather than share. */
	holders_start(late, LATE_OWNERS);
	unsigned after = mm_malloc_threads();
	holders_stop(late, LATE_OWNERS);
	holders_stop(h, n);
	atomic_store(&mm_malloc_bg_state, MM_BG_ALLOWED);
	KEXPECT_EQ(after, SLOTS + kept);
	if (side_fail.n)
		ktest_fail_at(__FILE__, __LINE__, "%lu failures, first: %s",
		              side_fail.n, side_fail.first);
}

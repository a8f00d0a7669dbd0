/*
 * The guarded pool's checker and reports (mm/spanheap_guard_report.c):
 * spanheap_check panics, naming the slot, when the pool's lists are
 * broken (a free slot listed twice, a slot whose state is not its list's,
 * an entry that is no slot of the pool, lists longer than the pool) or
 * its live count is not the
 * number of live slots; and spanheap_where_log says how far past the end
 * of a guarded object an address is. Each damage is mended after its
 * panic (the check changes nothing), and the checker is clean again.
 * And the drain: once two threads' frees at once have returned, neither
 * slot waits on the freed list; a drain-all beside another thread's
 * drain returns only once that drain has put its slots in the ring.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* A fresh heap on CPU 0 with a pool of slots slots that samples nothing
 * by itself (the tests take its objects with spanheap_guard_alloc). */
static bool guard_heap(unsigned slots)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.guard_slots = slots;
	sc.guard_interval = 1000;
	return sh_heap_fresh_with(&heap, &sh, &sc);
}

/* Gives the pool's reservation back, then the heap's. */
static void guard_release(void)
{
	spanheap_guard_drain(&sh);
	KEXPECT_EQ(sh.guard.live, 0);
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	sh_heap_release(&heap, &sh);
}

static void *guarded(size_t size)
{
	return spanheap_guard_alloc(&sh, size, 16, 0, sizeclass_of(size));
}

/* Fails the current test unless spanheap_check panics saying what. */
#define EXPECT_CHECK_SAYS(what)                                          \
	do {                                                             \
		if (!sh_check_panics(&sh))                               \
			ktest_fail_at(__FILE__, __LINE__,                \
			              "the check passed, wanted \"%s\"", \
			              what);                             \
		else if (!strstr(mm_port_last_panic(), what))            \
			ktest_fail_at(__FILE__, __LINE__,                \
			              "check: \"%s\", wanted \"%s\"",    \
			              mm_port_last_panic(), what);       \
	} while (0)

/* The ring's k-th entry from its head. */
static uint16_t *ring_at(unsigned k)
{
	struct spanheap_guard *g = &sh.guard;
	return &g->ring[(g->ring_head + k) % g->nslots];
}

/* With one slot live: the live count off by one either way. */
static void expect_live_count_checked(void)
{
	struct spanheap_guard *g = &sh.guard;
	g->live++;
	EXPECT_CHECK_SAYS("guarded pool: 1 live slots, counted 2");
	g->live -= 2;
	EXPECT_CHECK_SAYS("guarded pool: 1 live slots, counted 0");
	g->live++;
	SH_CHECK(&sh, "the count mended");
}

/*
 * A pool of 4: one live object, one freed by a caller that cannot sleep
 * (on the freed list until a drain), two free slots on the ring. Each
 * damage the checker must see, one at a time.
 */
KTEST(spanheap_guard_check, broken_lists_and_counts_panic)
{
	KASSERT(guard_heap(4));
	size_t reserved = mm_port_reserved_bytes();
	struct spanheap_guard *g = &sh.guard;
	void *a = guarded(100), *b = guarded(100);
	KASSERT(a && b);
	struct mm_pin pin = mm_port_pin();
	spanheap_free(&sh, b);
	mm_port_unpin(pin);
	KASSERT(g->ring_len == 2 && g->nfreed == 1 && g->live == 1);
	SH_CHECK(&sh, "a live, a freed and two free slots");
	char want[128];

	/* A free slot whose state says live. */
	unsigned r0 = *ring_at(0);
	atomic_store(&g->slot[r0].state, GUARD_LIVE);
	snprintf(want, sizeof(want),
	         "guarded pool: slot %u on its free list twice or in state 2",
	         r0);
	EXPECT_CHECK_SAYS(want);
	atomic_store(&g->slot[r0].state, GUARD_FREE);
	SH_CHECK(&sh, "the state mended");

	/* A free slot on the ring twice (the other one lost). */
	unsigned r1 = *ring_at(1);
	*ring_at(1) = (uint16_t)r0;
	snprintf(want, sizeof(want), "slot %u on its free list twice", r0);
	EXPECT_CHECK_SAYS(want);
	*ring_at(1) = (uint16_t)r1;

	/* The freed slot's state says free. */
	unsigned f0 = g->freed[0];
	atomic_store(&g->slot[f0].state, GUARD_FREE);
	snprintf(want, sizeof(want),
	         "slot %u on its freed list twice or in state 0", f0);
	EXPECT_CHECK_SAYS(want);
	atomic_store(&g->slot[f0].state, GUARD_FREED);

	/* A ring entry past the pool's slots (but in the slot array). */
	*ring_at(1) = (uint16_t)g->nslots;
	snprintf(want, sizeof(want), "slot %u on its free list", g->nslots);
	EXPECT_CHECK_SAYS(want);
	*ring_at(1) = (uint16_t)r1;
	SH_CHECK(&sh, "the lists mended");

	expect_live_count_checked();
	spanheap_free(&sh, a);
	spanheap_guard_drain(&sh);
	KEXPECT(g->ring_len == 4 && g->nfreed == 0 && g->live == 0);
	SH_CHECK(&sh, "all four free");
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
	guard_release();
}

/* A pool of 4 whose one guarded object was freed pinned (left on the
 * freed list for a drain): three slots on the ring, one freed. NULL if
 * it could not be made. */
static struct spanheap_guard *pool_with_one_freed(void)
{
	struct spanheap_guard *g = &sh.guard;
	if (!guard_heap(4))
		return NULL;
	void *a = guarded(64);
	if (!a)
		return NULL;
	struct mm_pin pin = mm_port_pin();
	spanheap_free(&sh, a);
	mm_port_unpin(pin);
	return g->ring_len == 3 && g->nfreed == 1 ? g : NULL;
}

/*
 * A ring or freed-list entry may be any 16-bit value once the pool is
 * damaged: the check must name it as no slot of the pool without reading
 * the slot array at that index (past its end: UBSan's bounds check, and
 * in the kernel a fault instead of the report).
 */
KTEST(spanheap_guard_check, an_entry_past_the_slot_array_is_named_not_read)
{
	struct spanheap_guard *g = pool_with_one_freed();
	KASSERT(g);
	static const uint16_t bad[] = {SPANHEAP_GUARD_MAX,
	                               SPANHEAP_GUARD_MAX + 1, 0xffff};
	char want[96];
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		unsigned r2 = *ring_at(2);
		*ring_at(2) = bad[k];
		snprintf(want, sizeof(want), "slot %u on its free list",
		         (unsigned)bad[k]);
		EXPECT_CHECK_SAYS(want);
		*ring_at(2) = (uint16_t)r2;
		unsigned f0 = g->freed[0];
		g->freed[0] = bad[k];
		snprintf(want, sizeof(want), "slot %u on its freed list",
		         (unsigned)bad[k]);
		EXPECT_CHECK_SAYS(want);
		g->freed[0] = (uint16_t)f0;
	}
	SH_CHECK(&sh, "the entries mended");
	spanheap_guard_drain(&sh);
	guard_release();
}

/* A list's length damaged past the pool's slots is named before any
 * entry is read: it was taken for a slot listed twice, and with a pool of
 * 255 slots the freed list could be read one past its array. */
KTEST(spanheap_guard_check, list_lengths_past_the_slots_are_named_not_read)
{
	struct spanheap_guard *g = pool_with_one_freed();
	KASSERT(g);
	g->nfreed = SPANHEAP_GUARD_MAX + 45;
	EXPECT_CHECK_SAYS("3 free and 300 freed slots listed, more than its 4");
	g->nfreed = 1;
	g->ring_len = 4;
	EXPECT_CHECK_SAYS("4 free and 1 freed slots listed, more than its 4");
	g->ring_len = UINT32_MAX; /* no wrap of a sum to pass */
	EXPECT_CHECK_SAYS("4294967295 free and 1 freed slots listed");
	g->ring_len = 3;
	SH_CHECK(&sh, "the lengths mended");
	spanheap_guard_drain(&sh);
	guard_release();
}

/* An address at or past the bytes asked of a guarded object, in its
 * slack or on the guard page after it: "N bytes past the end of". */
KTEST(spanheap_guard_check, where_log_says_past_the_end)
{
	KASSERT(guard_heap(4));
	char *a = guarded(100);
	KASSERT(a);
	char log[2048], want[96];
	static const struct {
		size_t off;
		const char *says;
	} cases[] = {
	        {99, "99 bytes into guarded object"},
	        {100, "0 bytes past the end of guarded object"},
	        {111, "11 bytes past the end of guarded object"},
	        {115, "15 bytes past the end of guarded object"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		sh_where_log(&sh, a + cases[k].off, log, sizeof(log));
		snprintf(want, sizeof(want), "%#lx: %s %#lx",
		         (unsigned long)(a + cases[k].off), cases[k].says,
		         (unsigned long)a);
		if (!strstr(log, want))
			ktest_fail_at(__FILE__, __LINE__,
			              "offset %zu: \"%s\" not in \"%s\"",
			              cases[k].off, want, log);
	}
	/* On the guard page: said so, as well. */
	KEXPECT(strstr(log, "(allocated; 100 bytes asked") != NULL);
	KEXPECT(strstr(log, ", on a guard page") != NULL);
	spanheap_free(&sh, a);
	guard_release();
}

/* The drain test's two threads: in each round both free a guarded
 * object at once, then thread 0 counts the slots left on the list with
 * both frees (and their drains) returned. */
static pthread_barrier_t guard_bar;
static unsigned long guard_left;

static void *guard_churn(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	mm_port_set_cpu(me);
	for (int i = 0; i < 200; i++) {
		char *p = guarded(64);
		pthread_barrier_wait(&guard_bar);
		if (p)
			spanheap_free(&sh, p);
		pthread_barrier_wait(&guard_bar);
		if (me == 0) {
			unsigned long irq = mm_lock_acquire(&sh.heap->lock);
			guard_left += sh.guard.nfreed;
			mm_lock_release(&sh.heap->lock, irq);
		}
		pthread_barrier_wait(&guard_bar);
	}
	return NULL;
}

/*
 * A free that finds another thread's drain running leaves its slot on
 * the list for that drain. Until this version the drain let go of its
 * flag after it had found the list empty, outside the lock, and a slot
 * freed between the two stayed FREED and mapped (a read after its free
 * not caught) until some later free's drain. Two threads free at once,
 * round after round; once both frees have returned, no slot may be left
 * on the list. Chaos mode widens the window at the lock's release.
 */
KTEST(spanheap_guard_check, no_freed_slot_outlives_the_frees)
{
	KASSERT(guard_heap(8));
	KASSERT(pthread_barrier_init(&guard_bar, NULL, 2) == 0);
	guard_left = 0;
	/* Under the chaos run's MM_CHAOS, its own settings, kept after. */
	const char *env = getenv("MM_CHAOS");
	bool own_chaos = !env || !*env || strcmp(env, "0") == 0;
	if (own_chaos)
		mm_port_set_chaos(1000, 300);
	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		KASSERT(pthread_create(&t[i], NULL, guard_churn, (void *)i) ==
		        0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	if (own_chaos)
		mm_port_set_chaos(0, 0);
	pthread_barrier_destroy(&guard_bar);
	ktest_diag("%lu slots left on the list after 200 rounds", guard_left);
	KEXPECT_EQ(guard_left, 0);
	guard_release();
}

/*
 * Release-all's count holds the pages its drain gave back: a slot freed
 * by a caller that cannot sleep (pinned) waits, mapped, for the drain,
 * and release-all's drain unmaps it, so with nothing else to release it
 * returns a page a slot (malloc_trim says whether memory went back).
 * Before the fix it returned the page heaps' pages alone: 0. Two slots,
 * taken by one drain's batch: a count of batches said 1.
 */
KTEST(spanheap_guard_check, release_all_counts_the_pages_drained)
{
	KASSERT(guard_heap(4));
	spanheap_release_all(&sh);
	void *a = guarded(64), *b = guarded(64);
	KASSERT(a && b);
	struct mm_pin pin = mm_port_pin();
	spanheap_free(&sh, a);
	spanheap_free(&sh, b);
	mm_port_unpin(pin);
	KEXPECT_EQ(sh.guard.nfreed, 2);
	KEXPECT_EQ(spanheap_release_all(&sh), 2);
	KEXPECT_EQ(sh.guard.nfreed, 0);
	KEXPECT_EQ(spanheap_release_all(&sh), 0);
	guard_release();
}

/* The slots frees_inside_the_cycle frees, and whether it is armed. */
static void *cycle_obj[2];
static _Atomic bool cycle_armed;

/* In release-all's sweep cycle, after the cycle's own drain (at its
 * start): two frees by a caller that cannot sleep, left on the list. */
static void frees_inside_the_cycle(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_FLIP_BASE_READ ||
	    !atomic_exchange(&cycle_armed, false))
		return;
	struct mm_pin pin = mm_port_pin();
	for (unsigned i = 0; i < 2; i++)
		spanheap_free(&sh, cycle_obj[i]);
	mm_port_unpin(pin);
}

/*
 * Slots freed while release-all's cycle runs, after that cycle's own
 * drain (which counts nothing), are unmapped by release-all's drain
 * after the cycle, and counted: 2. No single-thread test freed there,
 * and a release-all that dropped that drain's count still passed.
 */
KTEST(spanheap_guard_check, release_all_counts_the_frees_made_during_its_cycle)
{
	enum { NOWE = 64 };
	static void *owe[NOWE];
	KASSERT(guard_heap(4));
	KASSERT(sh_alloc_n(&sh, owe, NOWE, 64));
	spanheap_release_all(&sh);
	for (unsigned i = 0; i < 2; i++)
		KASSERT((cycle_obj[i] = guarded(64)) != NULL);
	/* Frees since the last cycle: the release owes one (none runs
	 * else, since review rv76); owe[0] keeps their span, whose pages
	 * would count. */
	for (unsigned i = 1; i < NOWE; i++)
		spanheap_free(&sh, owe[i]);
	atomic_store(&cycle_armed, true);
	mheap_test_hook = frees_inside_the_cycle;
	size_t n = spanheap_release_all(&sh);
	mheap_test_hook = NULL;
	KEXPECT(!atomic_load(&cycle_armed)); /* the hook freed them */
	KEXPECT_EQ(n, 2);
	KEXPECT_EQ(sh.guard.nfreed, 0);
	spanheap_free(&sh, owe[0]);
	guard_release();
}

/*
 * A drain that finds another thread's at it returns at once, counting
 * nothing: the slots it would have taken are that drain's to unmap and
 * count (release-all adds what its drains return: a drain that counted
 * one here inflated it; no test had a drain find another running).
 */
KTEST(spanheap_guard_check, a_drain_beside_another_counts_nothing)
{
	KASSERT(guard_heap(4));
	void *a = guarded(64);
	KASSERT(a);
	struct mm_pin pin = mm_port_pin();
	spanheap_free(&sh, a);
	mm_port_unpin(pin);
	atomic_store(&sh.guard.draining, true); /* another thread's drain */
	KEXPECT_EQ(spanheap_guard_drain(&sh), 0);
	KEXPECT_EQ(sh.guard.nfreed, 1); /* left for that drain */
	atomic_store(&sh.guard.draining, false);
	KEXPECT_EQ(spanheap_guard_drain(&sh), 1);
	KEXPECT_EQ(sh.guard.nfreed, 0);
	guard_release();
}

/* The drain-all test's threads: the freeing thread's drain, in its hook,
 * starts a drain-all and holds its slot until that drain-all is about to
 * sleep or has returned; the drain-all's ring length when it returned. */
static pthread_t all_thread;
static _Atomic bool all_armed, all_started, all_waiting, all_returned,
        all_early;
static _Atomic unsigned all_ring;

static void *drain_all_beside(void *arg)
{
	(void)arg;
	mm_port_set_cpu(1);
	spanheap_guard_drain_all(&sh);
	unsigned long irq = mm_lock_acquire(&sh.heap->lock);
	atomic_store(&all_ring, sh.guard.ring_len);
	mm_lock_release(&sh.heap->lock, irq);
	atomic_store(&all_returned, true);
	return NULL;
}

static void hold_the_drain(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap)
		return;
	if (where == MHEAP_HOOK_GUARD_DRAIN_WAITING)
		atomic_store(&all_waiting, true);
	if (where != MHEAP_HOOK_GUARD_DRAINING ||
	    !atomic_exchange(&all_armed, false))
		return;
	if (pthread_create(&all_thread, NULL, drain_all_beside, NULL) != 0)
		return;
	atomic_store(&all_started, true);
	while (!atomic_load(&all_waiting) && !atomic_load(&all_returned))
		sched_yield();
	/* The drain holds its slot until it returns from here. */
	atomic_store(&all_early, atomic_load(&all_returned));
}

/*
 * spanheap_guard_drain_all returns with no slot held by any drain:
 * release-all's frames must all be back. A free's drain holds its slot
 * (off the freed list, not yet in the ring) while another thread's
 * drain-all runs; that drain-all finds the list empty and must sleep
 * until the drain ends, then return with the slot in the ring. A
 * drain-all that ignored the running drain returned at once with the
 * slot unmapped by no one yet: a mutation audit found no test with a
 * drain running beside it.
 */
KTEST(spanheap_guard_check, drain_all_waits_for_another_thread_s_drain)
{
	KASSERT(guard_heap(4));
	void *a = guarded(64);
	KASSERT(a);
	atomic_store(&all_started, false);
	atomic_store(&all_waiting, false);
	atomic_store(&all_returned, false);
	atomic_store(&all_early, false);
	atomic_store(&all_armed, true);
	mheap_test_hook = hold_the_drain;
	spanheap_free(&sh, a); /* unpinned: it drains */
	mheap_test_hook = NULL;
	KASSERT(atomic_load(&all_started)); /* the hook ran, and its thread */
	KASSERT(pthread_join(all_thread, NULL) == 0);
	unsigned ring = atomic_load(&all_ring);
	KEXPECT(!atomic_load(&all_early));
	KEXPECT(atomic_load(&all_waiting));
	KEXPECT_EQ(ring, sh.guard.nslots);
	guard_release();
}

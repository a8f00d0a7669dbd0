/*
 * malloc/visit.c: the hosted library's mm_port_each_other_cpu: another
 * thread's slot taken for a moment, so that mm/ can hand back the cache
 * of a thread that is not allocating (a blocked thread's magazines and
 * cached spans), at malloc_trim (spanheap_release_all), at an
 * allocation the heap refused (spanheap_reclaim) and for the checker's
 * look at other CPUs' magazines. Until this version the port reached no
 * other slot: a thread blocked for good kept its magazines' objects, and
 * the spans they hold, until it ran again or exited.
 *
 * Algorithm (slots.c, "visit"). The visitor takes the visit lock (one
 * try from inside a call, which holds its slot; waiting from outside
 * one, holding none), holds its own slot for the whole visit (inside a
 * call it does already; outside one a pin takes it), sets MM_SLOT_VISIT
 * in every other slot and fences (membarrier: a fast entry that loads
 * the state after the fence sees the flag and takes the slow way, which
 * waits for busy; one that loaded it before left its in = 1 visible: the
 * argument of slots.c, "Why", with the flag for the sharer's mark). It
 * then takes each other slot in turn on the slow path with a bounded
 * wait (busy, then in: mm_malloc_slot_try_take), calls fn for it and
 * gives busy back; last it clears the flags. A visitor with no slot of
 * its own (the sweeper) takes none: it borrows each slot it visits for
 * fn, with its signals blocked (visit_each). A slot it cannot take
 * within the bound (a holder inside a long call, or a thread stopped
 * inside one) is passed by, and the call returns false, as the port's
 * contract allows: that slot's cache goes back at its thread's next
 * refill after a cycle's flip, at its exit, or at a later visit.
 *
 * Why no wait here is for ever: a visitor waits for the visit lock only
 * holding no slot (the holder's waits are bounded, or mm/'s own) and, in
 * fn, for mm locks (no holder of those waits for a slot). It holds its
 * own slot and at most one other, whose waits are bounded; a fork waits
 * for both, but the visitor never waits for a fork's flag holding another
 * slot. A signal handler's call on the visiting thread is nested in its
 * slot; one that needs a visit of its own (its reclaim) finds the lock
 * taken.
 *
 * Cost: a membarrier(2) and 3 locked instructions a slot (the flag set
 * and cleared, busy taken), for the slots ever a thread's (at most 63,
 * about as much as fork's take of every slot; none, and no membarrier,
 * in a process that never had a second thread). mm/ calls it on rare paths (a
 * release, a refused allocation) and, with spanheap_config.flush_quiet_cpus
 * (slots.c sets it), from the sweeper at most once a period, and only once a
 * cycle has begun since its last visit: a quiet process makes a few and then
 * none (but for a slot held inside a call for good, passed by: then one visit
 * after 1, 2, 4 ... up to 64 periods, for as long as it stays). While the flags
 * are set, every other thread's calls take the slow path (a compare-and-swap of
 * its busy word).
 *
 * Contexts: thread context, inside an API call or outside one (malloc_trim
 * and the background threads hold no slot when they call it).
 */
#include <stdatomic.h>
#include <stdbool.h>

#include "malloc_internal.h"

/* Turns of mm_malloc_backoff a visit waits for each of a slot's words:
 * 64 spins and 64 yields, no sleep (a fraction of a millisecond where
 * the holder runs); the slot of a thread not inside a call is taken at
 * the first turn. A holder inside a call is using its cache; one that
 * waits in mm/ (a reclaim's cycle, a lock) would hold the visit up for
 * as long: with sleeps (about 24 ms a word), 16 threads refused memory
 * together waited 6 s a failed malloc in a review's test. */
enum { VISIT_TURNS = 128 };

/* 1 while a thread visits: one visit at a time, so that no two set and
 * clear the flags over each other. Taken with one try from inside a call
 * (a reclaim): such a visitor holds its own slot, so one that waited for
 * the lock held up the visit under way at its slot (the review's 16
 * threads: each visit waited out every queued visitor's slot in turn);
 * a visit already running does the work. A visitor outside a call holds
 * no slot while it waits. Outside mm's rank table: taken holding no mm
 * lock (mm_port_each_other_cpu's contract); under it the slots' busy
 * words, the fence's shootdown lock, and the mm locks fn takes. The
 * order is checked at run time (locks.c). */
static atomic_int visit_lock;

atomic_ullong mm_malloc_slots_used;

/* Sets, or clears, MM_SLOT_VISIT in every slot of those to visit. */
static void visit_flags(uint64_t those, bool set)
{
	for (uint64_t m = those; m; m &= m - 1) {
		int s = __builtin_ctzll(m);
		atomic_uint *st = &mm_malloc_slots[s].state;
		if (set)
			atomic_fetch_or(st, MM_SLOT_VISIT);
		else
			atomic_fetch_and_explicit(st, ~(unsigned)MM_SLOT_VISIT,
			                          memory_order_release);
	}
}

/* What held points to while a visitor with no slot of its own borrows
 * the slot it visits (visit_each); never read. */
static _Atomic unsigned long borrowed;

/* Calls fn for every slot of those that it can take; true if it took all.
 * A visitor with no slot of its own (the sweeper; borrow) borrows each
 * slot for fn, its signals blocked: mm/'s pins inside fn are then that
 * slot's, nested, and never claim a slot for the visitor (a sweeper with
 * a slot of its own would share an application thread's once 63 were
 * owned, and take that thread's fast path away). Any other visitor runs
 * fn in its own hold, whose pins are its own slot's, as a kernel's
 * stopper CPU's are its own. */
static bool visit_each(uint64_t those, bool borrow,
                       void (*fn)(unsigned cpu, void *arg), void *arg)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	bool all = true;
	for (uint64_t m = those; m; m &= m - 1) {
		int s = __builtin_ctzll(m);
		/* The late slot is the one a signal handler's call of this
		 * thread takes (enter.c): held with signals blocked, or the
		 * call waited for this hold for ever (until a review; hooks
		 * test handler_call_in_visit). */
		bool late = s == MM_MALLOC_LATE_SLOT;
		sigset_t mask;
		if (late)
			mm_malloc_signals_block(&mask);
		if (!mm_malloc_slot_try_take(s, VISIT_TURNS)) {
			mm_malloc_hook(MM_MALLOC_HOOK_VISIT_PASSED);
			all = false;
			if (late)
				mm_malloc_signals_restore(&mask);
			continue;
		}
		int own = t->slot_id;
		if (borrow) {
			t->slot_id = s;
			t->held = &borrowed;
		}
		mm_malloc_hook(MM_MALLOC_HOOK_VISIT_HELD);
		fn((unsigned)s, arg);
		if (borrow) {
			t->held = NULL;
			t->slot_id = own;
		}
		atomic_store_explicit(&mm_malloc_slots[s].busy, 0,
		                      memory_order_release);
		if (late)
			mm_malloc_signals_restore(&mask);
	}
	return all;
}

/* False if another visit runs (or this thread's own, interrupted by a
 * signal handler's call), else takes the lock; the order is checked
 * first (locks.c). */
bool mm_malloc_visit_try(void)
{
	mm_malloc_lock_check(MM_MALLOC_LOCK_VISIT);
	int free_word = 0;
	if (!atomic_compare_exchange_strong_explicit(&visit_lock, &free_word, 1,
	                                             memory_order_acquire,
	                                             memory_order_relaxed))
		return false;
	mm_malloc_lock_note(MM_MALLOC_LOCK_VISIT, true);
	return true;
}

void mm_malloc_visit_give(void)
{
	mm_malloc_lock_note(MM_MALLOC_LOCK_VISIT, false);
	atomic_store_explicit(&visit_lock, 0, memory_order_release);
}

/*
 * Sets the flags, visits, clears them and gives the lock back. The slots
 * visited are those ever a thread's but me (mm_malloc_slots_used): a
 * slot claimed after the load holds only what its thread did since the
 * visit began, and is neither flagged nor taken. Until review rv76 every
 * slot was, at a malloc_trim of a one-thread program 62 slots flagged,
 * taken and their empty caches flushed, 2.5 us of its 4.7.
 */
static bool visit_locked(int me, bool borrow,
                         void (*fn)(unsigned cpu, void *arg), void *arg)
{
	uint64_t those = atomic_load(&mm_malloc_slots_used);
	if (me >= 0)
		those &= ~(1ull << me);
	visit_flags(those, true);
	if (mm_malloc_fences && those)
		mm_malloc_fence_others();
	mm_malloc_hook(MM_MALLOC_HOOK_VISIT_FLAGGED);
	bool all = visit_each(those, borrow, fn, arg);
	visit_flags(those, false);
	mm_malloc_visit_give();
	return all;
}

bool mm_port_each_other_cpu(void (*fn)(unsigned cpu, void *arg), void *arg)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	/* A call on the late slot holds it for itself past its thread's
	 * exit, or lent while its thread's own slot is held by the call a
	 * signal handler interrupted, which the visit would wait out. */
	if (t->slot_id == MM_MALLOC_LATE_SLOT)
		return false;
	if (t->held) /* inside a call (a reclaim): its slot held already */
		return mm_malloc_visit_try() &&
		       visit_locked(t->slot_id, false, fn, arg);
	/* Outside a call (malloc_trim, the sweeper): it holds no slot, so
	 * it may wait for a visit under way (a single try let the
	 * sweeper's visit, which hands back only stale caches, cost a
	 * malloc_trim every other cache). */
	bool borrow = t->slot_id < 0;
	sigset_t mask;
	if (borrow)
		mm_malloc_signals_block(&mask);
	for (unsigned i = 0; !mm_malloc_visit_try(); i++)
		mm_malloc_backoff(i);
	bool all;
	if (borrow) {
		all = visit_locked(-1, true, fn, arg);
		mm_malloc_signals_restore(&mask);
	} else {
		struct mm_pin pin = mm_port_pin();
		all = visit_locked((int)pin.cpu, false, fn, arg);
		mm_port_unpin(pin);
	}
	return all;
}

/*
 * malloc/malloc_testing.h: test hooks of the hosted malloc's set-up and
 * thread slots (slots.c), compiled in only when the build defines
 * MM_TEST_HOOKS: the test variant, libmm_malloc_hooks.so (malloc.mk),
 * never libmm_malloc.so, which gets no hook and no cost.
 *
 * A hook widens a window between two steps of slots.c (or of mm/, whose
 * hook the library passes on) that no test could hit by chance, so that a test
 * program (tests/real/malloc_hooks_test.c) can run another thread inside it, or
 * tell which of two threads got in first. A hook runs inside the window,
 * possibly inside an API call: it must not allocate (a call of its own thread
 * would pass as nested). The program sets the pointer before its first
 * allocation and finds it through its own weak reference.
 */
#ifndef MALLOC_TESTING_H
#define MALLOC_TESTING_H

enum mm_malloc_hook_point {
	/* The initialising thread has made the heap ready (other threads'
	 * first calls go through from here) and has not yet returned from
	 * heap_init; it holds no slot and is inside no API call. */
	MM_MALLOC_HOOK_INIT_READY,
	/* The initialising thread has won the set-up (the heap is not yet
	 * ready: other threads' first calls wait for it) and not yet
	 * started it. */
	MM_MALLOC_HOOK_INIT_BEGUN,
	/* The initialising thread has just won the set-up's claim (other
	 * threads' first calls wait for it from here); signals must be
	 * blocked already. */
	MM_MALLOC_HOOK_INIT_WON,
	/* A thread's first call, the heap ready, is about to claim its
	 * slot: it has none (slot_id -1), holds nothing, and is inside no
	 * API call. */
	MM_MALLOC_HOOK_CLAIMING,
	/* A thread's first call has claimed its slot (it owns it) and has
	 * not yet returned to take it; it holds no slot and its held is
	 * NULL, as a signal handler that interrupts it finds them. */
	MM_MALLOC_HOOK_CLAIMED,
	/* A thread has entered an API call on the fast path: it holds its
	 * slot's in word and has read state as MM_SLOT_ONE; called before
	 * the call's work. Every fast entry reaches it. */
	MM_MALLOC_HOOK_FAST_HELD,
	/* A thread entering on the fast path has set held and stored in = 1,
	 * and not yet read state: it does not hold its slot yet (a sharer or
	 * a fork may be inside it). Every fast entry reaches it. */
	MM_MALLOC_HOOK_FAST_ENTERING,
	/* A thread entering on the fast path found state other than
	 * MM_SLOT_ONE (a sharer, a fork being prepared) and is backing
	 * out: between its two stores (held NULL, in 0), where a signal
	 * handler's call must not pass as nested. */
	MM_MALLOC_HOOK_FAST_BACKOUT,
	/* A thread taking a slot on the slow path (mm_malloc_slot_take)
	 * holds its busy word and found in set: it waits for the fast
	 * holder to leave. Called at every turn of the wait. */
	MM_MALLOC_HOOK_WAIT_IN,
	/* The same thread, waiting for another slow holder's busy. */
	MM_MALLOC_HOOK_WAIT_BUSY,
	/* A thread entering on the slow path has taken its slot (busy holds
	 * its token, in was seen 0) and has not yet set held: a signal
	 * handler's call here finds held NULL and its own token in busy. */
	MM_MALLOC_HOOK_SLOW_TAKEN,
	/* A signal handler's call that interrupted its thread's fast entry
	 * before the state check (held set, state not MM_SLOT_ONE) has taken
	 * LATE_SLOT for itself (slots.c, "nested"), before its work. */
	MM_MALLOC_HOOK_LENT,
	/* A thread entering a call on the slow path found its slot's
	 * MM_SLOT_FORK set: it waits for fork to give the slots back.
	 * Called at every turn of the wait. */
	MM_MALLOC_HOOK_WAIT_FORK,
	/* The thread starting the background threads has started the
	 * sweeper and not yet the scavenger; it holds ctl_lock, no slot. */
	MM_MALLOC_HOOK_BG_BETWEEN,
	/* A background thread about to sleep has read how many threads the
	 * process has, and not yet how many of them are background threads
	 * (port_sync.c, exit_if_alone). It holds no lock and no slot. */
	MM_MALLOC_HOOK_ALONE_COUNTED,
	/* fork's prepare handler (or _Fork's) has taken every slot: no
	 * other thread is inside mm/, and the process is about to be
	 * copied. It holds ctl_lock and every slot's busy word. */
	MM_MALLOC_HOOK_FORK_TAKEN,
	/* A thread entering on the slow path holds its slot and has set
	 * held: it is inside the call, before its work; a signal handler's
	 * call here finds held set and passes as nested. */
	MM_MALLOC_HOOK_SLOW_HELD,
	/* A thread leaving a call has cleared held and not yet the word it
	 * held (in or busy): a signal handler's call here enters as any
	 * call outside one does. */
	MM_MALLOC_HOOK_LEAVING,
	/* A thread's first call has the heap ready and no slot, and has not
	 * yet blocked signals for its claim: it holds nothing and is inside
	 * no API call, and a signal handler's call here claims a slot. */
	MM_MALLOC_HOOK_BEFORE_CLAIM,
	/* A thread's claim has counted itself in a slot nobody owned (its
	 * state 0 -> 1) and not yet written its ids in the slot's owner
	 * word; its signals are blocked, it holds no slot. */
	MM_MALLOC_HOOK_CLAIM_COUNTED,
	/* A thread's claim has read a slot's state as owned by nobody
	 * (slot_claim, or a reclaim's ownerless_claim) and not yet counted
	 * itself in by compare-and-swap: another claim may take the slot
	 * meanwhile. Its signals are blocked, it holds no slot. */
	MM_MALLOC_HOOK_CLAIM_FREE,
	/* A claim that found every slot owned has read a slot's owner word
	 * as a thread gone, found the slot at its one count with in and busy
	 * 0, and not yet swapped the owner word for its own ids
	 * (slots_gone.c): another claim may take the slot over meanwhile.
	 * Its signals are blocked, it holds no slot. */
	MM_MALLOC_HOOK_RECLAIM_READ,
	/* The first thread to panic (mm_panic) has written its report and
	 * not yet aborted. It may hold its slot and mm locks. */
	MM_MALLOC_HOOK_PANIC_REPORTED,
	/* A thread panicking found another's panic under way and is about
	 * to wait for its abort, reporting nothing. */
	MM_MALLOC_HOOK_PANIC_WAITS,
	/* A report (mallinfo2, malloc_stats, malloc_info) has counted the
	 * bytes in use and not yet read the page heap's totals (mm/'s
	 * MHEAP_HOOK_STATS_COUNTED, passed on): it is inside its API call,
	 * holding its slot, and holds no lock. */
	MM_MALLOC_HOOK_STATS_COUNTED,
	/* fork's prepare handler (or _Fork's) has set held and not yet
	 * taken the slots; the parent's side has given every busy word back
	 * and not yet cleared held. This thread's calls pass as nested
	 * there though it does not hold the slots: a signal handler's must
	 * not run (fork.c blocks its signals). */
	MM_MALLOC_HOOK_FORK_HELD,
	MM_MALLOC_HOOK_FORK_RELEASED,
	/* A visit of the other slots (visit.c) has set MM_SLOT_VISIT in
	 * every other slot and fenced, and takes none yet. It holds its own
	 * slot and the visit lock. */
	MM_MALLOC_HOOK_VISIT_FLAGGED,
	/* A visit holds another slot (its busy, its in seen 0) and is about
	 * to hand that slot's cache to mm/. */
	MM_MALLOC_HOOK_VISIT_HELD,
	/* A visit gave up on a slot it could not take within its bound (a
	 * holder inside a call) and passes it by. */
	MM_MALLOC_HOOK_VISIT_PASSED,
	/* A fence without membarrier (mm_malloc_fence_by_shootdown, its
	 * command refused after registering) holds the shootdown's lock
	 * and has not yet touched its page. The fencing thread (a
	 * sharer's claim, fork's prepare, a visit) may have its signals
	 * blocked. */
	MM_MALLOC_HOOK_SHOOTDOWN_HELD,
	/* The guarded pool's SIGSEGV handler (malloc/guard.c) holds the
	 * report's turn and has written nothing yet. It holds no slot, and
	 * its signals are blocked. */
	MM_MALLOC_HOOK_GUARD_REPORTING,
	/* mm_lock_acquire (port_sync.c) has taken an mm lock's word, and
	 * has not returned. */
	MM_MALLOC_HOOK_LOCK_TAKEN,
	/* mm_lock_release (port_sync.c) has given an mm lock's word back,
	 * and has not returned. */
	MM_MALLOC_HOOK_LOCK_RELEASED,
	/* mm_port_prepare (port_prod.c) has made a growth's chunks
	 * writable: the page heap's growing flag is this thread's. */
	MM_MALLOC_HOOK_GROWING,
	/* A thread's call is setting up its slot's cache, at the slot's
	 * first use (mm/'s MHEAP_HOOK_CACHE_SETTING_UP, passed on): every
	 * field written, the fast paths' table not yet, so the cache reads
	 * as not set up though it is not all zero. It holds the slot (its
	 * own, or the late one lent to a signal handler's call). */
	MM_MALLOC_HOOK_CACHE_SETTING_UP,
};

#ifdef MM_TEST_HOOKS
/* Set by the test program; NULL otherwise. Called by the thread that
 * reaches the point. Exported, for the test program to set. */
extern void (*_Atomic mm_malloc_test_hook)(enum mm_malloc_hook_point where)
        __attribute__((visibility("default")));

/* Sets the count this process's next thread token is made from
 * (enter.c), so that a test can bring it to where a 32-bit count
 * wrapped. Exported, for the test program to call. */
void mm_malloc_test_set_next_token(unsigned long next)
        __attribute__((visibility("default")));

/* Runs the span heap's and the page heap's checkers (spanheap_check,
 * mheap_check), which abort naming the first fault, once the heap is set
 * up; other slots' caches are visited (visit.c), so no other thread may
 * be inside a call. Outside any API call. Exported, for the test program
 * to call. */
void mm_malloc_test_check(void) __attribute__((visibility("default")));

static inline void mm_malloc_hook(enum mm_malloc_hook_point where)
{
	void (*fn)(enum mm_malloc_hook_point) = mm_malloc_test_hook;
	if (fn)
		fn(where);
}
#else
static inline void mm_malloc_hook(enum mm_malloc_hook_point where)
{
	(void)where;
}
#endif

#endif

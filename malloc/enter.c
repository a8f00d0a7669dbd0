/*
 * malloc/enter.c: the out-of-line halves of malloc/enter.h: the slow
 * entry, which takes a slot's busy word and waits for its fast holder
 * (and for a fork being prepared), and the calls that find their thread
 * already inside one, a signal handler's mostly, which take the late
 * slot (fork's own pass as nested; a handler's that cut into a slow
 * entry's or leave's window, before or after the call's work, runs in
 * the hold it interrupted).
 *
 * Algorithm: malloc/slots.c, "enter" and "nested", whose opening comment
 * gives the slots' representation, invariants and the argument for the
 * fast path; tests/model/slots.pml models the slow entry beside the fast
 * one, sharers and fork (not the nested calls: malloc-hooks-test forces
 * those, tests/real/malloc_hooks_signals.c and malloc_hooks_handler.c).
 *
 * Contexts: every function here is called by the thread itself, in or
 * outside an API call, and from a signal handler that interrupted one;
 * mm_malloc_slot_take also by fork's prepare handler, for every slot, and
 * mm_malloc_slot_try_take by a visit of other slots (visit.c).
 *
 * Locking: none of the heap's; a slot's busy word is held from its take
 * to the call's leave (slots.c, "Locking" for the order).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "malloc_internal.h"

/*
 * The waits here are for another thread: a slot's holder, a fork being
 * prepared, the set-up. Spinning and yielding alone never ended one
 * whose waiter runs SCHED_FIFO above the thread it waits for on the same
 * CPU: sched_yield hands the CPU to no lower priority, and the process
 * hung (review; API test rt_fork, a fork beside a higher-priority
 * allocator, hung 3 runs of 3). After 64 spins and 64 yields a wait
 * sleeps, 1 us doubling up to 1 ms a turn, which any priority lets the
 * holder run through. A raw system call: nanosleep(3) is a cancellation
 * point, and this is reached from signal handlers too. (mm/'s own rare
 * waits, the guarded pool's drain at malloc_trim and the dump's turn,
 * yield through mm_port_yield.)
 */
void mm_malloc_backoff(unsigned i)
{
	if (i < 64) {
		__builtin_ia32_pause();
		return;
	}
	if (i < 128) {
		sched_yield();
		return;
	}
	unsigned shift = i - 128 < 10 ? i - 128 : 10;
	struct timespec ts = {0, 1000L << shift};
	int saved = errno; /* EINTR: woken early, which a turn allows */
	/* clock_nanosleep, as glibc's nanosleep calls: a seccomp allowlist
	 * made from real programs' calls may leave nanosleep out (review). */
	syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL);
	errno = saved;
}

/* One turn of a wait; waiting names the wait for the test hooks. */
static void wait_turn(unsigned i, enum mm_malloc_hook_point waiting)
{
	mm_malloc_hook(waiting);
	mm_malloc_backoff(i);
}

/* Waits until *w (a slot's in or busy) is 0; acquires what its clearer
 * did. */
static void wait_clear(atomic_ulong *w, enum mm_malloc_hook_point waiting)
{
	for (unsigned i = 0; atomic_load_explicit(w, memory_order_acquire); i++)
		wait_turn(i, waiting);
}

/* Waits until no fork is being prepared on slot sl (fork.c). */
static void wait_no_fork(struct mm_malloc_slot *sl)
{
	for (unsigned i = 0;
	     atomic_load_explicit(&sl->state, memory_order_acquire) &
	     MM_SLOT_FORK;
	     i++)
		wait_turn(i, MM_MALLOC_HOOK_WAIT_FORK);
}

/* This thread's token (invariant 5), made on its first slow entry: a
 * 64-bit count, which no process runs through (at 10^9 threads a second,
 * 584 years), so no two threads ever have the same. */
static atomic_ulong next_token;
_Static_assert(sizeof(unsigned long) >= 8, "a token's count must not wrap");
static unsigned long thread_token(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	while (t->token == 0) /* 0 is "free" */
		t->token = atomic_fetch_add_explicit(&next_token, 1,
		                                     memory_order_relaxed) +
		           1;
	return t->token;
}

#ifdef MM_TEST_HOOKS
void mm_malloc_test_set_next_token(unsigned long next)
{
	atomic_store(&next_token, next);
}
#endif

/* Takes slot s on the slow path: its busy word (0 -> this thread's
 * token), then its exclusive owner out of the fast path. A call's entry
 * (held NULL, unlike fork's takes) first waits for a fork (fork.c). */
void mm_malloc_slot_take(int s)
{
	struct mm_malloc_slot *sl = &mm_malloc_slots[s];
	unsigned long token = thread_token(), free_word = 0;
	if (!mm_malloc_self.held)
		wait_no_fork(sl);
	while (!atomic_compare_exchange_weak_explicit(
	        &sl->busy, &free_word, token, memory_order_acquire,
	        memory_order_relaxed)) {
		wait_clear(&sl->busy, MM_MALLOC_HOOK_WAIT_BUSY);
		free_word = 0;
	}
	wait_clear(&sl->in, MM_MALLOC_HOOK_WAIT_IN);
}

/* Waits up to turns turns of mm_malloc_backoff for *w to be 0; true if it
 * was (acquiring what its clearer did). */
static bool wait_clear_for(atomic_ulong *w, unsigned turns,
                           enum mm_malloc_hook_point waiting)
{
	for (unsigned i = 0; i < turns; i++) {
		if (!atomic_load_explicit(w, memory_order_acquire))
			return true;
		wait_turn(i, waiting);
	}
	return !atomic_load_explicit(w, memory_order_acquire);
}

bool mm_malloc_slot_try_take(int s, unsigned turns)
{
	struct mm_malloc_slot *sl = &mm_malloc_slots[s];
	unsigned long token = thread_token(), free_word = 0;
	for (unsigned i = 0; !atomic_compare_exchange_weak_explicit(
	             &sl->busy, &free_word, token, memory_order_acquire,
	             memory_order_relaxed);
	     i++) {
		if (i == turns)
			return false;
		wait_turn(i, MM_MALLOC_HOOK_WAIT_BUSY);
		free_word = 0;
	}
	if (wait_clear_for(&sl->in, turns, MM_MALLOC_HOOK_WAIT_IN))
		return true;
	atomic_store_explicit(&sl->busy, 0, memory_order_release);
	return false;
}

/* What held points to in a call enter_own_busy let in; never read. */
static _Atomic unsigned long own_nested;

/* A call of this thread while its slot's busy holds its token and held is
 * NULL: a signal handler's, that interrupted a slow entry after it took
 * busy or a leave before it gave busy back. The interrupted call holds
 * the slot, so this one runs as nested in it, once a fast owner the entry
 * may still wait for is out. Until this version it waited for its own
 * busy: the process hung. */
static _Atomic unsigned long *enter_own_busy(struct mm_malloc_slot *sl)
{
	wait_clear(&sl->in, MM_MALLOC_HOOK_WAIT_IN);
	mm_malloc_self.held = &own_nested;
	return &own_nested;
}

_Atomic unsigned long *mm_malloc_enter_slow(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	/* Outside the call (held is NULL) while the heap is set up and a
	 * slot is claimed: their own allocations are calls of their own. */
	/* The entry points that enter with no slot checked the heap is up
	 * (mm_malloc_heap_up) first. */
	if (t->slot_id < 0 && mm_malloc_first_use() < 0)
		mm_panic("an API call entered with no heap set up");
	struct mm_malloc_slot *sl = &mm_malloc_slots[t->slot_id];
	if (t->token != 0 &&
	    atomic_load_explicit(&sl->busy, memory_order_relaxed) == t->token)
		return enter_own_busy(sl);
	mm_malloc_slot_take(t->slot_id);
	mm_malloc_hook(MM_MALLOC_HOOK_SLOW_TAKEN);
	t->held = &sl->busy;
	mm_malloc_hook(MM_MALLOC_HOOK_SLOW_HELD);
	return t->held;
}

_Atomic unsigned long mm_malloc_lent_word;
/* While a call holds the late slot lent to it: the thread's own slot and
 * signal mask, which its leave puts back, and a flag for the reports. */
static _Thread_local int lent_slot;
static _Thread_local sigset_t lent_mask;
static _Thread_local bool lent_now;

bool mm_malloc_lent(void)
{
	return lent_now;
}

/*
 * A call that finds its thread's held set: a signal handler's that
 * interrupted a call of this thread (anywhere in it: in mm/ halfway
 * through a magazine's pop, a span's list, a fold), or a call nested in
 * fork's hold. Until this version a handler's call ran nested in the
 * slot the interrupted call held, and the two took one object from one
 * magazine (API test signal_handler_allocs: "object ... byte 0 is 0xa6"
 * within 100 signals, every run). So it takes the late slot, whose
 * caches are not the interrupted call's, with signals blocked until its
 * leave (a second handler's call would wait for its own hold of it);
 * what the two calls share beyond the caches is under mm's locks, whose
 * ranks (port_sync.c) make a lock the interrupted call holds a report,
 * not a hang. Nested, holding nothing more: fork's hold (every slot,
 * the late one too; fork.c). A call on the late slot itself (its
 * thread past its exit, or a handler's already, into which a SIGABRT or
 * SIGSEGV handler cut) has no other to lend: the call is reported.
 */
_Atomic unsigned long *mm_malloc_enter_nested(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	if (t->held == &mm_malloc_fork_nested)
		return NULL;
	if (t->slot_id == MM_MALLOC_LATE_SLOT)
		mm_panic("an allocation call from a signal handler that "
		         "interrupted one of its thread's own on the late "
		         "slot (%s): malloc is not async-signal-safe",
		         lent_now ? "a handler's call, which the signal "
		                    "blocking of the slot let through "
		                    "(SIGABRT, SIGSEGV)"
		                  : "the thread is past its exit");
	mm_malloc_signals_block(&lent_mask);
	mm_malloc_slot_used(MM_MALLOC_LATE_SLOT);
	mm_malloc_slot_take(MM_MALLOC_LATE_SLOT);
	lent_slot = t->slot_id;
	t->slot_id = MM_MALLOC_LATE_SLOT;
	lent_now = true;
	mm_malloc_hook(MM_MALLOC_HOOK_LENT);
	return &mm_malloc_lent_word;
}

void mm_malloc_leave_lent(void)
{
	lent_now = false;
	mm_malloc_self.slot_id = lent_slot;
	atomic_store_explicit(&mm_malloc_slots[MM_MALLOC_LATE_SLOT].busy, 0,
	                      memory_order_release);
	mm_malloc_signals_restore(&lent_mask);
}

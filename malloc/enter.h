/*
 * malloc/enter.h: how an API call holds its thread's slot: the slot's
 * words, mm_malloc_enter and mm_malloc_leave, and the fast entry alone
 * for malloc.c's split fast paths. Included by malloc_internal.h, whose
 * opening comment gives the protocol; slots.c has its algorithm and the
 * argument for the plain store (membarrier's other half), enter.c the
 * out-of-line halves.
 *
 * Contexts: every function here is called by the thread itself, in or
 * outside an API call, and from a signal handler that interrupted one.
 */
#ifndef MALLOC_ENTER_H
#define MALLOC_ENTER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "mm/port.h"

#include "fast_load.h"
#include "malloc_testing.h"

#ifndef MM_MALLOC_HIDDEN
#define MM_MALLOC_HIDDEN __attribute__((visibility("hidden")))
#endif

/* A slot's state word: owners * MM_SLOT_ONE, plus MM_SLOT_FORK while a
 * fork is being prepared and MM_SLOT_VISIT while another thread visits
 * the slot's cache (visit.c). A fast entry needs it to be exactly one
 * owner and no flag. */
enum { MM_SLOT_FORK = 1u, MM_SLOT_VISIT = 2u, MM_SLOT_ONE = 4u };

/* The sharers a slot records: as many as fill its cache line. */
enum { MM_SLOT_SHARERS = 4 };

/* A thread slot: plays one CPU of the span heap. One cache line, which
 * the owner of a slot it has alone keeps to itself. */
struct mm_malloc_slot {
	/* 1 while the slot's exclusive owner is inside an API call on its
	 * fast path. Written by that thread only; read by the others. As
	 * wide as busy: a call's leave clears either through one pointer. */
	_Alignas(64) atomic_ulong in;
	/* Owners and flags (MM_SLOT_*). Updated atomically. */
	atomic_uint state;
	/* 0, or the token of the thread that holds the slot on the slow
	 * path (slots.c, invariant 5); taken by compare-and-swap from 0,
	 * so those holders take turns. 64 bits: a token is never reused
	 * (until this version a 32-bit count wrapped after 2^32 threads,
	 * and a thread took another's hold for its own). */
	atomic_ulong busy;
	/* The thread that claimed the slot alone (0 -> 1): its process and
	 * kernel thread ids, (pid << 32) | tid; 0 once it gave the slot back,
	 * or if unknown. Taken over by compare-and-swap (slots.c, "claim"). */
	atomic_ullong owner;
	/* Threads that joined the slot as sharers, as owner records its
	 * owner; 0 if free. Set and cleared by compare-and-swap
	 * (slots_gone.c). */
	atomic_ullong sharers[MM_SLOT_SHARERS];
};

_Static_assert(sizeof(struct mm_malloc_slot) == 64,
               "a slot is one cache line, its owner's alone");

extern struct mm_malloc_slot mm_malloc_slots[MM_MAX_CPUS] MM_MALLOC_HIDDEN;

/* The slot of threads past their exit (slots.c, "exit"); never owned. */
#define MM_MALLOC_LATE_SLOT (MM_MAX_CPUS - 1)

/* Bit i set before slot i is first a thread's (claimed, or the late
 * slot taken): a visit passes the others by, whose caches hold nothing
 * (visit.c). Never cleared. */
extern atomic_ullong mm_malloc_slots_used MM_MALLOC_HIDDEN;
_Static_assert(MM_MAX_CPUS <= 64, "mm_malloc_slots_used: a bit a slot");

static inline void mm_malloc_slot_used(unsigned i)
{
	atomic_fetch_or(&mm_malloc_slots_used, 1ull << i);
}

/* Per thread: mm_malloc_self (pin.h). */

/* First use by this thread: initialises the heap if needed, claims a
 * slot; returns its index, or -1 (no slot claimed) if the heap's set-up
 * failed. Called outside any API call (held NULL). */
int mm_malloc_first_use(void) MM_MALLOC_HIDDEN;

/* A call that found held set (slots.c, "nested"): NULL if it may pass as
 * nested (fork's hold); else the word for mm_malloc_leave, the late slot
 * taken for it (a signal handler's call that interrupted one of its
 * thread's). mm_malloc_lent: a call holds the late slot so, now. */
_Atomic unsigned long *mm_malloc_enter_nested(void) MM_MALLOC_HIDDEN;
bool mm_malloc_lent(void) MM_MALLOC_HIDDEN;
/* The forking thread's held while fork holds every slot (fork.c). */
extern _Atomic unsigned long mm_malloc_fork_nested MM_MALLOC_HIDDEN;
/* The word mm_malloc_enter_nested returns when it took the late slot, and
 * the leave that gives it back and puts the thread's slot back. */
extern _Atomic unsigned long mm_malloc_lent_word MM_MALLOC_HIDDEN;
void mm_malloc_leave_lent(void) MM_MALLOC_HIDDEN;

/* The slow path of mm_malloc_enter (held NULL): claims a slot on first
 * use, then takes busy and waits for the slot's exclusive owner to be out
 * (slots.c, "Algorithm"). Returns busy, now held. */
_Atomic unsigned long *mm_malloc_enter_slow(void) MM_MALLOC_HIDDEN;

/* mm_malloc_enter's fast half, for thread t whose fast slot is sl and
 * that is in no call: sl's in word, held; or NULL, holding nothing, if
 * the slot is shared or a fork is being prepared. */
static inline __attribute__((always_inline)) _Atomic unsigned long *
mm_malloc_enter_fast(struct mm_malloc_thread *t, struct mm_malloc_slot *sl)
{
	/* held first: a signal handler's call in between finds it set and
	 * takes the late slot (mm_malloc_enter_nested). */
	t->held = &sl->in;
	atomic_store_explicit(&sl->in, 1, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	mm_malloc_hook(MM_MALLOC_HOOK_FAST_ENTERING);
	if (__builtin_expect(mm_malloc_load_is(&sl->state, MM_SLOT_ONE), 1)) {
		mm_malloc_hook(MM_MALLOC_HOOK_FAST_HELD);
		return &sl->in;
	}
	/* Backing out is a leave: held first, so that a signal handler's
	 * call in between takes the slot rather than passing as nested
	 * without it (until this version it did, beside a sharer or fork). */
	t->held = NULL;
	mm_malloc_hook(MM_MALLOC_HOOK_FAST_BACKOUT);
	atomic_store_explicit(&sl->in, 0, memory_order_release);
	return NULL;
}

/*
 * Enters an API call: holds this thread's slot. Returns the word that
 * mm_malloc_leave must clear, or NULL for a nested call (the outer call
 * holds the slot and leaves it). The fast path is a store, a compiler
 * barrier and a load, in that order in the instruction stream:
 * membarrier() in another thread puts a full barrier between them if it
 * must (slots.c).
 *
 * The word travels to the leave in a register, and nesting is told by
 * held alone (a hold count here chained a malloc+free pair through memory
 * with the slot's stores: 8.1 ns a 64-byte pair in a model, 2.8 without).
 */
static inline _Atomic unsigned long *mm_malloc_enter(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	if (__builtin_expect(t->held != NULL, 0))
		return mm_malloc_enter_nested();
	struct mm_malloc_slot *sl = t->fast;
	if (__builtin_expect(sl != NULL, 1)) {
		_Atomic unsigned long *in = mm_malloc_enter_fast(t, sl);
		if (__builtin_expect(in != NULL, 1))
			return in;
	}
	return mm_malloc_enter_slow();
}

/*
 * The fast path alone (malloc and free, malloc.c): holds this thread's
 * slot if it may take the fast path and is in no call, and returns the
 * slot's in word for mm_malloc_leave; else NULL, holding nothing, and the
 * caller goes the long way (mm_malloc_enter). Inline with no call, so
 * that the caller's fast path saves no register.
 */
static inline __attribute__((always_inline)) _Atomic unsigned long *
mm_malloc_try_enter(struct mm_malloc_thread *t)
{
	struct mm_malloc_slot *sl = t->fast;
	if (__builtin_expect(sl == NULL || t->held != NULL, 0))
		return NULL;
	return mm_malloc_enter_fast(t, sl);
}

/* Leaves a call entered by mm_malloc_try_enter (word: its slot's in, or
 * NULL): gives the slot up. */
static inline __attribute__((always_inline)) void
mm_malloc_leave_fast(_Atomic unsigned long *word)
{
	if (word) {
		/* held first: a signal handler's call in between takes the
		 * slot again, rather than passing as nested without it. */
		mm_malloc_self.held = NULL;
		mm_malloc_hook(MM_MALLOC_HOOK_LEAVING);
		atomic_store_explicit(word, 0, memory_order_release);
	}
}

/* Leaves a call entered by mm_malloc_enter: the outermost call (word not
 * NULL) gives the slot up; a call that took the late slot gives it back
 * (mm_malloc_enter_nested). */
static inline void mm_malloc_leave(_Atomic unsigned long *word)
{
	if (__builtin_expect(word == &mm_malloc_lent_word, 0))
		mm_malloc_leave_lent();
	else
		mm_malloc_leave_fast(word);
}

#endif

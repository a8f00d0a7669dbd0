/*
 * malloc/malloc_internal.h: what the hosted malloc's files share: the one
 * heap, the thread slots that play CPUs (slots.c), what the fork handlers
 * (fork.c) need of the slots, and the hooks of the production port
 * (port_prod.c) that slots.c drives.
 *
 * A thread "holds" its slot from entry to exit of every malloc API call
 * (mm_malloc_enter / mm_malloc_leave), so whatever mm/ does inside the
 * call, pinned or not, no other thread uses that slot's per-CPU cache
 * meanwhile; fork() takes every slot, which is how it knows that no
 * thread is inside mm/. A thread that owns its slot alone holds it with
 * a plain store to the slot's "in" word and a plain load of its state
 * (no locked instruction: the other half of the handshake is
 * membarrier(2), slots.c); every other holder takes the busy word with
 * an atomic compare-and-swap.
 */
#ifndef MALLOC_INTERNAL_H
#define MALLOC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "mm/mheap.h"
#include "mm/spanheap.h"

#include "malloc_testing.h"

#define MM_MALLOC_HIDDEN __attribute__((visibility("hidden")))

/* The heap every entry point uses; ready once mm_malloc_ready is true. */
extern struct mheap mm_malloc_heap MM_MALLOC_HIDDEN;
extern struct spanheap mm_malloc_sh MM_MALLOC_HIDDEN;

/* A slot's state word: owners * MM_SLOT_ONE, plus MM_SLOT_FORK while a
 * fork is being prepared. A fast entry needs it to be exactly one owner
 * and no flag. */
enum { MM_SLOT_FORK = 1u, MM_SLOT_ONE = 2u };

/* A thread slot: plays one CPU of the span heap. One cache line, which
 * the owner of a slot it has alone keeps to itself. */
struct mm_malloc_slot {
	/* 1 while the slot's exclusive owner is inside an API call on its
	 * fast path. Written by that thread only; read by the others. */
	_Alignas(64) atomic_uint in;
	/* Owners and flags (MM_SLOT_*). Updated atomically. */
	atomic_uint state;
	/* 0, or the token of the thread that holds the slot on the slow
	 * path (slots.c, invariant 5); taken by compare-and-swap from 0,
	 * so those holders take turns. */
	atomic_uint busy;
};

extern struct mm_malloc_slot mm_malloc_slots[MM_MAX_CPUS] MM_MALLOC_HIDDEN;

/* The slot of threads past their exit (slots.c, "exit"); never owned. */
#define MM_MALLOC_LATE_SLOT (MM_MAX_CPUS - 1)

/* Per thread: mm_malloc_self (pin.h). */

/* First use by this thread: initialises the heap if needed, claims a
 * slot; returns its index. Called outside any API call (held NULL). */
int mm_malloc_first_use(void) MM_MALLOC_HIDDEN;

/* The slow path of mm_malloc_enter (held NULL): claims a slot on first
 * use, then takes busy and waits for the slot's exclusive owner to be out
 * (slots.c, "Algorithm"). Returns busy, now held. */
_Atomic unsigned *mm_malloc_enter_slow(void) MM_MALLOC_HIDDEN;

/* mm_malloc_enter's fast half, for thread t whose fast slot is sl and
 * that is in no call: sl's in word, held; or NULL, holding nothing, if
 * the slot is shared or a fork is being prepared. */
static inline __attribute__((always_inline)) _Atomic unsigned *
mm_malloc_enter_fast(struct mm_malloc_thread *t, struct mm_malloc_slot *sl)
{
	/* held first: a signal handler's call in between passes as nested,
	 * as it does once the slot is held. */
	t->held = &sl->in;
	atomic_store_explicit(&sl->in, 1, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	if (__builtin_expect(
	            atomic_load_explicit(&sl->state, memory_order_acquire) ==
	                    MM_SLOT_ONE,
	            1)) {
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
 * held alone: until this version a hold count was incremented here and
 * decremented in the leave, and a malloc+free pair chained those through
 * memory with the slot's stores; without the count, a 64-byte pair went
 * from 8.1 to 2.8 ns in a model of the two paths (the same stores,
 * loads and checks around a trivial allocator).
 */
static inline _Atomic unsigned *mm_malloc_enter(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	if (__builtin_expect(t->held != NULL, 0))
		return NULL;
	struct mm_malloc_slot *sl = t->fast;
	if (__builtin_expect(sl != NULL, 1)) {
		_Atomic unsigned *in = mm_malloc_enter_fast(t, sl);
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
static inline __attribute__((always_inline)) _Atomic unsigned *
mm_malloc_try_enter(struct mm_malloc_thread *t)
{
	struct mm_malloc_slot *sl = t->fast;
	if (__builtin_expect(sl == NULL || t->held != NULL, 0))
		return NULL;
	return mm_malloc_enter_fast(t, sl);
}

/* Leaves it: the outermost call (word not NULL) gives the slot up. */
static inline void mm_malloc_leave(_Atomic unsigned *word)
{
	if (word) {
		/* held first: a signal handler's call in between takes the
		 * slot again, rather than passing as nested without it. */
		mm_malloc_self.held = NULL;
		atomic_store_explicit(word, 0, memory_order_release);
	}
}

/* Background threads: 0 not yet allowed (before our constructor, or
 * while the heap is smaller than MM_MALLOC_BG_MIN_BYTES), 1 allowed and
 * not running, 2 running or being started. */
enum { MM_BG_NOT_YET, MM_BG_ALLOWED, MM_BG_RUNNING };
extern atomic_int mm_malloc_bg_state MM_MALLOC_HIDDEN;

/* The heap grew by nbytes (mm_port_prepare): allows the background
 * threads once it passed MM_MALLOC_BG_MIN_BYTES. */
void mm_malloc_note_growth(size_t nbytes) MM_MALLOC_HIDDEN;

/* Starts the sweeper and the scavenger if allowed and safe; called after
 * an allocation, outside any API call. */
void mm_malloc_bg_start(void) MM_MALLOC_HIDDEN;
/* Forgets every background thread without joining it, and their count:
 * this process is a child made without fork's handlers (_Fork, clone),
 * which has none of its parent's threads (port_prod.c). */
void mm_malloc_threads_forget(void) MM_MALLOC_HIDDEN;

/* The threads are allowed and not running (after the heap's growth, or
 * a fork): malloc's fast path leaves the call to the slow one. */
static inline __attribute__((always_inline)) bool mm_malloc_bg_wanted(void)
{
	return __builtin_expect(atomic_load_explicit(&mm_malloc_bg_state,
	                                             memory_order_relaxed) ==
	                                MM_BG_ALLOWED,
	                        0);
}

static inline void mm_malloc_maybe_start_bg(void)
{
	if (mm_malloc_bg_wanted())
		mm_malloc_bg_start();
}

/* The environment's switches (MM_MALLOC_BACKGROUND, MM_MALLOC_MEMBARRIER,
 * MM_MALLOC_VERBOSE), name's value val (NULL if unset): 0 or 1; -1 if
 * unset or empty, or if it is anything else, which is reported on stderr
 * ("mm_malloc: NAME=VALUE: not 0 or 1; ignored"), so that a misspelt
 * value is not silently the default. Keeps errno; allocates nothing and
 * uses no stdio (the constructor calls it before libc is set up). */
int mm_malloc_env_switch(const char *name, const char *val) MM_MALLOC_HIDDEN;
/* Sets mm_log's verbosity from MM_MALLOC_VERBOSE's value val (NULL if
 * unset); the constructor's, or mm_log's first line if that comes
 * before. */
void mm_malloc_log_init(const char *val) MM_MALLOC_HIDDEN;

/* ---- What fork.c needs of slots.c --------------------------------------- */

/* True if exclusive owners take the fast path (membarrier registered).
 * Set before the heap is ready, and by fork_child in a child's only
 * thread; read-only otherwise. */
extern bool mm_malloc_fences MM_MALLOC_HIDDEN;
/* Serialises the background threads' start and stop and fork; never
 * taken holding a slot. */
extern pthread_mutex_t mm_malloc_ctl_lock MM_MALLOC_HIDDEN;
/* The process whose background threads run (set when they start; under
 * mm_malloc_ctl_lock). */
extern pid_t mm_malloc_bg_pid MM_MALLOC_HIDDEN;

/* membarrier(2) with command cmd; its return value. */
long mm_malloc_membarrier(int cmd) MM_MALLOC_HIDDEN;
/* A full barrier in every thread of the process (slots.c, "Why"). */
void mm_malloc_fence_others(void) MM_MALLOC_HIDDEN;
/* Takes slot s on the slow path: its busy word, then its exclusive owner
 * out of the fast path. */
void mm_malloc_slot_take(int s) MM_MALLOC_HIDDEN;

/* ---- What slots.c needs of fork.c --------------------------------------- */

/* Registers the fork handlers, once: from the constructor, or from the
 * heap's set-up if an allocation comes first (fork.c says why). */
void mm_malloc_register_fork_handlers(void) MM_MALLOC_HIDDEN;
/* The constructor's part: registers the handlers and finds glibc's
 * _Fork, which ours wraps. */
void mm_malloc_fork_init(void) MM_MALLOC_HIDDEN;

#endif

/*
 * malloc/malloc_internal.h: what the hosted malloc's files share: the one
 * heap, the thread slots that play CPUs (slots.c; their entry and leave
 * in enter.h), the background threads (background.c), what the fork handlers
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
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "mm/mheap.h"
#include "mm/spanheap.h"

#include "malloc_testing.h"

#define MM_MALLOC_HIDDEN __attribute__((visibility("hidden")))

/* The heap every entry point uses; set up by the first call of any
 * (slots.c, "bootstrap"). */
extern struct mheap mm_malloc_heap MM_MALLOC_HIDDEN;
extern struct spanheap mm_malloc_sh MM_MALLOC_HIDDEN;

#include "enter.h"
#include "locks.h"

/* Background threads: not yet allowed (before our constructor, or while
 * the heap is smaller than MM_MALLOC_BG_MIN_BYTES), allowed and not
 * running, running or being started. The low 16 bits are malloc's fast
 * path's size limit too (malloc.c, fast_below): 0 while they are wanted. */
enum {
	MM_BG_ALLOWED = 0,
	MM_BG_NOT_YET = SC_MAX_SIZE + 1,
	MM_BG_RUNNING = 1 << 16 | (SC_MAX_SIZE + 1)
};
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

/* Starts them if they are wanted: allowed and not running (after the
 * heap's growth, or a fork; the fast path leaves it to the slow one). */
static inline void mm_malloc_maybe_start_bg(void)
{
	if (__builtin_expect(atomic_load_explicit(&mm_malloc_bg_state,
	                                          memory_order_relaxed) ==
	                             MM_BG_ALLOWED,
	                     0))
		mm_malloc_bg_start();
}

/* The environment's switches (MM_MALLOC_BACKGROUND, MM_MALLOC_MEMBARRIER,
 * MM_MALLOC_VERBOSE), name's value val (NULL if unset): 0 or 1; -1 if
 * unset or empty, or if it is anything else, which is reported on stderr
 * ("mm_malloc: NAME=VALUE: not 0 or 1; ignored"), so that a misspelt
 * value is not silently the default. Keeps errno; allocates nothing and
 * uses no stdio (the constructor calls it before libc is set up). */
int mm_malloc_env_switch(const char *name, const char *val) MM_MALLOC_HIDDEN;
/* MM_MALLOC_FAIL's value val (NULL if unset): true, with *a filled, if
 * it is spanheap_fail_parse's "interval,probability,times[,what[,seed]]";
 * false if unset or empty, or if it is not, which is reported on stderr
 * whatever MM_MALLOC_VERBOSE says ("mm_malloc: MM_MALLOC_FAIL: FIELD
 * 'value' ..." and "...; ignored"): the program runs unarmed. Keeps
 * errno; allocates nothing and uses no stdio. */
bool mm_malloc_fail_switch(const char *val,
                           struct spanheap_fail_attr *a) MM_MALLOC_HIDDEN;
/* MM_MALLOC_GUARD's value val (NULL if unset): the guarded pool's
 * sampling interval, 0 (none) if unset or empty, or if it is not a
 * number from 0 to 65535, which is reported on stderr whatever
 * MM_MALLOC_VERBOSE says. Allocates nothing (malloc/guard.c). */
unsigned mm_malloc_guard_switch(const char *val) MM_MALLOC_HIDDEN;
/* Sets sc's pool for interval (0: none). */
void mm_malloc_guard_config(struct spanheap_config *sc,
                            unsigned interval) MM_MALLOC_HIDDEN;
/* The set-up's end (its thread alone): if the heap has a pool, the
 * SIGSEGV handler that reports a fault in it (malloc/guard.c). */
void mm_malloc_guard_start(void) MM_MALLOC_HIDDEN;
/* fork's child, alone: no report of a fault is under way. */
void mm_malloc_guard_fork_child(void) MM_MALLOC_HIDDEN;
/* Sets mm_log's verbosity from MM_MALLOC_VERBOSE's value val (NULL if
 * unset); the constructor's, or mm_log's first line if that comes
 * before. */
void mm_malloc_log_init(const char *val) MM_MALLOC_HIDDEN;
/* While on, this thread's mm_log lines are printed, whatever
 * MM_MALLOC_VERBOSE says (mm_malloc_describe). */
void mm_malloc_log_here(bool on) MM_MALLOC_HIDDEN;

/* Gives the pages [addr, addr + nbytes) (page-aligned, the caller's)
 * back to the system, so that they read zero and take no memory until
 * touched; a page madvise refuses (locked) is zeroed instead. Keeps
 * errno (port_prod.c; the scavenger's, and a large calloc's). */
void mm_malloc_give_back(void *addr, size_t nbytes) MM_MALLOC_HIDDEN;

/* The arena size the heap's set-up tries first: want (a multiple of a
 * chunk), or under an address-space limit a smaller multiple that leaves
 * room for the rest of the program (arena.c). Keeps errno. */
size_t mm_malloc_arena_fit(size_t want) MM_MALLOC_HIDDEN;

/* Makes the page heap and the span heap (arena.c), each once (true at
 * once after a try that made both), on the set-up's thread alone; false,
 * said why (once), page heap kept, if it cannot. */
bool mm_malloc_heaps_make(void) MM_MALLOC_HIDDEN;

/* True once the heap is set up (slots.c, "bootstrap"). */
bool mm_malloc_heap_ready(void) MM_MALLOC_HIDDEN;
/* True if the heap is set up, trying the set-up if it is not (slots.c,
 * "bootstrap"): false if it failed, and the caller fails with ENOMEM.
 * Outside any API call. Keeps errno. */
bool mm_malloc_heap_up(void) MM_MALLOC_HIDDEN;

/* ---- What fork.c needs of slots.c --------------------------------------- */

/* True if exclusive owners take the fast path (membarrier registered).
 * Set before the heap is ready, and by fork_child in a child's only
 * thread; read-only otherwise. */
extern bool mm_malloc_fences MM_MALLOC_HIDDEN;
/* The process whose background threads run (set when they start, in
 * background.c; under mm_malloc_ctl_lock). */
extern pid_t mm_malloc_bg_pid MM_MALLOC_HIDDEN;

/* True if this process may use membarrier's private expedited command
 * (registered now); fences.c. */
bool mm_malloc_fences_register(void) MM_MALLOC_HIDDEN;
/* membarrier(2) with command cmd; its return value. */
long mm_malloc_membarrier(int cmd) MM_MALLOC_HIDDEN;
/* A full barrier in every thread (slots.c, "Why"); without membarrier a
 * TLB shootdown (port_prod.c) under its mutex. Any thread, no mm lock. */
void mm_malloc_fence_others(void) MM_MALLOC_HIDDEN;
void mm_malloc_fence_by_shootdown(void) MM_MALLOC_HIDDEN;
/* Frees the shootdown's lock, which a thread fork did not copy may have
 * held: fork's child, alone (port_prod.c). */
void mm_malloc_shootdown_reset(void) MM_MALLOC_HIDDEN;
/* Takes slot s on the slow path: its busy word, then its exclusive owner
 * out of the fast path, waiting for both: a call's entry, fork's prepare,
 * or a signal handler's nested call taking the late slot (enter.c). */
void mm_malloc_slot_take(int s) MM_MALLOC_HIDDEN;
/* The same, bounded: gives up after turns turns of mm_malloc_backoff
 * waiting for busy, or as many for in (then gives busy back). Returns
 * true if it holds slot s. Never waits for a fork: for a thread that
 * holds a slot already (a visit, visit.c). */
bool mm_malloc_slot_try_take(int s, unsigned turns) MM_MALLOC_HIDDEN;
/* Turn i (from 0) of a wait for another thread (enter.c): spins, then
 * yields, then sleeps, for a while longer each turn, up to a millisecond.
 * Keeps errno; no cancellation point; async-signal-safe. */
void mm_malloc_backoff(unsigned i) MM_MALLOC_HIDDEN;
/* Records this thread as slot s's one owner (its owner word), which a
 * later claim may take over once this thread is gone (slots_gone.c). */
void mm_malloc_owner_set(int s) MM_MALLOC_HIDDEN;
/* Records this thread as a sharer of slot s, just joined, if a sharer
 * word is free (slots_gone.c). */
void mm_malloc_sharer_set(int s) MM_MALLOC_HIDDEN;
/* At this thread's exit from slot s: clears the word it recorded, if it
 * is still its own, before its count drops. */
void mm_malloc_ids_clear(int s) MM_MALLOC_HIDDEN;
/* For a claim that found every slot owned: reclaims what threads of
 * process pid that are gone left counted in slot i, and returns true if
 * this thread owns the slot now (slots_gone.c). Changes errno. */
bool mm_malloc_slot_reclaim(unsigned i, pid_t pid) MM_MALLOC_HIDDEN;
/* Blocks every signal in this thread, keeping its mask in *old, for a
 * window in which a handler's call must not run (slots.c); restores it.
 * Neither allocates nor changes errno. */
void mm_malloc_signals_block(sigset_t *old) MM_MALLOC_HIDDEN;
void mm_malloc_signals_restore(const sigset_t *old) MM_MALLOC_HIDDEN;

/* ---- What slots.c needs of fork.c --------------------------------------- */

/* Registers the fork handlers if they are not: from the constructor,
 * and from the heap's set-up, which fails if this returns false (fork.c
 * says why). */
bool mm_malloc_register_fork_handlers(void) MM_MALLOC_HIDDEN;
/* The constructor's part: registers the handlers and finds glibc's
 * _Fork, which ours wraps. */
void mm_malloc_fork_init(void) MM_MALLOC_HIDDEN;

#endif

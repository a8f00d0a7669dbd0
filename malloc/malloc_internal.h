/*
 * malloc/malloc_internal.h: what the hosted malloc's three files share:
 * the one heap, the thread slots that play CPUs (slots.c), and the hooks
 * of the production port (port_prod.c) that slots.c drives.
 *
 * A thread "holds" its slot from entry to exit of every malloc API call
 * (mm_malloc_enter / mm_malloc_leave): the slot's busy word is taken with
 * one atomic exchange, so whatever mm/ does inside the call, pinned or
 * not, no other thread uses that slot's per-CPU cache meanwhile. fork()
 * takes every slot, which is how it knows that no thread is inside mm/.
 */
#ifndef MALLOC_INTERNAL_H
#define MALLOC_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "mm/mheap.h"
#include "mm/spanheap.h"

#define MM_MALLOC_HIDDEN __attribute__((visibility("hidden")))

/* The heap every entry point uses; ready once mm_malloc_ready is true. */
extern struct mheap mm_malloc_heap MM_MALLOC_HIDDEN;
extern struct spanheap mm_malloc_sh MM_MALLOC_HIDDEN;

/* A thread slot: plays one CPU of the span heap. */
struct mm_malloc_slot {
	/* 1 while a thread holds the slot (inside an API call); taken with
	 * an atomic exchange, so threads sharing a slot take turns. */
	_Alignas(64) atomic_uint busy;
	/* Threads that chose this slot (0: free to claim). Atomic. */
	atomic_uint owners;
};

extern struct mm_malloc_slot mm_malloc_slots[MM_MAX_CPUS] MM_MALLOC_HIDDEN;

/* Per thread (initial-exec TLS: no allocation to reach them). */
extern _Thread_local int mm_malloc_slot_id MM_MALLOC_HIDDEN;   /* -1: none */
extern _Thread_local unsigned mm_malloc_hold MM_MALLOC_HIDDEN; /* depth */

/* First use by this thread: initialises the heap if needed, claims a
 * slot; returns its index. */
int mm_malloc_first_use(void) MM_MALLOC_HIDDEN;

/* Waits for slot s's busy word and takes it. */
void mm_malloc_slot_wait(int s) MM_MALLOC_HIDDEN;

/* Enters an API call: holds this thread's slot (nested calls only count). */
static inline void mm_malloc_enter(void)
{
	int s = mm_malloc_slot_id;
	if (__builtin_expect(s < 0, 0))
		s = mm_malloc_first_use();
	if (mm_malloc_hold++ == 0) {
		if (__builtin_expect(
		            atomic_exchange_explicit(&mm_malloc_slots[s].busy,
		                                     1, memory_order_acquire),
		            0))
			mm_malloc_slot_wait(s);
	}
}

/* Leaves it: the outermost call gives the slot up. */
static inline void mm_malloc_leave(void)
{
	if (--mm_malloc_hold == 0)
		atomic_store_explicit(&mm_malloc_slots[mm_malloc_slot_id].busy,
		                      0, memory_order_release);
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

static inline void mm_malloc_maybe_start_bg(void)
{
	if (__builtin_expect(atomic_load_explicit(&mm_malloc_bg_state,
	                                          memory_order_relaxed) ==
	                             MM_BG_ALLOWED,
	                     0))
		mm_malloc_bg_start();
}

/* Threads holding a slot (owners summed); for the tests. */
unsigned mm_malloc_slot_owners(void) MM_MALLOC_HIDDEN;

#endif

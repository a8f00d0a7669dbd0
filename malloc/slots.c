/*
 * malloc/slots.c: the hosted malloc's set-up and its threads: the heap's
 * bootstrap, the thread slots that play the span heap's CPUs, fork(), and
 * the background threads.
 *
 * Representation. MM_MAX_CPUS slots, each a busy word and an owner count
 * (malloc_internal.h). A thread's slot index lives in an initial-exec TLS
 * variable, so reaching it never allocates.
 *
 * Algorithm.
 *   bootstrap  The first call of any entry point, from any thread (the
 *              dynamic loader's first allocations included), initialises
 *              the heap under a spinning state word: 0 none, 1 in progress,
 *              2 ready. Only mmap and mprotect run meanwhile; the key and
 *              the fork handlers are registered after the heap is ready,
 *              so that an allocation they make finds it usable.
 *   claim      On first use a thread claims a slot nobody owns (owners
 *              0 -> 1); when all are owned it shares the least-owned one.
 *              Sharing is safe because every call takes the busy word.
 *   exit       A pthread key's destructor flushes the slot's cache
 *              (spanheap_flush_cache, holding the slot) and drops the
 *              thread's ownership, so a later thread claims the slot and
 *              thousands of short-lived threads leave nothing behind. The
 *              index stays in TLS: a free() during the rest of the
 *              thread's teardown still holds the slot for its call.
 *   fork       prepare: stop and join the background threads (mid-cycle
 *              work ends with their join), then take every slot's busy
 *              word; with those held, no thread is inside mm/, so no mm
 *              lock is held and no span or page is half-moved. parent:
 *              give the slots back. child: only the forking thread is
 *              left: every slot is unowned but its own, all are free.
 *              Both restart the background threads lazily.
 *   background The sweeper and the scavenger start on an allocation made
 *              after our constructor ran (the dynamic loader and libc are
 *              set up then) and once the heap has grown to 8 MiB (a
 *              smaller heap has little to give back), outside any API
 *              call, under ctl_lock; the allocations pthread_create makes
 *              see the state "running" and do not recurse.
 *
 * Locking: ctl_lock (a pthread mutex) serialises background start and
 * stop and fork. It is never taken holding a slot.
 * Limits: a thread that allocates in a signal handler that interrupted
 * one of its own API calls re-enters the heap without exclusion (glibc
 * would deadlock there instead): malloc is not async-signal-safe.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "malloc_internal.h"

struct mheap mm_malloc_heap;
struct spanheap mm_malloc_sh;
struct mm_malloc_slot mm_malloc_slots[MM_MAX_CPUS];
_Thread_local int mm_malloc_slot_id = -1;
_Thread_local unsigned mm_malloc_hold;
atomic_int mm_malloc_bg_state;

static atomic_int init_state; /* 0 none, 1 in progress, 2 ready */
static pthread_key_t exit_key;
static atomic_bool key_ready;
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint claim_hint;

static void slot_exit(void *arg);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

/* Makes the heap usable; returns once it is, whoever did it. */
static void heap_init(void)
{
	int st = atomic_load_explicit(&init_state, memory_order_acquire);
	if (st == 2)
		return;
	st = 0;
	if (!atomic_compare_exchange_strong(&init_state, &st, 1)) {
		while (atomic_load_explicit(&init_state,
		                            memory_order_acquire) != 2)
			sched_yield();
		return;
	}
	struct mheap_config hc;
	struct spanheap_config sc;
	mheap_config_default(&hc);
	spanheap_config_default(&sc);
	if (!mheap_init(&mm_malloc_heap, &hc) ||
	    !spanheap_init(&mm_malloc_sh, &mm_malloc_heap, &sc))
		mm_panic("cannot set up the heap (no address space for a "
		         "%zu MiB arena?)",
		         hc.arena_bytes >> 20);
	atomic_store_explicit(&init_state, 2, memory_order_release);
	/* Past this point allocations work, also from inside these. */
	if (pthread_key_create(&exit_key, slot_exit) == 0)
		atomic_store(&key_ready, true);
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Claims a slot for this thread (see "claim" above). */
static int slot_claim(void)
{
	unsigned start = atomic_fetch_add(&claim_hint, 1);
	for (unsigned k = 0; k < MM_MAX_CPUS; k++) {
		unsigned i = (start + k) % MM_MAX_CPUS;
		unsigned zero = 0;
		if (atomic_load_explicit(&mm_malloc_slots[i].owners,
		                         memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_strong(&mm_malloc_slots[i].owners,
		                                   &zero, 1))
			return (int)i;
	}
	unsigned best = start % MM_MAX_CPUS, least = UINT32_MAX;
	for (unsigned i = 0; i < MM_MAX_CPUS; i++) {
		unsigned n = atomic_load_explicit(&mm_malloc_slots[i].owners,
		                                  memory_order_relaxed);
		if (n < least) {
			least = n;
			best = i;
		}
	}
	atomic_fetch_add(&mm_malloc_slots[best].owners, 1);
	return (int)best;
}

int mm_malloc_first_use(void)
{
	heap_init();
	/* An allocation made by heap_init's registrations got one. */
	if (mm_malloc_slot_id >= 0)
		return mm_malloc_slot_id;
	int s = slot_claim();
	mm_malloc_slot_id = s;
	/* Without the key (the very first thread, while init registers it)
	 * the slot is not given back at exit: the main thread's is not. */
	if (atomic_load(&key_ready))
		pthread_setspecific(exit_key, (void *)1);
	return s;
}

void mm_malloc_slot_wait(int s)
{
	atomic_uint *busy = &mm_malloc_slots[s].busy;
	do {
		for (int i = 0;
		     atomic_load_explicit(busy, memory_order_relaxed); i++) {
			if (i < 64)
				__builtin_ia32_pause();
			else
				sched_yield();
		}
	} while (atomic_exchange_explicit(busy, 1, memory_order_acquire));
}

/* The key's destructor: the thread is exiting. */
static void slot_exit(void *arg)
{
	(void)arg;
	int s = mm_malloc_slot_id;
	if (s < 0)
		return;
	mm_malloc_enter();
	spanheap_flush_cache(&mm_malloc_sh);
	mm_malloc_leave();
	atomic_fetch_sub(&mm_malloc_slots[s].owners, 1);
}

unsigned mm_malloc_slot_owners(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < MM_MAX_CPUS; i++)
		n += atomic_load(&mm_malloc_slots[i].owners);
	return n;
}

/* ---- Background threads ------------------------------------------------- */

/* The heap size from which the background threads run: below it there is
 * little to give back, and the many short-lived processes of a shell or a
 * build (bash, seq, gcc's drivers) would pay for two thread starts each,
 * and for stopping them at every fork. */
#define MM_MALLOC_BG_MIN_BYTES ((size_t)8 << 20)

static atomic_bool constructed;
static atomic_size_t grown_bytes;

/* Allows the threads once both conditions hold. */
static void allow_background(void)
{
	int want = MM_BG_NOT_YET;
	if (atomic_load(&constructed) &&
	    atomic_load(&grown_bytes) >= MM_MALLOC_BG_MIN_BYTES)
		atomic_compare_exchange_strong(&mm_malloc_bg_state, &want,
		                               MM_BG_ALLOWED);
}

__attribute__((constructor)) static void mm_malloc_constructor(void)
{
	atomic_store(&constructed, true);
	allow_background();
}

void mm_malloc_note_growth(size_t nbytes)
{
	atomic_fetch_add(&grown_bytes, nbytes);
	allow_background();
}

void mm_malloc_bg_start(void)
{
	if (mm_malloc_hold || pthread_mutex_trylock(&ctl_lock) != 0)
		return; /* inside a call, or someone starts or forks now */
	if (atomic_load(&mm_malloc_bg_state) == MM_BG_ALLOWED &&
	    atomic_load_explicit(&init_state, memory_order_acquire) == 2) {
		atomic_store(&mm_malloc_bg_state, MM_BG_RUNNING);
		/* A thread that cannot start is not retried: the heap works
		 * without it (refills sweep, memory is not given back). */
		spanheap_sweeper_start(&mm_malloc_sh);
		mheap_scavenger_start(&mm_malloc_heap);
	}
	pthread_mutex_unlock(&ctl_lock);
}

/* ---- fork --------------------------------------------------------------- */

static void fork_prepare(void)
{
	pthread_mutex_lock(&ctl_lock);
	if (atomic_load(&mm_malloc_bg_state) == MM_BG_RUNNING) {
		spanheap_sweeper_stop(&mm_malloc_sh);
		mheap_scavenger_stop(&mm_malloc_heap);
	}
	/* This thread's own calls until parent/child pass as nested. */
	mm_malloc_hold++;
	for (int s = 0; s < MM_MAX_CPUS; s++)
		if (atomic_exchange_explicit(&mm_malloc_slots[s].busy, 1,
		                             memory_order_acquire))
			mm_malloc_slot_wait(s);
}

/* Gives every slot back and lets the background threads start again. */
static void fork_release(void)
{
	for (int s = 0; s < MM_MAX_CPUS; s++)
		atomic_store_explicit(&mm_malloc_slots[s].busy, 0,
		                      memory_order_release);
	mm_malloc_hold--;
	if (atomic_load(&mm_malloc_bg_state) == MM_BG_RUNNING)
		atomic_store(&mm_malloc_bg_state, MM_BG_ALLOWED);
}

static void fork_parent(void)
{
	fork_release();
	pthread_mutex_unlock(&ctl_lock);
}

static void fork_child(void)
{
	/* The other threads are gone, their slots with them. */
	for (int s = 0; s < MM_MAX_CPUS; s++)
		atomic_store(&mm_malloc_slots[s].owners,
		             s == mm_malloc_slot_id ? 1 : 0);
	fork_release();
	pthread_mutex_init(&ctl_lock, NULL);
}

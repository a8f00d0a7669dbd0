/*
 * malloc/locks.h: the library's one lock order, mm's locks and its own
 * three together, which every thread checks at run time (locks.c; mm's
 * locks themselves are port_sync.c's).
 */
#ifndef MALLOC_LOCKS_H
#define MALLOC_LOCKS_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "mm/port.h"

/* The locks a thread holds, a bit each, lowest first in the order they
 * may be taken (locks.c says what each may be taken under). */
enum {
	MM_MALLOC_BIT_CTL = 0,        /* mm_malloc_ctl_lock (slots.c) */
	MM_MALLOC_BIT_VISIT = 1,      /* visit_lock (visit.c) */
	MM_MALLOC_BIT_MM = 2,         /* plus an mm lock's rank */
	MM_MALLOC_BIT_SHOOTDOWN = 31, /* shootdown_lock (port_prod.c) */
};
#define MM_MALLOC_MM_BITS (((1u << MM_RANK_COUNT) - 1) << MM_MALLOC_BIT_MM)
_Static_assert(MM_MALLOC_BIT_MM + MM_RANK_COUNT <= MM_MALLOC_BIT_SHOOTDOWN,
               "mm's ranks fit between the library's bits");

/* This thread's held locks. Written by this thread only, and by a signal
 * handler of it, which gives back what it takes before it returns. */
extern _Thread_local unsigned mm_malloc_held_mask
        __attribute__((visibility("hidden")));

/* The library's own locks, outside mm's rank table. */
enum mm_malloc_lock {
	MM_MALLOC_LOCK_CTL,
	MM_MALLOC_LOCK_VISIT,
	MM_MALLOC_LOCK_SHOOTDOWN,
};

/* Before this thread takes l (or tries it): mm_panics, naming both, if
 * it holds a lock that l may not be taken under. Retaking ctl_lock or
 * visit_lock is not checked: the mutex tells it (EDEADLK), the try
 * fails. */
void mm_malloc_lock_check(enum mm_malloc_lock l)
        __attribute__((visibility("hidden")));
/* This thread has taken l (held), or given it back or forgotten it (a
 * fork child's copy). */
void mm_malloc_lock_note(enum mm_malloc_lock l, bool held)
        __attribute__((visibility("hidden")));
/* Writes into buf the name of the highest lock of bits (a subset of the
 * held mask), for a report; returns buf. */
const char *mm_malloc_lock_name(unsigned bits, char *buf, size_t size)
        __attribute__((visibility("hidden")));

/* The control lock (slots.c has what it protects). take and try return
 * as pthread_mutex_lock and _trylock do (0: taken); reset makes it anew
 * in a fork child, forgetting this thread's hold. */
extern pthread_mutex_t mm_malloc_ctl_lock __attribute__((visibility("hidden")));
int mm_malloc_ctl_take(void) __attribute__((visibility("hidden")));
int mm_malloc_ctl_try(void) __attribute__((visibility("hidden")));
void mm_malloc_ctl_give(void) __attribute__((visibility("hidden")));
void mm_malloc_ctl_reset(void) __attribute__((visibility("hidden")));

/* The visit lock (visit.c): one try, true if taken; and its release. */
bool mm_malloc_visit_try(void) __attribute__((visibility("hidden")));
void mm_malloc_visit_give(void) __attribute__((visibility("hidden")));

/* The shootdown's lock (port_prod.c), taken with every signal blocked
 * (their mask kept in *old), and given back. */
void mm_malloc_shootdown_take(sigset_t *old)
        __attribute__((visibility("hidden")));
void mm_malloc_shootdown_give(const sigset_t *old)
        __attribute__((visibility("hidden")));

#ifdef MM_TEST_HOOKS
/* Takes the lock named outer ("ctl", "visit", "shootdown" or "heap", the
 * page heap's mm lock), then inner, then gives both back: a wrong order
 * mm_panics. -1 if a name is unknown or a lock could not be had. For the
 * hooks test; exported. */
int mm_malloc_test_lock_nest(const char *outer, const char *inner)
        __attribute__((visibility("default")));
#endif

#endif

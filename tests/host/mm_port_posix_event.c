/*
 * tests/host/mm_port_posix_event.c: the POSIX port's events (mm/port.h's
 * mm_event_*); mm_port_posix.c's opening comment has the rest of the
 * port.
 *
 * An event count on a Linux futex. count is the futex word: wake advances
 * it and, if anyone may be asleep, FUTEX_WAKEs them all; wait sleeps in
 * FUTEX_WAIT_BITSET while count still equals the value prepare returned.
 * The kernel compares the word and queues the waiter atomically, so a wake
 * that lands between prepare and the sleep makes FUTEX_WAIT fail at once
 * (EAGAIN): no wake-up is lost, and every waiter of any number sees it.
 *
 * waiters lets wake skip the system call when nobody waits. A waiter adds
 * itself before reading count; wake advances count before reading waiters
 * (both seq_cst), so either the waker sees the waiter or the waiter sees
 * the new count. FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC
 * deadline, read with mm_posix_clock_ns (mm_port_now_ns less a test's
 * mm_port_set_clock_offset): early returns (signals,
 * spurious wake-ups, another event's wake on a reused word) just go round
 * the loop, which rereads count and the clock.
 *
 * Synchronisation is through C11 atomics on count, so ThreadSanitizer sees
 * a wake happen before the wait that observes it; the futex only sleeps.
 * Limits: count is 32 bits; a waiter that slept through exactly 2^32 wakes
 * would miss them and sleep until its timeout. A waker still reads e after
 * advancing count, so an event must outlive its wakers' calls, not only
 * the wake its waiters saw.
 */
#define _GNU_SOURCE
#include "mm_port_posix.h"
#include "mm_port_posix_internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct posix_event {
	_Atomic uint32_t count;
	_Atomic uint32_t waiters;      /* in wait, from before reading count */
	_Atomic unsigned long returns; /* waits that have returned */
	const char *name;
};

_Static_assert(sizeof(struct posix_event) <= sizeof(mm_event_t),
               "the POSIX event fits in mm_event_t");
_Static_assert(_Alignof(struct posix_event) <= _Alignof(mm_event_t),
               "and is aligned by it");
_Static_assert(sizeof(_Atomic uint32_t) == 4, "a futex word is 32 bits");

static struct posix_event *ev(mm_event_t *e)
{
	return (struct posix_event *)(void *)e->opaque;
}

void mm_event_init(mm_event_t *e, const char *name)
{
	struct posix_event *p = ev(e);
	atomic_init(&p->count, 0);
	atomic_init(&p->waiters, 0);
	atomic_init(&p->returns, 0);
	p->name = name;
}

uint64_t mm_event_prepare(mm_event_t *e)
{
	uint64_t seen = atomic_load(&ev(e)->count);
	mm_posix_chaos(); /* widens prepare -> check -> wait */
	return seen;
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val,
                  const struct timespec *ts, uint32_t bitset)
{
	return syscall(SYS_futex, (uint32_t *)word, op | FUTEX_PRIVATE_FLAG,
	               val, ts, NULL, bitset);
}

bool mm_event_wait(mm_event_t *e, uint64_t seen, uint64_t timeout_ns)
{
	struct posix_event *p = ev(e);
	if (!mm_port_can_sleep()) {
		char what[80];
		snprintf(what, sizeof(what), "mm_event_wait(%s)", p->name);
		mm_posix_expect_can_sleep(what);
	}
	uint64_t now = mm_posix_clock_ns(CLOCK_MONOTONIC);
	uint64_t deadline =
	        now + timeout_ns < now ? UINT64_MAX : now + timeout_ns;
	bool moved;
	mm_posix_chaos();
	atomic_fetch_add(&p->waiters, 1);
	for (;;) {
		moved = atomic_load(&p->count) != (uint32_t)seen;
		if (moved ||
		    (now = mm_posix_clock_ns(CLOCK_MONOTONIC)) >= deadline)
			break;
		struct timespec ts = {
		        .tv_sec = (time_t)(deadline / 1000000000u),
		        .tv_nsec = (long)(deadline % 1000000000u)};
		if (futex(&p->count, FUTEX_WAIT_BITSET, (uint32_t)seen, &ts,
		          FUTEX_BITSET_MATCH_ANY) != 0 &&
		    errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
			mm_panic("mm_event_wait(%s): futex: %s", p->name,
			         strerror(errno));
	}
	atomic_fetch_sub(&p->waiters, 1);
	atomic_fetch_add(&p->returns, 1); /* after: waiters is the next's */
	mm_posix_chaos();
	return moved;
}

unsigned mm_port_event_waiters(mm_event_t *e)
{
	return atomic_load(&ev(e)->waiters);
}

unsigned long mm_port_event_returns(mm_event_t *e)
{
	return atomic_load(&ev(e)->returns);
}

void mm_event_wake(mm_event_t *e)
{
	struct posix_event *p = ev(e);
	/* No mm lock (port.h): the kernel's event lock ranks below them
	 * all, the heap's, a class's and palloc's. */
	char what[64];
	snprintf(what, sizeof(what), "mm_event_wake(%s)", p->name);
	expect_no_lock(what);
	mm_posix_chaos();
	atomic_fetch_add(&p->count, 1);
	if (atomic_load(&p->waiters))
		futex(&p->count, FUTEX_WAKE_BITSET, INT_MAX, NULL,
		      FUTEX_BITSET_MATCH_ANY);
	mm_posix_chaos();
}

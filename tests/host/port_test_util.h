/*
 * tests/host/port_test_util.h: helpers shared by the tests that run
 * threads through the POSIX port: sleeping and polling without port hooks
 * (so a thread holding an mm lock may use them), starting and joining a
 * set of threads, and a waiter that follows port.h's event pattern.
 *
 * Worker threads never call KEXPECT (the runner is not thread-safe): they
 * record what they saw in their own struct, and the test checks it after
 * joining them.
 */
#ifndef TESTS_HOST_PORT_TEST_UTIL_H
#define TESTS_HOST_PORT_TEST_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include "mm_port_posix.h"

#define MS ((uint64_t)1000 * 1000)
#define S  (1000 * MS)

static inline void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / S), (long)(ns % S)};
	nanosleep(&ts, NULL);
}

/* Polls *v until it reaches want or timeout_ns passed; true if it did. */
static inline bool poll_until(atomic_int *v, int want, uint64_t timeout_ns)
{
	uint64_t t0 = mm_port_now_ns();
	while (atomic_load(v) < want) {
		if (mm_port_now_ns() - t0 > timeout_ns)
			return false;
		sleep_ns(100 * 1000);
	}
	return true;
}

/* Starts n threads running fn(args + i * size) and returns their handles
 * in t[]; false (with those started joined) if one could not start. */
static inline bool start_all(struct mm_thread **t, int n, void (*fn)(void *),
                             void *args, size_t size)
{
	for (int i = 0; i < n; i++) {
		t[i] = mm_port_thread_start("test_worker", fn,
		                            (char *)args + (size_t)i * size);
		if (!t[i]) {
			while (i-- > 0)
				mm_port_thread_join(t[i]);
			return false;
		}
	}
	return true;
}

static inline void join_all(struct mm_thread **t, int n)
{
	for (int i = 0; i < n; i++)
		mm_port_thread_join(t[i]);
}

/* One waiter on an event: see waiter(). */
struct waiter_arg {
	mm_event_t *e;
	atomic_int *cond; /* the condition waited for: *cond != 0; or NULL */
	uint64_t timeout_ns;
	mm_lock_t *own;   /* taken and released first, if set */
	atomic_int ready; /* set once the count was read */
	atomic_int done;
	bool moved, saw_cond;
	uint64_t elapsed_ns;
};

/* port.h's pattern, once: read the count, check the condition, sleep if
 * it has not moved. A single wait, so moved == false means a timeout. */
static inline void waiter(void *p)
{
	struct waiter_arg *a = p;
	if (a->own)
		mm_lock_release(a->own, mm_lock_acquire(a->own));
	uint64_t t0 = mm_port_now_ns();
	uint64_t seen = mm_event_prepare(a->e);
	atomic_store(&a->ready, 1);
	a->moved = (a->cond && atomic_load(a->cond)) ||
	           mm_event_wait(a->e, seen, a->timeout_ns);
	a->saw_cond = a->cond && atomic_load(a->cond);
	a->elapsed_ns = mm_port_now_ns() - t0;
	atomic_store(&a->done, 1);
}

#endif

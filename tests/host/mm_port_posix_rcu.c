/*
 * tests/host/mm_port_posix_rcu.c: the POSIX test port's grace periods
 * (mm/port.h, MM_PORT_RCU), a fake the tests drive.
 *
 * mm_port_call_rcu queues the callback; nothing runs it until a test
 * says a grace period has passed (mm_port_posix_rcu_advance) or a cache's
 * destroy waits for them (mm_port_rcu_barrier, which runs them all). So
 * a test holds a grace period back for as long as it likes, and asserts
 * what the heap does meanwhile. A test whose threads read objects past
 * their free ends its read-side sections itself before it advances
 * (tests/host/objcache_own_stress_test.c: a reader-writer lock).
 *
 * Locking: one mutex for the queue; callbacks run without it, in the
 * advancing thread, in order of queueing.
 */
#ifdef MM_PORT_RCU
#include <pthread.h>
#include <stddef.h>

#include "tests/host/mm_port_posix.h"

static pthread_mutex_t rcu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mm_rcu_head *rcu_first, **rcu_tail = &rcu_first;
static size_t rcu_queued;

void mm_port_call_rcu(struct mm_rcu_head *head,
                      void (*func)(struct mm_rcu_head *head))
{
	head->func = func;
	head->next = NULL;
	pthread_mutex_lock(&rcu_lock);
	*rcu_tail = head;
	rcu_tail = &head->next;
	rcu_queued++;
	pthread_mutex_unlock(&rcu_lock);
}

size_t mm_port_posix_rcu_queued(void)
{
	pthread_mutex_lock(&rcu_lock);
	size_t n = rcu_queued;
	pthread_mutex_unlock(&rcu_lock);
	return n;
}

struct mm_rcu_head *mm_port_posix_rcu_take(void)
{
	pthread_mutex_lock(&rcu_lock);
	struct mm_rcu_head *h = rcu_first;
	rcu_first = NULL;
	rcu_tail = &rcu_first;
	rcu_queued = 0;
	pthread_mutex_unlock(&rcu_lock);
	return h;
}

size_t mm_port_posix_rcu_run(struct mm_rcu_head *h)
{
	size_t n = 0;
	while (h) {
		struct mm_rcu_head *next = h->next; /* func may free h */
		h->func(h);
		h = next;
		n++;
	}
	return n;
}

size_t mm_port_posix_rcu_advance(void)
{
	return mm_port_posix_rcu_run(mm_port_posix_rcu_take());
}

void mm_port_rcu_barrier(void)
{
	mm_port_posix_rcu_advance();
}
#endif

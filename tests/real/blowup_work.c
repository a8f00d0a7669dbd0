/*
 * tests/real/blowup_work.c: the workloads of blowup.h that both
 * tests/real/blowup.c (tools/bench-blowup) and malloc-api-test's blowup
 * tests run: producer/consumer rounds over a ring and Larson's server.
 * They call malloc and free, whichever the process has.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blowup.h"
#include "proc_read.h"

/* The field name of /proc/self/status (with its colon), in KiB. */
long blowup_status_kib(const char *field)
{
	char buf[4096];
	if (proc_read("/proc/self/status", buf, sizeof(buf)) <= 0)
		return -1;
	char *p = strstr(buf, field);
	return p ? strtol(p + strlen(field), NULL, 10) : -1;
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x;
}

/* The ring between a producer and a consumer (one each at a time). */
static void *ring[RING];
static _Alignas(64) _Atomic uint64_t head; /* written by the producer */
static _Alignas(64) _Atomic uint64_t tail; /* written by the consumer */

void blowup_produce(uint64_t n, uint64_t seed)
{
	uint64_t h = atomic_load(&head);
	for (uint64_t i = 0; i < n; i++, h++) {
		size_t sz = 16 + next(&seed) % 497;
		char *p = malloc(sz);
		if (!p)
			abort();
		p[0] = p[sz - 1] = 1;
		while (h - atomic_load_explicit(&tail, memory_order_acquire) ==
		       RING)
			sched_yield();
		ring[h % RING] = p;
		atomic_store_explicit(&head, h + 1, memory_order_release);
	}
}

void blowup_consume(uint64_t n)
{
	uint64_t t = atomic_load(&tail);
	for (uint64_t i = 0; i < n; i++, t++) {
		while (atomic_load_explicit(&head, memory_order_acquire) == t)
			sched_yield();
		free(ring[t % RING]);
		atomic_store_explicit(&tail, t + 1, memory_order_release);
	}
}

struct role {
	pthread_barrier_t *bar;
	unsigned id, nthreads, rounds;
};

/* Round r: thread r % n produces, thread (r + 1) % n consumes, the rest
 * wait at the barrier. With n 2 it is plain producer/consumer. */
static void *rotate_thread(void *arg)
{
	struct role *ro = arg;
	for (unsigned r = 0; r < ro->rounds; r++) {
		if (r % ro->nthreads == ro->id)
			blowup_produce(PER_ROUND, r + 1);
		else if ((r + 1) % ro->nthreads == ro->id)
			blowup_consume(PER_ROUND);
		pthread_barrier_wait(ro->bar);
	}
	return NULL;
}

/* Runs rounds of producer/consumer among n threads (rotating roles). */
void blowup_rotate(unsigned n, unsigned rounds)
{
	pthread_barrier_t bar;
	pthread_t t[8];
	struct role ro[8];
	pthread_barrier_init(&bar, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		ro[i] = (struct role){&bar, i, n, rounds};
		if (pthread_create(&t[i], NULL, rotate_thread, &ro[i]))
			abort();
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
}

static void *consumer_round(void *arg)
{
	blowup_consume((uint64_t)(uintptr_t)arg);
	return NULL;
}

/* Each round the calling thread produces and a new thread consumes, then
 * exits. */
void blowup_exitcons(unsigned rounds)
{
	for (unsigned r = 0; r < rounds; r++) {
		pthread_t c;
		if (pthread_create(&c, NULL, consumer_round,
		                   (void *)(uintptr_t)PER_ROUND))
			abort();
		blowup_produce(PER_ROUND, r + 1);
		pthread_join(c, NULL);
	}
}

/* Larson: a shared array of slots; each thread replaces random ones. */
static _Atomic(void *) lslots[LARSON_SLOTS];

static void *larson_thread(void *arg)
{
	uint64_t x = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
	for (unsigned i = 0; i < LARSON_OPS; i++) {
		size_t sz = 16 + next(&x) % 497;
		char *p = malloc(sz);
		if (!p)
			abort();
		p[0] = 1;
		free(atomic_exchange(&lslots[next(&x) % LARSON_SLOTS], p));
	}
	return NULL;
}

/* One epoch: LARSON_THREADS new threads of LARSON_OPS replacements each,
 * joined. */
void blowup_larson_epoch(unsigned e)
{
	pthread_t t[LARSON_THREADS];
	for (unsigned i = 0; i < LARSON_THREADS; i++)
		if (pthread_create(&t[i], NULL, larson_thread,
		                   (void *)(uintptr_t)(e * LARSON_THREADS + i)))
			abort();
	for (unsigned i = 0; i < LARSON_THREADS; i++)
		pthread_join(t[i], NULL);
}

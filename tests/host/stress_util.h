/*
 * tests/host/stress_util.h: what the host stress tests share: a
 * xorshift generator, a worker's first failure, and a locked inbox through
 * which one worker hands items to another to free (cross-thread frees).
 */
#ifndef TESTS_HOST_STRESS_UTIL_H
#define TESTS_HOST_STRESS_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* xorshift64: seed with anything but 0. */
static inline uint64_t stress_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* How many checks a worker failed, and the first one's words; read after
 * the worker is joined. */
struct stress_failures {
	unsigned long n;
	char first[200];
};

__attribute__((format(printf, 2, 3), unused)) static void
stress_fail(struct stress_failures *f, const char *fmt, ...)
{
	if (f->n++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(f->first, sizeof(f->first), fmt, ap);
		va_end(ap);
	}
}

/* Fails the running test at file:line if worker i failed a check,
 * naming how many and the first. */
#define STRESS_REPORT(i, f)                                                 \
	do {                                                                \
		if ((f)->n)                                                 \
			ktest_fail_at(__FILE__, __LINE__,                   \
			              "worker %d: %lu failures, first: %s", \
			              (i), (f)->n, (f)->first);             \
	} while (0)

/* Items of one size waiting in the owner's array, under a mutex. */
struct stress_inbox {
	pthread_mutex_t lock;
	unsigned char *items;
	size_t size, cap, n;
};

static inline void stress_inbox_init(struct stress_inbox *b, void *items,
                                     size_t size, size_t cap)
{
	pthread_mutex_init(&b->lock, NULL);
	b->items = items;
	b->size = size;
	b->cap = cap;
	b->n = 0;
}

static inline void stress_inbox_destroy(struct stress_inbox *b)
{
	pthread_mutex_destroy(&b->lock);
}

/* Copies item in; false (nothing done) if the inbox is full. */
static inline bool stress_inbox_put(struct stress_inbox *b, const void *item)
{
	pthread_mutex_lock(&b->lock);
	bool ok = b->n < b->cap;
	if (ok)
		memcpy(b->items + b->n++ * b->size, item, b->size);
	pthread_mutex_unlock(&b->lock);
	return ok;
}

/* Moves every item to out (room for cap items); returns how many. */
static inline size_t stress_inbox_take(struct stress_inbox *b, void *out)
{
	pthread_mutex_lock(&b->lock);
	size_t n = b->n;
	memcpy(out, b->items, n * b->size);
	b->n = 0;
	pthread_mutex_unlock(&b->lock);
	return n;
}

#endif

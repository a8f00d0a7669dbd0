/* Memory pressure for the reclaim tests (reclaim_test.c,
 * shrinker_test.c): a cache of kmalloc'd objects that a shrinker can
 * empty, and a frame pool taken down to a few MiB. */
#ifndef TESTS_KERNEL_RECLAIM_UTIL_H
#define TESTS_KERNEL_RECLAIM_UTIL_H

#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/shrinker.h"
#include "kernel/spinlock.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"

/* Frames the pressure tests leave in the pool: 16 MiB. */
#define RECLAIM_LEFT 4096

/* A cache: objects of size bytes linked through their first word, each
 * holding its pattern (its address, bit-flipped) in its last word. */
struct test_cache {
	struct spinlock lock; /* rank TEST_LOW: the list and n */
	void **head;
	size_t n, size, bad;
	struct shrinker s;
};

static inline uintptr_t test_cache_pattern(const void *p)
{
	return ~(uintptr_t)p;
}

/* Pops one object (NULL if none), checking its pattern. */
static inline void *test_cache_pop(struct test_cache *c)
{
	unsigned long irq = spin_lock_irqsave(&c->lock);
	void **p = c->head;
	if (p) {
		c->head = *p;
		c->n--;
	}
	spin_unlock_irqrestore(&c->lock, irq);
	if (p &&
	    p[c->size / sizeof(void *) - 1] != (void *)test_cache_pattern(p))
		c->bad++; /* racy count: only read at the end */
	return p;
}

static inline void test_cache_push(struct test_cache *c, void **p)
{
	p[c->size / sizeof(void *) - 1] = (void *)test_cache_pattern(p);
	unsigned long irq = spin_lock_irqsave(&c->lock);
	*p = c->head;
	c->head = p;
	c->n++;
	spin_unlock_irqrestore(&c->lock, irq);
}

static inline size_t test_cache_count(struct shrinker *s)
{
	struct test_cache *c = s->priv;
	return __atomic_load_n(&c->n, __ATOMIC_RELAXED);
}

static inline size_t test_cache_scan(struct shrinker *s, size_t nr)
{
	struct test_cache *c = s->priv;
	size_t freed = 0;
	void *p;
	while (freed < nr && (p = test_cache_pop(c)) != NULL) {
		kfree(p);
		freed++;
	}
	return freed;
}

static inline void test_cache_init(struct test_cache *c, size_t size)
{
	*c = (struct test_cache){.size = size};
	spin_init(&c->lock, "test_cache", LOCK_RANK_TEST_LOW);
	c->s = (struct shrinker){.name = "test_cache",
	                         .count = test_cache_count,
	                         .scan = test_cache_scan,
	                         .priv = c};
}

/* Fills c with objects until kmalloc returns NULL (or max); their
 * number. */
static inline size_t test_cache_fill(struct test_cache *c, size_t max)
{
	size_t n = 0;
	void **p;
	while (n < max && (p = kmalloc(c->size, 0)) != NULL) {
		test_cache_push(c, p);
		n++;
	}
	return n;
}

/* Frees every object left; their number. */
static inline size_t test_cache_empty(struct test_cache *c)
{
	size_t n = 0;
	void *p;
	while ((p = test_cache_pop(c)) != NULL) {
		kfree(p);
		n++;
	}
	return n;
}

#endif

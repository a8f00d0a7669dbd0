/*
 * tests/host/churn_util.h: the churn threads of the stress tests of the
 * span heap's lock-free readers (spanheap_where_stress_test.c,
 * spanheap_track_stress_test.c). CHURNERS threads, thread i on CPU i + 1,
 * each allocate objects of sizes picked from the caller's list, write a
 * pattern of their address into every 64th word, and free them after
 * checking it; every fourth free is handed to the next thread instead,
 * which frees what it found there (cross-thread frees). Bounded by
 * operation counts.
 */
#ifndef TESTS_HOST_CHURN_UTIL_H
#define TESTS_HOST_CHURN_UTIL_H

#include <stdatomic.h>

#include "../../kernel/ktest.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

enum { CHURNERS = 3, CHURN_KEEP = 32 };

struct churn;

struct churner {
	int id;
	uint64_t rng;
	uintptr_t keep[CHURN_KEEP];
	size_t size[CHURN_KEEP];
	struct stress_failures failures;
	struct churn *set;
};

struct churn {
	struct spanheap *sh;
	const size_t *sizes; /* the sizes picked from, nsizes of them */
	unsigned nsizes;
	int ops; /* each thread's */
	struct churner c[CHURNERS];
	struct mm_thread *t[CHURNERS];
	/* One object handed from thread i to thread i + 1, or 0. */
	_Atomic uintptr_t handed[CHURNERS];
	_Atomic size_t handed_size[CHURNERS];
	_Atomic int running; /* threads not done yet */
};

static inline uint64_t churn_pattern(uintptr_t p, size_t off)
{
	return (p + off) * 0x9e3779b97f4a7c15ull;
}

static inline void churn_fill(uintptr_t p, size_t size)
{
	for (size_t off = 0; off + 8 <= size; off += 64)
		*(uint64_t *)(p + off) = churn_pattern(p, off);
}

static inline void churn_check_and_free(struct churner *c, uintptr_t p,
                                        size_t size)
{
	for (size_t off = 0; off + 8 <= size; off += 64)
		if (*(uint64_t *)(p + off) != churn_pattern(p, off)) {
			stress_fail(&c->failures,
			            "object %#lx (%zu bytes): word %zu changed",
			            (unsigned long)p, size, off);
			break;
		}
	spanheap_free(c->set->sh, (void *)p);
}

static inline void churn_main(void *arg)
{
	struct churner *c = arg;
	struct churn *s = c->set;
	mm_port_set_cpu(1 + (unsigned)c->id);
	for (int op = 0; op < s->ops; op++) {
		unsigned k = (unsigned)(stress_random(&c->rng) % CHURN_KEEP);
		if (c->keep[k] && op % 4 == 0) {
			/* To the next thread; what it left there, freed. */
			int to = (c->id + 1) % CHURNERS;
			uintptr_t old = atomic_exchange(&s->handed[to], 0);
			size_t old_size = atomic_load(&s->handed_size[to]);
			if (old)
				churn_check_and_free(c, old, old_size);
			atomic_store(&s->handed_size[to], c->size[k]);
			atomic_store(&s->handed[to], c->keep[k]);
		} else if (c->keep[k]) {
			churn_check_and_free(c, c->keep[k], c->size[k]);
		}
		size_t size = s->sizes[stress_random(&c->rng) % s->nsizes];
		c->keep[k] = (uintptr_t)spanheap_alloc(s->sh, size, 0);
		c->size[k] = size;
		if (c->keep[k])
			churn_fill(c->keep[k], size);
	}
	for (unsigned k = 0; k < CHURN_KEEP; k++)
		if (c->keep[k])
			churn_check_and_free(c, c->keep[k], c->size[k]);
	spanheap_flush_cache(s->sh);
	atomic_fetch_sub(&s->running, 1);
}

/* Starts s's threads over s->sh: true if all started. */
static inline bool churn_start(struct churn *s)
{
	for (int i = 0; i < CHURNERS; i++) {
		s->c[i] = (struct churner){.id = i,
		                           .rng = 0x9e3779b97f4a7c15ull *
		                                  (uint64_t)(i + 1),
		                           .set = s};
		atomic_store(&s->handed[i], 0);
	}
	atomic_store(&s->running, CHURNERS);
	return start_all(s->t, CHURNERS, churn_main, s->c, sizeof(s->c[0]));
}

/* Whether some thread is still churning. */
static inline bool churn_running(struct churn *s)
{
	return atomic_load(&s->running) > 0;
}

/* Joins s's threads, fails the test for a pattern one found changed, and
 * frees what was left handed on. */
static inline void churn_finish(struct churn *s)
{
	join_all(s->t, CHURNERS);
	for (int i = 0; i < CHURNERS; i++) {
		uintptr_t p = atomic_exchange(&s->handed[i], 0);
		if (p)
			churn_check_and_free(&s->c[i], p,
			                     atomic_load(&s->handed_size[i]));
		STRESS_REPORT(i, &s->c[i].failures);
	}
}

#endif

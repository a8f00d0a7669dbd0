/*
 * Two destroys of one named cache, or of one mempool, at once (a misuse):
 * each round, two threads on CPUs of their own meet at a barrier and
 * both destroy the same cache (pool); the outcome must be a sequential
 * double destroy's. For a cache, one destroy returns true and the other
 * panics saying the cache is no cache of the heap's; for a pool, both
 * return true (a destroyed pool's destroy is nothing) and each element
 * goes back once. Until a review the cache's destroy tested that the
 * cache was listed in one hold of the lock and unlinked it in another,
 * and the second destroy walked off the list's end (a NULL dereference);
 * the pool's gave its reserve back in both threads (a double free of
 * each element and of the array). Chaos mode (the port's, at every lock
 * acquire and release) widens the windows; under the chaos run's
 * MM_CHAOS, its own settings, kept after.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "../../mm/objcache.h"
#include "objcache_test_util.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"

enum { ROUNDS = 300 };

static pthread_barrier_t race_bar;
static struct objcache *racy;
static struct mempool racy_pool;

/* A destroy's outcome; a panic saying the cache is no cache of the
 * heap's is PANICKED, another is WRONG_PANIC. */
enum outcome { DESTROYED, REFUSED, PANICKED, WRONG_PANIC };

/* One thread's tally of its destroys' outcomes, and its last. */
struct racer {
	unsigned id;
	bool pool; /* destroys racy_pool, not racy */
	unsigned destroyed, refused, panicked, wrong_panic;
	enum outcome last;
};

/* Rounds whose pair of outcomes was not a sequential double destroy's
 * (thread 0 counts, between the round's barriers). */
static unsigned bad_rounds;

static void destroy_once(struct racer *r)
{
	volatile bool ok = false;
	bool fired = r->pool ? MM_PORT_PANICS(ok = mempool_destroy(&racy_pool))
	                     : MM_PORT_PANICS(ok = objcache_destroy(racy));
	if (fired) {
		sh_unpin_after_panic();
		bool right = strstr(mm_port_last_panic(),
		                    "no cache of the heap's (a cache "
		                    "destroyed already?)");
		r->panicked += right;
		r->wrong_panic += !right;
		r->last = right ? PANICKED : WRONG_PANIC;
	} else if (ok) {
		r->destroyed++;
		r->last = DESTROYED;
	} else {
		r->refused++;
		r->last = REFUSED;
	}
}

/* Whether a round's two outcomes are a sequential double destroy's: of a
 * cache, one destroyed and one panicked; of a pool, both destroyed. */
static bool sequential_pair(const struct racer *r)
{
	enum outcome a = r[0].last, b = r[1].last;
	if (r[0].pool)
		return a == DESTROYED && b == DESTROYED;
	return (a == DESTROYED && b == PANICKED) ||
	       (a == PANICKED && b == DESTROYED);
}

static void race(void *arg)
{
	struct racer *r = arg;
	mm_port_set_cpu(r->id);
	for (int i = 0; i < ROUNDS; i++) {
		pthread_barrier_wait(&race_bar); /* made by thread 0 */
		destroy_once(r);
		pthread_barrier_wait(&race_bar);
		if (r->id == 0) /* r: run_race's r[0], r[1] beside it */
			bad_rounds += !sequential_pair(r);
		if (r->id == 0 && !r->pool)
			racy = objcache_create(&sh, "racy", 40, 0);
		if (r->id == 0 && r->pool &&
		    !mempool_init_heap(&racy_pool, &sh, "racy", 4, 64))
			mm_panic("the racy pool's init failed");
	}
}

/* Runs the two racers on the cache (pool false) or the pool, in chaos
 * mode unless the chaos run set its own; fills r[2]. */
static void run_race(bool pool, struct racer r[2])
{
	KASSERT(pthread_barrier_init(&race_bar, NULL, 2) == 0);
	const char *env = getenv("MM_CHAOS");
	bool own_chaos = !env || !*env || strcmp(env, "0") == 0;
	if (own_chaos)
		mm_port_set_chaos(4900, 300);
	mm_port_set_quiet(true);
	bad_rounds = 0;
	r[0] = (struct racer){.id = 0, .pool = pool};
	r[1] = (struct racer){.id = 1, .pool = pool};
	struct mm_thread *t[2];
	KASSERT(start_all(t, 2, race, r, sizeof(r[0])));
	join_all(t, 2);
	mm_port_set_quiet(false);
	if (own_chaos)
		mm_port_set_chaos(0, 0);
	mm_port_set_cpu(0);
	pthread_barrier_destroy(&race_bar);
	ktest_diag("destroyed %u+%u, refused %u+%u, panicked %u+%u, other "
	           "panics %u+%u; %u rounds not as a sequential double destroy",
	           r[0].destroyed, r[1].destroyed, r[0].refused, r[1].refused,
	           r[0].panicked, r[1].panicked, r[0].wrong_panic,
	           r[1].wrong_panic, bad_rounds);
	if (r[0].wrong_panic + r[1].wrong_panic)
		ktest_diag("the last panic: %s", mm_port_last_panic());
}

KTEST(objcache_stress, two_destroys_of_one_cache_at_once_one_panics)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	/* Keeps the counters' area, and the structs' run, in place. */
	struct objcache *keeper = objcache_create(&sh, "keeper", 40, 0);
	KASSERT(keeper && (racy = objcache_create(&sh, "racy", 40, 0)));
	struct racer r[2];
	run_race(false, r);
	/* The last round's create, left over. */
	KEXPECT(racy && objcache_destroy(racy));
	KEXPECT_EQ(r[0].destroyed + r[1].destroyed, ROUNDS);
	KEXPECT_EQ(r[0].panicked + r[1].panicked, ROUNDS);
	KEXPECT_EQ(r[0].refused + r[1].refused, 0);
	KEXPECT_EQ(r[0].wrong_panic + r[1].wrong_panic, 0);
	KEXPECT_EQ(bad_rounds, 0);
	KEXPECT_EQ(objcache_list(&sh, NULL, 0), 1);
	KEXPECT(objcache_destroy(keeper));
	SH_CHECK(&sh, "after the racing destroys");
	sh_heap_release(&heap, &sh);
}

KTEST(mempool_stress, two_destroys_of_one_pool_at_once_are_one)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&racy_pool, &sh, "racy", 4, 64));
	struct racer r[2];
	run_race(true, r);
	KEXPECT(mempool_destroy(&racy_pool));
	KEXPECT_EQ(r[0].destroyed + r[1].destroyed, 2 * ROUNDS);
	KEXPECT_EQ(r[0].panicked + r[1].panicked, 0);
	KEXPECT_EQ(r[0].refused + r[1].refused, 0);
	KEXPECT_EQ(bad_rounds, 0);
	SH_CHECK(&sh, "after the racing destroys");
	sh_heap_release(&heap, &sh);
}

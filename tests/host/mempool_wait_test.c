/*
 * A reserved-element pool's sleeping allocation (mm/mempool.c): with the
 * heap's allocations failing and the reserve empty, a call that may sleep
 * waits on the pool's event, and is woken by a free into the reserve, or
 * by a resize that grows the reserve. The pools' periods are an hour: the
 * wake must be the free's or the resize's. With no one to wake it, a
 * wait ends with its period, counted as a timeout, and the call asks the
 * source again. A lost wake-up is a hang,
 * which the runner's silence timeout ends; the tests bound no time.
 * Before any wait, a thread's first ask is atomic, so that the reserve
 * is used before the heap reclaims: for elements up to the heap's
 * atomic limit, those at it included.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "mempool_test_util.h"

static _Atomic bool sleeper_done;

static void *sleeper(void *arg)
{
	mm_port_set_cpu(1);
	void *e = mempool_alloc(&pool, 0);
	atomic_store(&sleeper_done, true);
	return e;
}

KTEST(mempool, a_sleeping_alloc_waits_for_a_free)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "wait", 2, 64));
	/* An hour's period: the sleeper's wake must be the free's. A lost
	 * wake-up is a hang, which the runner's silence timeout ends; the
	 * test itself bounds no time. */
	pool.wait_ns = 3600ull * 1000 * 1000 * 1000;
	KASSERT(fail_all());
	void *a = mempool_alloc(&pool, 0), *b = mempool_alloc(&pool, 0);
	KASSERT(a && b);
	pthread_t t;
	KASSERT(!pthread_create(&t, NULL, sleeper, NULL));
	/* No time bound: the thread is in the wait when the port says so. */
	atomic_store(&sleeper_done, false);
	while (mm_port_event_waiters(&pool.returned) == 0 &&
	       !atomic_load(&sleeper_done))
		sched_yield();
	KEXPECT(!atomic_load(&sleeper_done)); /* it waits for a free */
	KEXPECT_EQ(info().out, 2);
	mempool_free(&pool, b);
	void *got;
	pthread_join(t, &got);
	KEXPECT(got == b);
	KEXPECT(info().waits == 1 && info().out == 2);
	mempool_check(&pool);
	KEXPECT_EQ(info().timeouts, 0);
	spanheap_fail_disarm(&sh);
	mempool_free(&pool, a);
	mempool_free(&pool, got);
	KEXPECT(mempool_destroy(&pool));
	release_and_check("after the wait");
}

/* As above, the sleeper woken by a resize that grows the reserve: the
 * resize takes its elements from the heap (its injection disarmed first)
 * and wakes the pool's event as a free into the reserve does. Without
 * that wake the sleeper slept out its period (a mutation review). */
KTEST(mempool, a_resize_wakes_a_sleeping_alloc)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "grow", 1, 64));
	pool.wait_ns = 3600ull * 1000 * 1000 * 1000;
	KASSERT(fail_all());
	void *a = mempool_alloc(&pool, 0);
	KASSERT(a);
	pthread_t t;
	atomic_store(&sleeper_done, false);
	KASSERT(!pthread_create(&t, NULL, sleeper, NULL));
	while (mm_port_event_waiters(&pool.returned) == 0 &&
	       !atomic_load(&sleeper_done))
		sched_yield();
	KEXPECT(!atomic_load(&sleeper_done));
	spanheap_fail_disarm(&sh);
	KEXPECT(mempool_resize(&pool, 2));
	void *got;
	pthread_join(t, &got);
	KEXPECT(got != NULL);
	KEXPECT_EQ(info().waits, 1);
	KEXPECT_EQ(info().timeouts, 0);
	mempool_check(&pool);
	mempool_free(&pool, a);
	mempool_free(&pool, got);
	KEXPECT(mempool_destroy(&pool));
	release_and_check("after the resize's wake");
}

/* A source of the caller's: two elements, and nothing at all for its
 * next `dry` asks. */
static unsigned char drop[2][64];
static bool drop_out[2];
static unsigned dry, asks;

static void *drought_alloc(void *data, unsigned flags)
{
	asks++;
	if (dry) {
		dry--;
		return NULL;
	}
	for (int i = 0; i < 2; i++)
		if (!drop_out[i]) {
			drop_out[i] = true;
			return drop[i];
		}
	return NULL;
}

static void drought_free(void *data, void *e)
{
	drop_out[(unsigned char(*)[64])e - drop] = false;
}

static const struct mempool_source drought = {drought_alloc, drought_free};

/*
 * With nothing in the reserve and no free to wake it, a sleeping call's
 * period ends: each ending is counted as a timeout, and the call asks the
 * source again until it has an element. One thread, a period of 1 ns:
 * no free can come, so every wait ends by its period, and the counts
 * depend on no clock.
 */
KTEST(mempool, a_wait_that_ends_with_its_period_is_a_timeout)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	dry = 0;
	KASSERT(mempool_init(&pool, &sh, "dry", 1, 64, &drought, NULL));
	pool.wait_ns = 1;
	dry = 1;
	void *r = mempool_alloc(&pool, 0); /* the reserve's element */
	KASSERT(r == drop[0] && info().curr == 0);
	KEXPECT_EQ(info().waits, 0);
	/* The first ask (atomic), then an ask and a wait a round. */
	dry = 4;
	asks = 0;
	void *e = mempool_alloc(&pool, 0);
	KEXPECT(e == drop[1]);
	KEXPECT_EQ(asks, 5);
	KEXPECT_EQ(info().waits, 3);
	KEXPECT_EQ(info().timeouts, 3);
	KEXPECT_EQ(info().out, 2);
	KEXPECT_EQ(mm_port_event_waiters(&pool.returned), 0);
	KEXPECT_EQ(pool.waiters, 0);
	mempool_free(&pool, r); /* to the reserve */
	mempool_free(&pool, e); /* to the source */
	KEXPECT(info().curr == 1 && !drop_out[1]);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	KEXPECT(!drop_out[0]);
	release_and_check("after the timeouts");
}

/* Fails every atomic allocation of the heap's large objects (the heap's
 * injection, what "large+atomic"), until disarm. */
static bool fail_atomic_large(void)
{
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1,
	                               .seed = 1,
	                               .what = SPANHEAP_FAIL_LARGE |
	                                       SPANHEAP_FAIL_ATOMIC_ONLY};
	return spanheap_fail_arm(&sh, &a);
}

/* Elements of exactly MHEAP_ATOMIC_MAX_PAGES pages (their alignment's
 * counted), which the heap's atomic path serves: a thread's first ask is
 * an atomic one, as for any smaller element, so that when it fails the
 * reserve is used before the heap reclaims. Until a review the limit was
 * taken a page short: those elements were asked for without MM_ATOMIC,
 * and the atomic failure here never reached the reserve. */
KTEST(mempool, elements_at_the_atomic_limit_are_asked_atomically)
{
	const size_t most = MHEAP_ATOMIC_MAX_PAGES * MM_PAGE_SIZE;
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "limit", 1, most));
	KASSERT(fail_atomic_large());
	void *a = mempool_alloc(&pool, 0);
	KASSERT(a);
	KEXPECT_EQ(info().from_reserve, 1);
	spanheap_fail_disarm(&sh);
	mempool_free(&pool, a);
	KEXPECT(mempool_destroy(&pool));
	/* One page aligned to the limit: the limit's pages asked. */
	struct objcache *c = objcache_create(&sh, "lim", MM_PAGE_SIZE, most);
	KASSERT(c && mempool_init_cache(&pool, c, "lim", 1));
	KASSERT(fail_atomic_large());
	KASSERT((a = mempool_alloc(&pool, 0)) != NULL);
	KEXPECT_EQ(info().from_reserve, 1);
	spanheap_fail_disarm(&sh);
	mempool_free(&pool, a);
	KEXPECT(mempool_destroy(&pool) && objcache_destroy(c));
	release_and_check("after the pools at the limit");
}

/*
 * The guarded pool (mm.guard=N) sampling the named caches with slabs of
 * their own (mm/objcache_guard.c, rv123) on the real kernel: a ctor
 * cache's sampled object is constructed, faults just past its end or
 * before its start and after its free, and its report names the cache;
 * a SLAB_TYPESAFE_BY_RCU cache's freed sampled object stays mapped, an
 * object of the type as it was left, until a grace period has passed,
 * then faults. Every test skips when the heap has no pool (booted
 * without mm.guard); the guard run (make test-kernel-guard, mm.guard=1)
 * runs them.
 */
#include <stdatomic.h>

#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/rcu.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/fault_util.h"
#include "tests/kernel/guard_util.h"

#define MAGIC 0x6a4d0c7012ull
enum { N = 48, TRIES = 200 };

static _Atomic unsigned ctor_calls;

static void ctor(void *p)
{
	*(uint64_t *)p = MAGIC;
	atomic_fetch_add(&ctor_calls, 1);
}

/* A sampled object of c: allocations held (so that each takes the slow
 * way once the stash is dry) until one is the pool's; the rest freed.
 * NULL if none was in TRIES (another CPU's samples took the count). */
static uint8_t *sampled(struct objcache *c)
{
	static void *held[TRIES];
	uint8_t *got = NULL;
	size_t n = 0;
	while (n < TRIES && !got) {
		void *p = kmem_cache_alloc(c, 0);
		if (!p)
			break;
		if (spanheap_guard_owns(&kspanheap.guard, p))
			got = p;
		else
			held[n++] = p;
	}
	while (n)
		kmem_cache_free(c, held[--n]);
	return got;
}

/* c's sampled object, constructed; or NULL, c destroyed, if none came
 * in TRIES allocations. */
static uint8_t *sampled_or_gone(struct objcache *c)
{
	uint8_t *p = sampled(c);
	if (!p)
		KEXPECT(kmem_cache_destroy(c));
	else
		KEXPECT_EQ(*(uint64_t *)p, MAGIC);
	return p;
}

/* Drains until p's slot is unmapped (as kmalloc_guard_test.c's). */
static bool drained(const void *p)
{
	spanheap_guard_drain_all(&kspanheap);
	struct spanheap_where w;
	return spanheap_where(&kspanheap, p, &w) &&
	       w.kind == SPANHEAP_WHERE_GUARD &&
	       atomic_load(&kspanheap.guard.slot[w.index].state) == GUARD_FREE;
}

/* Whether spanheap_where_log's lines for a name cache name. */
static bool report_names(const void *a, const char *name)
{
	char want[64];
	ksnprintf(want, sizeof(want), "cache '%s''s", name);
	capture_start();
	spanheap_where_log(&kspanheap, a);
	capture_stop();
	return seen_has(want);
}

KTEST(kmem_cache_guard, ctor_cache_s_sampled_object_is_constructed)
{
	NEED_POOL();
	struct objcache *c = kmem_cache_create_flags("kg-ctor", N, 0, 0, ctor);
	KASSERT(c != NULL);
	uint8_t *p = sampled_or_gone(c);
	if (!p)
		KTEST_SKIP("no sample in 200 allocations (other CPUs')");
	bool start = ((uintptr_t)p & (MM_PAGE_SIZE - 1)) == 0;
	KEXPECT(read_faults_at(start ? p - 1 : p + N));
	KEXPECT(report_names(start ? p - 1 : p + N, "kg-ctor"));
	unsigned calls = atomic_load(&ctor_calls);
	kmem_cache_free(c, p);
	KEXPECT(drained(p));
	KEXPECT(read_faults_at(p));
	KEXPECT(report_names(p, "kg-ctor"));
	KEXPECT_EQ(atomic_load(&ctor_calls), calls); /* not at its free */
	KEXPECT(kmem_cache_destroy(c));
}

KTEST(kmem_cache_guard, typesafe_sampled_object_stays_until_a_grace_period)
{
	NEED_POOL();
	struct objcache *c = kmem_cache_create_flags(
	        "kg-rcu", N, 0, SLAB_TYPESAFE_BY_RCU, ctor);
	KASSERT(c != NULL);
	uint8_t *p = sampled_or_gone(c);
	if (!p)
		KTEST_SKIP("no sample in 200 allocations (other CPUs')");
	memset(p + 8, 0x7e, N - 8);
	rcu_read_lock(); /* a reader that found p before its free */
	kmem_cache_free(c, p);
	KEXPECT(!read_faults_at(p) && !read_faults_at(p + N - 1));
	KEXPECT_EQ(*(uint64_t *)p, MAGIC); /* the type's, as it was */
	KEXPECT_EQ(p[N - 1], 0x7e);
	KEXPECT(report_names(p, "kg-rcu"));
	rcu_read_unlock();
	rcu_barrier(); /* its callback ran: retired */
	KEXPECT(drained(p));
	KEXPECT(read_faults_at(p));
	KEXPECT(kmem_cache_destroy(c));
}

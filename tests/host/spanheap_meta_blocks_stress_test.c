/*
 * The metadata heap's blocks (mm/spanheap_meta_blocks.c) under threads,
 * built for ThreadSanitizer too (make test-tsan): four workers, each a
 * CPU of its own, make and destroy named caches and mempools of varied
 * sizes (a cache's struct is a 128-byte block, the counters' area a
 * large one; reserves of 1 to 700 elements take blocks of every class
 * and large ones of one and two pages; a resize swaps in a new array),
 * allocate and free through them, each object filled with a pattern of
 * its address and its allocation and checked before its free, while the
 * main thread allocates plain objects the same way and runs the blocks'
 * checker. Each cache's name and size are checked against its listing
 * before its destroy, each pool's reserve by mempool_check. At the end
 * no block is left, the heap checks clean (the blocks' check included)
 * and every page is back: the object heap's all, the metadata heap's but
 * what the span heap keeps. Then the same with the failure injection
 * failing one small call in six, blocks included: every create's and
 * init's error path under threads, and nothing they took may stay. And
 * in poison mode, where a destroyed cache's slot (its objects' owner)
 * is reused by the next cache any thread makes.
 * Bounded by operation counts; no assert depends on time.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_internal.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

enum { WORKERS = 4, SLOTS = 4, HOLD = 6 };

static struct mheap heap;
static struct spanheap sh;
static _Atomic int running, started;
static bool failing;  /* the injection's run: a NULL is no failure */
static bool poisoned; /* the poison mode's run */

/* Operations per worker in poison mode: under TSan a quarter, as its
 * fills and checks are loops TSan instruments byte by byte (14.4 s of a
 * make test's TSan run, the plain run 3.5); the same paths race as often
 * per operation, and the ASan build runs them all. */
#if defined(__SANITIZE_THREAD__)
#define POISON_OPS 5000
#else
#define POISON_OPS 20000
#endif

static const size_t cache_sizes[] = {24, 100, 512, 3000, 40000};
static const uint32_t pool_mins[] = {1, 8, 20, 100, 140, 700};
static const size_t pool_sizes[] = {16, 96, 300};

/* What a worker's slot holds: nothing, a cache, or a pool; and the
 * objects it holds of it. */
struct slot {
	enum { EMPTY, CACHE, POOL } kind;
	struct objcache *c;
	struct mempool pool;
	char name[OBJCACHE_NAME_MAX + 1];
	size_t size;
	uintptr_t held[HOLD];
	uint32_t tag[HOLD];
};

struct worker {
	int id;
	uint64_t rng;
	uint32_t op;
	struct slot slot[SLOTS];
	unsigned long made, refused;
	struct stress_failures failures;
};
static struct worker workers[WORKERS];

static uint64_t pattern(uintptr_t p, uint32_t tag, size_t off)
{
	return (p + off) * 0x9e3779b97f4a7c15ull ^ tag;
}

static void fill(uintptr_t p, size_t size, uint32_t tag)
{
	for (size_t off = 0; off + 8 <= size; off += 40)
		*(uint64_t *)(p + off) = pattern(p, tag, off);
}

static bool intact(uintptr_t p, size_t size, uint32_t tag)
{
	for (size_t off = 0; off + 8 <= size; off += 40)
		if (*(uint64_t *)(p + off) != pattern(p, tag, off))
			return false;
	return true;
}

/* Frees object i of s (if any) after checking its pattern. */
static void drop(struct worker *w, struct slot *s, int i)
{
	uintptr_t p = s->held[i];
	if (!p)
		return;
	if (!intact(p, s->size, s->tag[i]))
		stress_fail(&w->failures, "%s's object %#lx changed", s->name,
		            (unsigned long)p);
	if (s->kind == CACHE)
		objcache_free(s->c, (void *)p);
	else
		mempool_free(&s->pool, (void *)p);
	s->held[i] = 0;
}

/* Replaces object i of s with a new one, filled. */
static void churn(struct worker *w, struct slot *s, int i)
{
	drop(w, s, i);
	void *p = s->kind == CACHE ? objcache_alloc(s->c, 0)
	                           : mempool_alloc(&s->pool, MM_ATOMIC);
	if (!p) {
		if (!failing)
			stress_fail(&w->failures, "%s: no object", s->name);
		return;
	}
	s->held[i] = (uintptr_t)p;
	s->tag[i] = (uint32_t)w->id << 24 | w->op;
	fill((uintptr_t)p, s->size, s->tag[i]);
}

static void make(struct worker *w, struct slot *s)
{
	uint64_t r = stress_random(&w->rng);
	snprintf(s->name, sizeof(s->name), "w%d.%u", w->id, w->op);
	bool ok;
	if (r & 1) {
		s->size = cache_sizes[(r >> 8) % 5];
		s->c = objcache_create(&sh, s->name, s->size, r & 2 ? 64 : 0);
		s->kind = CACHE;
		ok = s->c != NULL;
	} else {
		s->size = pool_sizes[(r >> 8) % 3];
		uint32_t min = pool_mins[(r >> 16) % 6];
		s->kind = POOL;
		ok = mempool_init_heap(&s->pool, &sh, s->name, min, s->size);
	}
	if (!ok) {
		s->kind = EMPTY;
		w->refused++;
		if (!failing)
			stress_fail(&w->failures, "%s not made", s->name);
		return;
	}
	w->made++;
}

/* Checks s's metadata (a cache's listing, a pool's reserve), frees its
 * objects and destroys it. */
static void unmake(struct worker *w, struct slot *s)
{
	for (int i = 0; i < HOLD; i++)
		drop(w, s, i);
	bool ok;
	if (s->kind == CACHE) {
		struct objcache_info in;
		objcache_info(s->c, &in);
		if (strcmp(in.name, s->name) || in.size != s->size || in.live)
			stress_fail(&w->failures,
			            "cache %s: listed as '%s', %zu bytes, %ld "
			            "live",
			            s->name, in.name, in.size, (long)in.live);
		ok = objcache_destroy(s->c);
	} else {
		mempool_check(&s->pool);
		ok = mempool_destroy(&s->pool);
	}
	if (!ok)
		stress_fail(&w->failures, "%s not destroyed", s->name);
	s->kind = EMPTY;
}

/* A pool's resize to another size of the list: a new array if larger. */
static void resize(struct worker *w, struct slot *s)
{
	uint32_t min = pool_mins[stress_random(&w->rng) % 6];
	if (!mempool_resize(&s->pool, min) && !failing)
		stress_fail(&w->failures, "%s not resized to %u", s->name, min);
}

static void work(void *arg)
{
	struct worker *w = arg;
	mm_port_set_cpu((unsigned)w->id);
	/* All at once: a worker's whole run is a few milliseconds. */
	atomic_fetch_add(&started, 1);
	while (atomic_load(&started) < WORKERS)
		sched_yield();
	int ops = failing ? 8000 : poisoned ? POISON_OPS : 20000;
	for (; w->op < (uint32_t)ops; w->op++) {
		struct slot *s = &w->slot[stress_random(&w->rng) % SLOTS];
		unsigned what = (unsigned)(stress_random(&w->rng) % 16);
		if (s->kind == EMPTY)
			make(w, s);
		else if (what == 0)
			unmake(w, s);
		else if (what == 1 && s->kind == POOL)
			resize(w, s);
		else
			churn(w, s, (int)(what % HOLD));
	}
	for (int k = 0; k < SLOTS; k++)
		if (w->slot[k].kind != EMPTY)
			unmake(w, &w->slot[k]);
	spanheap_flush_cache(&sh);
	atomic_fetch_sub(&running, 1);
}

/* The main thread, on a CPU of its own while the workers run: plain
 * objects of the heap, pattern-checked, and the blocks' checker (which
 * takes the object heap's lock), round after round. */
static void plain(struct stress_failures *f)
{
	mm_port_set_cpu(WORKERS);
	enum { KEEP = 32 };
	uintptr_t keep[KEEP] = {0};
	size_t size[KEEP] = {0};
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	for (uint32_t round = 0; atomic_load(&running) > 0 || round < 100;
	     round++) {
		unsigned k = (unsigned)(stress_random(&rng) % KEEP);
		if (keep[k] && !intact(keep[k], size[k], round))
			stress_fail(f, "plain object %#lx changed",
			            (unsigned long)keep[k]);
		spanheap_free(&sh, (void *)keep[k]);
		keep[k] = 0;
		size[k] = 16 + stress_random(&rng) % 2000;
		if (round % 64 == 0)
			size[k] = 50000; /* a large one */
		void *p = spanheap_alloc(&sh, size[k], 0);
		if (!p && !failing)
			stress_fail(f, "plain allocation %u failed", round);
		keep[k] = (uintptr_t)p;
		/* Every object re-tagged with this round's number. */
		for (unsigned i = 0; i < KEEP; i++)
			if (keep[i])
				fill(keep[i], size[i], round + 1);
		if (round % 16 == 0)
			spanheap_meta_blocks_check(&sh);
	}
	for (unsigned i = 0; i < KEEP; i++)
		spanheap_free(&sh, (void *)keep[i]);
	spanheap_flush_cache(&sh);
}

static void stress(bool fail, bool poison)
{
	failing = fail;
	poisoned = poison;
	KASSERT(sh_heap_fresh_poison(&heap, &sh, poison));
	KASSERT(spanheap_sweeper_start(&sh));
	KASSERT(mheap_scavenger_start(&heap));
	struct spanheap_fail_attr a = {.interval = 6,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = -1,
	                               .what = SPANHEAP_FAIL_SMALL};
	if (fail) {
		KASSERT(spanheap_fail_arm(&sh, &a));
		mm_port_set_quiet(true); /* a line per refusal */
	}
	for (int i = 0; i < WORKERS; i++)
		workers[i] = (struct worker){.id = i,
		                             .rng = 0x2545f4914f6cdd1dull *
		                                    (uint64_t)(i + 1)};
	atomic_store(&running, WORKERS);
	atomic_store(&started, 0);
	struct mm_thread *t[WORKERS];
	KASSERT(start_all(t, WORKERS, work, workers, sizeof(*workers)));
	struct stress_failures main_f = {0};
	plain(&main_f);
	join_all(t, WORKERS);
	mm_port_set_cpu(0);
	if (fail) {
		mm_port_set_quiet(false);
		spanheap_fail_disarm(&sh);
	}
	unsigned long made = 0, refused = 0;
	for (int i = 0; i < WORKERS; i++) {
		STRESS_REPORT(i, &workers[i].failures);
		made += workers[i].made;
		refused += workers[i].refused;
	}
	STRESS_REPORT(WORKERS, &main_f);
	ktest_diag("%lu caches and pools made, %lu refused", made, refused);
	KEXPECT(made > 100);
	KEXPECT(!fail || refused > 0);
	KEXPECT_EQ(objcache_list(&sh, NULL, 0), 0);
	KEXPECT_EQ(sh.meta_blocks.pages, 0);
	spanheap_sweeper_stop(&sh);
	mheap_scavenger_stop(&heap);
	sh_flush_cpus(&sh, WORKERS + 1);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	spanheap_check(&sh);
	mheap_check(&heap);
	mheap_check(&sh.meta);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_meta_blocks_stress, caches_and_pools_come_and_go_on_four_cpus)
{
	stress(false, false);
}

/* Poison mode: a cache's slot, its objects' owner, is taken again by
 * another thread's cache as soon as its destroy gives it back; every
 * free checks the owner, and any mix-up panics. */
KTEST(spanheap_meta_blocks_stress, poison_mode_owners_follow_reused_slots)
{
	stress(false, true);
}

/* Every sixth small call fails, a cache's struct, the counters' area and
 * a reserve's array among them: the error paths of creates and inits
 * racing other threads' destroys, and nothing they took may stay. */
KTEST(spanheap_meta_blocks_stress, failed_creates_leave_nothing_on_four_cpus)
{
	stress(true, false);
}

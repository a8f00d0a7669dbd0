/*
 * Reserved-element pools (mm/mempool.c) on the POSIX port: with every
 * heap allocation failing (the heap's injection armed), a pool still hands
 * out its reserve, zeroed on MM_ZERO, and an MM_ATOMIC call then gets
 * NULL, counted; a call with a flag no allocation takes gets NULL and a
 * line, the reserve untouched; frees refill the reserve before anything goes
 * back to the heap (a sleeping call's waits: mempool_wait_test.c); pools over
 * a named cache and over a source of the caller's (one whose elements are
 * not aligned to a pointer panics, and one whose reserve is larger than
 * the arena: mempool_source_test.c); bad parameters and a reserve the heap
 * cannot hold refused with a line, leaking nothing; resizes up and down,
 * refused when the heap cannot grow the reserve; elements over the heap's
 * atomic limit taken from the heap while it has them; thousands of pools
 * made and destroyed, over each source, give every element and array back.
 * After each case the pool's memory goes back: the heap holds no span once
 * released. Misuse and the checker: mempool_check_test.c.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "mempool_test_util.h"
#include "spanheap_test_util.h"

KTEST(mempool, reserve_serves_when_the_heap_fails)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "req", 4, 100));
	struct mempool_info in = info();
	KEXPECT(!strcmp(in.name, "req"));
	KEXPECT(in.min == 4 && in.curr == 4 && in.out == 0 && in.size == 100);
	KASSERT(fail_all());
	char *e[5];
	for (int i = 0; i < 4; i++) {
		KASSERT(e[i] = mempool_alloc(&pool, MM_ATOMIC));
		KEXPECT_EQ(spanheap_usable_size(&sh, e[i]), 112);
		/* The reserve's marker does not go out with it. */
		KEXPECT_EQ(*(uintptr_t *)e[i], 0);
		memset(e[i], 'a' + i, 100);
	}
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < i; j++)
			KEXPECT(e[i] != e[j]);
	KEXPECT(!mempool_alloc(&pool, MM_ATOMIC));
	in = info();
	KEXPECT(in.curr == 0 && in.out == 4 && in.from_reserve == 4);
	KEXPECT_EQ(in.atomic_fails, 1);
	for (int i = 0; i < 4; i++)
		KEXPECT(all_bytes(e[i], 100, (unsigned char)('a' + i)));
	mempool_free(&pool, e[1]);
	mempool_free(&pool, e[2]);
	KEXPECT(info().curr == 2 && info().refills == 2);
	/* MM_ZERO from the reserve: the marker and the old bytes gone. */
	KASSERT(e[1] = mempool_alloc(&pool, MM_ATOMIC | MM_ZERO));
	KEXPECT(all_bytes(e[1], 100, 0));
	KASSERT(e[2] = mempool_alloc(&pool, MM_ATOMIC));
	spanheap_fail_disarm(&sh);
	/* The heap again: the reserve stays empty until frees refill it. */
	KASSERT(e[4] = mempool_alloc(&pool, MM_ZERO));
	KEXPECT(all_bytes(e[4], 100, 0));
	KEXPECT(info().from_reserve == 6 && info().curr == 0);
	for (int i = 0; i < 5; i++)
		mempool_free(&pool, e[i]);
	in = info();
	KEXPECT(in.curr == 4 && in.out == 0 && in.refills == 6);
	KEXPECT(mempool_destroy(&pool));
	release_and_check("after the pool");
}

/* Elements the heap's atomic path does not serve (over 64 pages, their
 * alignment's counted): a thread's call takes them from the heap while
 * it has memory, not from the reserve; an atomic call can only have the
 * reserve's. */
KTEST(mempool, large_elements_come_from_the_heap_while_it_has_them)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "big", 1, 512 << 10));
	void *a = mempool_alloc(&pool, 0), *b = mempool_alloc(&pool, 0);
	KASSERT(a && b);
	KEXPECT(info().from_reserve == 0 && info().curr == 1);
	void *c = mempool_alloc(&pool, MM_ATOMIC);
	KASSERT(c);
	KEXPECT(info().from_reserve == 1 && info().curr == 0);
	KEXPECT(!mempool_alloc(&pool, MM_ATOMIC));
	mempool_free(&pool, a);
	mempool_free(&pool, b);
	mempool_free(&pool, c);
	KEXPECT(info().curr == 1 && info().out == 0);
	KEXPECT(mempool_destroy(&pool));
	/* Small elements whose alignment the atomic path cannot pay for
	 * (2 pages aligned to 64: 65 pages asked of the page heap). */
	struct objcache *c64 =
	        objcache_create(&sh, "al", 2 * MM_PAGE_SIZE, 64 * MM_PAGE_SIZE);
	KASSERT(c64 && mempool_init_cache(&pool, c64, "al", 1));
	KASSERT((a = mempool_alloc(&pool, 0)) != NULL);
	KEXPECT(info().from_reserve == 0 && info().curr == 1);
	KEXPECT(((uintptr_t)a & (64 * MM_PAGE_SIZE - 1)) == 0);
	mempool_free(&pool, a);
	KEXPECT(mempool_destroy(&pool) && objcache_destroy(c64));
	release_and_check("after the large pool");
}

KTEST(mempool, resize_grows_and_shrinks_the_reserve)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "rs", 2, 64));
	KEXPECT(mempool_resize(&pool, 6));
	KEXPECT(info().min == 6 && info().curr == 6);
	mempool_check(&pool);
	KASSERT(fail_all());
	void *e[6];
	for (int i = 0; i < 6; i++)
		KASSERT(e[i] = mempool_alloc(&pool, MM_ATOMIC));
	KEXPECT(!mempool_alloc(&pool, MM_ATOMIC));
	/* Growing needs the heap: refused, the pool as it was. */
	KEXPECT(!mempool_resize(&pool, 7));
	KEXPECT(strstr(mm_port_last_log(),
	               "rs: not resized from 6 to 7 elements: no memory"));
	KEXPECT(!mempool_resize(&pool, 0));
	KEXPECT(strstr(mm_port_last_log(), "a reserve of 0 elements"));
	KEXPECT(!mempool_resize(&pool, MEMPOOL_MIN_MAX + 1));
	KEXPECT(info().min == 6 && info().curr == 0);
	spanheap_fail_disarm(&sh);
	/* Shrinking with every element out: the frees fill 3 slots. */
	KEXPECT(mempool_resize(&pool, 3));
	for (int i = 0; i < 6; i++)
		mempool_free(&pool, e[i]);
	KEXPECT(info().min == 3 && info().curr == 3 && info().out == 0);
	/* Shrinking a full reserve gives the surplus back at once. */
	KEXPECT(mempool_resize(&pool, 1));
	KEXPECT(info().min == 1 && info().curr == 1);
	/* Growing within the array, then past it. */
	KEXPECT(mempool_resize(&pool, 5) && info().curr == 5);
	KEXPECT(mempool_resize(&pool, 40) && info().curr == 40);
	mempool_check(&pool);
	KASSERT(fail_all());
	for (int i = 0; i < 40; i++) {
		void *x = mempool_alloc(&pool, MM_ATOMIC);
		KASSERT(x);
		mempool_free(&pool, x);
	}
	spanheap_fail_disarm(&sh);
	KEXPECT(mempool_destroy(&pool));
	release_and_check("after the resizes");
}

static struct objcache *cache;

KTEST(mempool, over_a_named_cache)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(cache = objcache_create(&sh, "bio", 200, 0));
	KASSERT(mempool_init_cache(&pool, cache, "bio-pool", 3));
	struct objcache_info ci;
	objcache_info(cache, &ci);
	KEXPECT_EQ(ci.live, 3); /* the reserve is the cache's objects */
	KEXPECT_EQ(info().size, 200);
	KASSERT(fail_all());
	void *e[3];
	for (int i = 0; i < 3; i++)
		KASSERT(e[i] = mempool_alloc(&pool, MM_ATOMIC | MM_ZERO));
	KEXPECT(all_bytes(e[2], 200, 0));
	KEXPECT(!mempool_alloc(&pool, MM_ATOMIC));
	spanheap_fail_disarm(&sh);
	void *more = mempool_alloc(&pool, 0);
	KASSERT(more);
	objcache_info(cache, &ci);
	KEXPECT_EQ(ci.live, 4);
	/* The destroy of a cache the pool still uses is refused. */
	KEXPECT(!objcache_destroy(cache));
	for (int i = 0; i < 3; i++)
		mempool_free(&pool, e[i]);
	mempool_free(&pool, more); /* the reserve is full: to the cache */
	objcache_info(cache, &ci);
	KEXPECT_EQ(ci.live, 3);
	KEXPECT(mempool_destroy(&pool));
	KEXPECT(objcache_destroy(cache));
	release_and_check("after the cache's pool");
}

/* A source of the caller's: 8 slots of 48 bytes, and what it was asked. */
static unsigned char slots[8][48];
static bool slot_used[8];
static unsigned asked_flags[32], nasked, freed_to_source;

static void *slot_alloc(void *data, unsigned flags)
{
	KEXPECT(data == slots);
	asked_flags[nasked++ % 32] = flags;
	for (int i = 0; i < 8; i++)
		if (!slot_used[i]) {
			slot_used[i] = true;
			memset(slots[i], 0xee, sizeof(slots[i]));
			return slots[i];
		}
	return NULL;
}

static void slot_free(void *data, void *e)
{
	slot_used[((unsigned char(*)[48])e) - slots] = false;
	freed_to_source++;
}

static const struct mempool_source slot_source = {slot_alloc, slot_free};

KTEST(mempool, over_a_source_of_the_callers)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init(&pool, &sh, "slots", 3, 48, &slot_source, slots));
	KEXPECT_EQ(nasked, 3);
	KEXPECT_EQ(asked_flags[0], 0); /* the fill may sleep */
	void *e[8];
	for (int i = 0; i < 8; i++)
		KASSERT(e[i] = mempool_alloc(
		                &pool, MM_ZERO | (i % 2 ? MM_ATOMIC : 0)));
	/* MM_ZERO is the pool's: the source never sees it; the first ask
	 * of every call is an atomic one, a call that may sleep's too (the
	 * reserve is used before the source reclaims: a mutation review
	 * found no test of it). */
	for (unsigned i = 3; i < nasked; i++)
		KEXPECT_EQ(asked_flags[i], MM_ATOMIC);
	for (int i = 0; i < 8; i++)
		KEXPECT(all_bytes(e[i], 48, 0));
	KEXPECT_EQ(info().from_reserve, 3);
	KEXPECT(!mempool_alloc(&pool, MM_ATOMIC));
	for (int i = 0; i < 8; i++)
		mempool_free(&pool, e[i]);
	KEXPECT_EQ(freed_to_source, 5);
	KEXPECT(mempool_destroy(&pool));
	KEXPECT_EQ(freed_to_source, 8);
	for (int i = 0; i < 8; i++)
		KEXPECT(!slot_used[i]);
	release_and_check("after the caller's pool");
}

/* True if mempool_init_heap(name, min, size) is refused with a line
 * holding why and leaves the heap as it was. */
static bool refused(const char *name, uint32_t min, size_t size,
                    const char *why)
{
	unsigned long logs = mm_port_log_count();
	if (mempool_init_heap(&pool, &sh, name, min, size))
		return false;
	return mm_port_log_count() > logs && strstr(mm_port_last_log(), why);
}

/* True if a pool over heap s is refused with a line holding why. */
static bool refused_on(struct spanheap *s, const char *why)
{
	return !mempool_init_heap(&pool, s, "early", 2, 64) &&
	       strstr(mm_port_last_log(), why);
}

KTEST(mempool, bad_parameters_are_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KEXPECT(refused(NULL, 4, 64, "(null): not made: no name"));
	KEXPECT(refused("", 4, 64, "no name"));
	KEXPECT(refused("0123456789012345678901234567890123", 4, 64,
	                "a name longer than"));
	KEXPECT(refused("p", 0, 64, "a reserve of 0 elements"));
	KEXPECT(refused("p", MEMPOOL_MIN_MAX + 1, 64, "above MEMPOOL_MIN_MAX"));
	KEXPECT(refused("p", 4, 7, "smaller than a pointer"));
	KEXPECT(refused("p", 4, (size_t)1 << 40, "larger than the heap's"));
	/* A reserve no arena holds, refused before its elements are taken
	 * (until a review it took what the arena held, then failed for want
	 * of memory). */
	KEXPECT(refused("p", 3, SH_ARENA_BYTES / 2,
	                "a reserve larger than the heap's arena (3 elements"));
	struct mempool_source half = {slot_alloc, NULL};
	KEXPECT(!mempool_init(&pool, &sh, "half", 2, 48, &half, slots));
	KEXPECT(strstr(mm_port_last_log(), "without its alloc or free"));
	/* A heap never set up, or none: until a review, a fault. */
	static struct spanheap never;
	KEXPECT(refused_on(&never, "no heap (spanheap_init not called)"));
	KEXPECT(refused_on(NULL, "no heap (spanheap_init not called)"));
	/* No cache: until a review, a fault on its fields. */
	KEXPECT(!mempool_init_cache(&pool, NULL, "nocache", 2));
	KEXPECT(strstr(mm_port_last_log(), "nocache: not made: no cache"));
	/* A reserve the heap cannot give: what it took goes back. */
	KASSERT(fail_all());
	KEXPECT(refused("big", 8, 4096, "no memory for a reserve of 8"));
	spanheap_fail_disarm(&sh);
	struct spanheap_fail_attr a = {.interval = 5,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1,
	                               .seed = 1};
	KASSERT(spanheap_fail_arm(&sh, &a)); /* the 5th call: 3 taken */
	KEXPECT(refused("big", 8, 4096, "elements of 4096 bytes"));
	spanheap_fail_disarm(&sh);
	/* A resize to a reserve no arena holds: refused before it asks
	 * (until a review, after it took what the arena held). */
	KASSERT(mempool_init_heap(&pool, &sh, "quarter", 2,
	                          SH_ARENA_BYTES / 4));
	KEXPECT(!mempool_resize(&pool, 5));
	KEXPECT(strstr(mm_port_last_log(),
	               "quarter: not resized from 2 to 5 elements: a reserve "
	               "larger than the heap's arena") != NULL);
	KEXPECT(info().min == 2 && info().curr == 2);
	KEXPECT(mempool_destroy(&pool));
	release_and_check("after the refusals");
}

/*
 * A flag no allocation takes is refused at once, with a line, before the
 * source or the reserve is asked: the reserve keeps its elements (the
 * heap would refuse the flags, and the reserve would be taken, or a call
 * that may sleep would wait for ever on a source that refuses them).
 */
KTEST(mempool, alloc_refuses_unknown_flags)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "flags", 2, 64));
	static const unsigned bad[] = {1u << 5, MM_ATOMIC | (1u << 9),
	                               MM_ZERO | 0x80000000u};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned long logs = mm_port_log_count();
		char want[96];
		snprintf(want, sizeof(want),
		         "mempool flags: allocation refused: flags %#x hold "
		         "bits no allocation takes",
		         bad[i]);
		KEXPECT(mempool_alloc(&pool, bad[i]) == NULL);
		KEXPECT_EQ(mm_port_log_count(), logs + 1);
		if (!strstr(mm_port_last_log(), want))
			ktest_fail_at(__FILE__, __LINE__,
			              "\"%s\", wanted \"%s\"",
			              mm_port_last_log(), want);
	}
	struct mempool_info in = info();
	KEXPECT(in.curr == 2 && in.out == 0 && in.from_reserve == 0 &&
	        in.atomic_fails == 0 && in.waits == 0);
	/* With the heap failing too, the reserve is still whole. */
	KASSERT(fail_all());
	KEXPECT(mempool_alloc(&pool, bad[0]) == NULL);
	KEXPECT_EQ(info().curr, 2);
	spanheap_fail_disarm(&sh);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	release_and_check("after the refused flags");
}

/* Flushes every CPU's cache and gives every free page back; the pages in
 * use then, of the object heap and of the metadata heap (the caches'
 * structs and counters, the reserves' arrays: until a review only the
 * object heap's were counted, where those were objects). */
static size_t pages_settled(void)
{
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	return sh_in_use_pages(&heap) + sh_in_use_pages(&sh.meta);
}

/* One round of the cycle test: a pool of one of the sources made, its
 * reserve used and refilled, at times resized, and destroyed. The
 * caller's source has 8 slots: a reserve of 3 at most, 4 out, no
 * resize. */
static void pool_cycle(struct objcache *c, unsigned i)
{
	bool callers = i % 3 == 2;
	uint32_t min = 1 + i % (callers ? 3 : 6);
	bool made = i % 3 == 0   ? mempool_init_heap(&pool, &sh, "cyc", min,
                                                   i % 2 ? 100 : 5000)
	            : i % 3 == 1 ? mempool_init_cache(&pool, c, "cyc", min)
	                         : mempool_init(&pool, &sh, "cyc", min, 48,
	                                        &slot_source, slots);
	KASSERT(made);
	void *e[7];
	for (uint32_t k = 0; k <= min; k++)
		KASSERT(e[k] = mempool_alloc(&pool, MM_ATOMIC));
	if (i % 7 == 0 && !callers)
		KASSERT(mempool_resize(&pool, min + 2));
	for (uint32_t k = 0; k <= min; k++)
		mempool_free(&pool, e[k]);
	KEXPECT(mempool_destroy(&pool));
}

/*
 * Thousands of pools made, used, resized and destroyed, over the heap,
 * a named cache and a source of the caller's: every element and every
 * reserve array comes back (the heap's pages in use where one round
 * left them, the cache's count 0, the caller's slots all free).
 */
KTEST(mempool, thousands_of_inits_and_destroys_give_everything_back)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create(&sh, "cyc-elems", 72, 0);
	KASSERT(c);
	for (unsigned i = 0; i < 42; i++)
		pool_cycle(c, i);
	size_t settled = pages_settled();
	for (unsigned i = 0; i < 3000; i++)
		pool_cycle(c, i);
	KEXPECT_EQ(pages_settled(), settled);
	struct objcache_info in;
	objcache_info(c, &in);
	KEXPECT_EQ(in.live, 0);
	for (int k = 0; k < 8; k++)
		KEXPECT(!slot_used[k]);
	nasked = freed_to_source = 0; /* over_a_source_of_the_callers's */
	KEXPECT(objcache_destroy(c));
	release_and_check("after the pools' cycles");
}

/* A destroyed pool made again under its own name (p->name, which the
 * init's zeroing of the struct cleared before it read it: until a
 * review, refused for "no name"). */
KTEST(mempool, a_pool_made_again_under_its_own_name)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "again", 2, 64));
	KEXPECT(mempool_destroy(&pool));
	KEXPECT(mempool_init_heap(&pool, &sh, pool.name, 3, 64));
	KEXPECT_EQ(strcmp(info().name, "again"), 0);
	KEXPECT_EQ(info().curr, 3);
	KEXPECT(mempool_destroy(&pool));
	release_and_check("after the pool made again");
}

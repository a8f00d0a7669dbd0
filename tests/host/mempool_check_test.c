/*
 * Reserved-element pools' misuse and checker (mm/mempool.c,
 * mm/mempool_check.c) on the POSIX port: a destroy with elements out (or
 * more freed than handed out) refused; double frees (into the reserve or
 * to the heap), a smaller object, an interior and a foreign pointer panic
 * naming the pool or the heap's check; the checker passes a sound reserve
 * and names the slot of a broken one (a written element, one twice, a
 * NULL, a count past the size, an element freed behind the pool's back);
 * a pool whose init failed, or destroyed, panicking when used. The rest
 * of the pools' tests: mempool_test.c.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "mempool_test_util.h"
#include "spanheap_test_util.h"

KTEST(mempool, destroy_is_refused_while_elements_are_out)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "io", 2, 32));
	void *e = mempool_alloc(&pool, 0);
	KASSERT(e);
	KEXPECT(!mempool_destroy(&pool));
	KEXPECT(strstr(mm_port_last_log(), "io not destroyed: 1 elements"));
	mempool_free(&pool, e);
	/* Another pool's element of the same class passes the checks; the
	 * count below zero then refuses the destroy. */
	static struct mempool other;
	KASSERT(mempool_init_heap(&other, &sh, "other", 1, 32));
	void *o = mempool_alloc(&other, 0);
	mempool_free(&pool, o);
	KEXPECT(!mempool_destroy(&pool));
	KEXPECT(strstr(mm_port_last_log(), "1 more elements freed to it"));
	KEXPECT(info().out == -1);
	/* Put right by hand, both go. */
	atomic_fetch_add(&pool.out, 1);
	atomic_fetch_sub(&other.out, 1);
	KEXPECT(mempool_destroy(&pool) && mempool_destroy(&other));
	release_and_check("after the refused destroys");
}

static int a_static_object;

/* A fresh heap and a pool of min elements of 64 bytes named "bad". */
static bool bad_pool(uint32_t min)
{
	return sh_heap_fresh(&heap, &sh) &&
	       mempool_init_heap(&pool, &sh, "bad", min, 64);
}

KTEST(mempool, misuse_panics_naming_the_element)
{
	/* A caught panic abandons the call: a heap for each case. */
	KASSERT(bad_pool(2));
	KASSERT(fail_all());
	char *e = mempool_alloc(&pool, 0); /* the reserve's */
	KASSERT(e && info().curr == 1);
	spanheap_fail_disarm(&sh);
	mempool_free(&pool, e); /* back into the reserve */
	EXPECT_MISUSE(mempool_free(&pool, e), "mempool bad: double free", e);
	sh_heap_release(&heap, &sh);

	/* The same while mempool_check walks the reserve, each marker met
	 * flipped: a free then must wait for the walk, not pass it. */
	KASSERT(bad_pool(2));
	e = pool.reserve[0];
	*(uintptr_t *)e ^= 1;
	EXPECT_MISUSE(mempool_free(&pool, e), "mempool bad: double free", e);
	*(uintptr_t *)e ^= 1;
	sh_heap_release(&heap, &sh);

	KASSERT(bad_pool(1));
	e = mempool_alloc(&pool, 0); /* the heap's: the reserve stays full */
	KASSERT(e && info().curr == 1);
	mempool_free(&pool, e); /* to the heap */
	EXPECT_MISUSE(mempool_free(&pool, e), "an object already freed", e);
	sh_heap_release(&heap, &sh);

	KASSERT(bad_pool(2));
	char *small = spanheap_alloc(&sh, 16, 0);
	KASSERT(small);
	EXPECT_MISUSE(mempool_free(&pool, small),
	              "mempool bad: free of an object of 16 bytes", small);
	e = mempool_alloc(&pool, 0);
	EXPECT_MISUSE(mempool_free(&pool, e + 8), "interior pointer", e + 8);
	EXPECT_MISUSE(mempool_free(&pool, &a_static_object), "foreign",
	              &a_static_object);
	sh_heap_release(&heap, &sh);
}

/* A pool of 4 on a fresh heap, its reserve full, for a checker case. */
static bool checked_pool(void)
{
	return sh_heap_fresh(&heap, &sh) &&
	       mempool_init_heap(&pool, &sh, "chk", 4, 64);
}

/* A slot a stray write changed (until a review the reserve was a heap
 * object beside others, which an overrun reached; a metadata block now):
 * named, its address never read. Until a review the walk read (and would
 * flip) the first word before the heap's view, and the checker faulted on
 * such an address. */
static void overrun_slot(uintptr_t bad)
{
	KASSERT(checked_pool());
	pool.reserve[2] = (void *)bad;
	SH_EXPECT_PANIC(mempool_check(&pool), "slot 2 of 4 (4 held)");
	KEXPECT(strstr(mm_port_last_panic(), "not in the heap"));
	sh_heap_release(&heap, &sh);
}

/* An element that is no heap object's (a static buffer) and one that
 * points into an object, each carrying the marker as a sound element
 * would: the checker names them (until a review no test made these two
 * checks fire). */
static void the_checker_finds_foreign_elements(void)
{
	static uintptr_t foreign[8];
	KASSERT(checked_pool());
	pool.reserve[2] = foreign;
	foreign[0] = pool.marker ^ (uintptr_t)foreign;
	SH_EXPECT_PANIC(mempool_check(&pool), "slot 2 of 4 (4 held)");
	KEXPECT(strstr(mm_port_last_panic(), "not in the heap"));
	sh_heap_release(&heap, &sh);

	KASSERT(checked_pool());
	uintptr_t *inside = (uintptr_t *)((char *)pool.reserve[1] + 16);
	pool.reserve[1] = inside;
	*inside = pool.marker ^ (uintptr_t)inside;
	SH_EXPECT_PANIC(mempool_check(&pool), "slot 1 of 4 (4 held)");
	KEXPECT(strstr(mm_port_last_panic(), "not the start of an object"));
	sh_heap_release(&heap, &sh);

	overrun_slot(0x4141414141414141ull);
	overrun_slot(0x1000);
}

KTEST(mempool, the_checker_finds_a_broken_reserve)
{
	KASSERT(checked_pool());
	mempool_check(&pool); /* a sound one passes */
	uintptr_t *e = pool.reserve[2];
	*e = 7; /* a write into an element in the reserve */
	SH_EXPECT_PANIC(mempool_check(&pool),
	                "mempool chk: reserve slot 2 of 4 (4 held)");
	KEXPECT(strstr(mm_port_last_panic(), "not the pool's marker"));
	sh_heap_release(&heap, &sh);

	KASSERT(checked_pool());
	pool.reserve[3] = pool.reserve[1]; /* slot 3's element is lost */
	SH_EXPECT_PANIC(mempool_check(&pool), "slot 3 of 4 (4 held)");
	KEXPECT(strstr(mm_port_last_panic(), "an element met twice"));
	/* The walk put every marker back: slot 1's element is sound. */
	KEXPECT_EQ(*(uintptr_t *)pool.reserve[1],
	           pool.marker ^ (uintptr_t)pool.reserve[1]);
	sh_heap_release(&heap, &sh);

	KASSERT(checked_pool());
	pool.reserve[0] = NULL;
	SH_EXPECT_PANIC(mempool_check(&pool), "slot 0 of 4 (4 held)");
	KEXPECT(strstr(mm_port_last_panic(), "a NULL slot"));
	sh_heap_release(&heap, &sh);

	KASSERT(checked_pool());
	atomic_store(&pool.curr, 5);
	SH_EXPECT_PANIC(mempool_check(&pool), "more elements than the");
	sh_heap_release(&heap, &sh);

	KASSERT(checked_pool());
	void *f = pool.reserve[1];
	spanheap_free(&sh, f); /* behind the pool's back */
	*(uintptr_t *)f = pool.marker ^ (uintptr_t)f;
	SH_EXPECT_PANIC(mempool_check(&pool), "slot 1 of 4 (4 held)");
	KEXPECT(strstr(mm_port_last_panic(), "not an allocated object"));
	sh_heap_release(&heap, &sh);
	the_checker_finds_foreign_elements();
}

/* True if stmt panics with a line holding what (the pool's name and the
 * use of a pool that is not set up). */
#define EXPECT_UNUSABLE(stmt, what)                                         \
	do {                                                                \
		mm_port_set_quiet(true);                                    \
		KEXPECT(MM_PORT_PANICS(stmt));                              \
		mm_port_set_quiet(false);                                   \
		KEXPECT(strstr(mm_port_last_panic(), (what)) != NULL);      \
		KEXPECT(strstr(mm_port_last_panic(), "not set up or "       \
		                                     "destroyed") != NULL); \
	} while (0)

/*
 * A pool whose set-up failed, or that was destroyed, is no pool: an
 * allocation from it, a free to it and a resize of it panic naming the
 * pool, as a destroyed cache's calls do (objcache.h). A second destroy
 * is nothing (as Linux's mempool_exit of a zeroed pool), and the struct
 * may be set up again. Until a review a destroyed pool went on as a
 * thin wrapper of its source (an allocation without MM_ATOMIC from a dry
 * source waited for a reserve of 0 for ever), a free counted its
 * elements below zero, and a free to a pool whose reserve could not be
 * made stored through the reserve's NULL array.
 */
KTEST(mempool, a_pool_not_set_up_or_destroyed_panics_when_used)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "gone", 2, 64));
	KEXPECT(mempool_destroy(&pool));
	EXPECT_UNUSABLE(mempool_alloc(&pool, MM_ATOMIC), "mempool gone");
	void *o = spanheap_alloc(&sh, 64, 0);
	KASSERT(o);
	EXPECT_UNUSABLE(mempool_free(&pool, o), "mempool gone");
	EXPECT_UNUSABLE(mempool_resize(&pool, 4), "mempool gone");
	KEXPECT(info().out == 0 && info().min == 0);
	KEXPECT(mempool_destroy(&pool)); /* a second: nothing */
	/* A reserve the heap cannot give: the pool is not set up. */
	KASSERT(fail_all());
	mm_port_set_quiet(true);
	KEXPECT(!mempool_init_heap(&pool, &sh, "dry", 2, 64));
	mm_port_set_quiet(false);
	spanheap_fail_disarm(&sh);
	EXPECT_UNUSABLE(mempool_free(&pool, o), "mempool dry");
	EXPECT_UNUSABLE(mempool_alloc(&pool, MM_ATOMIC), "mempool dry");
	KEXPECT(mempool_destroy(&pool));
	/* The same struct set up again works. */
	KASSERT(mempool_init_heap(&pool, &sh, "again", 2, 64));
	void *e = mempool_alloc(&pool, 0);
	KEXPECT(e != NULL);
	mempool_free(&pool, e);
	KEXPECT(mempool_destroy(&pool));
	spanheap_free(&sh, o);
	release_and_check("after the pools that were not set up");
}

/*
 * A reserved-element pool (mm/mempool.c) under threads, built for
 * ThreadSanitizer too (make test-tsan): four workers, each a CPU of its
 * own, allocate from one pool of 4 reserved elements while the heap's
 * injection fails nine allocations in ten: MM_ATOMIC calls (which may
 * get NULL) and, by a worker that holds no element, sleeping ones
 * (which may not: they wait for the other workers' frees), some MM_ZERO
 * (checked zero); each element is
 * filled with a pattern of its address and worker, checked before its
 * free, and one free in four goes through the next worker's inbox (a free
 * on another thread, which refills the reserve and wakes a sleeper there).
 * The sweeper and the scavenger run throughout; the main thread reads the
 * pool's counters, checks it and resizes it between 2 and 11 elements
 * meanwhile (the reserve never above its size, never more out than the
 * workers hold). At the end every element is
 * back: none out, the reserve full and checked, the NULLs the workers saw are
 * the pool's atomic failures, the pool destroyed and the heap checked clean.
 * Run again, with a quarter of the operations, over a constructor
 * cache's pool (a cache with slabs of its own, whose elements the pool
 * leaves as the cache's: its membership in its array alone): the
 * constructor's first word is checked on every element handed out and
 * left as it was by every worker; no MM_ZERO (refused on such a cache).
 * Bounded by operation counts; no assert depends on time.
 */
#include <stdatomic.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "../../mm/mempool_internal.h"
#include "../../mm/objcache_own.h"
#include "mempool_test_util.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

enum { WORKERS = 4, KEEP = 16, INBOX = 64, SIZE = 96, MIN = 4, OPS = 20000 };

struct worker {
	int id;
	uint64_t rng;
	uintptr_t keep[KEEP];
	unsigned nkeep;
	uintptr_t inbox_items[INBOX], taken[INBOX];
	struct stress_inbox inbox;
	unsigned long nulls;
	struct stress_failures failures;
};
static struct worker workers[WORKERS];
static _Atomic int running;
/* The constructor cache's run: its first word, the ctor's; the ops. */
static struct objcache *own;
static int ops = OPS;
#define CTOR_WORD 0xc7057a7ec7057a7eull

static void ctor(void *e)
{
	*(uint64_t *)e = CTOR_WORD;
}

static uint64_t pattern(uintptr_t e, int id, size_t i)
{
	return (e + i * 8) * 0x9e3779b97f4a7c15ull ^ (uint64_t)id;
}

static void fill(uintptr_t e, int id)
{
	for (size_t i = own != NULL; i < SIZE / 8; i++)
		((uint64_t *)e)[i] = pattern(e, id, i);
}

/* Checks e's pattern (filled by worker id) and frees it. */
static void check_and_free(struct worker *w, uintptr_t e, int id)
{
	for (size_t i = own != NULL; i < SIZE / 8; i++)
		if (((uint64_t *)e)[i] != pattern(e, id, i)) {
			stress_fail(&w->failures, "element %#lx word %zu",
			            (unsigned long)e, i);
			break;
		}
	mempool_free(&pool, (void *)e);
}

static void drain_inbox(struct worker *w)
{
	size_t n = stress_inbox_take(&w->inbox, w->taken);
	int from = (w->id + WORKERS - 1) % WORKERS;
	for (size_t i = 0; i < n; i++)
		check_and_free(w, w->taken[i], from);
}

static void one_alloc(struct worker *w, uint64_t r)
{
	/* A call that may sleep holds no element meanwhile (mempool.h):
	 * the frees it waits for are other workers' to make. */
	bool may_sleep = w->nkeep == 0 && (r & 4);
	unsigned flags =
	        (may_sleep ? 0 : MM_ATOMIC) | ((r & 8) && !own ? MM_ZERO : 0);
	uintptr_t e = (uintptr_t)mempool_alloc(&pool, flags);
	if (!e) {
		if (!(flags & MM_ATOMIC))
			stress_fail(&w->failures, "a sleeping alloc got NULL");
		w->nulls++;
		return;
	}
	if ((flags & MM_ZERO) && !all_bytes((void *)e, SIZE, 0))
		stress_fail(&w->failures, "MM_ZERO element %#lx not zero",
		            (unsigned long)e);
	if (own && *(uint64_t *)e != CTOR_WORD)
		stress_fail(&w->failures, "element %#lx not constructed",
		            (unsigned long)e);
	fill(e, w->id);
	w->keep[w->nkeep++] = e;
}

static void one_free(struct worker *w, uint64_t r)
{
	unsigned i = (unsigned)(r >> 8) % w->nkeep;
	uintptr_t e = w->keep[i];
	w->keep[i] = w->keep[--w->nkeep];
	struct worker *next = &workers[(w->id + 1) % WORKERS];
	if ((r & 48) == 0 && stress_inbox_put(&next->inbox, &e))
		return;
	check_and_free(w, e, w->id);
}

static void work(void *arg)
{
	struct worker *w = arg;
	mm_port_set_cpu((unsigned)w->id + 1);
	for (int op = 0; op < ops; op++) {
		uint64_t r = stress_random(&w->rng);
		if (w->nkeep < KEEP && (w->nkeep == 0 || (r & 3) != 0))
			one_alloc(w, r);
		else
			one_free(w, r);
		drain_inbox(w);
	}
	while (w->nkeep)
		one_free(w, stress_random(&w->rng) | 48);
	atomic_fetch_sub(&running, 1);
}

/* The main thread while the workers run: reads the counters, checks the
 * pool and resizes it, round after round. Returns the reads that broke a
 * bound; *reads and *resized count rounds and resizes done. */
static unsigned long watch(unsigned long *reads, unsigned long *resized)
{
	unsigned long bad_reads = 0;
	for (*reads = *resized = 0; atomic_load(&running) > 0; ++*reads) {
		struct mempool_info in;
		mempool_info(&pool, &in);
		bad_reads += in.curr > in.min ||
		             in.out > WORKERS * (KEEP + INBOX) + WORKERS;
		mempool_check(&pool); /* beside the workers' calls */
		/* Up a step (when the heap gives all it needs), down a step:
		 * 2 to 11 elements. */
		uint32_t to = 2 + (uint32_t)(*reads / 2) % 10;
		*resized += mempool_resize(&pool, (*reads & 1) ? to : to + 1);
		sleep_ns(50 * 1000);
	}
	return bad_reads;
}

/* The run over the heap's objects, or (with_ctor) a constructor
 * cache's, for n operations a worker. */
static void stress(bool with_ctor, int n)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(spanheap_sweeper_start(&sh));
	KASSERT(mheap_scavenger_start(&heap));
	ops = n;
	own = NULL;
	if (with_ctor) {
		KASSERT(own = objcache_create_flags(&sh, "stress-ctor", SIZE, 0,
		                                    0, ctor));
		KASSERT(mempool_init_cache(&pool, own, "stress", MIN));
	} else
		KASSERT(mempool_init_heap(&pool, &sh, "stress", MIN, SIZE));
	struct spanheap_fail_attr a = {
	        .interval = 1, .probability = 9000, .times = -1, .seed = 7};
	KASSERT(spanheap_fail_arm(&sh, &a));
	struct mm_thread *t[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		workers[i] = (struct worker){.id = i, .rng = 0x51ed + i * 77};
		stress_inbox_init(&workers[i].inbox, workers[i].inbox_items,
		                  sizeof(uintptr_t), INBOX);
	}
	atomic_store(&running, WORKERS);
	KASSERT(start_all(t, WORKERS, work, workers, sizeof(*workers)));
	unsigned long reads, resized, bad_reads = watch(&reads, &resized);
	join_all(t, WORKERS);
	mm_port_set_cpu(0);
	unsigned long nulls = 0;
	for (int i = 0; i < WORKERS; i++)
		nulls += workers[i].nulls;
	for (int i = 0; i < WORKERS; i++) /* items put after its last take */
		drain_inbox(&workers[i]);
	spanheap_fail_disarm(&sh);
	KEXPECT_EQ(bad_reads, 0);
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.out, 0);
	KEXPECT_EQ(in.curr, in.min);
	mempool_check(&pool);
	KEXPECT_EQ(in.atomic_fails, nulls);
	KEXPECT(in.from_reserve > 0 && in.refills > 0);
	ktest_diag("%lu reads, %lu resizes; from the reserve %lu, refills "
	           "%lu, waits %lu, atomic NULLs %lu",
	           reads, resized, (unsigned long)in.from_reserve,
	           (unsigned long)in.refills, (unsigned long)in.waits, nulls);
	for (int i = 0; i < WORKERS; i++) {
		STRESS_REPORT(i, &workers[i].failures);
		stress_inbox_destroy(&workers[i].inbox);
	}
	KEXPECT(mempool_destroy(&pool));
	if (own) {
		KEXPECT(objcache_own_check(own));
		KEXPECT(objcache_destroy(own));
		own = NULL;
	}
	spanheap_sweeper_stop(&sh);
	mheap_scavenger_stop(&heap);
	sh_flush_cpus(&sh, WORKERS + 1);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "after the stress");
	sh_heap_release(&heap, &sh);
}

KTEST(mempool_stress, workers_share_a_reserve_while_the_heap_fails)
{
	stress(false, OPS);
}

KTEST(mempool_stress, workers_share_a_constructor_caches_reserve)
{
	stress(true, OPS / 4);
}

/* The racing free: the element freed again inside the first free, past
 * its checks and before its lock (mempool_test_after_check), as another
 * CPU's free of it would be. */
static void free_again(struct mempool *p, void *e)
{
	mempool_test_after_check = NULL;
	mempool_free(p, e);
}

/*
 * Two frees of one element whose tests of the marker both came before
 * either wrote it: until a review both pushed it, and the reserve held it
 * twice (a reviewer's two threads under the port's chaos: 219 runs of
 * 300); the second push now finds it there, under the lock.
 */
KTEST(mempool_race, a_racing_double_free_is_not_kept_twice)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "race", 3, 64));
	KASSERT(fail_all()); /* the reserve's elements */
	char *a = mempool_alloc(&pool, 0), *b = mempool_alloc(&pool, 0);
	char *c = mempool_alloc(&pool, 0); /* the reserve is empty now */
	spanheap_fail_disarm(&sh);
	KASSERT(a && b && c);
	mempool_free(&pool, a); /* one in the reserve, room for two */
	mempool_test_after_check = free_again;
	EXPECT_MISUSE(mempool_free(&pool, b), "mempool race: double free", b);
	mempool_test_after_check = NULL;
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.curr, 2); /* a and b, once */
	KEXPECT_EQ(in.out, 1);  /* c; b's second free is not counted */
	mempool_check(&pool);
	/* The racing free fills the reserve (a, b, then c): the first
	 * would give c to the heap under the reserve. */
	mempool_test_after_check = free_again;
	EXPECT_MISUSE(mempool_free(&pool, c), "mempool race: double free", c);
	mempool_test_after_check = NULL;
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.curr, 3);
	KEXPECT_EQ(in.out, 0);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	sh_heap_release(&heap, &sh);
}

/* The racing free of the test below: another element, which fills the
 * reserve. */
static void *other;

static void free_other(struct mempool *p, void *e)
{
	(void)e;
	mempool_test_after_check = NULL;
	mempool_free(p, other);
}

/*
 * Two frees that both read room for one more in the reserve: the second
 * to take the lock finds it full and gives its element to the source. A
 * mutant that let the reserve pass its size (a mutation review) wrote
 * past the array's end, inside a heap object where no sanitizer sees it.
 */
KTEST(mempool_race, two_frees_for_the_last_slot_keep_one)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "race", 2, 64));
	KASSERT(fail_all());
	char *a = mempool_alloc(&pool, 0), *b = mempool_alloc(&pool, 0);
	spanheap_fail_disarm(&sh);
	char *e = mempool_alloc(&pool, 0); /* the heap's */
	KASSERT(a && b && e);
	mempool_free(&pool, a); /* room for one */
	other = b;
	mempool_test_after_check = free_other;
	mempool_free(&pool, e); /* read room; b took it first */
	mempool_test_after_check = NULL;
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.curr, 2);
	KEXPECT_EQ(in.out, 0);
	struct spanheap_where w;
	KEXPECT(spanheap_where(&sh, e, &w) &&
	        w.state != SPANHEAP_OBJ_ALLOCATED); /* to the heap */
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	SH_CHECK(&sh, "after the race for the slot");
	sh_heap_release(&heap, &sh);
}

/* The racing free of the test below: an allocation that takes an element
 * from the reserve (the heap failing it), then e freed again, as other
 * CPUs could between the first free's choice of the source and its free
 * there (mempool_test_before_source). */
static void *taken;

static void take_and_free_again(struct mempool *p, void *e)
{
	mempool_test_before_source = NULL;
	KASSERT(fail_all());
	taken = mempool_alloc(p, MM_ATOMIC);
	spanheap_fail_disarm(&sh);
	KEXPECT(taken != NULL);
	mempool_free(p, e);
}

/*
 * A free that found the reserve full and chose the source, and a second
 * free of its element that found room (an allocation took one) before the
 * first reached the source: until a review the second kept the element in
 * the reserve and the first then gave it to the heap under it. The
 * first's choice now marks the element leaving, in one atomic exchange
 * with the reserve's pushes, and the second free is told.
 */
KTEST(mempool_race, a_double_free_racing_a_free_to_the_source_is_told)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(mempool_init_heap(&pool, &sh, "race", 2, 64));
	char *e = mempool_alloc(&pool, 0); /* the heap's: the reserve full */
	KASSERT(e != NULL);
	mempool_test_before_source = take_and_free_again;
	EXPECT_MISUSE(mempool_free(&pool, e), "mempool race: double free", e);
	mempool_test_before_source = NULL;
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT_EQ(in.curr, 1); /* the other, not e */
	KEXPECT_EQ(in.out, 1);  /* taken; e's second free is not counted */
	mempool_check(&pool);
	spanheap_free(&sh, e); /* the first free, cut short by the panic */
	mempool_free(&pool, taken);
	KEXPECT(mempool_destroy(&pool));
	SH_CHECK(&sh, "after the race");
	sh_heap_release(&heap, &sh);
}

/*
 * Randomized differential test of the span heap: over a million operations
 * (allocations of every class and large ones, aligned, calloc, realloc,
 * frees, sweep cycles, cache flushes, release-all, bad frees) run through
 * spanheap_harness.c against its model of the live objects, switching
 * between three simulated CPUs (mm_port_set_cpu, one thread) so that
 * frees cross caches and take the pending path.
 *
 * spanheap_check (with the statistics against the model) runs after every
 * operation for the first CHECK_ALL_OPS operations and every CHECK_EVERY
 * after: it walks every span and every CPU's cache, too slow to run a
 * million times. The end drains the heap and checks that only the span
 * heap's own bookkeeping is left.
 *
 * The same again, a quarter as long, on a heap in poison mode, and on a
 * heap with a guarded pool (spanheap_guard.c) sampling one refill or
 * out-of-line call in three.
 *
 * The seed is printed; SPANHEAP_SEED=0x... in the environment replays
 * another.
 */
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "mm_port_posix.h"
#include "spanheap_harness.h"

enum {
	NOPS = 1000 * 1000,
	CHECK_ALL_OPS = 20 * 1000,
	CHECK_EVERY = 1000,
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Relative weights of the operations. Allocation outweighs freeing a
 * little, so the heap fills to the harness's limits and stays there. */
static const unsigned weights[SHH_NOPS] = {
        [SHH_ALLOC] = 40,   [SHH_ALIGNED] = 6, [SHH_CALLOC] = 4,
        [SHH_REALLOC] = 8,  [SHH_FREE] = 50,   [SHH_SWEEP] = 1,
        [SHH_FLUSH] = 1,    [SHH_CPU] = 8,     [SHH_RELEASE] = 0,
        [SHH_BAD_FREE] = 1, [SHH_CHECK] = 0,   [SHH_DOUBLE_FREE] = 1,
        [SHH_FAIL] = 1,     [SHH_CACHE] = 6,
};

/* The named caches' and the pools' run: caches made and destroyed
 * (half of them with slabs of their own), pools of every kind made,
 * resized, misused and destroyed, their elements taken and freed among
 * plain objects, batches (the bulk calls), scavenges of both heaps. The
 * long runs above leave the batches out for their time (14% more). */
static const unsigned pool_weights[SHH_NOPS] = {
        [SHH_ALLOC] = 30,   [SHH_ALIGNED] = 4,     [SHH_CALLOC] = 2,
        [SHH_REALLOC] = 4,  [SHH_FREE] = 50,       [SHH_SWEEP] = 1,
        [SHH_FLUSH] = 1,    [SHH_CPU] = 8,         [SHH_RELEASE] = 0,
        [SHH_BAD_FREE] = 1, [SHH_CHECK] = 1,       [SHH_DOUBLE_FREE] = 2,
        [SHH_FAIL] = 1,     [SHH_CACHE] = 8,       [SHH_CACHE_MAKE] = 3,
        [SHH_POOL] = 6,     [SHH_POOL_ALLOC] = 25, [SHH_SCAVENGE] = 2,
        [SHH_BULK] = 3,
};

static enum shh_op pick(const unsigned *w, uint64_t r, unsigned long i)
{
	if (i % 50000 == 49999)
		return SHH_RELEASE;
	unsigned total = 0, op;
	for (op = 0; op < SHH_NOPS; op++)
		total += w[op];
	r %= total;
	for (op = 0; r >= w[op]; op++)
		r -= w[op];
	return (enum shh_op)op;
}

static struct spanheap_harness h; /* large: not on the stack */

/* nops operations from the seed (SPANHEAP_SEED's if set), on a heap in
 * poison mode or not, with a guarded pool or not; every class must have
 * been used. */
static void diff_run_with(const unsigned *w, unsigned long nops, bool poison,
                          bool guard, bool scav_on_free, bool scavenger)
{
	const char *e = getenv("SPANHEAP_SEED");
	uint64_t seed = e ? strtoull(e, NULL, 0) : 0x5eed5ba11u;
	ktest_diag("seed 0x%llx (SPANHEAP_SEED=0x... replays another)",
	           (unsigned long long)seed);
	struct shh_config cfg = {
	        .arena_bytes = (size_t)1 << 30,
	        .ncpus = 3,
	        .max_live = 3000,
	        .max_live_bytes = (size_t)64 << 20,
	        .max_large = (size_t)1 << 20,
	        .poison = poison,
	        .guard = guard,
	        .scav_on_free = scav_on_free,
	        .scavenger = scavenger,
	};
	uint64_t s = seed;
	mm_port_set_quiet(true); /* refused requests are logged */
	bool ok = shh_init(&h, &cfg);
	unsigned long i;
	for (i = 0; ok && i < nops; i++) {
		enum shh_op op = pick(w, rng_next(&s), i);
		uint64_t a = rng_next(&s), b = rng_next(&s);
		ok = shh_step(&h, op, a, b) &&
		     ((i >= CHECK_ALL_OPS && i % CHECK_EVERY) || shh_check(&h));
	}
	ok = ok && shh_drain(&h);
	mm_port_set_quiet(false);
	mm_port_set_cpu(0);
	if (!ok)
		ktest_fail_at(
		        __FILE__, __LINE__,
		        "seed 0x%llx (rerun with SPANHEAP_SEED=0x%llx): %s",
		        (unsigned long long)seed, (unsigned long long)seed,
		        h.err);
	ktest_diag("%lu ops: %lu allocs (%lu large, %lu zeroed), %lu frees, "
	           "%lu reallocs, %lu from named caches, %lu sweeps, %lu "
	           "flushes, %lu CPU switches, %lu release-alls, %lu refused "
	           "(%lu injected), %lu misuses caught, %lu guarded",
	           i, h.n.allocs, h.n.large, h.n.zeroed, h.n.frees,
	           h.n.ops[SHH_REALLOC], h.n.ops[SHH_CACHE], h.n.ops[SHH_SWEEP],
	           h.n.ops[SHH_FLUSH], h.n.ops[SHH_CPU], h.n.ops[SHH_RELEASE],
	           h.n.refused, h.n.injected, h.n.panics, h.n.guarded);
	if (w == pool_weights)
		ktest_diag("%lu cache makes or destroys (%lu with slabs of "
		           "their own, %lu of their objects), %lu pool calls, "
		           "%lu pool allocations, %lu scavenges, %lu batches "
		           "(%lu objects)",
		           h.n.ops[SHH_CACHE_MAKE], h.n.own_caches, h.n.own,
		           h.n.ops[SHH_POOL], h.n.ops[SHH_POOL_ALLOC],
		           h.n.ops[SHH_SCAVENGE], h.n.ops[SHH_BULK], h.n.bulk);
	KEXPECT(i == nops);
	_Static_assert(SC_NCLASSES <= 64, "a bit per class");
	if (w == weights) { /* the long runs' */
		KEXPECT(!guard || h.n.guarded > 1000);
		KEXPECT_EQ(h.n.classes, ~(uint64_t)0 >> (64 - SC_NCLASSES));
	}
	shh_destroy(&h);
}

static void diff_run(unsigned long nops, bool poison, bool guard)
{
	diff_run_with(weights, nops, poison, guard, false, false);
}

/* SPANHEAP_OPS=n in the environment runs n operations in the caches' and
 * pools' tests (a longer search with SPANHEAP_SEED). */
static unsigned long pool_ops(void)
{
	const char *e = getenv("SPANHEAP_OPS");
	return e ? strtoul(e, NULL, 0) : NOPS / 20;
}

KTEST(spanheap_diff, million_ops)
{
	diff_run(NOPS, false, false);
}

/* Poison mode (spanheap_config.h) under the same operations: every free
 * poisons, every reuse and every check looks at the poison, and the model
 * must see exactly what it sees in normal mode (zeroed memory, contents
 * kept by realloc, misuse named). Fewer operations: with no magazines
 * every call takes a slow path. */
KTEST(spanheap_diff, poison_mode)
{
	diff_run(NOPS / 4, true, false);
}

/* The guarded pool under the same operations: its objects are handed out
 * among the heap's, freed, reallocated, misused and drained with them. */
KTEST(spanheap_diff, guarded_pool)
{
	diff_run(NOPS / 4, false, true);
}

/* Named caches made and destroyed and pools over the heap, a cache and a
 * source of the harness's, among the heap's other calls, with every check
 * (spanheap_harness.h); in normal mode with the scavenger thread serving
 * both heaps beside them, then in poison mode with a guarded pool and
 * every freed page scavenged at once (a freed metadata block's page
 * unmapped). */
KTEST(spanheap_diff, caches_and_pools)
{
	diff_run_with(pool_weights, pool_ops(), false, false, false, true);
}

/* The same with a twentieth of the operations, for the TSan run (make
 * test-tsan), which leaves the whole one out for its time (44 s of CPU
 * there): the scavenger thread beside the caches' and pools' calls is the
 * one thread the differential tests start. */
KTEST(spanheap_diff, caches_and_pools_short)
{
	diff_run_with(pool_weights, pool_ops() / 20, false, false, false, true);
}

KTEST(spanheap_diff, caches_and_pools_poison)
{
	diff_run_with(pool_weights, pool_ops() / 5, true, true, true, false);
}

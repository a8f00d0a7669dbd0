/*
 * Randomized differential test: a million operations, spread over arenas
 * of different shapes, each run on a real palloc (with two page caches)
 * and on the naive model of palloc_model.c, compared bit for bit, with
 * palloc_check after every operation on the small arenas and periodically
 * on the large ones. On a divergence the test names the seed and the step;
 * PALLOC_SEED=0x... in the environment replays another seed.
 */
#include <stdlib.h>

#include "../../kernel/ktest.h"
#include "mm_port_posix.h"
#include "palloc_model.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t seed_or(uint64_t seed)
{
	const char *e = getenv("PALLOC_SEED");
	return e ? strtoull(e, NULL, 0) : seed;
}

/* Relative weights of the operations, in enum harness_op order. */
static const unsigned weights[H_NOPS] = {
        [H_GROW] = 2,        [H_ALLOC] = 30,       [H_FREE] = 28,
        [H_ALLOC_RANGE] = 6, [H_CACHE_ALLOC] = 12, [H_CACHE_REFILL] = 4,
        [H_CACHE_FLUSH] = 2, [H_BAD_FREE] = 1,     [H_BAD_CALL] = 1,
};

static enum harness_op pick(uint64_t r)
{
	unsigned total = 0, op;
	for (op = 0; op < H_NOPS; op++)
		total += weights[op];
	r %= total;
	for (op = 0; r >= weights[op]; op++)
		r -= weights[op];
	return (enum harness_op)op;
}

static void run_diff(const char *name, const struct harness_config *cfg,
                     uint64_t seed, unsigned long nops, unsigned every)
{
	struct harness *h = calloc(1, sizeof(*h));
	uint64_t s = seed = seed_or(seed);
	bool ok = h && harness_init(h, cfg);
	mm_port_set_quiet(true);
	for (unsigned long i = 0; ok && i < nops; i++) {
		enum harness_op op = pick(rng_next(&s));
		uint64_t a = rng_next(&s), b = rng_next(&s);
		ok = harness_step(h, op, a, b) &&
		     ((i + 1) % every != 0 || harness_compare(h));
	}
	ok = ok && harness_drain(h);
	mm_port_set_quiet(false);
	if (!ok)
		ktest_fail_at(
		        __FILE__, __LINE__,
		        "%s: seed 0x%llx (rerun with PALLOC_SEED=0x%llx): "
		        "%s",
		        name, (unsigned long long)seed,
		        (unsigned long long)seed, h ? h->err : "no memory");
	if (h)
		harness_destroy(h);
	free(h);
}

/* 4 chunks, all grown, with an owner lock: check after every op. */
KTEST(palloc_diff, small_arena_300k)
{
	struct harness_config cfg = {.base = 0x40000000,
	                             .chunks = 4,
	                             .use_lock = true,
	                             .grow_all = true};
	run_diff("small", &cfg, 0x5eed0001, 300000, 1);
}

/* 64 chunks grown piecemeal anywhere, from both ends and the middle. */
KTEST(palloc_diff, sparse_arena_350k)
{
	struct harness_config cfg = {.base = 0x100000000000, .chunks = 64};
	run_diff("sparse", &cfg, 0x5eed0002, 350000, 8);
}

/* The frame pool's shape: arena at address 0, no scavenged tracking,
 * caller-supplied metadata, the frames lock. */
KTEST(palloc_diff, frame_pool_250k)
{
	struct harness_config cfg = {.base = 0,
	                             .chunks = 9,
	                             .flags = PALLOC_NO_SCAV,
	                             .supplied = true,
	                             .use_lock = true};
	run_diff("frames", &cfg, 0x5eed0003, 250000, 1);
}

/* The kernel heap's arena: 512 GiB, 5 levels, 64 root entries; a few
 * chunks grown at random in it. */
KTEST(palloc_diff, wide_arena_100k)
{
	struct harness_config cfg = {.base = 0xffffc00000000000,
	                             .chunks = (size_t)1 << 18,
	                             .max_grown = 256};
	run_diff("wide", &cfg, 0x5eed0004, 100000, 997);
}

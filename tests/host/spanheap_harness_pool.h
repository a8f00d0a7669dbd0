/*
 * tests/host/spanheap_harness_pool.h: the span heap harness's pools
 * (mm/mempool.h, spanheap_harness_pool.c): SHH_NPOOLS slots, each a pool
 * over the heap, over one of the harness's named caches or over a source
 * of the harness's own (the heap's objects, which a switch dries up), and
 * what the model knows of it. Internal to the harness.
 */
#ifndef TESTS_HOST_SPANHEAP_HARNESS_POOL_H
#define TESTS_HOST_SPANHEAP_HARNESS_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "../../mm/mempool.h"

#define SHH_NPOOLS 6
/* The most bytes all reserves may hold (a pool that would pass it is made
 * smaller), so that the heap's other calls still find room in the
 * arena the model sized for its own objects. */
#define SHH_POOL_RESERVE_BYTES ((size_t)4 << 20)

enum shh_pool_kind { SHH_POOL_HEAP, SHH_POOL_CACHE, SHH_POOL_SRC };

struct shh_pool {
	struct mempool mp;
	struct spanheap_harness *h; /* the source's */
	bool live;                  /* set up, by the model */
	enum shh_pool_kind kind;
	unsigned cache;     /* SHH_POOL_CACHE: the cache's slot */
	size_t size, align; /* its elements' (align 0: 16, a plain request) */
	uint32_t min;       /* the reserve's size, by the model */
	size_t out;         /* the model's live objects of it */
	bool dry;           /* SHH_POOL_SRC: its source gives nothing */
	unsigned dry_calls; /* SHH_POOL_SRC: nor for its next calls */
	unsigned long src_frees; /* SHH_POOL_SRC: elements given back */
};

struct shh_pools {
	struct shh_pool p[SHH_NPOOLS];
	unsigned long made; /* for unique names */
};

struct spanheap_harness;

/* p's counts now. */
static inline struct mempool_info shh_pool_info(struct shh_pool *p)
{
	struct mempool_info in;
	mempool_info(&p->mp, &in);
	return in;
}

/* mempool_check of p: false (h->err) if it panics. */
bool shh_pool_check_one(struct spanheap_harness *h, struct shh_pool *p);

#endif

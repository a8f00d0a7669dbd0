/*
 * tests/host/spanheap_harness.h: runs operations on a real span heap and
 * checks each result against a model of the objects it should hold
 * (spanheap_harness.c, spanheap_harness_check.c). Shared by the randomized
 * differential test (spanheap_diff_test.c) and the libFuzzer target
 * (fuzz/spanheap_fuzz.c); it depends on libc and the POSIX port, not on ktest,
 * and reports a divergence as text in h->err.
 *
 * The model: the live objects (address, requested size, usable size, fill
 * byte) in an array, plus one bit per 16-byte granule of the arena, set
 * while a live object covers it, so that a new object is checked against
 * every live one in O(its size / 16 / 64) word tests. Each object is
 * filled with its own byte over its whole usable size when it is handed
 * out, and checked before it is freed or reallocated.
 *
 * Every check the harness makes:
 *   - an allocation that must succeed does, aligned (16; the size for a
 *     power of two up to a page; the alignment asked for), inside the
 *     arena, overlapping no live object, usable size at least the request
 *     and exactly the class's size (or the pages) for a plain request;
 *   - memory asked zeroed (MM_ZERO, calloc, realloc's growth) is, and a
 *     realloc with MM_ZERO leaves every byte past those it kept zero up
 *     to the usable size;
 *   - contents survive until the free, and realloc keeps them;
 *   - impossible and bad requests (overflow, bad alignment, sizes over the
 *     arena) get NULL and change nothing;
 *   - NULL only for MM_ATOMIC or MM_NO_GROW (or, may_run_out, for any
 *     call: the arena is then too small), or for a failure injected
 *     (SHH_FAIL armed it): a call whose result is not NULL injected none,
 *     a call injects at most one, a refused call (bad alignment, an
 *     impossible realloc) is not counted, and none is injected unarmed;
 *     a call with MM_NO_GROW never grows the page heap;
 *   - SHH_FAIL: a good attribute arms on every CPU and reads back; a bad
 *     one is refused and changes nothing;
 *   - interior and foreign frees mm_panic, naming the pointer, and so
 *     do the usable size of a freed object and a second free right
 *     after the first on the same CPU;
 *   - SHH_CHECK: every live object's usable size and contents;
 *   - no other call mm_panics (each step runs under the port's catch);
 *   - shh_check: spanheap_check, and the statistics agree with the model;
 *   - SHH_CACHE: an object of a named cache is as a plain request's of
 *     its size and alignment, and is freed through its cache; the caches'
 *     counts are the model's at every check;
 *   - SHH_CACHE_MAKE: a cache made with good arguments is (NULL only for
 *     an injected failure), one with bad ones is refused uncounted; a
 *     destroy succeeds exactly when the model holds none of its objects
 *     (its pools' reserves' included); one of a destroyed cache panics;
 *     half of those made have slabs of their own (a ctor, or
 *     OBJCACHE_TYPESAFE_BY_RCU), checked as spanheap_harness_own.c says;
 *   - SHH_BULK: batches, each object as a single call's, all or nothing
 *     (spanheap_harness_bulk.c lists the checks);
 *   - pools (spanheap_harness_pool.h): made, resized and destroyed as the
 *     model says, their elements and reserves as it predicts, misuse
 *     panics, mempool_check at every check;
 *   - shh_drain: once all is freed, the pools and caches destroyed, every CPU
 *     flushed and released, the page heap holds only the span heap's own
 *     bookkeeping.
 */
#ifndef TESTS_HOST_SPANHEAP_HARNESS_H
#define TESTS_HOST_SPANHEAP_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../mm/objcache.h"
#include "../../mm/spanheap.h"

enum shh_op {
	SHH_ALLOC,    /* spanheap_alloc (or _sized), flags from b */
	SHH_ALIGNED,  /* spanheap_alloc_aligned, a bad alignment at times */
	SHH_CALLOC,   /* spanheap_calloc, an overflow at times */
	SHH_REALLOC,  /* of a live object, of NULL, to 0 or to too much */
	SHH_FREE,     /* a live object */
	SHH_SWEEP,    /* spanheap_sweep_cycle */
	SHH_FLUSH,    /* spanheap_flush_cache on the current CPU */
	SHH_CPU,      /* switch the simulated CPU */
	SHH_RELEASE,  /* spanheap_release_all */
	SHH_BAD_FREE, /* an interior or foreign pointer: must panic */
	SHH_CHECK,    /* shh_check, and every live object's contents and size */
	SHH_DOUBLE_FREE, /* a live object freed, sized, freed again: both must
	                    panic */
	SHH_FAIL,  /* arm failure injection (spanheap_fail.h), or disarm it */
	SHH_CACHE, /* an object of one of the named caches (objcache.h) */
	SHH_CACHE_MAKE, /* a named cache made, or destroyed (or misused) */
	SHH_POOL,       /* a pool (mempool.h) made, resized, checked, destroyed
	                   or misused */
	SHH_POOL_ALLOC, /* an element of a pool */
	SHH_SCAVENGE,   /* a scavenge batch of the object or metadata heap */
	SHH_BULK, /* a batch of plain or a cache's objects had or freed (the
	             bulk calls: spanheap_bulk.h, objcache_bulk.h) */
	SHH_NOPS
};

struct shh_config {
	size_t arena_bytes;    /* a chunk multiple */
	unsigned ncpus;        /* simulated CPUs, 1..MM_MAX_CPUS */
	size_t max_live;       /* objects held at most */
	size_t max_live_bytes; /* requested bytes held at most */
	size_t max_large;      /* the largest request */
	bool may_run_out;      /* an arena smaller than the objects held at
	                          most: any allocation may get NULL */
	bool poison;           /* the heap in poison mode (spanheap_config.h) */
	/* A guarded pool of SHH_GUARD_SLOTS, sampling one refill or
	 * out-of-line call in SHH_GUARD_INTERVAL (spanheap_guard.h) */
	bool guard;
	bool scav_on_free; /* MHEAP_DEBUG_SCAV_ON_FREE, both heaps */
	bool scavenger;    /* the object heap's scavenger thread runs (it
	                      serves the metadata heap too) */
};
#define SHH_GUARD_SLOTS    16
#define SHH_GUARD_INTERVAL 3

struct shh_obj {
	uintptr_t p;
	/* usable: spanheap_usable_size's (in poison mode a small object's is
	 * its size: the rest is the red zone); room: the bytes its span
	 * gives it, the class's or the pages' */
	size_t size, usable, room;
	uint8_t fill;
	uint8_t sizeclass; /* of its span when it was handed out; 0: large */
	uint8_t cache;     /* 1 + its named cache's index; 0: none */
	uint8_t pool;      /* 1 + its pool's index; 0: none */
	bool guard;        /* the guarded pool's (room 0, class 0) */
	bool own;     /* an own cache's: class 0, room its objsize, usable */
	uint8_t ctor; /* its size; its first ctor bytes the ctor's */
};

/* The named caches' slots (spanheap_harness_cache.c): the first
 * SHH_NCACHES_FIXED made with the heap, the rest by SHH_CACHE_MAKE. */
#define SHH_NCACHES       6
#define SHH_NCACHES_FIXED 3

struct shh_counts {
	unsigned long ops[SHH_NOPS];
	unsigned long allocs, frees, large, zeroed, refused, panics;
	unsigned long injected; /* NULLs that failure injection made */
	unsigned long guarded;  /* objects handed out by the guarded pool */
	/* own caches' objects, own caches made, objects in batches */
	unsigned long own, own_caches, bulk;
	uint64_t classes; /* bit c: an object of class c was handed out */
};

struct spanheap_harness {
	struct shh_config cfg;
	struct mheap heap;
	struct spanheap sh;
	struct shh_obj *live;
	size_t nlive, live_bytes;
	uint64_t *granules; /* a bit per 16 bytes of the arena */
	size_t ngranule_words;
	size_t class_live[SC_NCLASSES]; /* [0]: large objects */
	size_t large_pages;
	unsigned cpu;
	bool armed;                 /* failure injection (SHH_FAIL) */
	uint64_t fail_calls0, inj0; /* its counters when a call began */
	bool injected;              /* the last call's NULL was injected */
	unsigned long steps;
	uint8_t next_fill;
	struct shh_counts n;
	/* The named caches (NULL once shh_drain destroyed them), and their
	 * objects the model holds. */
	struct objcache *caches[SHH_NCACHES];
	size_t cache_live[SHH_NCACHES];
	size_t cache_size[SHH_NCACHES], cache_align[SHH_NCACHES];
	bool cache_ctor[SHH_NCACHES]; /* made with shh_ctor */
	struct objcache
	        *cache_gone[SHH_NCACHES]; /* each slot's last destroyed */
	unsigned long cache_made;         /* for unique names */
	struct shh_pools *pools;          /* spanheap_harness_pool.c's */
	bool scav_running;                /* cfg.scavenger's thread, started */
	/* The caches' own objects (structs, counters), outside the model */
	size_t class_extra[SC_NCLASSES];
	/* The guarded pool's slots the model holds an object of, how many */
	bool guard_slot_live[SPANHEAP_GUARD_MAX];
	size_t guard_live;
	size_t guard_extra; /* the caches' own objects the pool holds */
	char err[512];
};

/* Makes a fresh heap; false (h->err says why) if it cannot. */
bool shh_init(struct spanheap_harness *h, const struct shh_config *cfg);

/* Runs op with the arguments a and b (any values: they are decoded).
 * False on a divergence or a panic (h->err). */
bool shh_step(struct spanheap_harness *h, enum shh_op op, uint64_t a,
              uint64_t b);

/* spanheap_check, and the per-class statistics against the model. */
bool shh_check(struct spanheap_harness *h);

/* Frees everything (checking it), flushes every CPU, releases all, and
 * checks that only the span heap's bookkeeping is left in use. */
bool shh_drain(struct spanheap_harness *h);

/* Gives the heap's reservations back (after shh_drain, or a failure). */
void shh_destroy(struct spanheap_harness *h);

#endif

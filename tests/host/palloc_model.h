/*
 * tests/host/palloc_model.h: a naive model of the page allocator
 * (palloc_model.c) and a harness that runs the same operation on the model
 * and on a real palloc with two page caches, then compares them bit for
 * bit (palloc_harness.c).
 *
 * The model is a flat bitmap of the arena's pages (allocated, scavenged),
 * a flag per grown chunk and first fit by scanning from page 0: obviously
 * right and slow. The harness is shared by the randomized differential
 * test (palloc_diff_test.c) and the libFuzzer target (fuzz/palloc_fuzz.c);
 * it depends on libc and the POSIX port, not on ktest, and reports a
 * divergence as text in h->err.
 */
#ifndef TESTS_HOST_PALLOC_MODEL_H
#define TESTS_HOST_PALLOC_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../mm/pagecache.h"
#include "../../mm/palloc.h"

#define MODEL_NONE ((size_t)-1)

struct model {
	size_t npages, nchunks;
	bool zero_based, track_scav;
	uint8_t *grown;  /* per chunk */
	uint64_t *alloc; /* per page: allocated */
	uint64_t *scav;  /* per page: scavenged */
};

struct model_cache {
	bool has_window;
	size_t base_pi;
	uint64_t cache, scav;
};

/* The model: a flat page bitmap. */
bool model_init(struct model *m, size_t chunks, bool zero_based,
                bool track_scav);
void model_destroy(struct model *m);
bool model_bit(const uint64_t *bits, size_t pi);
void model_grow(struct model *m, size_t c0, size_t c1);
bool model_page_free(const struct model *m, size_t pi);
/* First fit: the lowest pi with [pi, pi + n) free, or MODEL_NONE. */
size_t model_find(const struct model *m, size_t n);
size_t model_first_free(const struct model *m);
/* Marks [pi, pi + n) allocated; returns how many were scavenged. */
size_t model_alloc(struct model *m, size_t pi, size_t n);
void model_free(struct model *m, size_t pi, size_t n);
bool model_range_free(const struct model *m, size_t pi, size_t n);
bool model_range_allocated(const struct model *m, size_t pi, size_t n);
void model_cache_flush(struct model *m, struct model_cache *mc);
bool model_cache_refill(struct model *m, struct model_cache *mc);
/* The lowest run of n pages in the cache, taken; MODEL_NONE if none. */
size_t model_cache_alloc(struct model_cache *mc, size_t n, size_t *nscav);

/* ---- The harness (palloc_harness.c) ------------------------------------ */

struct harness_config {
	uintptr_t base;   /* arena base, chunk aligned */
	size_t chunks;    /* arena size in chunks */
	unsigned flags;   /* enum palloc_flags */
	bool supplied;    /* caller-supplied metadata (else reserved) */
	bool use_lock;    /* give palloc an owner lock and take it */
	bool grow_all;    /* grow the whole arena at init */
	size_t max_grown; /* H_GROW stops at this many chunks (0: no limit) */
};

struct harness_run {
	size_t pi, npages;
};

enum harness_op {
	H_GROW,
	H_ALLOC,
	H_FREE,
	H_ALLOC_RANGE,
	H_CACHE_ALLOC,
	H_CACHE_REFILL,
	H_CACHE_FLUSH,
	H_BAD_FREE,
	H_BAD_CALL,
	H_NOPS
};

#define HARNESS_CACHES 2

struct harness {
	struct harness_config cfg;
	struct palloc p;
	struct model m;
	mm_lock_t lock;
	struct pagecache pc[HARNESS_CACHES];
	struct model_cache mc[HARNESS_CACHES];
	struct harness_run *live;
	size_t nlive, live_cap;
	uint64_t *snap[2];
	size_t snap_cap;
	void *supplied;
	unsigned long steps;
	size_t ngrown;
	char err[1024];
};

bool harness_init(struct harness *h, const struct harness_config *cfg);
void harness_destroy(struct harness *h);

/* Runs op with arguments a and b on both sides; false on a divergence. */
bool harness_step(struct harness *h, enum harness_op op, uint64_t a,
                  uint64_t b);

/* Compares every grown chunk's bitmaps and the counts with the model and
 * runs palloc_check; false on a divergence or a check failure. */
bool harness_compare(struct harness *h);

/* Frees every live run and flushes the caches; then everything grown must
 * be free again. */
bool harness_drain(struct harness *h);

#endif

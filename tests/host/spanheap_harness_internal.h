/*
 * tests/host/spanheap_harness_internal.h: what the span heap harness's
 * files share: spanheap_harness.c (the allocation calls),
 * spanheap_harness_model.c (the model), spanheap_harness_check.c
 * (misuse, the live objects, the checker, the drain), the named caches'
 * (_cache.c, and _own.c for those with slabs of their own), the pools'
 * (_pool.c, _pool_elem.c) and the batches' (_bulk.c). Not for the
 * harness's users.
 */
#ifndef TESTS_HOST_SPANHEAP_HARNESS_INTERNAL_H
#define TESTS_HOST_SPANHEAP_HARNESS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap_harness.h"

#define SHH_GRAN 16 /* bytes per granule bit of the model */

/* What shh_admit checks beyond the common checks. */
enum shh_admit_flags {
	SHH_A_ZERO = 1u << 0,  /* [0, size) reads as zero */
	SHH_A_PLAIN = 1u << 1, /* a plain request: the usable size is exact */
	SHH_A_POW2 = 1u << 2,  /* from an allocation call: a power-of-two size
	                      up to a page is aligned to itself */
	SHH_A_ZERO_ASKED = 1u << 3, /* [0, size) reads as zero, not the rest
	                               (a pool's MM_ZERO) */
	SHH_A_KEPT = 1u << 4,       /* realloc's answer is the object itself: a
	                               guarded one keeps its bytes asked */
};

/* True if [a, a + n) shares a granule with a live object of the model. */
bool shh_overlaps_live(struct spanheap_harness *h, uintptr_t a, size_t n);

/* Checks a new object p of size bytes, asked aligned to align, against
 * the model (what: enum shh_admit_flags), then adds it, filled. */
bool shh_admit(struct spanheap_harness *h, void *p, size_t size, size_t align,
               unsigned what);

/* The offset of the first byte of [p, p + n) that is not v, or n. */
size_t shh_first_not(const void *p, size_t n, uint8_t v);

/* The lines mm_log writes between the two, kept (not the last line
 * alone, which the scavenger thread may write meanwhile); end says
 * whether one holds what. Not nested, nor around a batch free (which
 * keeps its own). */
void shh_log_begin(void);
bool shh_log_end(const char *what);

/* Whether the last panic names p and says it is no live object. */
bool shh_names_a_dead_object(const void *p);

/* Writes "step N (CPU c): ..." into h->err; returns false. */
__attribute__((format(printf, 2, 3))) bool shh_fail(struct spanheap_harness *h,
                                                    const char *fmt, ...);

/* splitmix64's finaliser: independent bits from one argument. */
uint64_t shh_mix(uint64_t z);

/* False (h->err) if object o's usable bytes are not all its fill byte. */
bool shh_verify(struct spanheap_harness *h, const struct shh_obj *o);

/* Drops live object i from the model (freed, or moved by realloc). */
void shh_forget(struct spanheap_harness *h, size_t i);

/* A call with flags (MM_ATOMIC: the port's atomic context) between the
 * two: the second checks its result p (spanheap_harness.c). */
size_t shh_call_begin(struct spanheap_harness *h, unsigned flags);
bool shh_call_end(struct spanheap_harness *h, unsigned flags, size_t grown,
                  const char *what, size_t size, const void *p);
/* Whether a NULL for a request of size bytes with flags is allowed. */
bool shh_refusal_ok(struct spanheap_harness *h, unsigned flags, size_t size);

/* The named caches (spanheap_harness_cache.c): made with the heap, an
 * object of one (SHH_CACHE), live object i freed the way it was had
 * (through its cache or not; verified first), the counts against the
 * model, and the caches destroyed once their objects are all freed. */
bool shh_caches_make(struct spanheap_harness *h);
bool shh_cache_alloc(struct spanheap_harness *h, uint64_t a, uint64_t b);
bool shh_free_at(struct spanheap_harness *h, size_t i);
/* Frees o (not yet forgotten) the way it was had, with no check. */
void shh_free_raw(struct spanheap_harness *h, const struct shh_obj *o);
bool shh_caches_check(struct spanheap_harness *h);
bool shh_caches_destroy(struct spanheap_harness *h);
/* SHH_CACHE_MAKE: a cache made in an empty slot, or one destroyed. */
bool shh_cache_make(struct spanheap_harness *h, uint64_t a, uint64_t b);
/* The model's objects of cache slot k out of it: its own and its pools'. */
size_t shh_cache_expected(struct spanheap_harness *h, unsigned k);

/* The pools (spanheap_harness_pool.c): set up and torn down with the
 * harness, SHH_POOL, SHH_POOL_ALLOC, live object i of a pool freed to it,
 * a pool object's double free, their checks (the reserves' objects added
 * to *extra's class counts, guarded ones and large pages), the elements a
 * cache slot's pools hold in their reserves, and every pool destroyed. */
bool shh_pools_new(struct spanheap_harness *h);
void shh_pools_free(struct spanheap_harness *h);
bool shh_pool_op(struct spanheap_harness *h, uint64_t a, uint64_t b);
bool shh_pool_alloc(struct spanheap_harness *h, uint64_t a, uint64_t b);
bool shh_pool_free_at(struct spanheap_harness *h, size_t i);
bool shh_pool_double_free(struct spanheap_harness *h, size_t i);
bool shh_pools_check(struct spanheap_harness *h, size_t *extra,
                     size_t *guard_extra, size_t *large_pages);
size_t shh_pools_reserved_of(struct spanheap_harness *h, unsigned k);
bool shh_pools_destroy(struct spanheap_harness *h);

/* Caches with slabs of their own (spanheap_harness_own.c). shh_ctor, the
 * ctor of those made with one, writes byte i of its first 16 (an object
 * takes 16 at least) as shh_ctor_byte, which the model checks at each
 * admission and never overwrites (the ctor's contract: an object goes
 * back to its cache as the ctor left it). shh_admit_own: shh_admit's
 * checks for an object of slab s; shh_own_make: SHH_CACHE_MAKE's own
 * cache in empty slot k (ctor or OBJCACHE_TYPESAFE_BY_RCU, refusals);
 * shh_own_op: a shrink, a grace period, or an own object misused;
 * shh_own_alloc_zero: a ctor cache's MM_ZERO call, refused; shh_own_check:
 * objcache_own_check of each, their slabs' spans (*objs, *pages, the
 * heap's large objects and pages they take). */
static inline uint8_t shh_ctor_byte(uintptr_t obj, size_t i)
{
	return (uint8_t)((obj >> 4) * 0x9d + i * 0x3b + 0x5a);
}
void shh_ctor(void *obj);
struct mspan;
bool shh_admit_own(struct spanheap_harness *h, void *p, size_t size,
                   size_t align, unsigned what, const struct mspan *s);
/* Adds o (own and ctor set) to the model, filled past its ctor's bytes. */
void shh_admit_filled(struct spanheap_harness *h, struct shh_obj o);
uint8_t shh_fill_next(struct spanheap_harness *h); /* a new object's fill */
bool shh_own_make(struct spanheap_harness *h, unsigned k, uint64_t a,
                  uint64_t r);
bool shh_own_op(struct spanheap_harness *h, unsigned k, uint64_t r);
bool shh_own_alloc_zero(struct spanheap_harness *h, unsigned k, unsigned flags);
bool shh_own_check(struct spanheap_harness *h, size_t *objs, size_t *pages);
/* The live cache slot k a picks, or SHH_NCACHES (cache.c). */
unsigned shh_live_cache(struct spanheap_harness *h, uint64_t a);
/* True if the last panic's message holds what. */
bool shh_panic_says(const char *what);
/* SHH_BULK (spanheap_harness_bulk.c). */
bool shh_bulk(struct spanheap_harness *h, uint64_t a, uint64_t b);

/* The operations of spanheap_harness_check.c, run outside shh_step's
 * panic catch (they catch their own). */
bool shh_bad_free(struct spanheap_harness *h, uint64_t b);
bool shh_double_free(struct spanheap_harness *h, uint64_t b);
/* SHH_FAIL: failure injection armed (mostly a good attribute, which must
 * read back; at times a bad one, refused) or disarmed. SHH_SCAVENGE: a
 * batch of the object or metadata heap, or the latter's release-all. */
bool shh_fail_op(struct spanheap_harness *h, uint64_t a, uint64_t b);
bool shh_scavenge(struct spanheap_harness *h, uint64_t b);
/* Every live object's usable size as handed out, and its contents. */
bool shh_check_live(struct spanheap_harness *h);

#endif

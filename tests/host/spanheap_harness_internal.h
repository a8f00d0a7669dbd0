/*
 * tests/host/spanheap_harness_internal.h: what the span heap harness's
 * files share: spanheap_harness.c (the allocation calls),
 * spanheap_harness_model.c (the model) and spanheap_harness_check.c
 * (misuse, the live objects, the checker, the drain). Not for the
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
};

/* Checks a new object p of size bytes, asked aligned to align, against
 * the model (what: enum shh_admit_flags), then adds it, filled. */
bool shh_admit(struct spanheap_harness *h, void *p, size_t size, size_t align,
               unsigned what);

/* The offset of the first byte of [p, p + n) that is not v, or n. */
size_t shh_first_not(const void *p, size_t n, uint8_t v);

/* Writes "step N (CPU c): ..." into h->err; returns false. */
__attribute__((format(printf, 2, 3))) bool shh_fail(struct spanheap_harness *h,
                                                    const char *fmt, ...);

/* splitmix64's finaliser: independent bits from one argument. */
uint64_t shh_mix(uint64_t z);

/* False (h->err) if object o's usable bytes are not all its fill byte. */
bool shh_verify(struct spanheap_harness *h, const struct shh_obj *o);

/* Drops live object i from the model (freed, or moved by realloc). */
void shh_forget(struct spanheap_harness *h, size_t i);

/* The operations of spanheap_harness_check.c, run outside shh_step's
 * panic catch (they catch their own). */
bool shh_bad_free(struct spanheap_harness *h, uint64_t b);
bool shh_double_free(struct spanheap_harness *h, uint64_t b);
/* Every live object's usable size as handed out, and its contents. */
bool shh_check_live(struct spanheap_harness *h);

#endif

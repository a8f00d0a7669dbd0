/*
 * tests/host/palloc_harness_internal.h: what the palloc harness's files
 * share: palloc_harness.c (set-up, the good calls against the model, the
 * comparison) and palloc_harness_misuse.c (the bad calls). Not for the
 * harness's users (palloc_model.h).
 */
#ifndef TESTS_HOST_PALLOC_HARNESS_INTERNAL_H
#define TESTS_HOST_PALLOC_HARNESS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "palloc_model.h"

/* Writes "step N: ..." into h->err; returns false. */
__attribute__((format(printf, 2, 3))) bool harness_fail(struct harness *h,
                                                        const char *fmt, ...);

/* The harness's lock around a call (when it runs with one); after a
 * caught panic, the lock the call ran under is still ours. */
unsigned long harness_lock(struct harness *h);
void harness_unlock(struct harness *h, unsigned long irq);
void harness_unlock_after_panic(struct harness *h);

/* The address of page pi of the arena. */
uintptr_t harness_addr(const struct harness *h, size_t pi);

/* Takes snapshot k (0 or 1) of the allocator's words; its length in *len. */
bool harness_snap(struct harness *h, int k, size_t *len);

/* False (h->err) if the allocator differs from snapshot 0 (len0 words). */
bool harness_unchanged(struct harness *h, size_t len0, const char *what);

/* The bad calls: H_BAD_FREE and H_BAD_CALL. */
bool harness_bad_free(struct harness *h, uint64_t a, uint64_t b);
bool harness_bad_call(struct harness *h, uint64_t a, uint64_t b);

#endif

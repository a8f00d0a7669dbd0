/*
 * tests/kernel/mheap_ctx_util.h: what the kernel's page-heap concurrency
 * tests share (mheap_ctx_test.c, mheap_storm_test.c): a generator, the
 * owner pattern written at the start of each page of a run and its check,
 * a run of pages, and a heap of their own.
 */
#ifndef TESTS_KERNEL_MHEAP_CTX_UTIL_H
#define TESTS_KERNEL_MHEAP_CTX_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/mheap.h"

/* A run of pages some owner holds. */
struct irq_slot {
	uint8_t *p;
	size_t n;
};

/* A small xorshift generator; each user keeps its own state. */
static inline uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The owner pattern: one word at the start of each page. */
static inline uint64_t tag_of(unsigned owner, const void *p, size_t i)
{
	return ((uint64_t)owner << 56) ^ ((uintptr_t)p + i * MM_PAGE_SIZE);
}

static inline void fill(uint8_t *p, size_t n, unsigned owner)
{
	for (size_t i = 0; i < n; i++)
		*(uint64_t *)(p + i * MM_PAGE_SIZE) = tag_of(owner, p, i);
}

/* The pages whose word is not the owner's. */
static inline size_t bad_pages(const uint8_t *p, size_t n, unsigned owner)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += *(const uint64_t *)(p + i * MM_PAGE_SIZE) !=
		       tag_of(owner, p, i);
	return bad;
}

/* A heap of its own: arena_bytes of arena, reserve pages of reserve. */
static inline bool ctx_heap(struct mheap *h, size_t arena_bytes, size_t reserve)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = arena_bytes;
	cfg.reserve_pages = reserve;
	return mheap_init(h, &cfg);
}

#endif

/*
 * tests/kernel/kasan_util.h: what the KASAN tests (kasan_test.c,
 * kasan_storm_test.c, both instrumented) share: a pattern written and
 * read back through checked accesses, and the shadow's fit to an object
 * (a guarded object's: none to fit).
 */
#ifndef TESTS_KERNEL_KASAN_UTIL_H
#define TESTS_KERNEL_KASAN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/string.h"

/* Byte i of an object with seed s. */
static inline uint8_t pat(size_t i, unsigned s)
{
	return (uint8_t)(i * 131 + s);
}

/* Fills [p, +n) through byte, word and checked memset/memcpy stores, then
 * reads it back through bytes and words; false if it differs. */
static inline bool touch(uint8_t *p, size_t n, unsigned s)
{
	memset(p, 0x5a, n);
	for (size_t i = 0; i < n; i++)
		p[i] = pat(i, s);
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		*(volatile uint64_t *)(p + i) = w;
	}
	for (size_t i = 0; i < n; i++)
		if (((volatile uint8_t *)p)[i] != pat(i, s))
			return false;
	return true;
}

/* True if [p, +n) holds the pattern of seed s (checked reads). */
static inline bool holds(const uint8_t *p, size_t n, unsigned s)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(i, s))
			return false;
	return true;
}

/* The shadow says [p, +n) accessible and byte n not: a partial granule
 * of n % 8 bytes, or (a multiple of 8) the red zone, which a poison heap
 * always leaves past the bytes asked under 32 KiB; false if not. */
static inline bool shadow_fits(const uint8_t *p, size_t n)
{
	/* A guarded object (mm.guard) lies outside the arena, which alone
	 * has a shadow: its guard pages and canary check it instead. */
	if (spanheap_guard_owns(&kspanheap.guard, p))
		return true;
	bool mapped;
	for (size_t i = 0; i < n; i += 8)
		if (kasan_shadow_of(p + i, &mapped) != 0 && i + 8 <= n)
			return false;
	int8_t last = kasan_shadow_of(p + (n & ~(size_t)7), &mapped);
	return mapped && last == (n % 8 ? (int8_t)(n % 8) : KASAN_REDZONE);
}

#endif

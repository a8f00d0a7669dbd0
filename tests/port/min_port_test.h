/*
 * tests/port/min_port_test.h: what the minimal port's two test files
 * share (min_port_test.c defines it): the one heap they all use, set up
 * once as docs/PORTING.md section 3 says, and the byte pattern and checks
 * the tests run on it. Tests only.
 */
#ifndef TESTS_PORT_MIN_PORT_TEST_H
#define TESTS_PORT_MIN_PORT_TEST_H

#include <stddef.h>

#include "mm/mm.h"

#define ARENA_BYTES ((size_t)16 << 20) /* 8 chunks */

/* The page heap under test_heap_get's span heap. */
extern struct mheap test_heap;

/* The heap as PORTING.md section 3 sets it up, on the first call; NULL
 * (and a failure) if it could not be. Every test calls it first, so that
 * the heaps hold the port's first reservations. */
struct spanheap *test_heap_get(void);

/* Writes obj[0, n) with a pattern that depends on obj and the offset. */
void test_fill(void *obj, size_t n);

/* The offset of the first byte of obj[0, n) that is not test_fill(tag)'s,
 * or n. */
size_t test_first_bad(const void *obj, const void *tag, size_t n);

/* test_heap's pages in use. */
size_t test_in_use_pages(void);

/* After a release: no object, no span and no large object left. */
void test_expect_nothing_held(struct spanheap *sh);

/* Runs the span heap's and the page heap's checkers. */
void test_check_heaps(struct spanheap *sh);

#endif

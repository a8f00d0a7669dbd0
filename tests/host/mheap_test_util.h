/*
 * tests/host/mheap_test_util.h: helpers shared by the page heap's host
 * tests and, through spanheap_test_util.h, the span heap's: giving a
 * heap's reservations back to the port, and expecting a checker's panic
 * by what its message says.
 */
#ifndef TESTS_HOST_MHEAP_TEST_UTIL_H
#define TESTS_HOST_MHEAP_TEST_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "mm_port_posix.h"

/* Gives h's reservations back to the port (the arena, the span table and
 * the page allocator's metadata). No thread may use h any more. */
static inline void mh_release(struct mheap *h)
{
	mm_port_release((void *)h->arena_base, h->cfg.arena_bytes);
	mm_port_release((void *)(h->spanmap - MHEAP_SPANMAP_SKEW),
	                h->arena_pages * sizeof(void *) + MM_PAGE_SIZE);
	mm_port_release((void *)h->pages.meta_base, h->pages.meta_bytes);
}

/* Fails the current test at file:line unless a panic fired and its
 * message holds the fragment printf makes of fmt and ap. */
static inline void mh_expect_panic_saying(const char *file, int line,
                                          bool fired, const char *fmt,
                                          va_list ap)
{
	char want[256];
	vsnprintf(want, sizeof(want), fmt, ap);
	if (!fired)
		ktest_fail_at(file, line, "check missed: %s", want);
	else if (!strstr(mm_port_last_panic(), want))
		ktest_fail_at(file, line, "check said \"%s\", not \"%s\"",
		              mm_port_last_panic(), want);
}

#endif

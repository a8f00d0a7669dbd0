/*
 * tests/host/mheap_test_util.h: helpers shared by the page heap's host
 * tests and, through spanheap_test_util.h, the span heap's: giving a
 * heap's reservations back to the port, making one, running its checker
 * behind a panic catch, expecting a checker's panic by what its message
 * says, and reading resident memory.
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
	                mheap_spanmap_bytes(h->arena_pages));
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

/* Makes h over a fresh arena of chunks chunks, with flags (struct
 * mheap_config's) and the low watermark given, the rest default. */
static inline bool mh_new(struct mheap *h, size_t chunks, unsigned flags,
                          size_t watermark)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = chunks * PALLOC_CHUNK_BYTES;
	cfg.flags = flags;
	cfg.low_watermark_pages = watermark;
	return mheap_init(h, &cfg);
}

/* True if mheap_check(h) panicked (caught). */
__attribute__((noinline, unused)) static bool mh_check_panics(struct mheap *h)
{
	return MM_PORT_PANICS(mheap_check(h));
}

/* Fails the current test, saying what and the panic, if h's checker
 * finds a fault. */
#define MH_CHECK(h, what)                                                   \
	do {                                                                \
		if (mh_check_panics(h))                                     \
			ktest_fail_at(__FILE__, __LINE__, "%s: %s", (what), \
			              mm_port_last_panic());                \
	} while (0)

/* This process's resident pages (/proc/self/statm); 0 if unreadable. */
static inline size_t mh_resident_pages(void)
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res;
}

/* True if every one of the n bytes at p is v. */
static inline bool mh_all_bytes(const void *p, size_t n, unsigned char v)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != v)
			return false;
	return true;
}

/* The page counts and growths of two statistics are equal: a refused or
 * failed call changed nothing. */
static inline bool same_stats(const struct mheap_stats *a,
                              const struct mheap_stats *b)
{
	return a->grown_pages == b->grown_pages &&
	       a->in_use_pages == b->in_use_pages &&
	       a->free_backed_pages == b->free_backed_pages &&
	       a->free_scav_pages == b->free_scav_pages &&
	       a->n.grows == b->n.grows;
}

#endif

/*
 * tests/host/spanheap_test_util.h: what the span heap's host tests share:
 * from spanheap_heap_util.h, making a page heap and a span heap over a
 * small arena and giving the reservations back; the page heap's pages in
 * use, the all-spans array's growth, the logs of spanheap_where_log and
 * spanheap_dump captured; and, from spanheap_panic_util.h, the checker
 * and the tests' calls behind a panic catch.
 */
#ifndef TESTS_HOST_SPANHEAP_TEST_UTIL_H
#define TESTS_HOST_SPANHEAP_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../mm/spanheap.h"
#include "../../mm/spanheap_usercopy.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"
#include "spanheap_heap_util.h"
#include "spanheap_panic_util.h"
#include "spanheap_test_pages.h"

/* True if every one of the n bytes at p is v (spanheap_test.c and
 * spanheap_realloc_test.c; mh_all_bytes under their name). */
static inline bool all_bytes(const void *p, size_t n, unsigned char v)
{
	return mh_all_bytes(p, n, v);
}

/* True if sh's next span makes its all-spans array grow: no free struct,
 * and no room for another page of them, which for a thread caller (not
 * atomic) means past three quarters of the array (structs_reserve grows
 * it ahead of need) and for an atomic caller past its end. */
static inline bool sh_spans_must_grow(const struct spanheap *sh, bool atomic)
{
	size_t cap = sh->spans->cap;
	size_t room = atomic ? cap : cap - cap / 4;
	return sh->nstructs_free == 0 &&
	       sh->spans->len + SH_STRUCTS_PER_PAGE > room;
}

/* Allocates objects of size bytes (a large size: a span each) into v[*n],
 * v[*n + 1], ... until sh's next thread allocation makes its all-spans
 * array grow. False if an allocation fails or v's max entries run out. */
static inline bool sh_fill_until_growth(struct spanheap *sh, size_t size,
                                        void **v, size_t max, size_t *n)
{
	while (!sh_spans_must_grow(sh, false)) {
		if (*n == max || !(v[*n] = spanheap_alloc(sh, size, 0)))
			return false;
		(*n)++;
	}
	return true;
}

/* A function the tests look for, by its address, in recorded stacks. GCC's
 * noipa: with noinline alone, gcc -O3 made site_a.constprop.0, a copy
 * for a constant size elsewhere in the text, called in its place, and the
 * stacks named no address inside site_a (spanheap_traces failed at -O3
 * only). Clang has no noipa and (14, -O3) made no such copy. */
#ifdef __clang__
#define SH_SITE __attribute__((noinline))
#else
#define SH_SITE __attribute__((noipa))
#endif

/* Defines name(size), an allocation site of its own: out of line, the
 * only caller of the heap in its body and no tail call, so that poison
 * mode's records give each site's objects one stack of their own (the
 * traces' tests group by it). */
#define SH_ALLOC_SITE(name, heap)                                     \
	SH_SITE static void *name(size_t size)                        \
	{                                                             \
		void *p_ = spanheap_alloc((heap), size, 0);           \
		__asm__ volatile("" ::: "memory"); /* no tail call */ \
		return p_;                                            \
	}

/* spanheap_where_log(sh, p)'s lines into buf (size bytes), none on
 * stderr (spanheap_where_test.c, spanheap_freed_test.c). */
static inline void sh_where_log(struct spanheap *sh, const void *p, char *buf,
                                size_t size)
{
	mm_port_set_quiet(true);
	mm_port_log_capture(buf, size);
	spanheap_where_log(sh, p);
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
}

/* spanheap_dump(sh)'s lines into buf (size bytes), none on stderr
 * (spanheap_stats_test.c, spanheap_meta_test.c, spanheap_meta_scav_test.c). */
static inline void sh_dump_log(struct spanheap *sh, char *buf, size_t size)
{
	mm_port_set_quiet(true);
	mm_port_log_capture(buf, size);
	spanheap_dump(sh);
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
}

/* n objects of size bytes into p[0..n); false if one could not be had. */
static inline bool sh_alloc_n(struct spanheap *sh, void **p, size_t n,
                              size_t size)
{
	for (size_t i = 0; i < n; i++)
		if (!(p[i] = spanheap_alloc(sh, size, 0)))
			return false;
	return true;
}

/* Hands every simulated CPU's cached spans back: ncpus CPUs from 0; the
 * calling thread ends on CPU 0. */
static inline void sh_flush_cpus(struct spanheap *sh, unsigned ncpus)
{
	for (unsigned cpu = 0; cpu < ncpus; cpu++) {
		mm_port_set_cpu(cpu);
		spanheap_flush_cache(sh);
	}
	mm_port_set_cpu(0);
}

/* Sweep cycles sh has run (its statistics' count); UINT64_MAX if the
 * statistics' buffer could not be had. */
static inline uint64_t sh_cycles(struct spanheap *sh)
{
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	if (!st)
		return UINT64_MAX;
	spanheap_stats(sh, st);
	uint64_t n = st->n.cycles;
	free(st);
	return n;
}

/* Frees the first n of p (NULLing each) from CPU 1, whose flush then
 * makes them pending frees; back on CPU 0 after. */
static inline void sh_free_first_from_cpu1(struct spanheap *sh, void **p,
                                           size_t n)
{
	mm_port_set_cpu(1);
	for (size_t i = 0; i < n; i++) {
		spanheap_free(sh, p[i]);
		p[i] = NULL;
	}
	spanheap_flush_cache(sh);
	mm_port_set_cpu(0);
}

/* The hardened copy check of n bytes at p to the user, quiet, its log
 * lines captured into buf (heap_mix_test.c, objcache_mix_test.c). */
static inline enum spanheap_copy_verdict
sh_copy_check_logged(struct spanheap *sh, const void *p, size_t n, char *buf,
                     size_t size)
{
	mm_port_set_quiet(true);
	buf[0] = '\0';
	mm_port_log_capture(buf, size);
	enum spanheap_copy_verdict v =
	        spanheap_check_copy(sh, p, n, SPANHEAP_COPY_TO_USER);
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
	return v;
}

#endif

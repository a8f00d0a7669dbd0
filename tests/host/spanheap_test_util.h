/*
 * tests/host/spanheap_test_util.h: what the span heap's host tests share:
 * making a page heap and a span heap over a small arena and giving the
 * reservations back, the page heap's pages in use; and, from
 * spanheap_panic_util.h, the checker and the tests' calls behind a panic
 * catch.
 *
 * The span heap has no destroy call: a test's heap lives until the test
 * gives its arena, span table and palloc metadata back to the port, and
 * those of the span heap's metadata heap (sh_heap_release), after
 * stopping any sweeper or scavenger it started.
 */
#ifndef TESTS_HOST_SPANHEAP_TEST_UTIL_H
#define TESTS_HOST_SPANHEAP_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../mm/spanheap.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"
#include "spanheap_panic_util.h"
#include "spanheap_test_pages.h"

/* True if every one of the n bytes at p is v (spanheap_test.c and
 * spanheap_realloc_test.c; mh_all_bytes under their name). */
static inline bool all_bytes(const void *p, size_t n, unsigned char v)
{
	return mh_all_bytes(p, n, v);
}

/* 1 GiB: room for any test, and mostly untouched address space. */
#define SH_ARENA_BYTES ((size_t)1 << 30)

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

/* Grows h by a chunk, all free: a page taken and given back. A fresh span
 * heap's page heap with no reserve has grown nothing (the span heap's own
 * pages are its metadata heap's, and its set-up grows the object heap to
 * its reserve only), and an MM_NO_GROW allocation needs grown pages. */
static inline void sh_heap_grow(struct mheap *h)
{
	void *p = mheap_alloc_pages(h, 1, 0);
	if (p)
		mheap_free_pages(h, p, 1);
}

/* Makes h with the page-heap configuration hc and sh over it with sc (NULL:
 * the default). False if either fails. */
static inline bool sh_heap_new_with(struct mheap *h, struct spanheap *sh,
                                    const struct mheap_config *hc,
                                    const struct spanheap_config *sc)
{
	if (!mheap_init(h, hc))
		return false;
	struct spanheap_config dc;
	spanheap_config_default(&dc);
	return spanheap_init(sh, h, sc ? sc : &dc);
}

/* Makes h over a fresh arena of arena_bytes (a chunk multiple) and sh over
 * it, both with the default configuration. */
static inline bool sh_heap_new(struct mheap *h, struct spanheap *sh,
                               size_t arena_bytes)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = arena_bytes;
	return sh_heap_new_with(h, sh, &hc, NULL);
}

/* Makes h over an arena of chunks chunks with no atomic reserve (so that
 * every page can be used up) and sh over it, the rest default: the start
 * of the out-of-memory tests. */
static inline bool sh_heap_tight(struct mheap *h, struct spanheap *sh,
                                 size_t chunks)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = chunks * PALLOC_CHUNK_BYTES;
	hc.reserve_pages = 0;
	return sh_heap_new_with(h, sh, &hc, NULL);
}

/* A heap in poison mode over arena_bytes with no atomic reserve (every
 * page can be used up), this thread on CPU 0: the start of the tests of
 * what poison mode's side tables and records take from a full heap. */
static inline bool sh_heap_tight_poison(struct mheap *h, struct spanheap *sh,
                                        size_t arena_bytes)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = arena_bytes;
	hc.reserve_pages = 0;
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	if (!sh_heap_new_with(h, sh, &hc, &sc))
		return false;
	mm_port_set_cpu(0);
	return true;
}

/* sh_heap_new over SH_ARENA_BYTES, and this thread on CPU 0: the start
 * of the misuse and checker tests. */
static inline bool sh_heap_fresh(struct mheap *h, struct spanheap *sh)
{
	if (!sh_heap_new(h, sh, SH_ARENA_BYTES))
		return false;
	mm_port_set_cpu(0);
	return true;
}

/* sh_heap_fresh with sh's configuration sc: over SH_ARENA_BYTES, this
 * thread on CPU 0. */
static inline bool sh_heap_fresh_with(struct mheap *h, struct spanheap *sh,
                                      const struct spanheap_config *sc)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	if (!sh_heap_new_with(h, sh, &hc, sc))
		return false;
	mm_port_set_cpu(0);
	return true;
}

/* sh_heap_fresh, with sh in poison mode if poison (spanheap_config.h):
 * the start of the poison, red-zone and unfolded-count tests. */
/* The largest request a poison heap serves from class cls: a byte less
 * than its objects (an exact fit takes the next class, for its red zone:
 * mm/spanheap.c's poison_class). */
static inline size_t sh_poison_size(unsigned cls)
{
	return sizeclass_info[cls].size - 1;
}

static inline bool sh_heap_fresh_poison(struct mheap *h, struct spanheap *sh,
                                        bool poison)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = poison;
	return sh_heap_fresh_with(h, sh, &sc);
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

/* The bytes sh's metadata heap reserved (mh_release gives them back): its
 * arena, its span table and its palloc's metadata. */
static inline size_t sh_meta_reserved_bytes(const struct spanheap *sh)
{
	const struct mheap *m = &sh->meta;
	return m->cfg.arena_bytes + m->pages.meta_bytes +
	       m->arena_pages * sizeof(void *) + MM_PAGE_SIZE;
}

/* Gives the reservations of sh's metadata heap (mm/spanheap_meta.c) back
 * to the port if a set-up made one (a failed one keeps them), and zeroes
 * it, so that a later test's failed set-up does not give them back twice
 * nor take that heap again. No thread may use it any more. */
static inline void sh_meta_release(struct spanheap *sh)
{
	if (sh->meta.arena_pages) {
		mh_release(&sh->meta);
		memset(&sh->meta, 0, sizeof(sh->meta));
	}
}

/* Gives h's reservations back to the port, and sh's metadata heap's
 * (sh_meta_release). No thread may use h or sh any more. */
static inline void sh_heap_release(struct mheap *h, struct spanheap *sh)
{
	mh_release(h);
	sh_meta_release(sh);
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

#endif

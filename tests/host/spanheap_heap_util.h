/*
 * tests/host/spanheap_heap_util.h: making a page heap and a span heap
 * over it for a host test (fresh, tight, in poison mode), and giving
 * their reservations back (sh_heap_release), the metadata heap's too.
 * Included by spanheap_test_util.h, which the tests include.
 *
 * The span heap has no destroy call: a test's heap lives until the test
 * gives its arena, span table and palloc metadata back to the port, and
 * those of the span heap's metadata heap (sh_heap_release), after
 * stopping any sweeper or scavenger it started.
 */
#ifndef TESTS_HOST_SPANHEAP_HEAP_UTIL_H
#define TESTS_HOST_SPANHEAP_HEAP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "../../mm/spanheap.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

/* 1 GiB: room for any test, and mostly untouched address space. */
#define SH_ARENA_BYTES ((size_t)1 << 30)

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

/* The largest request a poison heap serves from class cls: a byte less
 * than its objects (an exact fit takes the next class, for its red zone:
 * mm/spanheap.c's poison_class). */
static inline size_t sh_poison_size(unsigned cls)
{
	return sizeclass_info[cls].size - 1;
}

/* sh_heap_fresh, with sh in poison mode if poison (spanheap_config.h):
 * the start of the poison, red-zone and unfolded-count tests. */
static inline bool sh_heap_fresh_poison(struct mheap *h, struct spanheap *sh,
                                        bool poison)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = poison;
	return sh_heap_fresh_with(h, sh, &sc);
}

/* The bytes sh's metadata heap reserved (mh_release gives them back): its
 * arena, its span table and its palloc's metadata. */
static inline size_t sh_meta_reserved_bytes(const struct spanheap *sh)
{
	const struct mheap *m = &sh->meta;
	return m->cfg.arena_bytes + m->pages.meta_bytes +
	       mheap_spanmap_bytes(m->arena_pages);
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

#endif

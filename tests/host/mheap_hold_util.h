/*
 * tests/host/mheap_hold_util.h: a page heap made full on purpose. Every
 * page of the arena taken but a hole, which the next allocations get,
 * then every page given back: for the tests of what a heap does when it
 * has no memory left (spanheap_fail_test.c, spanheap_init_fail_test.c,
 * spanheap_structs_test.c).
 */
#ifndef TESTS_HOST_MHEAP_HOLD_UTIL_H
#define TESTS_HOST_MHEAP_HOLD_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "../../mm/mheap.h"
#include "mm_port_posix.h"

enum { MH_HOLD_MAX = 256 };

/* The blocks taken, largest first, and their pages. */
struct mh_hold {
	void *blk[MH_HOLD_MAX];
	size_t pages[MH_HOLD_MAX];
	size_t n;
};

/* Takes every page of h's arena but a hole of hole_pages (0: none) into
 * hd, halving the block size down to a page. False (with what it took
 * held, for mh_hold_release) if the hole could not be had or hd filled
 * first. The heap's refusals are not logged. */
static inline bool mh_hold_all_but(struct mheap *h, struct mh_hold *hd,
                                   size_t hole_pages)
{
	void *hole = NULL;
	hd->n = 0;
	if (hole_pages && !(hole = mheap_alloc_pages(h, hole_pages, 0)))
		return false;
	mm_port_set_quiet(true);
	for (size_t k = h->arena_pages; k; k /= 2) {
		void *p;
		while (hd->n < MH_HOLD_MAX &&
		       (p = mheap_alloc_pages(h, k, 0))) {
			hd->blk[hd->n] = p;
			hd->pages[hd->n++] = k;
		}
	}
	mm_port_set_quiet(false);
	if (hole)
		mheap_free_pages(h, hole, hole_pages);
	return hd->n < MH_HOLD_MAX;
}

/* Gives back every block hd holds. */
static inline void mh_hold_release(struct mheap *h, struct mh_hold *hd)
{
	while (hd->n)
		mheap_free_pages(h, hd->blk[hd->n - 1], hd->pages[hd->n - 1]),
		        hd->n--;
}

#endif

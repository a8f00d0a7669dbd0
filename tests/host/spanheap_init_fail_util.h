/* What the set-up failure tests share (spanheap_fail_test.c,
 * spanheap_init_fail_test.c): an init whose port refuses its nth mapping,
 * n = 1, 2, ... until the init works. */
#ifndef TESTS_HOST_SPANHEAP_INIT_FAIL_UTIL_H
#define TESTS_HOST_SPANHEAP_INIT_FAIL_UTIL_H

#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

/* spanheap_init(sh, h, cfg) with the port quiet and fail(nth) armed
 * around it (mm_port_fail_map_at or mm_port_fail_reserve: the port's nth
 * mapping or reservation refused); fails the current test unless h has
 * used pages in use after it, worked or not (an init takes none of the
 * object heap's pages). */
static inline bool sh_init_port_failing(struct spanheap *sh, struct mheap *h,
                                        const struct spanheap_config *cfg,
                                        void (*fail)(unsigned), unsigned nth,
                                        size_t used)
{
	mm_port_set_quiet(true);
	fail(nth);
	bool up = spanheap_init(sh, h, cfg);
	fail(0);
	mm_port_set_quiet(false);
	KEXPECT_EQ(sh_in_use_pages(h), used);
	return up;
}

/*
 * Runs spanheap_init(sh, h, cfg) with the port refusing its nth mapping,
 * n = 1, 2, ..., until it works (true; false if 63 tries failed). After
 * each try the object heap has used pages in use; a try that failed
 * saying said (mm_port_last_log) has given every metadata page back and
 * kept only the metadata heap's reservations (spanheap_meta.c,
 * "Limits"), which sh->meta names: given back here after every failed
 * try that made them, so the port holds what it held before the try.
 * Such a try also leaves no free backed page in the metadata heap (its
 * frames back to the port: spanheap_meta_undo), no frames peer and no
 * heap served by h's scavenger (pointers to a heap its owner may zero),
 * and a sweeper start refused
 * (no span array: its cycles would panic in the thread). *seen: a try
 * failed saying said.
 */
static inline bool sh_init_until_maps_suffice(struct spanheap *sh,
                                              struct mheap *h,
                                              const struct spanheap_config *cfg,
                                              size_t used, const char *said,
                                              bool *seen)
{
	*seen = false;
	for (unsigned nth = 1; nth < 64; nth++) {
		size_t before = mm_port_reserved_bytes();
		if (sh_init_port_failing(sh, h, cfg, mm_port_fail_map_at, nth,
		                         used))
			return true;
		bool hit = strstr(mm_port_last_log(), said) != NULL;
		if (hit) {
			*seen = true;
			KEXPECT_EQ(sh_in_use_pages(&sh->meta), 0);
			struct mheap_stats ms;
			mheap_stats(&sh->meta, &ms);
			KEXPECT_EQ(ms.free_backed_pages, 0);
			KEXPECT(h->frames_peer == NULL);
			KEXPECT(h->scav_also == NULL);
			mm_port_set_quiet(true);
			KEXPECT(!spanheap_sweeper_start(sh));
			mm_port_set_quiet(false);
			KEXPECT_EQ(mm_port_reserved_bytes(),
			           before + sh_meta_reserved_bytes(sh));
		}
		sh_meta_release(sh); /* kept by a try that made it */
		if (hit)
			KEXPECT_EQ(mm_port_reserved_bytes(), before);
	}
	return false;
}

#endif

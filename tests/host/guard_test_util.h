/*
 * tests/host/guard_test_util.h: a span heap with a guarded pool for the
 * host tests of the pool and of the features met with it
 * (spanheap_guard_test.c, objcache_guard_test.c, heap_mix_test.c,
 * objcache_mix_test.c): made fresh, and its pool given back.
 */
#ifndef TESTS_HOST_GUARD_TEST_UTIL_H
#define TESTS_HOST_GUARD_TEST_UTIL_H

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_guard.h"
#include "spanheap_test_util.h"

/* A fresh heap sh over h with a pool of slots slots, sampling every
 * interval-th refill or out-of-line allocation; poison mode if poison. */
static inline bool sh_guard_heap_fresh(struct mheap *h, struct spanheap *sh,
                                       unsigned slots, unsigned interval,
                                       bool poison)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.guard_slots = slots;
	sc.guard_interval = interval;
	sc.poison = poison;
	return sh_heap_fresh_with(h, sh, &sc);
}

/* Drains sh's pool (every freed object unmapped), which must then hold
 * nothing, and gives its reservation back; sh itself stays. */
static inline void sh_guard_give_back(struct spanheap *sh)
{
	spanheap_guard_drain(sh);
	KEXPECT_EQ(sh->guard.live, 0);
	KEXPECT_EQ(sh->guard.nfreed, 0);
	mm_port_unreserve((void *)sh->guard.base, sh->guard.bytes);
}

/* sh checked (what: the check's label), its pool given back, then
 * everything released: only the heaps' bookkeeping kept. */
#define SH_GUARD_RELEASE(h, sh, what)           \
	do {                                    \
		SH_CHECK((sh), what);           \
		sh_guard_give_back(sh);         \
		spanheap_release_all(sh);       \
		SH_EXPECT_ONLY_KEPT((h), (sh)); \
		sh_heap_release((h), (sh));     \
	} while (0)

#endif

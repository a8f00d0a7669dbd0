/*
 * A span heap set up twice (mm/spanheap_init.c): a second spanheap_init
 * over a heap that is set up and in use is refused, naming the heap, and
 * leaves it as it was; a heap whose set-up state was given back (the
 * host tests' sh_heap_release), or whose struct holds garbage, can be
 * set up. Until a review the second init zeroed the heap: the first
 * set-up's metadata heap (its reservations, the span structs, the
 * caches' slabs) was lost, and the objects handed out were orphaned.
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* A heap in use (an object out) set up again: refused with a line that
 * names it, nothing reserved, the object still its own. */
KTEST(spanheap_reinit, a_second_init_of_a_live_heap_is_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p != NULL);
	size_t reserved = mm_port_reserved_bytes();
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	mm_port_set_quiet(true);
	bool again = spanheap_init(&sh, &heap, &sc);
	mm_port_set_quiet(false);
	KEXPECT(!again);
	char name[32];
	snprintf(name, sizeof(name), "%p", (void *)&sh);
	KEXPECT(strstr(mm_port_last_log(), name) != NULL);
	KEXPECT(strstr(mm_port_last_log(), "set up") != NULL);
	KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 64);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the refused second init");
	sh_heap_release(&heap, &sh);
}

/* The same refusal when the second init names another page heap: the
 * heap in use is told by its own fields, not by the page heap it is
 * given (a check that also wanted the same page heap let this init zero
 * the live heap; no test tried it). */
KTEST(spanheap_reinit, a_second_init_over_another_page_heap_is_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p != NULL);
	static struct mheap other;
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	KASSERT(mheap_init(&other, &hc));
	size_t reserved = mm_port_reserved_bytes();
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	mm_port_set_quiet(true);
	bool again = spanheap_init(&sh, &other, &sc);
	mm_port_set_quiet(false);
	KEXPECT(!again);
	KEXPECT(strstr(mm_port_last_log(), "set up and in use") != NULL);
	KEXPECT_EQ(mm_port_reserved_bytes(), reserved);
	KEXPECT(sh.heap == &heap);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 64);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the refused init over another page heap");
	mh_release(&other);
	sh_heap_release(&heap, &sh);
}

/* A struct full of garbage (every byte 0xa5: any flag reads as set) is
 * no heap in use: its init works; and so does one of a heap whose set-up
 * was given back (sh_heap_release zeroes its metadata heap). */
KTEST(spanheap_reinit, garbage_or_a_released_heap_can_be_set_up)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	KASSERT(mheap_init(&heap, &hc));
	memset(&sh, 0xa5, sizeof(sh));
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	KASSERT(spanheap_init(&sh, &heap, &sc));
	sh_heap_release(&heap, &sh);
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_cpu(0);
	void *p = spanheap_alloc(&sh, 64, 0);
	KEXPECT(p != NULL);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after an init over a released heap");
	sh_heap_release(&heap, &sh);
}

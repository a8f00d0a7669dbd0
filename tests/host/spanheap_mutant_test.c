/*
 * The span heap's behaviour that a second mutation review of
 * mm/spanheap*.c (one edit at a time: a comparison flipped, a bound moved
 * by one, a store or a check dropped) found that no test would notice.
 * Each test here fails with one such mutant; the commit that added it
 * names the edit. spanheap_edge_test.c holds the first review's.
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Runs stmt expecting a panic whose message holds what; then leaves any
 * pin the panic abandoned. */
#define EXPECT_PANIC(stmt, what)                                           \
	do {                                                               \
		bool fired_ = MM_PORT_PANICS(stmt);                        \
		sh_unpin_after_panic();                                    \
		if (!fired_)                                               \
			ktest_fail_at(__FILE__, __LINE__,                  \
			              "no panic (wanted \"%s\")", (what)); \
		else if (!strstr(mm_port_last_panic(), (what)))            \
			ktest_fail_at(__FILE__, __LINE__,                  \
			              "panic \"%s\" does not say \"%s\"",  \
			              mm_port_last_panic(), (what));       \
	} while (0)

/*
 * A free of the first page past the grown part of the arena (inside the
 * arena, past the span table's last entry) is refused by name, as one in
 * no span. The free's fast path bounds its table index by the entries;
 * one entry further (i <= spanmap_pages) it read a table slot that was
 * never written (NULL) and crashed on it.
 */
KTEST(spanheap_mutant, free_just_past_the_grown_arena)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 16, 0);
	KASSERT(p);
	size_t pages = atomic_load(&sh.spanmap_pages);
	KASSERT(pages * MM_PAGE_SIZE < heap.cfg.arena_bytes);
	void *past = (void *)(heap.arena_base + pages * MM_PAGE_SIZE);
	EXPECT_PANIC(spanheap_free(&sh, past), "in no span");
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap);
}

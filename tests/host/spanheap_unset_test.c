/*
 * A span heap used before spanheap_init (a zeroed struct: a kernel's
 * kmalloc before heap_init): each call that reaches a slow path panics
 * saying so (mm/spanheap_init.c, "Limits"), where until a review it
 * followed the zeroed heap's NULL page heap and faulted. The small
 * allocation's fast path is not told: it faults on the NULL magazines
 * (docs/DESIGN.md says why no check is added there; the kernel's #PF
 * report names that fault: tests/kernel/addrinfo_test.c).
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct spanheap unset; /* zeroed, never set up */

/* A free, a large allocation, a zeroed one, a size: each panics naming
 * the heap and saying it is not set up. A free of NULL is nothing. Before
 * the fix each faulted (UBSan: a member access within a NULL struct
 * mheap, in mheap_span_lookup and alloc_call). */
KTEST(spanheap_unset, slow_paths_of_a_heap_never_set_up_panic_saying_so)
{
	mm_port_set_cpu(0);
	static char obj[64];
	const char *why = "not set up used";
	EXPECT_MISUSE(spanheap_free(&unset, obj), why, &unset);
	EXPECT_MISUSE(spanheap_alloc(&unset, 1 << 20, 0), why, &unset);
	EXPECT_MISUSE(spanheap_alloc(&unset, 64, MM_ZERO), why, &unset);
	EXPECT_MISUSE(spanheap_alloc(&unset, 64, MM_ATOMIC | MM_ZERO), why,
	              &unset);
	EXPECT_MISUSE(spanheap_usable_size(&unset, obj), why, &unset);
	EXPECT_MISUSE(spanheap_realloc(&unset, obj, 128, 0), why, &unset);
	KEXPECT(spanheap_free_class(&unset, NULL, 1));
	spanheap_free(&unset, NULL); /* nothing, as free(NULL) */
}

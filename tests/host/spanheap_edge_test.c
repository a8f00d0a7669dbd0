/*
 * The span heap's boundaries that a mutation review of mm/spanheap*.c
 * found untested: each test here fails when one comparison or one check
 * of the heap is changed by a step (the commit that added each names the
 * mutant). calloc's overflow, realloc's "half or more stays", the atomic
 * large allocation's page limit, an atomic realloc that must not grow in
 * place, a large span's free racing another, the sweeper's accounting
 * of large spans, the line that names a refused alignment, a realloc
 * with MM_NO_GROW that grows in place without growing the heap, and a
 * caller in atomic context that forgot MM_ATOMIC.
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE
/* A large object: past SC_MAX_SIZE, a span of its own. */
#define LARGE_PAGES (SC_MAX_SIZE / PG + 2)

static struct mheap heap;
static struct spanheap sh;

/*
 * A calloc whose n * size does not fit a size_t gets NULL, not the
 * object of the product's low bits: 2^32 * 2^32 wraps to 0 and
 * (2^60 + 1) * 16 to 16, each a size the heap would hand out.
 */
KTEST(spanheap_edge, calloc_overflow_is_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KEXPECT(spanheap_calloc(&sh, (size_t)1 << 32, (size_t)1 << 32, 0) ==
	        NULL);
	KEXPECT(spanheap_calloc(&sh, ((size_t)1 << 60) + 1, 16, 0) == NULL);
	KEXPECT(spanheap_calloc(&sh, SIZE_MAX, 2, 0) == NULL);
	/* The same sizes that fit are served. */
	void *p = spanheap_calloc(&sh, 1, 16, 0);
	KEXPECT(p != NULL);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the callocs");
	sh_heap_release(&heap, &sh);
}

/*
 * A small object realloc'ed to exactly half its class stays where it is
 * (the rule is "half or more"); one byte class less moves it.
 */
KTEST(spanheap_edge, realloc_to_exactly_half_stays)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && spanheap_usable_size(&sh, p) == 64);
	memset(p, 7, 64);
	KASSERT(spanheap_realloc(&sh, p, 32, 0) == p);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 64);
	void *q = spanheap_realloc(&sh, p, 16, 0);
	KASSERT(q);
	KEXPECT(q != p);
	KEXPECT_EQ(spanheap_usable_size(&sh, q), 16);
	KEXPECT_EQ(((unsigned char *)q)[15], 7);
	spanheap_free(&sh, q);
	SH_CHECK(&sh, "after the reallocs");
	sh_heap_release(&heap, &sh);
}

/*
 * An atomic caller may take MHEAP_ATOMIC_MAX_PAGES pages at once,
 * alignment pages included: exactly that many is served, one more is
 * refused. The page heap has the pages free (a thread allocation grew it
 * and gave them back), so only the limit decides.
 */
KTEST(spanheap_edge, atomic_large_up_to_the_page_limit)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *warm = spanheap_alloc(&sh, 4 * MHEAP_ATOMIC_MAX_PAGES * PG, 0);
	KASSERT(warm);
	spanheap_free(&sh, warm);
	void *p = spanheap_alloc(&sh, MHEAP_ATOMIC_MAX_PAGES * PG, MM_ATOMIC);
	KEXPECT(p != NULL);
	/* 60 pages aligned to 5: 4 pages of slack, 64 in all. */
	void *a = spanheap_alloc_aligned(&sh, (MHEAP_ATOMIC_MAX_PAGES - 4) * PG,
	                                 5 * PG, MM_ATOMIC);
	KEXPECT(a != NULL);
	KEXPECT((uintptr_t)a % (5 * PG) == 0);
	mm_port_set_quiet(true);
	KEXPECT(spanheap_alloc(&sh, (MHEAP_ATOMIC_MAX_PAGES + 1) * PG,
	                       MM_ATOMIC) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, (MHEAP_ATOMIC_MAX_PAGES - 3) * PG,
	                               5 * PG, MM_ATOMIC) == NULL);
	mm_port_set_quiet(false);
	spanheap_free(&sh, p);
	spanheap_free(&sh, a);
	SH_CHECK(&sh, "after the atomic allocations");
	sh_heap_release(&heap, &sh);
}

/*
 * Two frees of one large object that race: both looked its span up while
 * it was live (spanheap_span_of), and the first has given it back by the
 * time the second frees it. The second is caught by the compare-and-swap
 * on the span's state, and nothing is given back twice.
 */
KTEST(spanheap_edge, racing_second_free_of_a_large_object)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, LARGE_PAGES * PG, 0);
	KASSERT(p);
	uint32_t idx;
	struct mspan *s = spanheap_span_of(&sh, p, &idx, "free");
	KASSERT(atomic_load(&s->state) == MSPAN_LARGE);
	spanheap_free(&sh, p);
	size_t in_use = sh_in_use_pages(&heap);
	bool fired = MM_PORT_PANICS(spanheap_large_free(&sh, s, p));
	KEXPECT(fired);
	sh_unpin_after_panic();
	KEXPECT(fired && strstr(mm_port_last_panic(),
	                        "a large span freed twice") != NULL);
	KEXPECT_EQ(sh_in_use_pages(&heap), in_use);
	SH_CHECK(&sh, "after the racing free");
	sh_heap_release(&heap, &sh);
}

/*
 * A sweep cycle leaves large spans alone: on no list, they have nothing
 * to sweep, and no one reads their sweepgen (a span is claimed only off
 * its class's lists), which stays the one it was made with; none is
 * counted in swept_spans. Until a review each cycle walked every span
 * struct to move large spans' sweepgens up (golang/go#9265's cost).
 */
KTEST(spanheap_edge, sweep_cycle_leaves_large_spans_alone)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *p = spanheap_alloc(&sh, LARGE_PAGES * PG, 0);
	KASSERT(p);
	uint32_t idx;
	struct mspan *s = spanheap_span_of(&sh, p, &idx, "usable size");
	KASSERT(atomic_load(&s->state) == MSPAN_LARGE);
	uint32_t made = atomic_load(&s->sweepgen);
	for (unsigned cycle = 1; cycle <= 2; cycle++) {
		spanheap_sweep_cycle(&sh);
		struct spanheap_stats st;
		spanheap_stats(&sh, &st);
		KEXPECT_EQ(st.n.cycles, cycle);
		KEXPECT_EQ(st.n.swept_spans, 0);
		KEXPECT_EQ(atomic_load(&s->sweepgen), made);
		KEXPECT_EQ(atomic_load(&s->state), MSPAN_LARGE);
	}
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the cycles");
	sh_heap_release(&heap, &sh);
}

/*
 * An atomic realloc of a large object never grows it in place, even with
 * free pages right after it: that would ask the page heap to extend the
 * run (mheap_extend_pages), which may map pages and sleep. It moves
 * instead, to a block of the size asked (no eighth more: an atomic caller
 * is held to MHEAP_ATOMIC_MAX_PAGES), contents kept. A thread realloc
 * grows the same objects in place, before and after.
 */
KTEST(spanheap_edge, atomic_realloc_does_not_grow_in_place)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t from = LARGE_PAGES * PG, to = 2 * LARGE_PAGES * PG;
	/* The first large span's struct page lands right after it: a
	 * second large object has free pages after it. */
	void *first = spanheap_alloc(&sh, from, 0);
	unsigned char *p = spanheap_alloc(&sh, from, 0);
	KASSERT(first && p);
	KASSERT(spanheap_realloc(&sh, p, from + PG, 0) == p);
	memset(p, 5, from);
	unsigned char *q = spanheap_realloc(&sh, p, to, MM_ATOMIC);
	KASSERT(q);
	KEXPECT(q != p);
	KEXPECT_EQ(spanheap_usable_size(&sh, q), to);
	KEXPECT(q[0] == 5 && q[from - 1] == 5);
	KEXPECT(spanheap_realloc(&sh, q, to + PG, 0) == q);
	spanheap_free(&sh, q);
	spanheap_free(&sh, first);
	SH_CHECK(&sh, "after the reallocs");
	sh_heap_release(&heap, &sh);
}

/* Whether page-heap page pi (from the arena's base) is allocated. */
static bool page_allocated(size_t pi)
{
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	if (!mheap_chunk_bits(&heap, pi / PALLOC_CHUNK_PAGES, alloc, scav))
		return true; /* not grown */
	size_t i = pi % PALLOC_CHUNK_PAGES;
	return alloc[i / 64] >> (i % 64) & 1;
}

/*
 * A realloc with MM_NO_GROW may grow a large object in place into the
 * free pages after it, but never grows the page heap: taking them below
 * the atomic callers' reserve (MHEAP_DEFAULT_RESERVE_PAGES) had the
 * extension refill the reserve by growing the heap, which an allocation
 * with MM_NO_GROW does not do.
 */
KTEST(spanheap_edge, no_grow_realloc_in_place_does_not_grow_the_heap)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *first = spanheap_alloc(&sh, LARGE_PAGES * PG, 0);
	unsigned char *p = spanheap_alloc(&sh, LARGE_PAGES * PG, 0);
	KASSERT(first && p);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t free = st.free_backed_pages + st.free_scav_pages;
	size_t at = ((uintptr_t)p - heap.arena_base) / PG + LARGE_PAGES;
	size_t run = 0;
	while (at + run < st.grown_pages && !page_allocated(at + run))
		run++;
	/* All but a few free pages follow p: taking them leaves the free
	 * pages below the reserve. */
	KASSERT(run > 0 && free - run < MHEAP_DEFAULT_RESERVE_PAGES);
	memset(p, 3, LARGE_PAGES * PG);
	unsigned char *q =
	        spanheap_realloc(&sh, p, (LARGE_PAGES + run) * PG, MM_NO_GROW);
	struct mheap_stats after;
	mheap_stats(&heap, &after);
	KEXPECT(q == p);
	KEXPECT_EQ(after.grown_pages, st.grown_pages);
	KEXPECT(q && q[0] == 3 && q[LARGE_PAGES * PG - 1] == 3);
	spanheap_free(&sh, q ? q : p);
	spanheap_free(&sh, first);
	SH_CHECK(&sh, "after the realloc");
	sh_heap_release(&heap, &sh);
}

/*
 * A bit that is not an allocation flag (a caller's mistake, or a flag of
 * another allocator's passed here) is refused: NULL, a line naming the
 * bits, nothing allocated, and a realloc's object left as it was. Before,
 * the bits were ignored and every call served.
 */
KTEST(spanheap_edge, unknown_flags_are_refused)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	const unsigned bad = 1u << 9;
	mm_port_set_quiet(true);
	KEXPECT(spanheap_alloc(&sh, 16, bad) == NULL);
	KEXPECT(strstr(mm_port_last_log(), "unknown flags 0x200"));
	KEXPECT(spanheap_alloc(&sh, 16, MM_ATOMIC | bad) == NULL);
	KEXPECT(spanheap_alloc(&sh, LARGE_PAGES * PG, bad) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, 64, 64, MM_ZERO | bad) == NULL);
	KEXPECT(spanheap_calloc(&sh, 4, 16, bad) == NULL);
	char *p = spanheap_alloc(&sh, 40, 0);
	KASSERT(p);
	memset(p, 0x5a, 40);
	KEXPECT(spanheap_realloc(&sh, p, 4000, bad) == NULL);
	KEXPECT(strstr(mm_port_last_log(), "realloc of 4000 bytes refused"));
	mm_port_set_quiet(false);
	for (int i = 0; i < 40; i++)
		KEXPECT_EQ((unsigned char)p[i], 0x5a);
	spanheap_free(&sh, p);
	spanheap_check(&sh);
	sh_heap_release(&heap, &sh);
}

/* The usable size of NULL is 0, as malloc_usable_size's and Linux's
 * ksize's: a caller that sizes an optional buffer need not test it
 * first. It panicked, "foreign pointer (nil)". */
static size_t null_usable; /* static: set across the panic catch */

/* A function of its own, so that MM_PORT_PANICS's setjmp puts no local
 * of the test at risk. */
__attribute__((noinline)) static bool usable_size_of_null_panics(void)
{
	return MM_PORT_PANICS(null_usable = spanheap_usable_size(&sh, NULL));
}

KTEST(spanheap_edge, usable_size_of_null_is_zero)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	null_usable = 1;
	KEXPECT(!usable_size_of_null_panics());
	KEXPECT_EQ(null_usable, 0);
	sh_heap_release(&heap, &sh);
}

/*
 * An alignment the heap cannot give (0, not a power of two up to a page,
 * not a page multiple above) is refused with a line naming it, as an
 * unknown flag is: kmalloc_aligned(n, 24) got NULL and no word of why,
 * which reads as memory running out.
 */
KTEST(spanheap_edge, bad_alignment_is_refused_saying_so)
{
	static const size_t bad[] = {0, 3, 24, 100, 6144, 3 * PG + 16};
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[64];
		snprintf(want, sizeof(want), "alignment %zu is neither",
		         bad[i]);
		unsigned long logs = mm_port_log_count();
		KEXPECT(spanheap_alloc_aligned(&sh, 40, bad[i], 0) == NULL);
		KEXPECT_EQ(mm_port_log_count(), logs + 1);
		if (!strstr(mm_port_last_log(), want))
			ktest_fail_at(__FILE__, __LINE__,
			              "alignment %zu: logged \"%s\"", bad[i],
			              mm_port_last_log());
	}
	/* The good ones say nothing. */
	unsigned long logs = mm_port_log_count();
	void *a = spanheap_alloc_aligned(&sh, 40, 1, 0);
	void *b = spanheap_alloc_aligned(&sh, 40, 3 * PG, 0);
	mm_port_set_quiet(false);
	KEXPECT(a && b && (uintptr_t)b % (3 * PG) == 0);
	KEXPECT_EQ(mm_port_log_count(), logs);
	spanheap_free(&sh, a);
	spanheap_free(&sh, b);
	SH_CHECK(&sh, "after the aligned allocations");
	sh_heap_release(&heap, &sh);
}

/* Whether op, in atomic context, panics as a thread-only call. */
#define CAUGHT_IN_ATOMIC(op)                                               \
	({                                                                 \
		mm_port_set_atomic(true);                                  \
		bool fired_ = MM_PORT_PANICS(op);                          \
		mm_port_set_atomic(false);                                 \
		sh_unpin_after_panic();                                    \
		const char *why_ = fired_ ? mm_port_last_panic() : "";     \
		strstr(why_, "thread-only call from an atomic context") != \
		        NULL;                                              \
	})

/*
 * A caller in atomic context that forgot MM_ATOMIC (kernel/heap.h: "a
 * call from an atomic context mm_panics naming the function") is caught
 * while memory is plentiful, not only the day its class needs a new span
 * (Linux's might_sleep in every allocation): every call that leaves the
 * magazine's pop (a zeroed, aligned or large one, a realloc's move, a
 * refill), and in poison mode, the debug mode, every call. Until a review
 * a class with a cached span served them all.
 */
static void forgotten_atomic(bool poison)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, poison));
	/* Each class's span is cached, with free objects. */
	KASSERT(spanheap_alloc(&sh, 16, 0) && spanheap_alloc(&sh, 200, 0));
	char *p = spanheap_alloc(&sh, 64, 0);
	char *r1 = spanheap_alloc(&sh, 64, 0);
	char *r2 = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && r1 && r2);
	KEXPECT(CAUGHT_IN_ATOMIC(spanheap_alloc(&sh, 64, MM_ZERO)));
	KEXPECT(CAUGHT_IN_ATOMIC(spanheap_calloc(&sh, 2, 32, 0)));
	KEXPECT(CAUGHT_IN_ATOMIC(spanheap_alloc_aligned(&sh, 64, 64, 0)));
	KEXPECT(CAUGHT_IN_ATOMIC(spanheap_realloc(&sh, r1, 16, 0)));
	KEXPECT(CAUGHT_IN_ATOMIC(spanheap_realloc(&sh, r2, 200, 0)));
	KEXPECT_EQ(CAUGHT_IN_ATOMIC(spanheap_alloc(&sh, 64, 0)), (bool)poison);
	/* With MM_ATOMIC, they are served (what a caught call left
	 * behind goes with the heap). */
	mm_port_set_atomic(true);
	void *z = spanheap_alloc(&sh, 64, MM_ZERO | MM_ATOMIC);
	void *q = spanheap_realloc(&sh, p, 200, MM_ATOMIC);
	mm_port_set_atomic(false);
	KEXPECT(z && q);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_edge, a_forgotten_atomic_is_caught_with_memory_to_spare)
{
	forgotten_atomic(false);
}

KTEST(spanheap_edge, a_forgotten_atomic_is_caught_at_every_call_in_poison_mode)
{
	forgotten_atomic(true);
}

/*
 * An object the size of the whole arena is the largest there can be:
 * on an empty heap it is made (the page heap has every page for it), and
 * one page more is refused at once. The bound alloc_call tests reads
 * sh->arena_bytes, set from the page heap's arena at init: a bound or a
 * size one page short refused the arena-sized object, and no test asked
 * for one.
 */
KTEST(spanheap_edge, an_object_the_size_of_the_arena_is_made)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t arena = heap.arena_pages * MM_PAGE_SIZE;
	KEXPECT_EQ(sh.arena_bytes, arena);
	void *p = spanheap_alloc(&sh, arena, 0);
	KEXPECT(p != NULL);
	if (p) {
		KEXPECT_EQ(spanheap_usable_size(&sh, p), arena);
		spanheap_free(&sh, p);
	}
	KEXPECT(spanheap_alloc(&sh, arena + MM_PAGE_SIZE, 0) == NULL);
	SH_CHECK(&sh, "after the arena-sized object");
	sh_heap_release(&heap, &sh);
}

/*
 * The all-spans array that cannot grow (mm/spanheap_structs.c,
 * spanheap_structs_reserve): once atomic callers have filled it to its
 * end, the next span, a thread's or an atomic caller's, needs a bigger
 * array. Without the pages for one (in the metadata heap) the allocation
 * fails as out of memory, every page it took goes back (the span's to
 * the object heap, and the one page a struct page would take to the
 * metadata heap: with no room in the array there is nowhere to put its
 * structs), and the array and the structs stay as they were. With memory
 * back the array grows and the same allocation works.
 */
#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "mheap_hold_util.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

/* A large span: one span struct each. */
enum { BIG = 40 << 10, BIG_PAGES = BIG / PG, MAX_OBJS = 2048 };

static void *objs[MAX_OBJS];

static struct mh_hold hold;

/* The pages of the array structs_reserve would make next. */
static size_t next_spans_pages(void)
{
	size_t need = sh.spans->len + SH_STRUCTS_PER_PAGE;
	size_t cap = sh.spans->cap * 2 > need ? sh.spans->cap * 2 : need;
	size_t bytes = sizeof(struct spanheap_spans) + cap * sizeof(void *);
	return (bytes + PG - 1) / PG;
}

KTEST(spanheap_structs, a_full_span_array_that_cannot_grow_fails_cleanly)
{
	KASSERT(sh_heap_tight(&heap, &sh, 32));
	mm_port_set_cpu(0);
	size_t n = 0;
	KASSERT(sh_fill_until_growth(&sh, BIG, objs, MAX_OBJS, &n));
	/* Atomic callers take the last quarter, up to the array's end. */
	size_t cap = sh.spans->cap;
	while (!sh_spans_must_grow(&sh, true)) {
		KASSERT(n < MAX_OBJS &&
		        (objs[n] = spanheap_alloc(&sh, BIG, MM_ATOMIC)));
		n++;
	}
	KASSERT(sh.spans->cap == cap && sh.nstructs_free == 0);
	KASSERT(sh.spans->len + SH_STRUCTS_PER_PAGE > cap);
	/* The metadata heap held but a page (a page of structs, no room
	 * for the array), the object heap free for the span (until the
	 * metadata heap, the object heap was held but for the span and a
	 * page). */
	KASSERT(next_spans_pages() > 1);
	struct spanheap_spans *spans = sh.spans;
	size_t nstructs = sh.nstructs;
	static const unsigned flags[] = {0, MM_ATOMIC};
	for (size_t i = 0; i < 2; i++) {
		KASSERT(mh_hold_all_but(&sh.meta, &hold, 1));
		size_t used = sh_in_use_pages(&heap);
		size_t meta_used = sh_in_use_pages(&sh.meta);
		mm_port_set_quiet(true);
		void *p = spanheap_alloc(&sh, BIG, flags[i]);
		mm_port_set_quiet(false);
		KEXPECT(p == NULL);
		KEXPECT_EQ(sh_in_use_pages(&heap), used);
		KEXPECT_EQ(sh_in_use_pages(&sh.meta), meta_used);
		KEXPECT(sh.spans == spans && sh.spans->cap == cap &&
		        sh.nstructs == nstructs && sh.nstructs_free == 0);
		/* The hole is still free. */
		void *again = mheap_alloc_pages(&sh.meta, 1, 0);
		KEXPECT(again != NULL);
		if (again)
			mheap_free_pages(&sh.meta, again, 1);
		SH_CHECK(&sh, flags[i] ? "atomic, full array" : "full array");
		mh_hold_release(&sh.meta, &hold);
	}
	/* With memory, the array grows. */
	KASSERT((objs[n] = spanheap_alloc(&sh, BIG, 0)) != NULL);
	n++;
	KEXPECT(sh.spans->cap > cap);
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "after the frees");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}

/*
 * The all-spans array grows while the heap holds many spans: the copy of
 * its entries must not run under the heap lock, which an irqsave port
 * holds with interrupts off (its length is the spans the heap ever had,
 * so a copy under it lasted as long as the heap was large: 2048 entries
 * here, a million for a 4 GiB heap of one-page spans). At most
 * SPANHEAP_SPANS_COPY_LOCKED entries are copied in one hold; with one
 * thread none are, and every struct is still in the array, in order.
 */
KTEST(spanheap_structs, a_growing_span_array_is_copied_without_the_lock)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	size_t n = 0, cap0 = sh.spans->cap;
	while (sh.spans->cap < 4 * SPANHEAP_SPANS_COPY_LOCKED ||
	       sh.spans->cap < 4 * cap0) {
		KASSERT(n < MAX_OBJS &&
		        (objs[n] = spanheap_alloc(&sh, BIG, 0)));
		n++;
	}
	ktest_diag("array of %zu grew to %zu entries; at most %zu copied in "
	           "one hold of the heap lock",
	           cap0, sh.spans->cap, sh.spans_copied_locked_max);
	KEXPECT(sh.spans_copied_locked_max <= SPANHEAP_SPANS_COPY_LOCKED);
	SH_CHECK(&sh, "after the array grew");
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	spanheap_flush_cache(&sh);
	sh_heap_release(&heap, &sh);
}

/*
 * A page of span structs that opens a block of the in-use bitmap keeps the
 * block's bits in its unused tail (spanheap_structs.c), and the metadata
 * heap hands a page back out as its last user left it (mheap_alloc_pages
 * without MHEAP_ZERO): an all-spans array replaced by a larger one, a
 * block of magazines given back. structs_add_locked clears the bits when
 * it makes the page structs; left as they were, a struct on the free list
 * reads as in use (the checker's count; the statistics' walk reads it).
 * Until review rv76 no test made structs on a used page, and skipping the
 * clearing, or clearing a word fewer, failed none.
 */
KTEST(spanheap_structs, a_reused_page_of_structs_starts_with_no_bit_set)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	KASSERT(sh.spans->len == 0 && sh.free_structs == NULL);
	void *dirty = mheap_alloc_pages(&sh.meta, 1, 0);
	KASSERT(dirty != NULL);
	memset(dirty, 0xff, PG);
	mheap_free_pages(&sh.meta, dirty, 1);
	void *p = spanheap_alloc(&sh, BIG, 0);
	KASSERT(p != NULL);
	/* The first page of structs is the used one. */
	KASSERT(sh.spans->len > 0 && (void *)sh.spans->v[0] == dirty);
	unsigned long irq = mm_lock_acquire(&heap.lock);
	size_t marked = spanheap_structs_inuse_locked(&sh);
	size_t taken = sh.nstructs - sh.nstructs_free;
	mm_lock_release(&heap.lock, irq);
	KEXPECT_EQ(marked, taken);
	SH_CHECK(&sh, "structs on a used page");
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

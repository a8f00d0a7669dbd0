/*
 * mheap_check (mm/mheap.c) catches what it claims to: the grown pages
 * against the chunks grown and no more pages taken by the scavenger than
 * palloc holds allocated (invariant 1), the pages taken against the runs
 * of the batches under way (invariant 3), the span table's reach
 * (invariant 4), no span's entry on a free page (5), and palloc's own
 * check, which it runs first. Each test breaks one count in a fresh heap,
 * expects the panic naming it, puts the count back and expects the check
 * to pass again.
 *
 * The check panics holding the heap lock; a caught panic leaves it held,
 * so each expectation releases it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

static struct mheap heap;

/* A heap over chunks chunks, grown by an allocation of 3 pages at *p. */
static bool heap_new(size_t chunks, void **p)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = chunks * PALLOC_CHUNK_BYTES;
	if (!mheap_init(&heap, &cfg))
		return false;
	*p = mheap_alloc_pages(&heap, 3, 0);
	return *p != NULL;
}

static void heap_release(void)
{
	mh_release(&heap);
}

__attribute__((noinline)) static bool check_panics(void)
{
	bool fired = MM_PORT_PANICS(mheap_check(&heap));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	return fired;
}

#define HEAP_CHECK(what)                                                    \
	do {                                                                \
		if (check_panics())                                         \
			ktest_fail_at(__FILE__, __LINE__, "%s: %s", (what), \
			              mm_port_last_panic());                \
	} while (0)

/* Expects mheap_check to panic with a message that holds the fragment
 * printf would make of fmt. */
#define EXPECT_CHECK_FAILS(...) expect_check_fails(__LINE__, __VA_ARGS__)

__attribute__((format(printf, 2, 3))) static void
expect_check_fails(int line, const char *fmt, ...)
{
	bool fired = check_panics();
	va_list ap;
	va_start(ap, fmt);
	mh_expect_panic_saying(__FILE__, line, fired, fmt, ap);
	va_end(ap);
	if (mm_lock_held(&heap.lock))
		ktest_fail_at(__FILE__, line, "the heap lock is still held");
}

KTEST(mheap_check, catches_a_wrong_grown_count)
{
	void *p;
	KASSERT(heap_new(8, &p));
	HEAP_CHECK("clean");
	size_t chunks = heap.grown_chunks, grown = chunks * PALLOC_CHUNK_PAGES;
	size_t free = heap.pages.stats.free_pages;
	KASSERT(chunks > 0 && free > 0);
	heap.grown_chunks++;
	EXPECT_CHECK_FAILS("mheap: check: %zu grown pages, %zu free, 0 taken; "
	                   "%zu chunks grown",
	                   grown, free, chunks + 1);
	heap.grown_chunks -= 2;
	EXPECT_CHECK_FAILS("%zu chunks grown", chunks - 1);
	heap.grown_chunks++;
	HEAP_CHECK("restored");
	mheap_free_pages(&heap, p, 3);
	HEAP_CHECK("after the free");
	heap_release();
}

/* Pages the scavenger takes out of the free set are allocated to palloc:
 * a batch that took as many as palloc holds allocated passes, one more
 * does not. */
KTEST(mheap_check, catches_more_taken_pages_than_allocated)
{
	void *p;
	KASSERT(heap_new(8, &p));
	size_t grown = heap.grown_chunks * PALLOC_CHUNK_PAGES;
	size_t free = heap.pages.stats.free_pages;
	KASSERT_EQ(grown - free, 3);
	struct mheap_taken t = {.runs = {{(uintptr_t)p, 3}}, .nruns = 1};
	heap.taken = &t;
	heap.taken_pages = 3;
	HEAP_CHECK("every allocated page taken");
	t.runs[0].npages = 4;
	heap.taken_pages = 4;
	EXPECT_CHECK_FAILS("mheap: check: %zu grown pages, %zu free, 4 taken",
	                   grown, free);
	heap.taken = NULL;
	heap.taken_pages = 0;
	HEAP_CHECK("restored");
	heap_release();
}

/* A real batch passes the check mid-way (mheap_release_all's, at its
 * hook). */
static int checks_in_batch;

static void check_in_batch(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SCAV_UNMAPPED)
		return;
	checks_in_batch++;
	KEXPECT(heap.taken && heap.taken_pages > 0);
	HEAP_CHECK("mid-batch");
}

/* The pages taken must be the runs the batches under way hold: a count
 * with no batch, or one that differs from the batch's runs, is caught.
 * Such a count makes the statistics lie (in use = grown - free - taken)
 * and sends an allocation that finds no room to sleep on a batch that
 * does not exist. */
KTEST(mheap_check, catches_taken_pages_no_batch_holds)
{
	void *p;
	KASSERT(heap_new(8, &p));
	heap.taken_pages = 2;
	EXPECT_CHECK_FAILS("mheap: check: 2 pages taken, but the scavenge "
	                   "batches under way hold 0");
	struct mheap_taken t = {.runs = {{(uintptr_t)p, 3}}, .nruns = 1};
	heap.taken = &t;
	EXPECT_CHECK_FAILS("2 pages taken, but the scavenge batches under "
	                   "way hold 3");
	heap.taken = NULL;
	heap.taken_pages = 0;
	HEAP_CHECK("restored");
	mheap_free_pages(&heap, p, 3);
	checks_in_batch = 0;
	mheap_test_hook = check_in_batch;
	size_t released = mheap_release_all(&heap);
	mheap_test_hook = NULL;
	KEXPECT(released > 0);
	KEXPECT(checks_in_batch > 0);
	HEAP_CHECK("after the release");
	heap_release();
}

/* A batch's runs are allocated in palloc while it unmaps them: a listed
 * run over free pages, or past the grown heap, is caught (a batch's
 * return would free pages someone may hold). */
KTEST(mheap_check, catches_a_taken_run_that_is_not_allocated)
{
	char *p;
	KASSERT(heap_new(8, (void **)&p));
	size_t grown = heap.grown_chunks * PALLOC_CHUNK_PAGES;
	struct mheap_taken t = {.runs = {{(uintptr_t)p, 3}}, .nruns = 1};
	heap.taken = &t;
	heap.taken_pages = 3;
	HEAP_CHECK("the allocated run");
	t.runs[0].base = (uintptr_t)(p + MM_PAGE_SIZE);
	EXPECT_CHECK_FAILS("mheap: check: the batch's run [%p, +3 pages) "
	                   "holds a free page (page %p)",
	                   (void *)(p + MM_PAGE_SIZE),
	                   (void *)(p + 3 * MM_PAGE_SIZE));
	t.runs[0].base = (uintptr_t)(p + (grown - 1) * MM_PAGE_SIZE);
	EXPECT_CHECK_FAILS("+3 pages) is not a run of the grown heap");
	t.runs[0].base = (uintptr_t)p;
	heap.taken = NULL;
	heap.taken_pages = 0;
	HEAP_CHECK("restored");
	mheap_free_pages(&heap, p, 3);
	heap_release();
}

/* The span table must cover every grown page (a lookup of a grown page
 * past its reach gives NULL: the span heap's free would refuse a good
 * pointer), and no more than the arena. */
KTEST(mheap_check, catches_a_span_table_short_of_the_grown_heap)
{
	void *p;
	KASSERT(heap_new(8, &p));
	size_t grown = heap.grown_chunks * PALLOC_CHUNK_PAGES;
	size_t pages = heap.spanmap_pages, chunks = heap.spanmap_chunks;
	KASSERT(pages >= grown && chunks >= heap.grown_chunks);
	heap.spanmap_pages = grown - 1;
	EXPECT_CHECK_FAILS("mheap: check: the span table covers %zu pages "
	                   "(%zu chunks mapped); %zu pages grown",
	                   grown - 1, chunks, grown);
	heap.spanmap_pages = heap.arena_pages + 1;
	EXPECT_CHECK_FAILS("covers %zu pages", heap.arena_pages + 1);
	heap.spanmap_pages = pages;
	heap.spanmap_chunks = heap.grown_chunks - 1;
	EXPECT_CHECK_FAILS("(%zu chunks mapped)", heap.grown_chunks - 1);
	heap.spanmap_chunks = chunks;
	HEAP_CHECK("restored");
	/* The table holds no NULL: a page without a span says so. */
	size_t i = ((uintptr_t)p - heap.arena_base) / MM_PAGE_SIZE + 1;
	void *e = heap.spanmap[i];
	heap.spanmap[i] = NULL;
	EXPECT_CHECK_FAILS("mheap: check: the span table's entry for page %p "
	                   "is NULL",
	                   (void *)((char *)p + MM_PAGE_SIZE));
	heap.spanmap[i] = e;
	HEAP_CHECK("entry restored");
	mheap_free_pages(&heap, p, 3);
	heap_release();
}

/* mheap_check runs palloc's check on its pages first
 * (palloc_check_test.c breaks each of palloc's invariants). */
KTEST(mheap_check, runs_the_palloc_check)
{
	void *p;
	KASSERT(heap_new(8, &p));
	HEAP_CHECK("clean");
	size_t free = heap.pages.stats.free_pages;
	heap.pages.stats.free_pages++;
	EXPECT_CHECK_FAILS("palloc: check: counted %zu grown, %zu free",
	                   heap.grown_chunks * PALLOC_CHUNK_PAGES, free);
	heap.pages.stats.free_pages--;
	HEAP_CHECK("restored");
	heap_release();
}

/* A free page whose entry is still a span's (invariant 5): a free of a
 * stale pointer there would act on the span's struct, its pages maybe
 * another span's by now. */
KTEST(mheap_check, catches_a_span_entry_on_a_free_page)
{
	void *p;
	KASSERT(heap_new(8, &p));
	static _Alignas(64) char fake[64]; /* a span's address to the table */
	size_t i = ((uintptr_t)p - heap.arena_base) / MM_PAGE_SIZE + 3;
	void *e = heap.spanmap[i];
	heap.spanmap[i] = fake; /* the page after the run: free */
	EXPECT_CHECK_FAILS("mheap: check: free page %p has span %p's entry",
	                   (void *)((char *)p + 3 * MM_PAGE_SIZE),
	                   (void *)fake);
	heap.spanmap[i] = e;
	HEAP_CHECK("entry restored");
	/* An allocated page may hold a span's entry: that is a span. */
	heap.spanmap[i - 1] = fake;
	HEAP_CHECK("a span's entry on an allocated page");
	heap.spanmap[i - 1] = MHEAP_SPAN_PAGES;
	mheap_free_pages(&heap, p, 3);
	heap_release();
}

/* mheap.c's invariant 5, its second half: a free page marked the start
 * of a run (mheap_heads.c) would make a later free of a run over it
 * refuse a good count. */
KTEST(mheap_check, catches_a_run_start_on_a_free_page)
{
	void *p;
	KASSERT(heap_new(8, &p));
	size_t i = ((uintptr_t)p - heap.arena_base) / MM_PAGE_SIZE + 3;
	KEXPECT(mheap_head_is_set(&heap, i - 3)); /* the run's first page */
	_Atomic uint64_t *w = &mheap_heads(&heap)[i / 64];
	uint64_t was = *w;
	*w = was | (uint64_t)1 << i % 64; /* the page after the run: free */
	EXPECT_CHECK_FAILS("mheap: check: free page %p is marked the start "
	                   "of a run",
	                   (void *)((char *)p + 3 * MM_PAGE_SIZE));
	*w = was;
	HEAP_CHECK("mark cleared");
	mheap_free_pages(&heap, p, 3);
	KEXPECT(!mheap_head_is_set(&heap, i - 3));
	heap_release();
}

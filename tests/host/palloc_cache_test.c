/*
 * The per-CPU page cache: refill takes the free pages of the 64-page block
 * holding the first free page, alloc and free work inside the window
 * without the lock (a request no free run fits gets nothing), flush gives
 * pages and scavenged bits back, and refuses a window that disagrees with
 * the heap.
 */
#include <pthread.h>

#include "../../mm/pagecache.h"
#include "palloc_test_util.h"

#define PG(i) (TP_BASE + (uintptr_t)(i)*4096)

KTEST(pagecache, refill_alloc_free_flush)
{
	struct palloc p;
	struct pagecache c = {0};
	struct palloc_test_chunk before = {
	        .chunk = 0, .alloc = {{0, 70}}, .scav = {{100, 20}, {300, 5}}};
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_test_build(&p, &before, 1));
	KEXPECT_EQ(pagecache_alloc(&c, 1, NULL), 0); /* empty, no window */
	KEXPECT(!pagecache_free(&c, PG(70), 1));
	KASSERT(pagecache_refill_locked(&c, &p));
	KEXPECT_EQ(c.base, PG(64));
	KEXPECT_EQ(c.cache, ~0ull << 6);
	KEXPECT_EQ(c.scav, 0xfffffull << 36); /* pages 100 .. 119 */
	KEXPECT_EQ(palloc_test_search_pi(&p), 128);
	struct palloc_test_chunk taken = {
	        .chunk = 0, .alloc = {{0, 128}}, .scav = {{300, 5}}};
	KEXPECT(tp_chunk_is(&p, &taken, "after refill"));
	TP_CHECK(&p, "after refill");

	size_t nscav = 99;
	KEXPECT_EQ(pagecache_alloc(&c, 1, &nscav), PG(70));
	KEXPECT_EQ(nscav, 0);
	KEXPECT_EQ(pagecache_alloc(&c, 15, &nscav), PG(71));
	KEXPECT_EQ(pagecache_alloc(&c, 16, &nscav), 0); /* bypasses */
	KEXPECT_EQ(pagecache_alloc(&c, 0, &nscav), 0);
	KEXPECT_EQ(pagecache_alloc(&c, 15, &nscav), PG(86));
	KEXPECT_EQ(nscav, 1); /* page 100 */
	KEXPECT_EQ(pagecache_alloc(&c, 4, &nscav), PG(101));
	KEXPECT_EQ(nscav, 4);
	/* Back into the window, lock-free; outside it: not ours. */
	KEXPECT(pagecache_free(&c, PG(71), 15));
	KEXPECT(!pagecache_free(&c, PG(10), 1));
	KEXPECT(!pagecache_free(&c, PG(60), 10)); /* crosses the edge */
	KEXPECT(!pagecache_free(&c, PG(80) + 8, 1));
	struct pagecache saved = c;
	KEXPECT(MM_PORT_PANICS(pagecache_free(&c, PG(72), 1)));
	KEXPECT(strstr(mm_port_last_panic(), "page 0x4000048000 is already "
	                                     "free in this CPU's cache"));
	KEXPECT(memcmp(&saved, &c, sizeof(c)) == 0);
	/* A window page the heap handed out before the refill is ours to
	 * free into the cache too. */
	KEXPECT(pagecache_free(&c, PG(64), 2));

	pagecache_flush_locked(&c, &p);
	KEXPECT(!c.has_window && c.cache == 0);
	/* Held by "users": 66..69 (before), 70, 86..104. */
	struct palloc_test_chunk after = {.chunk = 0,
	                                  .alloc = {{0, 64}, {66, 5}, {86, 19}},
	                                  .scav = {{105, 15}, {300, 5}}};
	KEXPECT(tp_chunk_is(&p, &after, "after flush"));
	KEXPECT_EQ(palloc_test_search_pi(&p), 64);
	TP_CHECK(&p, "after flush");
	tp_release(&p);
}

KTEST(pagecache, refill_on_a_full_heap_and_after_growth)
{
	struct palloc p;
	struct pagecache c = {0};
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KEXPECT(!pagecache_refill_locked(&c, &p)); /* nothing grown */
	KEXPECT(!c.has_window);
	KASSERT(palloc_grow(&p, TP_BASE + 5 * PALLOC_CHUNK_BYTES,
	                    PALLOC_CHUNK_BYTES));
	KASSERT(pagecache_refill_locked(&c, &p));
	KEXPECT_EQ(c.base, PG(5 * 512));
	KEXPECT_EQ(c.cache, ~0ull);
	KEXPECT_EQ(c.scav, ~0ull); /* fresh growth is scavenged */
	/* A second refill flushes the first window and takes it again. */
	KEXPECT_EQ(pagecache_alloc(&c, 3, NULL), PG(5 * 512));
	KASSERT(pagecache_refill_locked(&c, &p));
	KEXPECT_EQ(c.base, PG(5 * 512));
	KEXPECT_EQ(c.cache, ~0ull << 3);
	/* The heap allocates around the window. */
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), PG(5 * 512 + 64));
	KEXPECT_EQ(palloc_alloc(&p, 447, NULL), PG(5 * 512 + 65));
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), 0);
	struct pagecache d = {0};
	KEXPECT(!pagecache_refill_locked(&d, &p)); /* all in c or in use */
	KEXPECT_EQ(palloc_test_search_pi(&p), 16 * 512);
	pagecache_flush_locked(&c, &p);
	KASSERT(pagecache_refill_locked(&d, &p));
	KEXPECT_EQ(d.cache, ~0ull << 3);
	TP_CHECK(&p, "two caches");
	tp_release(&p);
}

KTEST(pagecache, window_at_address_zero)
{
	struct palloc p;
	struct pagecache c = {0};
	KASSERT(tp_new(&p, 0, 2, PALLOC_NO_SCAV));
	KASSERT(palloc_grow(&p, 0, PALLOC_CHUNK_BYTES));
	KASSERT(pagecache_refill_locked(&c, &p));
	KEXPECT_EQ(c.base, 0);
	KEXPECT_EQ(c.cache, ~1ull); /* page 0 stays reserved */
	KEXPECT_EQ(c.scav, 0);
	KEXPECT_EQ(pagecache_alloc(&c, 1, NULL), 4096);
	pagecache_flush_locked(&c, &p);
	TP_CHECK(&p, "zero-based flush");
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), 8192);
	tp_release(&p);
}

/* A palloc of one chunk, grown, whose owner's lock is *lock (made
 * here); false if it could not be made. */
static bool one_chunk_owned(struct palloc *p, mm_lock_t *lock)
{
	mm_lock_init(lock, "test heap", MM_RANK_HEAP);
	struct palloc_config cfg = {.arena_base = TP_BASE,
	                            .arena_bytes = PALLOC_CHUNK_BYTES,
	                            .owner_lock = lock};
	return palloc_init(p, &cfg) &&
	       palloc_grow(p, TP_BASE, PALLOC_CHUNK_BYTES);
}

KTEST(pagecache, needs_the_owner_lock)
{
	mm_lock_t lock;
	struct palloc p;
	struct pagecache c = {0};
	KASSERT(one_chunk_owned(&p, &lock));
	KEXPECT(MM_PORT_PANICS(pagecache_refill_locked(&c, &p)));
	KEXPECT(strstr(mm_port_last_panic(), "without the owner's lock"));
	unsigned long irq = mm_lock_acquire(&lock);
	KEXPECT(pagecache_refill_locked(&c, &p));
	mm_lock_release(&lock, irq);
	KEXPECT_EQ(pagecache_alloc(&c, 2, NULL), TP_BASE);
	KEXPECT(MM_PORT_PANICS(pagecache_flush_locked(&c, &p)));
	irq = mm_lock_acquire(&lock);
	pagecache_flush_locked(&c, &p);
	palloc_check_locked(&p);
	mm_lock_release(&lock, irq);
	tp_release(&p);
}

/*
 * A flush checks the window before it gives it back: a page the cache
 * holds free that the heap has freed meanwhile (a bad free, which the
 * heap cannot tell) is free twice, and scavenged bits for pages the cache
 * does not hold are wrong. Each panics, naming the fault, and leaves the
 * heap as it was.
 */
KTEST(pagecache, flush_refuses_a_corrupt_cache)
{
	struct palloc p;
	struct pagecache c = {0};
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KASSERT(pagecache_refill_locked(&c, &p));
	KEXPECT_EQ(pagecache_alloc(&c, 2, NULL), PG(0)); /* the caller's */
	palloc_free(&p, PG(5), 1); /* held free by the cache */
	struct pagecache saved = c;
	KEXPECT(MM_PORT_PANICS(pagecache_flush_locked(&c, &p)));
	KEXPECT(strstr(mm_port_last_panic(),
	               "is free in the heap and in the cache"));
	KEXPECT(memcmp(&saved, &c, sizeof(c)) == 0);
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), PG(5)); /* the heap's again */
	c.scav |= 1; /* page 0: the caller's, not the cache's */
	KEXPECT(MM_PORT_PANICS(pagecache_flush_locked(&c, &p)));
	KEXPECT(strstr(mm_port_last_panic(),
	               "has scavenged bits for pages it does not hold"));
	c.scav &= ~1ull;
	pagecache_flush_locked(&c, &p);
	palloc_free(&p, PG(0), 2);
	TP_CHECK(&p, "after the flush");
	tp_release(&p);
}

/* A request no run of the cache's free pages fits gets 0 and takes
 * nothing, though the pages it holds would add up to it. */
KTEST(pagecache, alloc_without_a_fitting_run)
{
	struct palloc p;
	struct pagecache c = {0};
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KASSERT(pagecache_refill_locked(&c, &p));
	KASSERT_EQ(c.cache, ~0ull);
	for (unsigned i = 0; i < 4; i++)
		KEXPECT_EQ(pagecache_alloc(&c, 15, NULL), PG(15 * i));
	KEXPECT(pagecache_free(&c, PG(20), 3)); /* runs of 3 and 4 */
	struct pagecache saved = c;
	size_t nscav = 99;
	KEXPECT_EQ(pagecache_alloc(&c, 5, &nscav), 0);
	KEXPECT_EQ(nscav, 99);
	KEXPECT(memcmp(&saved, &c, sizeof(c)) == 0);
	KEXPECT_EQ(pagecache_alloc(&c, 4, NULL), PG(60));
	KEXPECT_EQ(pagecache_alloc(&c, 3, NULL), PG(20));
	KEXPECT_EQ(c.cache, 0);
	pagecache_flush_locked(&c, &p);
	TP_CHECK(&p, "after the flush");
	tp_release(&p);
}

/*
 * A free that starts or ends outside the window is the heap's, not the
 * cache's, but a page of it that the cache holds free is free already: a
 * double free, as it is inside the window. Handed to the heap, which
 * holds every window page allocated, it was taken silently, and the page
 * was then free in the heap and in the cache: both handed it out.
 */
KTEST(pagecache, free_across_the_window_edge)
{
	struct palloc p;
	struct pagecache c = {0};
	struct palloc_test_chunk before = {.chunk = 0, .alloc = {{60, 8}}};
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_test_build(&p, &before, 1));
	KASSERT(pagecache_refill_locked(&c, &p));
	KASSERT_EQ(c.base, PG(0));
	KASSERT_EQ(c.cache, ~0ull >> 4); /* 60-63 are a user's */
	/* That user's run crosses the edge: not the cache's to take. */
	KEXPECT(!pagecache_free(&c, PG(60), 8));
	/* Pages 58 and 59 are free in the cache. */
	struct pagecache saved = c;
	KEXPECT(MM_PORT_PANICS(pagecache_free(&c, PG(58), 10)));
	KEXPECT(strstr(mm_port_last_panic(),
	               "free [0x400003a000, 0x4000044000)"));
	KEXPECT(strstr(mm_port_last_panic(), "page 0x400003a000 is already "
	                                     "free in this CPU's cache"));
	KEXPECT(memcmp(&saved, &c, sizeof(c)) == 0);
	/* From below the window (a window higher up): the same. */
	struct pagecache d = c;
	d.base = PG(64);
	d.cache = 1; /* page 64 */
	KEXPECT(MM_PORT_PANICS(pagecache_free(&d, PG(62), 4)));
	KEXPECT(strstr(mm_port_last_panic(), "page 0x4000040000 is already"));
	palloc_free(&p, PG(60), 8);
	pagecache_flush_locked(&c, &p);
	TP_CHECK(&p, "after the flush");
	KEXPECT_EQ(palloc_alloc(&p, 512, NULL), PG(0));
	tp_release(&p);
}

/*
 * A free of no pages is nothing the cache takes: false, the cache
 * untouched, even at a page inside the window that the cache does not
 * hold (a mutation review of mm/pagecache.c found it untested: without
 * the check the call returned true, as if it had taken the range).
 */
KTEST(pagecache, free_of_no_pages_is_refused)
{
	struct palloc p;
	struct pagecache c = {0};
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_grow(&p, TP_BASE, PALLOC_CHUNK_BYTES));
	KASSERT(pagecache_refill_locked(&c, &p));
	KASSERT_EQ(pagecache_alloc(&c, 8, NULL), PG(0));
	struct pagecache saved = c;
	KEXPECT(!pagecache_free(&c, PG(0), 0));
	KEXPECT(!pagecache_free(&c, PG(5), 0));
	KEXPECT(!pagecache_free(&c, PG(20), 0)); /* held free by the cache */
	KEXPECT(memcmp(&saved, &c, sizeof(c)) == 0);
	KEXPECT(pagecache_free(&c, PG(0), 8));
	pagecache_flush_locked(&c, &p);
	TP_CHECK(&p, "after the flush");
	tp_release(&p);
}

struct hint_writer {
	struct palloc *p;
	mm_lock_t *lock;
	bool cache; /* refill and flush a page cache instead */
};

/* Allocates and frees one page at a time under the owner's lock, or
 * refills and flushes a page cache (which takes a whole 64-page block). */
static void *hint_writer_run(void *arg)
{
	struct hint_writer *w = arg;
	struct pagecache c = {0};
	for (int i = 0; i < 2000; i++) {
		unsigned long irq = mm_lock_acquire(w->lock);
		if (w->cache) {
			if (pagecache_refill_locked(&c, w->p))
				pagecache_flush_locked(&c, w->p);
		} else {
			uintptr_t a =
			        palloc_alloc_locked(w->p, 1 + i % 3, NULL);
			if (a)
				palloc_free_locked(w->p, a, 1 + i % 3);
		}
		mm_lock_release(w->lock, irq);
	}
	return NULL;
}

/* Reads the hint while w's thread writes; true if every value read is
 * one the count may have had: the chunk, less at most `taken` pages. */
static bool hint_reads_stay_in(struct hint_writer *w, size_t taken)
{
	pthread_t t;
	if (pthread_create(&t, NULL, hint_writer_run, w) != 0)
		return false;
	size_t lo = PALLOC_CHUNK_PAGES, hi = 0;
	for (int i = 0; i < 20000; i++) {
		size_t n = palloc_free_pages_hint(w->p);
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	pthread_join(t, NULL);
	return hi <= PALLOC_CHUNK_PAGES && lo >= PALLOC_CHUNK_PAGES - taken &&
	       palloc_free_pages_hint(w->p) == PALLOC_CHUNK_PAGES;
}

/*
 * palloc_free_pages_hint is for readers without the lock (the kernel's
 * frame count): the owner's writers change the count under the lock while
 * it reads. Under ThreadSanitizer this reported a data race: the hint's
 * load was atomic, the writers' updates plain. Every value read must be
 * one the count had: at most the chunk, at least the chunk less 3.
 */
KTEST(palloc, free_pages_hint_reads_while_the_owner_writes)
{
	mm_lock_t lock;
	struct palloc p;
	KASSERT(one_chunk_owned(&p, &lock));
	struct hint_writer w = {&p, &lock, false};
	KEXPECT(hint_reads_stay_in(&w, 3));
	tp_release(&p);
}

/*
 * The same reader beside a page cache's refills and flushes, which change
 * the count by a block at a time under the owner's lock. Their updates
 * were plain `-=` and `+=` beside the hint's atomic load: the data race
 * ThreadSanitizer reports (make test-tsan), which the test above had
 * fixed for alloc and free only.
 */
KTEST(pagecache, free_pages_hint_reads_while_caches_refill)
{
	mm_lock_t lock;
	struct palloc p;
	KASSERT(one_chunk_owned(&p, &lock));
	struct hint_writer w = {&p, &lock, true};
	KEXPECT(hint_reads_stay_in(&w, PAGECACHE_PAGES));
	TP_CHECK(&p, "after the refills");
	tp_release(&p);
}

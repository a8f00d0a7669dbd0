/*
 * The page heap's reserve (mm/mheap_grow.c): free pages in grown chunks are
 * kept at reserve_pages or more for atomic callers, so a thread whose
 * request leaves fewer grows the heap by a chunk before it returns. An
 * extension in place (mheap_extend_pages, a large object's realloc) takes
 * pages like an allocation and makes them up the same way (not with
 * MHEAP_NO_GROW, as an allocation does not); an atomic
 * caller's request reaches the scavenger thread however late it comes.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_testing.h"
#include "mheap_batch_util.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;

/* heap over an arena of chunks chunks, with a reserve of reserve_pages
 * and the other defaults. */
static bool reserve_heap_init(size_t chunks, size_t reserve_pages)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = chunks * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = reserve_pages;
	return mheap_init(&heap, &cfg);
}

/* One chunk grown for 100 pages leaves 412 free; extending them by 284
 * leaves the reserve of 128 exactly, and grows nothing; by 16 more leaves
 * 112, under it: a chunk more is grown, counted as a growth for the
 * reserve. */
KTEST(mheap_reserve, extension_below_the_reserve_grows_the_heap)
{
	KASSERT(reserve_heap_init(4, 128));
	char *a = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	/* To the reserve exactly: nothing to make up. */
	KASSERT(mheap_extend_pages(&heap, a, 100, 284, 0));
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages + st.free_scav_pages, 128);
	KEXPECT_EQ(st.n.refills, 0);
	KASSERT(mheap_extend_pages(&heap, a, 384, 16, 0));
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 400);
	KEXPECT_EQ(st.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 1);
	mheap_free_pages(&heap, a, 400);
	mheap_check(&heap);
	mh_release(&heap);
}

/* The same extension with MHEAP_NO_GROW takes the pages and leaves the
 * reserve short, as an allocation with it does: the heap is not grown.
 * Any other flag is refused, saying so, and changes nothing. */
KTEST(mheap_reserve, extension_with_no_grow_leaves_the_reserve_short)
{
	KASSERT(reserve_heap_init(4, 128));
	char *a = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a);
	mm_port_set_quiet(true);
	KEXPECT(!mheap_extend_pages(&heap, a, 100, 300, MHEAP_ATOMIC));
	KEXPECT(strstr(mm_port_last_log(),
	               "flags other than MHEAP_NO_GROW and MHEAP_ZERO"));
	KEXPECT(!mheap_extend_pages(&heap, a, 100, 300, 1u << 20));
	mm_port_set_quiet(false);
	KASSERT(mheap_extend_pages(&heap, a, 100, 300, MHEAP_NO_GROW));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 400);
	KEXPECT_EQ(st.free_backed_pages + st.free_scav_pages, 112);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	mheap_free_pages(&heap, a, 400);
	mheap_check(&heap);
	mh_release(&heap);
}

/*
 * A reserve of several chunks: the growth that makes it up counts every
 * free page the heap has and grows the chunks that the difference needs.
 * It took the free run at the heap's top off the difference a second time
 * (a growth for a run does that: the new chunks extend that run), so one
 * page in use, 511 free and a reserve of 2048 grew 3 chunks, not 4, and
 * left 2047 free pages.
 */
KTEST(mheap_reserve, a_reserve_of_several_chunks_is_made_up)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 16 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 4 * PALLOC_CHUNK_PAGES;
	KASSERT(mheap_init(&heap, &cfg));
	char *a = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	ktest_diag("%zu pages grown, %zu free", st.grown_pages,
	           st.free_backed_pages + st.free_scav_pages);
	KEXPECT(st.free_backed_pages + st.free_scav_pages >= cfg.reserve_pages);
	KEXPECT_EQ(st.grown_pages, 5 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 1);
	mheap_free_pages(&heap, a, 1);
	mheap_check(&heap);
	mh_release(&heap);
}

/*
 * Near the arena's end a reserve takes the chunks that are left. Three
 * chunks, a reserve of 600 pages: 1000 pages in use leave 24 free in two
 * chunks, and the difference needs two more where one is left. The growth
 * asked for both or nothing, so it grew nothing: the reserve stayed at 24
 * pages with a chunk of the arena never grown, and every later allocation
 * tried that growth again.
 */
KTEST(mheap_reserve, near_the_arena_end_takes_what_is_left)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 3 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 600;
	KASSERT(mheap_init(&heap, &cfg));
	char *a = mheap_alloc_pages(&heap, 1000, 0);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 3 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 1);
	/* Nothing left to grow: a later refill finds nothing to take. */
	char *b = mheap_alloc_pages(&heap, 8, 0);
	KASSERT(b);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 3 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 1);
	mheap_free_pages(&heap, b, 8);
	mheap_free_pages(&heap, a, 1000);
	mheap_check(&heap);
	mh_release(&heap);
}

/*
 * An atomic allocation leaves free pages below the reserve and asks the
 * scavenger thread for a refill just as the thread, with nothing to
 * scavenge, is about to go idle: after it took its last refill request and
 * before it read its wake count, so the wake is spent already. The thread
 * must see the request when it decides to go idle, and grow the heap
 * instead of sleeping (MHEAP_IDLE_NS, 10 s, with the reserve short). It is
 * held at MHEAP_HOOK_SCAV_IDLE while the allocation asks; the test then
 * waits, with no time bound, for the refill, failing at once if the thread
 * goes idle with the request pending.
 */
enum { FILL_RESERVE = 64, FILL_EACH = MHEAP_ATOMIC_MAX_PAGES };

/* heap over 4 chunks, a reserve of FILL_RESERVE, the scavenger's budget
 * permille; then atomic allocations of FILL_EACH pages into p[*n..]
 * until the next would leave free pages under the reserve (*st: the
 * stats after). False if the set-up or an allocation failed. */
static bool filled_to_reserve(unsigned permille, char **p, size_t *n,
                              struct mheap_stats *st)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = FILL_RESERVE;
	cfg.cpu_permille = permille;
	if (!mheap_init(&heap, &cfg))
		return false;
	do {
		if (*n >= PALLOC_CHUNK_PAGES / FILL_EACH)
			return false;
		p[*n] = mheap_alloc_pages(&heap, FILL_EACH, MHEAP_ATOMIC);
		if (!p[(*n)++])
			return false;
		mheap_stats(&heap, st);
	} while (st->free_backed_pages + st->free_scav_pages >=
	         FILL_RESERVE + FILL_EACH);
	return true;
}

static sem_t at_idle, idle_go;
static atomic_bool idle_once;

static void hold_idle(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SCAV_IDLE ||
	    atomic_exchange(&idle_once, true))
		return;
	sem_post(&at_idle);
	sem_wait(&idle_go);
}

KTEST(mheap_reserve, idle_scavenger_sees_a_refill_asked_before_it_sleeps)
{
	enum { EACH = FILL_EACH };
	char *p[PALLOC_CHUNK_PAGES / EACH];
	size_t n = 0;
	struct mheap_stats st;
	KASSERT(filled_to_reserve(1000, p, &n, &st)); /* no paced sleeps */
	KASSERT(!heap.scav.refill);
	KASSERT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	sem_init(&at_idle, 0, 0);
	sem_init(&idle_go, 0, 0);
	atomic_store(&idle_once, false);
	mheap_test_hook = hold_idle;
	KASSERT(mheap_scavenger_start(&heap));
	sem_wait(&at_idle);
	p[n++] = mheap_alloc_pages(&heap, EACH, MHEAP_ATOMIC); /* below */
	KASSERT(p[n - 1]);
	KASSERT(heap.scav.refill);
	sem_post(&idle_go);
	bool slept = false;
	uint64_t refills = 0;
	while (!slept && refills == 0) { /* no time bound */
		mm_port_yield();
		unsigned long irq = mm_lock_acquire(&heap.lock);
		slept = heap.scav.idle && heap.scav.refill;
		refills = heap.counters.refills;
		mm_lock_release(&heap.lock, irq);
	}
	mheap_scavenger_stop(&heap);
	mheap_test_hook = NULL;
	KEXPECT(!slept);
	KEXPECT_EQ(refills, 1);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	while (n--)
		mheap_free_pages(&heap, p[n], EACH);
	MH_CHECK(&heap, "after the refill");
	mh_release(&heap);
}

/*
 * Pages a scavenge batch holds count towards the reserve: they come back
 * free within the batch, and growing a chunk for them left the heap a
 * chunk larger for good. One chunk, a reserve of 128: 300 pages taken,
 * 200 of them freed (backed), then taken by a batch of release-all held
 * at its hook (mh_batch_hold); an allocation of 100 pages leaves 112
 * free outside the batch, 312 with it. Before, it grew a second chunk.
 */
KTEST(mheap_reserve, pages_a_batch_holds_count_towards_it)
{
	KASSERT(reserve_heap_init(4, 128));
	char *a = mheap_alloc_pages(&heap, 300, 0);
	KASSERT(a);
	mheap_free_pages(&heap, a + 100 * PG, 200);
	pthread_t t;
	KASSERT(mh_batch_hold(&heap, &t));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT(st.scavenging_pages >= 16);
	char *b = mheap_alloc_pages(&heap, 100, 0);
	KEXPECT(b != NULL);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	mh_batch_go(t);
	if (b)
		mheap_free_pages(&heap, b, 100);
	mheap_free_pages(&heap, a, 100);
	MH_CHECK(&heap, "after the batch");
	mh_release(&heap);
}

/* Whether an atomic caller has asked the scavenger thread for a refill. */
static bool refill_asked(void)
{
	unsigned long irq = mm_lock_acquire(&heap.lock);
	bool asked = heap.scav.refill;
	mm_lock_release(&heap.lock, irq);
	return asked;
}

/*
 * The reserve's boundary: an allocation that leaves exactly reserve_pages
 * free leaves it whole, and one that leaves a page fewer is below it. A
 * thread's grows a chunk then, and an atomic caller's asks the scavenger
 * thread for a refill, not before. One chunk, a reserve of 128: 100 pages
 * taken leave 412 free; 284 more leave 128, one more 127. Against
 * try_alloc's test made `free + 1 < reserve`, or mheap_refill's made
 * `free + 1 >= reserve`, the thread's allocation to 127 grew nothing;
 * against it made `<=`, the atomic one to 128 asked for a refill.
 */
KTEST(mheap_reserve, an_allocation_to_the_reserve_and_one_page_past)
{
	KASSERT(reserve_heap_init(4, 128));
	char *a = mheap_alloc_pages(&heap, 100, 0);
	char *b = mheap_alloc_pages(&heap, 284, 0);
	KASSERT(a && b);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages + st.free_scav_pages, 128);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	char *c = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(c);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 1);
	mheap_free_pages(&heap, c, 1);
	mheap_free_pages(&heap, b, 284);
	mheap_free_pages(&heap, a, 100);
	MH_CHECK(&heap, "after the thread's allocations");
	mh_release(&heap);

	/* The same boundary for atomic callers (64 pages at most each). */
	KASSERT(reserve_heap_init(4, 128));
	char *p[7];
	p[0] = mheap_alloc_pages(&heap, 100, 0);
	for (int i = 1; i <= 4; i++)
		p[i] = mheap_alloc_pages(&heap, 64, MHEAP_ATOMIC);
	p[5] = mheap_alloc_pages(&heap, 28, MHEAP_ATOMIC);
	for (int i = 0; i <= 5; i++)
		KASSERT(p[i]);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages + st.free_scav_pages, 128);
	KEXPECT(!refill_asked());
	p[6] = mheap_alloc_pages(&heap, 1, MHEAP_ATOMIC);
	KASSERT(p[6]);
	KEXPECT(refill_asked());
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	mheap_free_pages(&heap, p[6], 1);
	mheap_free_pages(&heap, p[5], 28);
	for (int i = 4; i >= 1; i--)
		mheap_free_pages(&heap, p[i], 64);
	mheap_free_pages(&heap, p[0], 100);
	MH_CHECK(&heap, "after the atomic allocations");
	mh_release(&heap);
}

/* Times the scavenger thread found nothing to take. */
static atomic_int idle_visits;

static void count_idle(struct mheap *h, enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_SCAV_IDLE)
		atomic_fetch_add(&idle_visits, 1);
}

/*
 * A refill an atomic caller asked for that finds the reserve made up
 * again (a page freed since: exactly reserve_pages free) grows nothing.
 * The thread takes the request before its first batch and its first
 * search that finds nothing (MHEAP_HOOK_SCAV_IDLE) comes after the
 * refill; the test waits for that, with no time bound. Against
 * mheap_refill's test made `free > reserve` it grew a chunk (refills 1).
 */
KTEST(mheap_reserve, a_refill_that_finds_the_reserve_whole_grows_nothing)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 128;
	cfg.cpu_permille = 1000; /* no paced sleeps */
	KASSERT(mheap_init(&heap, &cfg));
	char *a = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a);
	char *p[5];
	for (int i = 0; i < 4; i++)
		p[i] = mheap_alloc_pages(&heap, 64, MHEAP_ATOMIC);
	p[4] = mheap_alloc_pages(&heap, 29, MHEAP_ATOMIC); /* 127 left */
	for (int i = 0; i < 5; i++)
		KASSERT(p[i]);
	KASSERT(refill_asked());
	mheap_free_pages(&heap, p[4], 1); /* 128 free: the reserve whole */
	atomic_store(&idle_visits, 0);
	mheap_test_hook = count_idle;
	KASSERT(mheap_scavenger_start(&heap));
	while (atomic_load(&idle_visits) == 0) /* no time bound */
		mm_port_yield();
	mheap_scavenger_stop(&heap);
	mheap_test_hook = NULL;
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT(!refill_asked());
	KEXPECT_EQ(st.free_backed_pages + st.free_scav_pages, 128);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	mheap_free_pages(&heap, p[4] + PG, 28);
	for (int i = 3; i >= 0; i--)
		mheap_free_pages(&heap, p[i], 64);
	mheap_free_pages(&heap, a, 100);
	MH_CHECK(&heap, "after the refill");
	mh_release(&heap);
}

/*
 * A refill grows the chunks that make up the difference, and no more:
 * one page in use, 511 free and a reserve of 1535 need 1024 pages, two
 * chunks exactly, which leave the reserve whole (1535 free). Against
 * mheap_refill asking for a page more than the difference it grew three.
 */
KTEST(mheap_reserve, a_refill_of_whole_chunks_grows_no_more)
{
	KASSERT(reserve_heap_init(16, 3 * PALLOC_CHUNK_PAGES - 1));
	char *a = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 3 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.free_backed_pages + st.free_scav_pages,
	           3 * PALLOC_CHUNK_PAGES - 1);
	KEXPECT_EQ(st.n.refills, 1);
	mheap_free_pages(&heap, a, 1);
	MH_CHECK(&heap, "after the refill");
	mh_release(&heap);
}

/*
 * An atomic caller's refill request is made during the thread's paced
 * sleep, not after it (until a review only the idle sleep heard it: the
 * reserve stayed short up to MHEAP_PACE_MAX_NS after any batch). The
 * first pace is made long (20 ms of CPU spun at its start, at 0.1%: the
 * 10 s bound); the allocation asks during it; stop ends it; the refill
 * must be made by then. A host stall past the whole pace before the
 * request skips the test (no wall-clock bound here).
 */
static sem_t in_pace;
static atomic_int paces;
static atomic_ullong pace_start_ns, refills_at_pace_end = ~0ull;

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void long_pace(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || atomic_load(&paces) > 1)
		return;
	if (where == MHEAP_HOOK_SCAV_PACING && atomic_load(&paces) == 0) {
		uint64_t t = thread_cpu_ns();
		while (thread_cpu_ns() - t < 20000000)
			;
		atomic_store(&pace_start_ns, mm_port_now_ns());
		atomic_store(&paces, 1);
		sem_post(&in_pace);
	} else if (where == MHEAP_HOOK_SCAV_PACED && atomic_load(&paces) == 1) {
		unsigned long irq = mm_lock_acquire(&h->lock);
		atomic_store(&refills_at_pace_end, h->counters.refills);
		mm_lock_release(&h->lock, irq);
		atomic_store(&paces, 2);
	}
}

KTEST(mheap_reserve, a_refill_asked_in_a_paced_sleep_is_made_in_it)
{
	enum { EACH = FILL_EACH };
	char *p[PALLOC_CHUNK_PAGES / EACH];
	size_t n = 0;
	struct mheap_stats st;
	KASSERT(filled_to_reserve(1, p, &n, &st));
	sem_init(&in_pace, 0, 0);
	atomic_store(&paces, 0);
	atomic_store(&refills_at_pace_end, ~0ull);
	mheap_test_hook = long_pace;
	KASSERT(mheap_scavenger_start(&heap));
	sem_wait(&in_pace);
	uint64_t asked_ns = mm_port_now_ns();
	p[n++] = mheap_alloc_pages(&heap, EACH, MHEAP_ATOMIC); /* below */
	KASSERT(p[n - 1]);
	uint64_t refills = 0;
	while (refills == 0) { /* no time bound */
		mm_port_yield();
		unsigned long irq = mm_lock_acquire(&heap.lock);
		refills = heap.counters.refills;
		mm_lock_release(&heap.lock, irq);
	}
	mheap_scavenger_stop(&heap);
	mheap_test_hook = NULL;
	bool ran_out =
	        asked_ns - atomic_load(&pace_start_ns) >= MHEAP_PACE_MAX_NS / 2;
	uint64_t in_pace = atomic_load(&refills_at_pace_end);
	KEXPECT_EQ(refills, 1);
	if (!ran_out)
		KEXPECT_EQ(in_pace, 1); /* 0 before: made after the pace */
	while (n--)
		mheap_free_pages(&heap, p[n], EACH);
	MH_CHECK(&heap, "after the refill");
	mh_release(&heap);
	if (ran_out)
		KTEST_SKIP("the host stalled past the pace before the request");
}

/*
 * The page-level heap and its scavenger (mm/mheap*.c) through the POSIX
 * port: allocation and growth, release-all dropping resident memory
 * (/proc/self/statm), the locked mode under a short frame pool, the paced
 * background thread reaching its goal, debug scavenge-on-free faulting at
 * the freed address, and out of memory leaving nothing changed; bad
 * configurations, the edges of an extension, the scavenger started and
 * stopped twice, and an atomic caller below the reserve asking it to grow
 * the heap.
 */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "../../mm/mheap_testing.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* one at a time; static: the thread may lag */

static bool heap_new(size_t chunks, unsigned flags, size_t watermark)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = chunks * PALLOC_CHUNK_BYTES;
	cfg.flags = flags;
	cfg.low_watermark_pages = watermark;
	return mheap_init(&heap, &cfg);
}

static void heap_release(void)
{
	mh_release(&heap);
}

__attribute__((noinline)) static bool heap_check_panics(void)
{
	return MM_PORT_PANICS(mheap_check(&heap));
}

#define HEAP_CHECK(what)                                                    \
	do {                                                                \
		if (heap_check_panics())                                    \
			ktest_fail_at(__FILE__, __LINE__, "%s: %s", (what), \
			              mm_port_last_panic());                \
	} while (0)

static size_t resident_pages(void)
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res;
}

static bool all_bytes(const void *p, size_t n, unsigned char v)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != v)
			return false;
	return true;
}

KTEST(mheap, alloc_grow_free)
{
	KASSERT(heap_new(64, 0, 0));
	char *a = mheap_alloc_pages(&heap, 3, 0);
	char *b = mheap_alloc_pages(&heap, 700, 0); /* grows a chunk more */
	KASSERT(a && b);
	KEXPECT_EQ((uintptr_t)a, heap.arena_base);
	KEXPECT(all_bytes(a, 3 * PG, 0) && all_bytes(b, 700 * PG, 0));
	memset(a, 1, 3 * PG);
	memset(b, 2, 700 * PG);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 703);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT_EQ(st.grown_pages, st.in_use_pages + st.free_scav_pages);
	/* Two growths of a chunk each: b's extends the first chunk's free
	 * tail (509 pages) by one chunk. */
	KEXPECT_EQ(st.n.grows, 2);
	KEXPECT_EQ(st.grown_pages, 2 * 512);
	HEAP_CHECK("after allocating");
	mheap_free_pages(&heap, b, 700);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 3);
	KEXPECT_EQ(st.free_backed_pages, 700);
	/* Reuse of backed pages keeps their contents (no mm_port_used). */
	char *c = mheap_alloc_pages(&heap, 10, 0);
	KEXPECT_EQ(c, b);
	KEXPECT(c && all_bytes(c, 10 * PG, 2));
	HEAP_CHECK("after reuse");
	unsigned long logs = mm_port_log_count();
	mheap_dump(&heap);
	KEXPECT_EQ(mm_port_log_count(), logs + 3);
	KEXPECT(strstr(mm_port_last_log(), "scavenger:") != NULL);
	heap_release();
}

KTEST(mheap, release_all_drops_rss_and_zeroes)
{
	enum { N = 4096 }; /* 16 MiB */
	KASSERT(heap_new(64, 0, 0));
	char *p = mheap_alloc_pages(&heap, N, 0);
	KASSERT(p);
	memset(p, 0xab, (size_t)N * PG);
	size_t before = resident_pages();
	mheap_free_pages(&heap, p, N);
	size_t released = mheap_release_all(&heap);
	size_t after = resident_pages();
	KEXPECT_EQ(released, N);
	ktest_diag("resident %zu -> %zu pages", before, after);
	KEXPECT(before >= after + N - 256);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT_EQ(st.n.release_pages, N);
	HEAP_CHECK("after release-all");
	KEXPECT_EQ(mheap_release_all(&heap), 0);
	char *q = mheap_alloc_pages(&heap, N, 0);
	KEXPECT_EQ(q, p);
	KEXPECT(q && all_bytes(q, (size_t)N * PG, 0));
	heap_release();
}

/* mheap_chunk_bits, the heap map's view: a chunk's bitmaps as they are,
 * and nothing for a chunk not grown. */
KTEST(mheap, chunk_bits)
{
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	KASSERT(heap_new(64, 0, 0));
	KEXPECT(!mheap_chunk_bits(&heap, 0, alloc, scav));
	char *a = mheap_alloc_pages(&heap, 3, 0);
	char *b = mheap_alloc_pages(&heap, 700, 0);
	KASSERT(a && b);
	KASSERT(mheap_chunk_bits(&heap, 0, alloc, scav));
	KEXPECT_EQ(alloc[0], ~0ull);
	KEXPECT_EQ(alloc[PALLOCBITS_WORDS - 1], ~0ull);
	mheap_free_pages(&heap, b, 700);
	mheap_release_all(&heap);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t grown = st.grown_pages / PALLOC_CHUNK_PAGES;
	KEXPECT(grown >= 2);
	KASSERT(mheap_chunk_bits(&heap, 0, alloc, scav));
	KEXPECT_EQ(alloc[0], 0x7);
	KEXPECT_EQ(scav[0], ~0x7ull);
	for (size_t ci = 1; ci < grown; ci++) {
		KASSERT(mheap_chunk_bits(&heap, ci, alloc, scav));
		for (unsigned w = 0; w < PALLOCBITS_WORDS; w++) {
			KEXPECT_EQ(alloc[w], 0);
			KEXPECT_EQ(scav[w], ~0ull);
		}
	}
	KEXPECT(!mheap_chunk_bits(&heap, grown, alloc, scav));
	KEXPECT(!mheap_chunk_bits(&heap, 1000, alloc, scav)); /* past it */
	heap_release();
}

KTEST(mheap, scavenges_for_frames_when_short)
{
	KASSERT(heap_new(64, 0, 1000));
	char *a = mheap_alloc_pages(&heap, 300, 0);
	char *b = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a && b);
	memset(a, 0xab, 300 * PG);
	mheap_free_pages(&heap, a, 300);
	mm_port_set_free_pages(10);                 /* under the watermark */
	char *c = mheap_alloc_pages(&heap, 600, 0); /* needs 600 frames */
	mm_port_set_free_pages(SIZE_MAX / 2);
	KASSERT(c);
	memset(c, 1, 600 * PG);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.sync_pages, 300);
	KEXPECT(st.n.sync_runs >= 1);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT_EQ(st.in_use_pages, 700);
	HEAP_CHECK("after growing under pressure");
	char *d = mheap_alloc_pages(&heap, 300, 0);
	KEXPECT_EQ(d, a);
	KEXPECT(d && all_bytes(d, 300 * PG, 0));
	/* With frames plenty, nothing is scavenged. */
	mheap_free_pages(&heap, d, 300);
	KEXPECT(mheap_alloc_pages(&heap, 2000, 0));
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.sync_pages, 300);
	heap_release();
}

KTEST(mheap, pacing_arithmetic)
{
	KEXPECT_EQ(mheap_pace_sleep_ns(1000, 10), 99000); /* 1% */
	KEXPECT_EQ(mheap_pace_sleep_ns(1000, 500), 1000); /* 50% */
	KEXPECT_EQ(mheap_pace_sleep_ns(1000, 1000), 0);   /* no limit */
	KEXPECT_EQ(mheap_pace_sleep_ns(0, 10), 0);
	KEXPECT(mheap_pace_sleep_ns(UINT64_MAX, 1) > 0); /* saturates */
	/* The share work / (work + sleep) is at most the budget. */
	for (unsigned b = 1; b <= 1000; b += 37) {
		uint64_t w = 123457, s = mheap_pace_sleep_ns(w, b);
		KEXPECT(w * 1000 <= (w + s) * b + 1000);
	}
	KEXPECT_EQ(mheap_goal_pages(1000, 10), 100);
	KEXPECT_EQ(mheap_goal_pages(999, 10), 99);
	KEXPECT_EQ(mheap_goal_pages(0, 10), 0);
	KEXPECT_EQ(mheap_goal_pages((size_t)1 << 40, 100), (size_t)1 << 40);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The scavenger loop below gives up only when the thread has released no
 * page for this long: a hang guard (a paced batch takes milliseconds), so
 * that a scavenger stuck short of its goal fails the test by name. */
#define SCAV_NO_PROGRESS_NS 60000000000ull

/* Thread CPU time and CLOCK_MONOTONIC are separate clocks. */
#define CLOCK_SLACK_NS 1000000ull

/*
 * A burst of large frees wakes the scavenger, which must bring free backed
 * pages to its goal and go idle. Nothing here bounds the time it takes or
 * its CPU share: the host may stall either thread for any length, and the
 * share under the 1% budget is a measurement (printed here, plotted by
 * make bench-scavenge; the pacing arithmetic itself is pacing_arithmetic).
 * What a stall cannot break: the thread's CPU time advanced, and all of
 * it was spent after the thread was started, so it is at most the wall
 * time since then.
 */
KTEST(mheap, background_reaches_goal)
{
	enum { N = 32, EACH = 64 };
	KASSERT(heap_new(64, 0, 0));
	char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = mheap_alloc_pages(&heap, EACH, 0);
		KASSERT(p[i]);
		memset(p[i], 0xab, EACH * PG);
	}
	uint64_t started = now_ns();
	KASSERT(mheap_scavenger_start(&heap));
	struct mheap_stats st;
	/* Its start-up CPU (before it first sleeps) is not the run's. */
	do
		mheap_stats(&heap, &st);
	while (st.n.bg_cpu_ns == 0);
	uint64_t t0 = now_ns(), cpu0 = st.n.bg_cpu_ns;
	for (int i = 4; i < N; i++) /* a burst of large frees */
		mheap_free_pages(&heap, p[i], EACH);
	/* Until the scavenger goes idle at its goal. */
	bool idle = false;
	uint64_t pages = 0, progress_ns = now_ns(), end = 0;
	for (int tick = 0; !idle; tick++) {
		mheap_stats(&heap, &st);
		uint64_t now = now_ns();
		end = now;         /* after st was read */
		if (tick % 5 == 0) /* samples for tools/plot-heap */
			ktest_diag("heapcsv: %lu,%zu,%zu,%zu",
			           (now - t0) / 1000000, st.in_use_pages * 4,
			           st.free_backed_pages * 4,
			           st.free_scav_pages * 4);
		if (st.n.bg_pages != pages) {
			pages = st.n.bg_pages;
			progress_ns = now;
		} else if (now - progress_ns > SCAV_NO_PROGRESS_NS) {
			ktest_diag("no page released in %llu s: giving up",
			           SCAV_NO_PROGRESS_NS / 1000000000);
			break;
		}
		unsigned long irq = mm_lock_acquire(&heap.lock);
		idle = heap.scav.idle && st.free_backed_pages <= st.goal_pages;
		mm_lock_release(&heap.lock, irq);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	uint64_t wall = end - t0, cpu = st.n.bg_cpu_ns - cpu0;
	mheap_scavenger_stop(&heap);
	ktest_diag("after %lu ms: %lu runs, %lu pages, %lu us CPU "
	           "(%lu per mille, budget %u)",
	           wall / 1000000, st.n.bg_runs, st.n.bg_pages, cpu / 1000,
	           cpu * 1000 / (wall ? wall : 1), MHEAP_DEFAULT_CPU_PERMILLE);
	KEXPECT(idle);
	KEXPECT(st.free_backed_pages <= st.goal_pages);
	KEXPECT_EQ(st.in_use_pages, 4 * EACH);
	KEXPECT(st.n.bg_pages >= (N - 4) * EACH - st.goal_pages);
	KEXPECT(cpu > 0);
	KEXPECT(st.n.bg_cpu_ns <= end - started + CLOCK_SLACK_NS);
	HEAP_CHECK("after the scavenger");
	heap_release();
}

static sigjmp_buf fault_jb;
static void *volatile fault_addr;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	fault_addr = si->si_addr;
	siglongjmp(fault_jb, 1);
}

/* Reads *p; returns true if it faulted (the address in fault_addr). */
__attribute__((noinline)) static bool touch_faults(volatile char *p)
{
	struct sigaction sa = {0}, old;
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	bool faulted = true;
	if (sigsetjmp(fault_jb, 1) == 0) {
		(void)*p;
		faulted = false;
	}
	sigaction(SIGSEGV, &old, NULL);
	return faulted;
}

KTEST(mheap, debug_scavenge_on_free_faults)
{
	KASSERT(heap_new(64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a);
	memset(a, 1, 4 * PG);
	KEXPECT(!touch_faults(a + PG + 5));
	mheap_free_pages(&heap, a, 4);
	fault_addr = NULL;
	KEXPECT(touch_faults(a + PG + 5));
	KEXPECT_EQ((uintptr_t)fault_addr, (uintptr_t)(a + PG + 5));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.debug_pages, 4);
	KEXPECT_EQ(st.free_backed_pages, 0);
	HEAP_CHECK("debug mode");
	char *b = mheap_alloc_pages(&heap, 4, 0);
	KEXPECT_EQ(b, a);
	KEXPECT(b && all_bytes(b, 4 * PG, 0));
	heap_release();
}

/* In debug mode a free from a context that cannot sleep (an atomic
 * allocation trimming its run, a large object freed in an interrupt)
 * frees the pages the ordinary way; it panicked. */
KTEST(mheap, debug_mode_free_in_atomic_context)
{
	KASSERT(heap_new(64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a);
	mm_port_set_atomic(true);
	bool panicked = MM_PORT_PANICS(mheap_free_pages(&heap, a, 4));
	mm_port_set_atomic(false);
	KEXPECT(!panicked);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.debug_pages, 0);
	KEXPECT_EQ(st.in_use_pages, 0);
	HEAP_CHECK("after an atomic free in debug mode");
	heap_release();
}

/* In debug mode a bad free (here one too long, over a freed run and a
 * live neighbour) panics before anything is unmapped: the check came
 * after the unmap, which took the live neighbour's pages away. */
KTEST(mheap, debug_mode_bad_free_unmaps_nothing)
{
	KASSERT(heap_new(64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	char *b = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a && b == a + 4 * PG);
	memset(b, 2, 4 * PG);
	mheap_free_pages(&heap, a, 4);
	KEXPECT(MM_PORT_PANICS(mheap_free_pages(&heap, a, 8)));
	KEXPECT(strstr(mm_port_last_panic(), "is not allocated"));
	/* It panicked under the heap lock, which the catch left held. */
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(!touch_faults(b + 3 * PG));
	KEXPECT(all_bytes(b, 4 * PG, 2));
	heap_release();
}

/*
 * A fully grown arena whose only free pages a scavenge batch has taken out
 * of the free set to unmap them: an allocation waits for the batch and
 * gets them (it failed: nothing to grow). The batch (release-all, on one
 * thread) is held at its hook until the allocating thread waits.
 */
static sem_t batch_held, batch_go;

static void hold_batch(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SCAV_UNMAPPED)
		return;
	mheap_test_hook = NULL; /* once */
	sem_post(&batch_held);
	sem_wait(&batch_go);
}

static void *release_all_thread(void *arg)
{
	(void)arg;
	mheap_release_all(&heap);
	return NULL;
}

static void *alloc_one_thread(void *arg)
{
	*(void **)arg = mheap_alloc_pages(&heap, 1, 0);
	return NULL;
}

/* The first chunk allocated whole and its pages [312, 512) freed, then
 * release-all started on *scav and held (hold_batch) with those 200 pages
 * taken out of the free set. Returns the chunk, NULL on failure. */
static char *hold_a_batch(pthread_t *scav)
{
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	if (!a)
		return NULL;
	mheap_free_pages(&heap, a + 312 * PG, 200);
	sem_init(&batch_held, 0, 0);
	sem_init(&batch_go, 0, 0);
	mheap_test_hook = hold_batch;
	if (pthread_create(scav, NULL, release_all_thread, NULL) != 0)
		return NULL;
	sem_wait(&batch_held);
	return a;
}

KTEST(mheap, alloc_waits_for_a_scavenge_batch)
{
	KASSERT(heap_new(1, 0, 0));
	pthread_t scav, user;
	char *a = hold_a_batch(&scav);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.scavenging_pages, 200);
	KEXPECT_EQ(st.in_use_pages, 312); /* taken pages are not in use */
	void *got = NULL;
	KASSERT(pthread_create(&user, NULL, alloc_one_thread, &got) == 0);
	do { /* until the allocation waits (no time bound) */
		sched_yield();
		mheap_stats(&heap, &st);
	} while (st.n.scav_waits == 0);
	sem_post(&batch_go);
	pthread_join(user, NULL);
	pthread_join(scav, NULL);
	KEXPECT(got != NULL);
	KEXPECT((char *)got >= a + 312 * PG && (char *)got < a + 512 * PG);
	mheap_free_pages(&heap, got, 1);
	mheap_free_pages(&heap, a, 312);
	HEAP_CHECK("after the wait");
	heap_release();
}

/*
 * While a batch holds the only free pages, allocating threads sleep until
 * it ends: their waits on `grown` are counted (scav_waits), once each.
 * Each spun instead, for as long as the batch was held: a failed growth
 * woke the event the thread then waited on with the count it had read
 * before, so every wait ended at once (hundreds of thousands of waits in
 * 50 ms). So in a fully grown arena, where two threads' growths that
 * could not grow also woke each other, and in one whose growth failed for
 * want of memory (the span table's page cannot be mapped). arena_chunks
 * is 1 or 2; the first chunk is allocated whole, 200 pages of it freed
 * and taken by the held batch; nthreads threads then allocate a page.
 */
static void alloc_sleeps_through_a_batch(size_t arena_chunks, unsigned nthreads)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = arena_chunks * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0; /* the second chunk stays ungrown */
	KASSERT(mheap_init(&heap, &cfg));
	pthread_t scav, user[2];
	void *got[2] = {NULL, NULL};
	char *a = hold_a_batch(&scav);
	KASSERT(a);
	mm_port_set_quiet(true);
	if (arena_chunks > 1)
		mm_port_fail_maps(1u << 30); /* every growth fails */
	uint64_t t0 = now_ns();
	for (unsigned t = 0; t < nthreads; t++)
		KASSERT(pthread_create(&user[t], NULL, alloc_one_thread,
		                       &got[t]) == 0);
	struct mheap_stats st;
	do {
		sched_yield();
		mheap_stats(&heap, &st);
	} while (st.n.scav_waits < nthreads);
	struct timespec ts = {.tv_nsec = 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	mheap_stats(&heap, &st);
	uint64_t waits = st.n.scav_waits;
	/* Each thread's first wait, and one more per wait's timeout that
	 * can have passed: a stalled host stretches the 50 ms, and no wall
	 * clock bounds the test. Spinning, waits are 10^5. */
	uint64_t timeouts = (now_ns() - t0) / MHEAP_GROW_WAIT_NS;
	mm_port_fail_maps(0);
	sem_post(&batch_go);
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(user[t], NULL);
	pthread_join(scav, NULL);
	mm_port_set_quiet(false);
	ktest_diag("%u threads, %zu chunks: %lu waits", nthreads, arena_chunks,
	           (unsigned long)waits);
	KEXPECT(waits <= nthreads * (2 + timeouts));
	for (unsigned t = 0; t < nthreads; t++) {
		KEXPECT(got[t] != NULL);
		if (got[t])
			mheap_free_pages(&heap, got[t], 1);
	}
	mheap_free_pages(&heap, a, 312);
	HEAP_CHECK("after the wait");
	heap_release();
}

KTEST(mheap, alloc_sleeps_through_a_batch_in_a_full_arena)
{
	alloc_sleeps_through_a_batch(1, 2);
}

KTEST(mheap, alloc_sleeps_through_a_batch_when_growth_fails)
{
	alloc_sleeps_through_a_batch(2, 1);
}

/* A set-up that fails gives back the address space it reserved (the
 * arena, the span table, palloc's metadata), so that a retry, such as the
 * hosted malloc's with a smaller arena under ulimit -v, has it: each of
 * the three reservations fails in turn. */
KTEST(mheap, failed_init_gives_back_its_reservations)
{
	size_t r0 = mm_port_reserved_bytes();
	mm_port_set_quiet(true);
	for (unsigned nth = 1; nth <= 3; nth++) {
		mm_port_fail_reserve(nth);
		KEXPECT(!heap_new(4, 0, 0));
		KEXPECT_EQ(mm_port_reserved_bytes(), r0);
	}
	mm_port_fail_reserve(0);
	mm_port_set_quiet(false);
	KASSERT(heap_new(4, 0, 0));
	KEXPECT(mm_port_reserved_bytes() > r0);
	heap_release();
	KEXPECT_EQ(mm_port_reserved_bytes(), r0);
}

/* Near the arena's end a growth extends the free run at the top of the
 * grown chunks: the last pages of the arena, that run and the chunks not
 * yet grown, are one allocation, which failed while the growth asked for
 * the chunks the request takes on its own (3 here, with 2 left). */
KTEST(mheap, growth_extends_the_free_tail)
{
	KASSERT(heap_new(4, 0, 0));
	void *x = mheap_alloc_pages(&heap, 1, 0);
	void *y = mheap_alloc_pages(&heap, 600, 0);
	KASSERT(x && y);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t left = 4 * PALLOC_CHUNK_PAGES - 601;
	KEXPECT((left + PALLOC_CHUNK_PAGES - 1) / PALLOC_CHUNK_PAGES >
	        (4 * PALLOC_CHUNK_PAGES - st.grown_pages) / PALLOC_CHUNK_PAGES);
	char *z = mheap_alloc_pages(&heap, left, 0);
	KEXPECT(z != NULL);
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.grown_pages, 4 * PALLOC_CHUNK_PAGES);
	if (z)
		mheap_free_pages(&heap, z, left);
	mheap_free_pages(&heap, y, 600);
	mheap_free_pages(&heap, x, 1);
	HEAP_CHECK("after the growth");
	heap_release();
}

static bool same_stats(const struct mheap_stats *a, const struct mheap_stats *b)
{
	return a->grown_pages == b->grown_pages &&
	       a->in_use_pages == b->in_use_pages &&
	       a->free_backed_pages == b->free_backed_pages &&
	       a->free_scav_pages == b->free_scav_pages &&
	       a->n.grows == b->n.grows;
}

KTEST(mheap, out_of_memory_changes_nothing)
{
	KASSERT(heap_new(4, 0, 0));
	mm_port_set_quiet(true);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	mm_port_fail_maps(1); /* palloc's metadata cannot be mapped */
	KEXPECT(mheap_alloc_pages(&heap, 1, 0) == NULL);
	mm_port_fail_maps(0);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT(mheap_alloc_pages(&heap, 0, 0) == NULL);
	KEXPECT(mheap_alloc_pages(&heap, 4 * 512 + 1, 0) == NULL);
	char *all = mheap_alloc_pages(&heap, 4 * 512, 0);
	KASSERT(all);
	mheap_stats(&heap, &s0);
	KEXPECT(mheap_alloc_pages(&heap, 1, 0) == NULL); /* arena full */
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT(mheap_alloc_pages(&heap, 1, MHEAP_ATOMIC) == NULL);
	mheap_stats(&heap, &s1);
	KEXPECT_EQ(s1.n.atomic_fails, s0.n.atomic_fails + 1); /* counted */
	/* Mapping scavenged pages fails: they go back, still scavenged. */
	mheap_free_pages(&heap, all, 4 * 512);
	KEXPECT_EQ(mheap_release_all(&heap), 4 * 512);
	mheap_stats(&heap, &s0);
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 10, 0) == NULL);
	mm_port_fail_maps(0);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	HEAP_CHECK("after running out");
	mm_port_set_quiet(false);
	heap_release();
}

/* A stop with no scavenger does nothing; a second start keeps the thread
 * the first made; after a stop a start makes a new one. */
KTEST(mheap, scavenger_start_and_stop_twice)
{
	KASSERT(heap_new(1, 0, 0));
	mheap_scavenger_stop(&heap);
	KEXPECT(heap.scav.thread == NULL);
	KASSERT(mheap_scavenger_start(&heap));
	struct mm_thread *t = heap.scav.thread;
	KEXPECT(t != NULL);
	KEXPECT(mheap_scavenger_start(&heap));
	KEXPECT(heap.scav.thread == t);
	mheap_scavenger_stop(&heap);
	KEXPECT(heap.scav.thread == NULL);
	mheap_scavenger_stop(&heap);
	KASSERT(mheap_scavenger_start(&heap));
	KEXPECT(heap.scav.thread != NULL);
	mheap_scavenger_stop(&heap);
	KEXPECT(heap.scav.thread == NULL);
	heap_release();
}

/* Each field out of range: init says why, returns false and reserves
 * nothing. */
KTEST(mheap, init_refuses_a_bad_config)
{
	static const struct {
		const char *what;
		size_t arena_bytes, reserve_pages;
		unsigned cpu_permille;
	} bad[] = {
	        {"arena 0", 0, 0, 10},
	        {"arena not whole chunks", PALLOC_CHUNK_BYTES + PG, 0, 10},
	        {"cpu 0", PALLOC_CHUNK_BYTES, 0, 0},
	        {"cpu 1001", PALLOC_CHUNK_BYTES, 0, 1001},
	        {"reserve past the arena", PALLOC_CHUNK_BYTES,
	         PALLOC_CHUNK_BYTES / PG + 1, 10},
	};
	size_t r0 = mm_port_reserved_bytes();
	mm_port_set_quiet(true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mheap_config cfg;
		mheap_config_default(&cfg);
		cfg.arena_bytes = bad[i].arena_bytes;
		cfg.reserve_pages = bad[i].reserve_pages;
		cfg.cpu_permille = bad[i].cpu_permille;
		if (mheap_init(&heap, &cfg))
			ktest_fail_at(__FILE__, __LINE__, "%s: accepted",
			              bad[i].what);
		else if (!strstr(mm_port_last_log(), "bad config"))
			ktest_fail_at(__FILE__, __LINE__, "%s: logged \"%s\"",
			              bad[i].what, mm_port_last_log());
		KEXPECT_EQ(mm_port_reserved_bytes(), r0);
	}
	mm_port_set_quiet(false);
	/* The edges themselves are fine. */
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = PALLOC_CHUNK_BYTES / PG;
	cfg.cpu_permille = 1000;
	KASSERT(mheap_init(&heap, &cfg));
	heap_release();
}

/* An extension by nothing succeeds and changes nothing; one past the
 * arena's end, or of a run below the arena, fails and changes nothing. */
KTEST(mheap, extend_pages_edges)
{
	KASSERT(heap_new(1, 0, 0));
	char *tail = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES - 4, 0);
	char *last = mheap_alloc_pages(&heap, 2, 0); /* 2 free after it */
	KASSERT(tail && last);
	KASSERT(last == tail + (PALLOC_CHUNK_PAGES - 4) * PG);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	KEXPECT(mheap_extend_pages(&heap, last, 2, 0));
	KEXPECT(!mheap_extend_pages(&heap, last, 2, 3)); /* past the end */
	KEXPECT(!mheap_extend_pages(&heap, (char *)heap.arena_base - PG, 1, 1));
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT(mheap_extend_pages(&heap, last, 2, 2)); /* to the end */
	mheap_free_pages(&heap, last, 4);
	mheap_free_pages(&heap, tail, PALLOC_CHUNK_PAGES - 4);
	HEAP_CHECK("after the extensions");
	heap_release();
}

/* Memory runs out mapping scavenged pages that an extension or a run of
 * more than 64 pages (unmapped and given back whole) would take: the call
 * fails, and the pages are free and scavenged as before. */
KTEST(mheap, out_of_memory_mapping_scavenged_pages)
{
	KASSERT(heap_new(1, 0, 0));
	char *a = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a);
	mheap_release_all(&heap); /* fresh pages may be scavenged already */
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	KEXPECT_EQ(s0.free_scav_pages, PALLOC_CHUNK_PAGES - 1);
	mm_port_set_quiet(true);
	mm_port_fail_maps(1);
	KEXPECT(!mheap_extend_pages(&heap, a, 1, 10));
	mm_port_fail_maps(0);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT_EQ(s1.free_scav_pages, PALLOC_CHUNK_PAGES - 1);
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 100, 0) == NULL);
	mm_port_fail_maps(0);
	mm_port_set_quiet(false);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT_EQ(s1.free_scav_pages, PALLOC_CHUNK_PAGES - 1);
	HEAP_CHECK("after running out");
	/* With memory, both work. */
	KEXPECT(mheap_extend_pages(&heap, a, 1, 10));
	char *b = mheap_alloc_pages(&heap, 100, 0);
	KEXPECT(b != NULL);
	if (b)
		mheap_free_pages(&heap, b, 100);
	mheap_free_pages(&heap, a, 11);
	HEAP_CHECK("after the retries");
	heap_release();
}

/* A growth whose span-table page cannot be mapped fails whole: the chunk
 * stays ungrown and nothing changes; the next growth maps the page and
 * takes the chunk. */
KTEST(mheap, out_of_memory_mapping_the_span_table)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0;
	KASSERT(mheap_init(&heap, &cfg));
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(a);
	struct mheap_stats s0, s1;
	mheap_stats(&heap, &s0);
	KASSERT_EQ(s0.grown_pages, PALLOC_CHUNK_PAGES);
	size_t mapped = mm_port_mapped_bytes();
	mm_port_set_quiet(true);
	mm_port_fail_maps(1);
	KEXPECT(mheap_alloc_pages(&heap, 1, 0) == NULL);
	mm_port_fail_maps(0);
	mm_port_set_quiet(false);
	mheap_stats(&heap, &s1);
	KEXPECT(same_stats(&s0, &s1));
	KEXPECT_EQ(mm_port_mapped_bytes(), mapped);
	HEAP_CHECK("after the failed growth");
	char *b = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(b);
	KEXPECT(b == a + PALLOC_CHUNK_PAGES * PG);
	KEXPECT(mheap_span_lookup(&heap, (uintptr_t)b) == MHEAP_SPAN_PAGES);
	KEXPECT(mheap_span_lookup(&heap, (uintptr_t)b + PG) == NULL);
	mheap_stats(&heap, &s1);
	KEXPECT_EQ(s1.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	mheap_free_pages(&heap, b, 1);
	mheap_free_pages(&heap, a, PALLOC_CHUNK_PAGES);
	HEAP_CHECK("after the growth");
	heap_release();
}

/* An atomic allocation that takes the free pages below the reserve does
 * not grow the heap itself (it may not sleep): it asks the scavenger
 * thread, once, which grows the heap back to the reserve when it runs. */
KTEST(mheap, atomic_allocation_below_the_reserve_asks_for_a_refill)
{
	enum { RESERVE = 64, EACH = MHEAP_ATOMIC_MAX_PAGES };
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = RESERVE;
	KASSERT(mheap_init(&heap, &cfg));
	char *p[PALLOC_CHUNK_PAGES / EACH];
	size_t n = 0;
	struct mheap_stats st;
	p[n++] = mheap_alloc_pages(&heap, EACH, 0); /* grows the first chunk */
	KASSERT(p[0]);
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	while (st.free_backed_pages + st.free_scav_pages >= RESERVE + EACH) {
		KASSERT(n < PALLOC_CHUNK_PAGES / EACH);
		KASSERT(!heap.scav.refill);
		p[n++] = mheap_alloc_pages(&heap, EACH, MHEAP_ATOMIC);
		KASSERT(p[n - 1]);
		mheap_stats(&heap, &st);
	}
	p[n++] = mheap_alloc_pages(&heap, EACH, MHEAP_ATOMIC); /* below */
	KASSERT(p[n - 1]);
	mheap_stats(&heap, &st);
	KEXPECT(st.free_backed_pages + st.free_scav_pages < RESERVE);
	KEXPECT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	KASSERT(heap.scav.refill); /* else the wait below never ends */
	KASSERT(mheap_scavenger_start(&heap));
	for (;;) { /* until the thread has grown the heap (no time bound) */
		mheap_stats(&heap, &st);
		if (st.n.refills)
			break;
		mm_port_yield();
	}
	mheap_scavenger_stop(&heap);
	KEXPECT(!heap.scav.refill);
	KEXPECT_EQ(st.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	KEXPECT(st.free_backed_pages + st.free_scav_pages >= RESERVE);
	while (n--)
		mheap_free_pages(&heap, p[n], EACH);
	HEAP_CHECK("after the refill");
	heap_release();
}

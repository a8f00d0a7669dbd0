/*
 * The page heap's atomic callers (mm/mheap_alloc.c, invariant 4: an
 * atomic caller never sleeps or scavenges) through the POSIX port: where
 * a thread would wait (a growth under way, a scavenge batch holding the
 * free pages) an MHEAP_ATOMIC allocation gets NULL at once; one that
 * lands on scavenged pages while frames are short scavenges nothing; and
 * debug mode's unmapping free still refuses pages a batch took.
 *
 * A held thread is let go only by the test, so an atomic call that waited
 * for it would never return; but the port panics at once when an atomic
 * caller would sleep, and the panic is caught and named. A hang that
 * slipped past that would be the host run's timeout's to name: no test
 * here bounds a wait by the clock.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "mheap_batch_util.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap; /* one at a time; static: a thread may lag */

/* An MHEAP_ATOMIC allocation of one page run on a thread of its own, in
 * the port's atomic context; done is posted when it returns. A panic is
 * caught (the port panics when an atomic caller would sleep) so that the
 * test can say what it was rather than abort the run. */
struct atomic_call {
	pthread_t t;
	sem_t done;
	void *got;
	bool panicked;
};

static void *atomic_alloc_thread(void *arg)
{
	struct atomic_call *c = arg;
	mm_port_set_atomic(true);
	c->panicked = MM_PORT_PANICS(
	        c->got = mheap_alloc_pages(&heap, 1, MHEAP_ATOMIC));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	mm_port_set_atomic(false);
	sem_post(&c->done);
	return NULL;
}

/* Fails the current test at file:line if c panicked, saying how. Call
 * after joining c's thread. */
static void expect_no_panic(const char *file, int line,
                            const struct atomic_call *c)
{
	if (c->panicked)
		ktest_fail_at(file, line, "the atomic allocation panicked: %s",
		              mm_port_last_panic());
}

/* Starts c and waits for it to return; false if it could not start.
 * Join it with pthread_join after letting go. */
static bool atomic_alloc_returns(struct atomic_call *c)
{
	sem_init(&c->done, 0, 0);
	c->got = NULL;
	c->panicked = false;
	if (pthread_create(&c->t, NULL, atomic_alloc_thread, c) != 0)
		return false;
	while (sem_wait(&c->done) != 0)
		if (errno != EINTR)
			return false;
	return true;
}

/* Set by the thread whose growth the hook holds after its prepare. */
static __thread bool hold_my_growth;
static sem_t prepared, prepare_go;

static void hold_prepared(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_GROW_PREPARED || !hold_my_growth)
		return;
	hold_my_growth = false; /* once */
	sem_post(&prepared);
	sem_wait(&prepare_go);
}

static void *grow_thread(void *arg)
{
	hold_my_growth = true;
	*(void **)arg = mheap_alloc_pages(&heap, 1, 0);
	return NULL;
}

/*
 * An arena of two chunks, the first grown and allocated whole. A thread
 * misses, starts growing the second chunk and is held between its prepare
 * and its commit. An atomic allocation of a page now finds the growth
 * busy: it must get NULL without waiting for it (a thread would sleep on
 * `grown`). Let go, the grower gets its page.
 */
KTEST(mheap_atomic, alloc_does_not_wait_for_a_growth)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0; /* the second chunk is the grower's */
	KASSERT(mheap_init(&heap, &cfg));
	char *full = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(full);
	sem_init(&prepared, 0, 0);
	sem_init(&prepare_go, 0, 0);
	mheap_test_hook = hold_prepared;
	void *grown = NULL;
	pthread_t grower;
	KASSERT(pthread_create(&grower, NULL, grow_thread, &grown) == 0);
	sem_wait(&prepared);
	struct atomic_call c;
	bool returned = atomic_alloc_returns(&c);
	if (!returned)
		ktest_fail_at(__FILE__, __LINE__,
		              "the atomic allocation's thread did not start");
	sem_post(&prepare_go);
	if (returned)
		pthread_join(c.t, NULL);
	pthread_join(grower, NULL);
	mheap_test_hook = NULL;
	expect_no_panic(__FILE__, __LINE__, &c);
	KEXPECT(returned && c.got == NULL);
	KEXPECT(grown != NULL);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.grow_waits, 0);
	KEXPECT_EQ(st.n.atomic_fails, 1);
	KEXPECT_EQ(st.n.grows, 2);
	MH_CHECK(&heap, "after the growth");
	mh_release(&heap);
}

/*
 * A fully grown arena whose only free pages a scavenge batch holds out of
 * the free set: an atomic allocation must get NULL without waiting for
 * the batch (a thread waits, mheap_scav_wait_test.c), and count no
 * scav_wait.
 */
KTEST(mheap_atomic, alloc_does_not_wait_for_a_scavenge_batch)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	pthread_t scav;
	char *a = mh_hold_a_batch(&heap, &scav);
	KASSERT(a);
	struct atomic_call c;
	bool returned = atomic_alloc_returns(&c);
	if (!returned)
		ktest_fail_at(__FILE__, __LINE__,
		              "the atomic allocation's thread did not start");
	mh_batch_go(scav);
	if (returned)
		pthread_join(c.t, NULL);
	expect_no_panic(__FILE__, __LINE__, &c);
	KEXPECT(returned && c.got == NULL);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.scav_waits, 0);
	KEXPECT_EQ(st.n.atomic_fails, 1);
	KEXPECT_EQ(st.scavenging_pages, 0);
	KEXPECT_EQ(st.in_use_pages, 312 + (c.got != NULL));
	MH_CHECK(&heap, "after the batch");
	if (c.got)
		mheap_free_pages(&heap, c.got, 1);
	mheap_free_pages(&heap, a, 312);
	mh_release(&heap);
}

/*
 * Frames short (under the low watermark) and 32 free backed pages below:
 * an atomic allocation of 33 fresh, scavenged pages maps them and
 * scavenges none of the backed ones (that is the scavenger thread's or a
 * thread's allocation's work: a batch waits for shootdowns).
 */
KTEST(mheap_atomic, alloc_does_not_scavenge_for_frames)
{
	KASSERT(mh_new(&heap, 64, 0, 1000));
	char *a = mheap_alloc_pages(&heap, 32, 0);
	char *b = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a && b);
	mheap_free_pages(&heap, a, 32);
	char *c = NULL;
	mm_port_set_free_pages(10); /* under the watermark */
	mm_port_set_atomic(true);
	bool panicked =
	        MM_PORT_PANICS(c = mheap_alloc_pages(&heap, 33, MHEAP_ATOMIC));
	mm_port_set_atomic(false);
	mm_port_set_free_pages(SIZE_MAX / 2);
	if (panicked)
		ktest_fail_at(__FILE__, __LINE__, "the atomic allocation: %s",
		              mm_port_last_panic());
	KEXPECT(c > b);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.sync_pages, 0);
	KEXPECT_EQ(st.n.sync_runs, 0);
	KEXPECT_EQ(st.free_backed_pages, 32);
	if (panicked)
		return; /* the heap may be mid-batch: leave it */
	KEXPECT(c && mh_all_bytes(c, 33 * PG, 0));
	mheap_free_pages(&heap, b, 1);
	if (c)
		mheap_free_pages(&heap, c, 33);
	MH_CHECK(&heap, "after the atomic allocation");
	mh_release(&heap);
}

/*
 * Debug mode frees by unmapping the pages and returning them scavenged;
 * that free too must refuse pages a scavenge batch took (palloc holds
 * them allocated, so its own check passes). The 200 pages are freed in
 * atomic context, the ordinary way, so that they stay backed for the
 * batch to take; then a thread frees one of them again.
 */
KTEST(mheap_atomic, debug_mode_free_of_pages_being_scavenged_panics)
{
	KASSERT(mh_new(&heap, 1, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(a);
	mm_port_set_atomic(true);
	mheap_free_pages(&heap, a + 312 * PG, 200);
	mm_port_set_atomic(false);
	pthread_t scav;
	KASSERT(mh_batch_hold(&heap, &scav));
	bool fired = MM_PORT_PANICS(mheap_free_pages(&heap, a + 400 * PG, 1));
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(fired && strstr(mm_port_last_panic(), "being scavenged"));
	if (!fired) /* it freed the page: take it back, the only free one,
	             * or the batch's return panics on it and aborts */
		KEXPECT_EQ(mheap_alloc_pages(&heap, 1, MHEAP_NO_GROW),
		           a + 400 * PG);
	mh_batch_go(scav);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 312);
	KEXPECT_EQ(st.scavenging_pages, 0);
	KEXPECT_EQ(st.n.debug_pages, 0);
	MH_CHECK(&heap, "after the batch");
	mheap_free_pages(&heap, a, 312);
	mh_release(&heap);
}

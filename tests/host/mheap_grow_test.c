/*
 * The page heap's growth racing allocations (mm/mheap_alloc.c's
 * alloc_pages, mm/mheap_grow.c) through the POSIX port: interleavings
 * forced with the test hooks of mm/mheap_testing.h rather than left to
 * chance (a growth, and a scavenge batch, ending after an allocation's
 * failed attempt), then threads filling small arenas exactly, every growth
 * raced (built for ThreadSanitizer too: make test-tsan).
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_internal.h"
#include "mheap_batch_util.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"
#include "port_test_util.h"
#include "stress_util.h"

static struct mheap heap;

/* Set by the thread whose missed attempt the hook holds. */
static __thread bool hold_my_miss;
static sem_t missed, miss_go, committed, commit_go;

static void hold_miss_and_commit(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap)
		return;
	if (where == MHEAP_HOOK_ALLOC_MISSED && hold_my_miss) {
		hold_my_miss = false; /* once */
		sem_post(&missed);
		sem_wait(&miss_go);
	} else if (where == MHEAP_HOOK_GROW_COMMITTED) {
		sem_post(&committed);
		sem_wait(&commit_go);
	}
}

struct one_page {
	bool atomic, held;
	void *got;
};

static void *alloc_one(void *arg)
{
	struct one_page *a = arg;
	hold_my_miss = a->held;
	mm_port_set_atomic(a->atomic);
	a->got = mheap_alloc_pages(&heap, 1, a->atomic ? MHEAP_ATOMIC : 0);
	mm_port_set_atomic(false);
	return NULL;
}

/*
 * An arena of two chunks, the first grown and allocated whole. A (atomic
 * or not) misses and is held there; B misses, grows the second chunk and
 * is held after its commit, before it wakes anyone; then A goes on. The
 * arena has no room left to grow, but the growth A missed gave it 511
 * free pages: A must get one. It got NULL: the failed growth and the
 * scavenge check looked for nothing else that had changed since the
 * attempt, and the wake that would have said so came only later.
 */
static void alloc_races_a_growth(bool atomic)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0; /* the second chunk is B's to grow */
	KASSERT(mheap_init(&heap, &cfg));
	char *full = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(full);
	sem_init(&missed, 0, 0);
	sem_init(&miss_go, 0, 0);
	sem_init(&committed, 0, 0);
	sem_init(&commit_go, 0, 0);
	mheap_test_hook = hold_miss_and_commit;
	struct one_page a = {.atomic = atomic, .held = true}, b = {0};
	pthread_t ta, tb;
	KASSERT(pthread_create(&ta, NULL, alloc_one, &a) == 0);
	sem_wait(&missed);
	KASSERT(pthread_create(&tb, NULL, alloc_one, &b) == 0);
	sem_wait(&committed);
	sem_post(&miss_go);
	pthread_join(ta, NULL); /* A needs nothing more from B */
	sem_post(&commit_go);
	pthread_join(tb, NULL);
	mheap_test_hook = NULL;
	char *second = full + PALLOC_CHUNK_PAGES * MM_PAGE_SIZE;
	KEXPECT(a.got != NULL);
	KEXPECT(b.got != NULL);
	KEXPECT(a.got != b.got);
	KEXPECT(!a.got || (char *)a.got >= second);
	KEXPECT(!b.got || (char *)b.got >= second);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.grows, 2);
	KEXPECT_EQ(st.n.atomic_fails, 0);
	KEXPECT_EQ(st.in_use_pages,
	           PALLOC_CHUNK_PAGES + (a.got != NULL) + (b.got != NULL));
	MH_CHECK(&heap, "after the race");
	mh_release(&heap);
}

KTEST(mheap_grow, alloc_that_missed_a_growth_gets_its_pages)
{
	alloc_races_a_growth(false);
}

KTEST(mheap_grow, atomic_alloc_that_missed_a_growth_gets_its_pages)
{
	alloc_races_a_growth(true);
}

/*
 * A fully grown arena of one chunk, allocated whole, then 200 pages of it
 * freed and taken by a scavenge batch (release-all on its own thread, held
 * at MHEAP_HOOK_SCAV_UNMAPPED). A thread allocates a page: its attempt
 * fails, the event count has not moved, it cannot grow, and it is held at
 * MHEAP_HOOK_ALLOC_NO_GROWTH while the batch ends and gives the 200 pages
 * back. It must see that the heap changed since its attempt (the batch's
 * return, scav_returns) and retry: by then no batch holds pages, so it
 * would otherwise take the arena for full and fail with 200 pages free.
 */
static sem_t batch_held, batch_go;
static atomic_bool batch_once, miss_once;

static void hold_batch_and_miss(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap)
		return;
	if (where == MHEAP_HOOK_SCAV_UNMAPPED &&
	    !atomic_exchange(&batch_once, true)) {
		sem_post(&batch_held);
		sem_wait(&batch_go);
	} else if (where == MHEAP_HOOK_ALLOC_NO_GROWTH &&
	           !atomic_exchange(&miss_once, true)) {
		sem_post(&missed);
		sem_wait(&miss_go);
	}
}

KTEST(mheap_grow, alloc_sees_a_batch_end_after_its_attempt)
{
	KASSERT(mh_new(&heap, 1, 0, 0));
	char *a = mheap_alloc_pages(&heap, PALLOC_CHUNK_PAGES, 0);
	KASSERT(a);
	mheap_free_pages(&heap, a + 312 * MM_PAGE_SIZE, 200);
	sem_init(&batch_held, 0, 0);
	sem_init(&batch_go, 0, 0);
	sem_init(&missed, 0, 0);
	sem_init(&miss_go, 0, 0);
	atomic_store(&batch_once, false);
	atomic_store(&miss_once, false);
	mheap_test_hook = hold_batch_and_miss;
	pthread_t scav, user;
	KASSERT(pthread_create(&scav, NULL, mh_release_all_run, &heap) == 0);
	sem_wait(&batch_held);
	struct one_page u = {0};
	KASSERT(pthread_create(&user, NULL, alloc_one, &u) == 0);
	sem_wait(&missed); /* its attempt failed; no growth */
	sem_post(&batch_go);
	pthread_join(scav, NULL); /* the 200 pages are free again */
	sem_post(&miss_go);
	pthread_join(user, NULL);
	mheap_test_hook = NULL;
	KEXPECT(u.got != NULL);
	KEXPECT(!u.got || ((char *)u.got >= a + 312 * MM_PAGE_SIZE &&
	                   (char *)u.got < a + 512 * MM_PAGE_SIZE));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 312 + (u.got != NULL));
	KEXPECT_EQ(st.scavenging_pages, 0);
	if (u.got)
		mheap_free_pages(&heap, u.got, 1);
	mheap_free_pages(&heap, a, 312);
	MH_CHECK(&heap, "after the batch");
	mh_release(&heap);
}

/*
 * WORKERS threads share an arena of CHUNKS chunks with no reserve and
 * take one page at a time (now and then a run of RUN) until, together,
 * they have taken every page: each allocation must succeed, since the
 * pages asked for are always there or growable, whoever grows them.
 * ROUNDS fresh heaps, the workers let go together each time, so that the
 * growths race the other workers' attempts. A failure names the round.
 */
enum {
	GS_WORKERS = 4,
	GS_CHUNKS = 4,
	GS_ROUNDS = 200,
	GS_RUN = 7,
	GS_EACH = GS_CHUNKS * PALLOC_CHUNK_PAGES / GS_WORKERS,
};

_Static_assert(GS_EACH % (GS_RUN + 1) == 0,
               "a worker's share is whole steps of a run and a page");

struct gs_worker {
	int id, round;
	atomic_int *gate;
	unsigned long got;
	struct stress_failures failures;
};

static void gs_work(void *arg)
{
	struct gs_worker *w = arg;
	mm_port_set_cpu((unsigned)w->id);
	while (atomic_load(w->gate) == 0)
		sched_yield();
	for (unsigned taken = 0; taken < GS_EACH;) {
		size_t n = taken % (GS_RUN + 1) == 0 ? GS_RUN : 1;
		char *p = mheap_alloc_pages(&heap, n, 0);
		if (!p) {
			stress_fail(&w->failures,
			            "round %d: worker %d: alloc of %zu pages "
			            "failed after %u",
			            w->round, w->id, n, taken);
			return;
		}
		p[0] = (char)w->id; /* mapped */
		taken += (unsigned)n;
		w->got += n;
	}
}

KTEST(mheap_grow, stress_threads_fill_the_arena_while_it_grows)
{
	struct gs_worker w[GS_WORKERS];
	unsigned long fails = 0;
	for (int round = 0; round < GS_ROUNDS; round++) {
		struct mheap_config cfg;
		mheap_config_default(&cfg);
		cfg.arena_bytes = GS_CHUNKS * PALLOC_CHUNK_BYTES;
		cfg.reserve_pages = 0;
		KASSERT(mheap_init(&heap, &cfg));
		atomic_int gate = 0;
		for (int i = 0; i < GS_WORKERS; i++)
			w[i] = (struct gs_worker){
			        .id = i, .round = round, .gate = &gate};
		struct mm_thread *t[GS_WORKERS];
		KASSERT(start_all(t, GS_WORKERS, gs_work, w, sizeof(*w)));
		atomic_store(&gate, 1);
		join_all(t, GS_WORKERS);
		struct mheap_stats st;
		mheap_stats(&heap, &st);
		for (int i = 0; i < GS_WORKERS; i++) {
			if (w[i].failures.n && fails++ == 0)
				ktest_fail_at(__FILE__, __LINE__, "%s",
				              w[i].failures.first);
		}
		if (!fails) {
			KEXPECT_EQ(st.in_use_pages,
			           GS_CHUNKS * PALLOC_CHUNK_PAGES);
			KEXPECT_EQ(st.n.grows <= GS_CHUNKS, true);
		}
		MH_CHECK(&heap, "after a round");
		mh_release(&heap);
		if (fails)
			break;
	}
}

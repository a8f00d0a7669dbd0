/*
 * The page heap under threads (mm/mheap*.c through the POSIX port): worker
 * threads, each on a CPU id of its own, allocate and free runs of 1 to 400
 * pages (mostly small) on one shared heap while the background scavenger
 * runs flat out and one worker calls mheap_release_all now and then. Each
 * run carries its owner's pattern (thread id and run address), checked
 * before it is freed; a quarter of the runs are handed to the next worker
 * to free, so frees cross threads. At the end every page is free: the
 * heap's counts must agree, and after the scavenger stops, a release-all
 * leaves no free page backed. Built for ThreadSanitizer too (make
 * test-tsan), where it is the test that runs mm/ on several threads.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "mheap_test_util.h"
#include "port_test_util.h"
#include "stress_util.h"

enum {
	WORKERS = 4,
	OPS = 8000, /* per worker */
	LIVE = 24,  /* runs a worker holds at most */
	INBOX = 64, /* runs handed over, waiting to be freed */
	RELEASE_EVERY = 1000,
	ARENA_CHUNKS = 256, /* 512 MiB of address space, mostly untouched */
	STRIDE = 512,       /* bytes between pattern words */
};

struct run {
	uintptr_t base;
	size_t npages;
	int owner; /* the worker that allocated and filled it */
};

struct worker {
	int id;
	uint64_t rng;
	struct run live[LIVE];
	/* Runs handed to this worker by the previous one: */
	struct stress_inbox inbox;
	struct run inbox_items[INBOX];
	/* What the worker saw, read after it is joined: */
	unsigned long allocs, frees, handed, releases;
	struct stress_failures failures;
};

static struct mheap heap;
static struct worker workers[WORKERS];

/* Mostly small: 1-8 pages 5/8 of the time, 9-64 1/4, 65-400 1/8. */
static size_t random_npages(uint64_t *rng)
{
	uint64_t r = stress_random(rng);
	unsigned kind = r % 8;
	r >>= 3;
	if (kind < 5)
		return 1 + r % 8;
	if (kind < 7)
		return 9 + r % 56;
	return 65 + r % 336;
}

static uint64_t pattern(const struct run *r, size_t off)
{
	return ((uint64_t)r->owner << 56) ^ r->base ^ off;
}

static void fill(const struct run *r)
{
	for (size_t off = 0; off < r->npages * MM_PAGE_SIZE; off += STRIDE)
		*(uint64_t *)(r->base + off) = pattern(r, off);
}

/* Records a failed check of w's. */
#define fail(w, ...) stress_fail(&(w)->failures, __VA_ARGS__)

/* Checks r's pattern, then frees it. */
static void check_and_free(struct worker *w, const struct run *r)
{
	for (size_t off = 0; off < r->npages * MM_PAGE_SIZE; off += STRIDE) {
		uint64_t got = *(uint64_t *)(r->base + off);
		if (got != pattern(r, off)) {
			fail(w,
			     "run %#lx+%zu pages of worker %d: word at +%zu "
			     "is %#lx",
			     (unsigned long)r->base, r->npages, r->owner, off,
			     (unsigned long)got);
			break;
		}
	}
	mheap_free_pages(&heap, (void *)r->base, r->npages);
	w->frees++;
}

/* Hands r to the next worker; false if its inbox is full. */
static bool hand_over(struct worker *w, const struct run *r)
{
	bool ok = stress_inbox_put(&workers[(w->id + 1) % WORKERS].inbox, r);
	w->handed += ok;
	return ok;
}

static void drain_inbox(struct worker *w)
{
	struct run got[INBOX];
	size_t n = stress_inbox_take(&w->inbox, got);
	for (size_t i = 0; i < n; i++)
		check_and_free(w, &got[i]);
}

static void one_op(struct worker *w, int op)
{
	struct run *r = &w->live[stress_random(&w->rng) % LIVE];
	if (r->base) {
		if (stress_random(&w->rng) % 4 != 0 || !hand_over(w, r))
			check_and_free(w, r);
		r->base = 0;
		return;
	}
	size_t n = random_npages(&w->rng);
	void *p = mheap_alloc_pages(&heap, n, 0);
	if (!p) {
		fail(w, "op %d: alloc of %zu pages failed", op, n);
		return;
	}
	*r = (struct run){(uintptr_t)p, n, w->id};
	fill(r);
	w->allocs++;
}

static void work(void *arg)
{
	struct worker *w = arg;
	mm_port_set_cpu((unsigned)w->id);
	for (int op = 0; op < OPS; op++) {
		one_op(w, op);
		if (op % 8 == 0)
			drain_inbox(w);
		if (w->id == 0 && op % RELEASE_EVERY == RELEASE_EVERY - 1) {
			mheap_release_all(&heap);
			w->releases++;
		}
	}
	for (int i = 0; i < LIVE; i++)
		if (w->live[i].base)
			check_and_free(w, &w->live[i]);
	drain_inbox(w);
}

__attribute__((noinline)) static bool heap_check_panics(void)
{
	return MM_PORT_PANICS(mheap_check(&heap));
}

static void workers_init(void)
{
	for (int i = 0; i < WORKERS; i++) {
		workers[i] =
		        (struct worker){.id = i, .rng = 0x9e3779b9u * (i + 1)};
		stress_inbox_init(&workers[i].inbox, workers[i].inbox_items,
		                  sizeof(workers[i].inbox_items[0]), INBOX);
	}
}

/* Runs the workers to the end and frees what they left handed over;
 * false if they could not be started. *ms is how long it took. */
static bool run_workers(uint64_t *ms)
{
	struct mm_thread *t[WORKERS];
	uint64_t t0 = mm_port_now_ns();
	bool started = start_all(t, WORKERS, work, workers, sizeof(*workers));
	if (started)
		join_all(t, WORKERS);
	/* Runs handed to a worker after it drained its inbox for the last
	 * time; no worker runs now. */
	for (int i = 0; i < WORKERS; i++)
		drain_inbox(&workers[i]);
	*ms = (mm_port_now_ns() - t0) / MS;
	return started;
}

/* Reports each worker's failures and sums its counts; destroys the
 * inboxes. */
static void sum_workers(unsigned long *allocs, unsigned long *frees,
                        unsigned long *handed)
{
	for (int i = 0; i < WORKERS; i++) {
		struct worker *w = &workers[i];
		STRESS_REPORT(i, &w->failures);
		*allocs += w->allocs;
		*frees += w->frees;
		*handed += w->handed;
		stress_inbox_destroy(&w->inbox);
	}
}

KTEST(mheap, stress_threads)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = (size_t)ARENA_CHUNKS * PALLOC_CHUNK_BYTES;
	cfg.goal_percent = 0;    /* every free backed page is work */
	cfg.cpu_permille = 1000; /* and the scavenger never pauses */
	KASSERT(mheap_init(&heap, &cfg));
	mm_port_set_quiet(true); /* the scavenger's "at goal" lines */
	KASSERT(mheap_scavenger_start(&heap));
	workers_init();
	uint64_t ms;
	bool started = run_workers(&ms);

	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 0);
	mheap_scavenger_stop(&heap);
	mheap_release_all(&heap);
	struct mheap_stats end;
	mheap_stats(&heap, &end);
	mm_port_set_quiet(false);
	unsigned long allocs = 0, frees = 0, handed = 0;
	sum_workers(&allocs, &frees, &handed);
	ktest_diag("%lu allocs, %lu frees (%lu handed over), %d release-alls "
	           "in %lu ms; scavenger: %lu runs, %lu pages; released %lu; "
	           "grown %zu pages",
	           allocs, frees, handed, OPS / RELEASE_EVERY,
	           (unsigned long)ms, (unsigned long)end.n.bg_runs,
	           (unsigned long)end.n.bg_pages,
	           (unsigned long)end.n.release_pages, end.grown_pages);
	KASSERT(started);
	KEXPECT_EQ(allocs, frees);
	KEXPECT(handed > 0);
	KEXPECT_EQ(workers[0].releases, OPS / RELEASE_EVERY);
	KEXPECT(end.n.bg_pages > 0);      /* the scavenger really worked */
	KEXPECT(end.n.release_pages > 0); /* so did release-all */
	KEXPECT_EQ(end.in_use_pages, 0);
	KEXPECT_EQ(end.free_backed_pages, 0);
	KEXPECT_EQ(end.scavenging_pages, 0);
	KEXPECT_EQ(end.free_scav_pages, end.grown_pages);
	if (heap_check_panics())
		ktest_fail_at(__FILE__, __LINE__, "mheap_check: %s",
		              mm_port_last_panic());
	mh_release(&heap);
}

/*
 * A storm of threads on every CPU against a page heap of its own, on the
 * real kernel with the lock checker on: each allocates and frees runs of
 * random sizes, pattern-checked, and hands some to the others to free
 * (frees crossing CPUs), with the background scavenger running; at the
 * end the heap checks clean and the frame pool is where it started.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/spinlock.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "mm/mheap_testing.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/mheap_ctx_util.h"

/* ---- A storm of threads on every CPU, frees crossing CPUs ---------- */

#define STORM_OPS   1500
#define STORM_LIVE  8
#define STORM_SLOTS 16

static struct mheap sh;
static struct spinlock handoff_lock =
        SPINLOCK_INIT("storm_handoff", LOCK_RANK_TEST_LOW);
static struct irq_slot handoff[STORM_SLOTS]; /* by handoff_lock */
static unsigned handoff_owner[STORM_SLOTS];  /* by handoff_lock */
static _Atomic uint64_t storm_ops, storm_bad, storm_nulls;
static _Atomic unsigned storm_running;

/* Frees a run after checking the pattern of whoever filled it. */
static void storm_free(uint8_t *p, size_t n, unsigned owner)
{
	atomic_fetch_add(&storm_bad, bad_pages(p, n, owner));
	mheap_free_pages(&sh, p, n);
}

/* Swaps a run into the hand-off table and frees the one it displaces:
 * that one was filled on another CPU, most of the time. */
static void hand_off(uint8_t *p, size_t n, unsigned owner, uint64_t *rnd)
{
	unsigned k = next_rand(rnd) % STORM_SLOTS;
	unsigned long irq = spin_lock_irqsave(&handoff_lock);
	struct irq_slot old = handoff[k];
	unsigned old_owner = handoff_owner[k];
	handoff[k] = (struct irq_slot){p, n};
	handoff_owner[k] = owner;
	spin_unlock_irqrestore(&handoff_lock, irq);
	if (old.p)
		storm_free(old.p, old.n, old_owner);
}

static void storm_worker(void *arg)
{
	unsigned owner = (unsigned)(uintptr_t)arg;
	uint64_t rnd = 0x2545f4914f6cdd1dull * (owner + 7);
	struct irq_slot live[STORM_LIVE] = {0};
	for (unsigned i = 0; i < STORM_OPS; i++) {
		struct irq_slot *s = &live[next_rand(&rnd) % STORM_LIVE];
		if (s->p) {
			if (next_rand(&rnd) % 4 == 0)
				hand_off(s->p, s->n, owner, &rnd);
			else
				storm_free(s->p, s->n, owner);
			s->p = NULL;
		}
		uint64_t r = next_rand(&rnd);
		/* Mostly small, sometimes hundreds of pages. */
		size_t n = r % 8 ? 1 + r % 16 : 1 + r % 300;
		uint8_t *p = mheap_alloc_pages(&sh, n, 0);
		if (!p) {
			atomic_fetch_add(&storm_nulls, 1);
			continue;
		}
		fill(p, n, owner);
		*s = (struct irq_slot){p, n};
		atomic_fetch_add(&storm_ops, 1);
		if (i % 64 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < STORM_LIVE; k++)
		if (live[k].p)
			storm_free(live[k].p, live[k].n, owner);
	atomic_fetch_sub(&storm_running, 1);
}

static void storm_releaser(void *arg)
{
	while (atomic_load(&storm_running) > 0) {
		mheap_release_all(&sh);
		thread_sleep_ns(30000000);
	}
}

static void storm_reset(void)
{
	atomic_store(&storm_ops, 0);
	atomic_store(&storm_bad, 0);
	atomic_store(&storm_nulls, 0);
}

/* The frames the kernel heap's own pages hold, in use or free and
 * backed, and those of its span heap's metadata heap: a span-struct page
 * or a magazine slab made meanwhile is that heap's (mm/spanheap_meta.c;
 * until a review this counted kheap alone, and such a page made the sum
 * one short). */
static size_t kheap_backed(void)
{
	struct mheap_stats k, m;
	mheap_stats(&kheap, &k);
	mheap_stats(&kspanheap.meta, &m);
	return k.in_use_pages + k.free_backed_pages + m.in_use_pages +
	       m.free_backed_pages;
}

static unsigned online_cpus(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online))
			n++;
	return n;
}

/* Frees the runs left in the hand-off table; no worker runs now. */
static void free_handoffs(void)
{
	for (unsigned k = 0; k < STORM_SLOTS; k++)
		if (handoff[k].p) {
			storm_free(handoff[k].p, handoff[k].n,
			           handoff_owner[k]);
			handoff[k].p = NULL;
		}
}

/* What the storm's nw workers did, and the pages st says were released
 * since the warm-up released its warm. */
static void storm_diag(unsigned nw, const struct mheap_stats *st, size_t warm)
{
	uint64_t released = st->n.bg_pages + st->n.release_pages +
	                    st->n.sync_pages - warm; /* minus the warm-up */
	ktest_diag("storm: %lu allocations on %u CPUs (%lu NULL), %lu pages "
	           "released (%lu by the scavenger in %lu runs, the rest by "
	           "release-all)",
	           atomic_load(&storm_ops), nw, atomic_load(&storm_nulls),
	           released, st->n.bg_pages, st->n.bg_runs);
}

/*
 * The host stress test's storm in the kernel: workers on every CPU
 * allocate runs of 1 to 300 pages, fill and check them, and free them or
 * hand them to another CPU to free, while the background scavenger runs
 * (20% budget, so that it really works) and a thread releases everything
 * every 30 ms. The arena is grown to its full 128 MiB first, so after the
 * last mheap_release_all every frame the storm used is back in the pool.
 */
KTEST(mheap_ctx, storm_on_every_cpu_returns_every_frame)
{
	enum { ARENA = 128 << 20, PAGES = ARENA / 4096 };
	KTEST_NEED_FREE_FRAMES(PAGES);
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = ARENA;
	cfg.cpu_permille = 200;
	cfg.reserve_pages = 0;
	KASSERT(mheap_init(&sh, &cfg));
	void *all = mheap_alloc_pages(&sh, PAGES, 0); /* grow it all */
	KASSERT(all != NULL);
	mheap_free_pages(&sh, all, PAGES);
	mheap_release_all(&sh);
	heap_settle(); /* nothing of kheap's moves the pool meanwhile */
	size_t baseline = frames_free_count(), kheap0 = kheap_backed();

	storm_reset();
	KASSERT(mheap_scavenger_start(&sh));
	struct thread_handle w[MAX_CPUS] = {0};
	unsigned nw = online_cpus();
	atomic_store(&storm_running, nw);
	for (unsigned i = 0, k = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online)) {
			w[k] = thread_create("storm", storm_worker,
			                     (void *)(uintptr_t)(i + 1), i);
			KASSERT(thread_handle_ok(w[k++]));
		}
	struct thread_handle r =
	        thread_create("storm_release", storm_releaser, NULL, 0);
	KASSERT(thread_handle_ok(r));
	for (unsigned k = 0; k < nw; k++)
		thread_join(w[k]);
	thread_join(r);
	free_handoffs();
	mheap_scavenger_stop(&sh);
	mheap_release_all(&sh);
	struct mheap_stats st;
	mheap_stats(&sh, &st);
	storm_diag(nw, &st, PAGES);
	KEXPECT_EQ(atomic_load(&storm_bad), 0);
	KEXPECT_EQ(atomic_load(&storm_nulls), 0);
	KEXPECT_EQ(atomic_load(&storm_ops), (uint64_t)nw * STORM_OPS);
	KEXPECT_EQ(st.in_use_pages, 0);
	KEXPECT_EQ(st.free_backed_pages, 0);
	/* The threads' structs, if the guarded pool (mm.guard) took them,
	 * give their frames back at its drain (a thread's last free may be
	 * made with interrupts off); and kmalloc's own pages may move with
	 * the pool on (a span its refills emptied, made again): counted. */
	spanheap_guard_drain_all(&kspanheap);
	KEXPECT_EQ(frames_free_count() + (kheap_backed() - kheap0), baseline);
	mheap_check(&sh);
	/* Every CPU took frames and gave them back meanwhile: the count
	 * above is one number, the pool's bitmaps and summaries are the
	 * rest. */
	frames_check();
}

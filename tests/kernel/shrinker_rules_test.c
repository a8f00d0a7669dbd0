/*
 * The shrinker registry's rules that need no memory pressure
 * (kernel/shrinker.h), each asked of shrink_all directly: a reclaim asks
 * a shrinker for at most SHRINKER_SCAN_MAX objects in calls of at most
 * its batch; a scan that says it freed more than it was asked counts as
 * many as it was asked; one that frees nothing is not called again in
 * that reclaim; the totals say what the shrinkers freed; a reclaim that
 * starts while a shrinker is being unregistered does not scan it; and a
 * dma_alloc no reclaim could serve does not run one.
 */
#include <stdatomic.h>

#include "kernel/dma.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/shrinker.h"
#include "kernel/thread.h"

/* A shrinker that owns nothing: count says `have`, scan records what it
 * was asked and returns `nr + extra` (or 0 if `none`). */
struct fake {
	struct shrinker s;
	size_t have, extra, asked, max_nr;
	bool none;
};

static size_t fake_count(struct shrinker *s)
{
	return ((struct fake *)s->priv)->have;
}

static size_t fake_scan(struct shrinker *s, size_t nr)
{
	struct fake *f = s->priv;
	f->asked += nr;
	if (nr > f->max_nr)
		f->max_nr = nr;
	return f->none ? 0 : nr + f->extra;
}

static void fake_init(struct fake *f, size_t have, size_t batch)
{
	*f = (struct fake){.have = have};
	f->s = (struct shrinker){.name = "fake",
	                         .count = fake_count,
	                         .scan = fake_scan,
	                         .batch = batch,
	                         .priv = f};
}

static struct fake fk;

/* A shrinker that could free a million: one reclaim asks it for
 * SHRINKER_SCAN_MAX in calls of its batch (100), or of SHRINKER_BATCH
 * with none set; the totals count one registered more and what it
 * freed. */
KTEST(shrinker_rules, a_reclaim_asks_at_most_the_bound_in_batches)
{
	struct shrink_stats st0, st;
	shrink_stats(&st0);
	fake_init(&fk, 1000000, 100);
	shrinker_register(&fk.s);
	shrink_stats(&st);
	KEXPECT_EQ(st.registered, st0.registered + 1);
	shrink_stats(&st0);
	shrink_all();
	shrink_stats(&st);
	shrinker_unregister(&fk.s);
	ktest_diag("batch 100: asked for %zu in %lu calls, at most %zu a "
	           "call; %lu freed counted",
	           fk.asked, (unsigned long)fk.s.scans, fk.max_nr,
	           (unsigned long)(st.freed - st0.freed));
	KEXPECT_EQ(fk.asked, SHRINKER_SCAN_MAX);
	KEXPECT_EQ(fk.max_nr, 100);
	KEXPECT_EQ(fk.s.scans, (SHRINKER_SCAN_MAX + 99) / 100);
	KEXPECT_EQ(fk.s.freed, SHRINKER_SCAN_MAX);
	KEXPECT(st.freed - st0.freed >= SHRINKER_SCAN_MAX);
	KEXPECT_EQ(st.reclaims, st0.reclaims + 1);

	fake_init(&fk, 1000, 0);
	shrinker_register(&fk.s);
	shrink_all();
	shrinker_unregister(&fk.s);
	KEXPECT_EQ(fk.asked, 1000);
	KEXPECT_EQ(fk.max_nr, SHRINKER_BATCH);
}

/* A scan that says it freed 1000 more than asked counts as many as it
 * was asked; one that frees nothing is called once a reclaim. */
KTEST(shrinker_rules, a_scan_counts_no_more_than_asked_and_stops_at_zero)
{
	fake_init(&fk, 300, 100);
	fk.extra = 1000;
	shrinker_register(&fk.s);
	size_t freed = shrink_all();
	shrinker_unregister(&fk.s);
	KEXPECT_EQ(fk.s.freed, 300);
	KEXPECT(freed >= 300 && freed < 1300);

	fake_init(&fk, 1000, 10);
	fk.none = true;
	shrinker_register(&fk.s);
	shrink_all();
	shrink_all();
	shrinker_unregister(&fk.s);
	KEXPECT_EQ(fk.s.scans, 2);
	KEXPECT_EQ(fk.s.freed, 0);
}

/* ---- A reclaim that starts while an unregister waits --------------------- */

static _Atomic int held_entries, held_release;

static size_t one(struct shrinker *s)
{
	return 1;
}

/* The first call holds until released; later ones return at once. */
static size_t held_scan(struct shrinker *s, size_t nr)
{
	if (atomic_fetch_add(&held_entries, 1) == 0)
		while (!atomic_load(&held_release))
			thread_sleep_ns(1000000);
	return 0;
}

static struct shrinker held = {.name = "held", .count = one, .scan = held_scan};

static void held_reclaim_main(void *arg)
{
	(void)arg;
	shrink_all();
}

static void held_unregister_main(void *arg)
{
	shrinker_unregister(arg);
}

/*
 * A scan of the shrinker is held; another thread's unregister marks it
 * dying and waits; a reclaim this thread starts then must not scan it
 * (on any number of CPUs: the threads sleep).
 */
KTEST(shrinker_rules, a_dying_shrinker_is_not_scanned_again)
{
	atomic_store(&held_entries, 0);
	atomic_store(&held_release, 0);
	shrinker_register(&held);
	unsigned cpu = this_cpu()->id;
	struct thread_handle tr =
	        thread_create("shr_held", held_reclaim_main, NULL, cpu);
	KASSERT(thread_handle_ok(tr));
	while (atomic_load(&held_entries) == 0)
		thread_sleep_ns(1000000);
	struct thread_handle tu =
	        thread_create("shr_unreg", held_unregister_main, &held, cpu);
	KASSERT(thread_handle_ok(tu));
	while (!__atomic_load_n(&held.dying, __ATOMIC_ACQUIRE))
		thread_sleep_ns(1000000);
	shrink_all();
	int entries = atomic_load(&held_entries);
	atomic_store(&held_release, 1);
	thread_join(tu);
	thread_join(tr);
	ktest_diag("scans of the dying shrinker: %d", entries);
	KEXPECT_EQ(entries, 1);
	KEXPECT(!held.registered);
}

/* ---- A request no reclaim could serve ------------------------------------ */

/* A dma_alloc of more frames than the pool manages fails without asking
 * the shrinkers or the heap for anything (before, it emptied every
 * shrinker's cache and scavenged the heap for a request that could not
 * fit in the whole pool). */
KTEST(shrinker_rules, a_dma_alloc_larger_than_the_pool_does_not_reclaim)
{
	fake_init(&fk, 1000, 0);
	shrinker_register(&fk.s);
	struct shrink_stats st0, st;
	shrink_stats(&st0);
	size_t nbytes = (frames_managed_count() + 1) * PAGE_SIZE;
	paddr_t phys = 0;
	void *p = dma_alloc(nbytes, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	shrink_stats(&st);
	shrinker_unregister(&fk.s);
	ktest_diag("dma_alloc of %zu bytes: %s; reclaims %lu, objects "
	           "asked of the shrinker %zu",
	           nbytes, p ? "ok" : "NULL",
	           (unsigned long)(st.reclaims - st0.reclaims), fk.asked);
	KEXPECT(p == NULL);
	KEXPECT_EQ(st.reclaims, st0.reclaims);
	KEXPECT_EQ(fk.asked, 0);
	if (p)
		dma_free(p, nbytes);
}

/* ---- Frame reclaims at once ---------------------------------------------- */

static _Atomic int frames_a_done, frames_b_done;

static void frames_a_main(void *arg)
{
	(void)arg;
	reclaim_frames();
	atomic_store(&frames_a_done, 1);
}

static void frames_b_main(void *arg)
{
	*(bool *)arg = reclaim_frames();
	atomic_store(&frames_b_done, 1);
}

/*
 * One thread's reclaim_frames is held in a shrinker's scan; a second
 * thread's, started meanwhile, does not run another (the shrinkers again,
 * then a whole heap_release_all: callers short of frames at once piled
 * up one full reclaim each): it waits for the first to end and says to
 * retry. Checked after 20 ticks of sleep (a lower bound, never an upper
 * one on time).
 */
KTEST(shrinker_rules, frame_reclaims_at_once_run_one)
{
	atomic_store(&held_entries, 0);
	atomic_store(&held_release, 0);
	atomic_store(&frames_a_done, 0);
	atomic_store(&frames_b_done, 0);
	shrinker_register(&held);
	unsigned cpu = this_cpu()->id;
	struct thread_handle ta =
	        thread_create("shr_fr_a", frames_a_main, NULL, cpu);
	KASSERT(thread_handle_ok(ta));
	while (atomic_load(&held_entries) == 0)
		thread_sleep_ns(1000000);
	bool b_retry = false;
	struct thread_handle tb =
	        thread_create("shr_fr_b", frames_b_main, &b_retry, cpu);
	KASSERT(thread_handle_ok(tb));
	for (int i = 0; i < 20 && !atomic_load(&frames_b_done); i++)
		thread_sleep_ns(1000000);
	int b_early = atomic_load(&frames_b_done);
	int entries = atomic_load(&held_entries);
	atomic_store(&held_release, 1);
	thread_join(ta);
	thread_join(tb);
	shrinker_unregister(&held);
	ktest_diag("second reclaim ended while the first ran: %s; scans "
	           "while held %d; second says retry: %s",
	           b_early ? "yes" : "no", entries, b_retry ? "yes" : "no");
	KEXPECT_EQ(b_early, 0);
	KEXPECT_EQ(entries, 1);
	KEXPECT(b_retry);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): misuse the
 * registry refuses with a panic naming the shrinker, not a list that
 * loops on itself or an unregister of a node never linked. */
static struct shrinker demo_twice = {
        .name = "demo_twice", .count = one, .scan = held_scan};
static struct shrinker demo_never = {
        .name = "demo_never", .count = one, .scan = held_scan};

KTEST(demo, shrinker_registered_twice)
{
	shrinker_register(&demo_twice);
	shrinker_register(&demo_twice);
}

KTEST(demo, shrinker_unregistered_never_registered)
{
	shrinker_unregister(&demo_never);
}

/* A struct fake freed while its shrinker is registered (an owner whose
 * teardown forgot shrinker_unregister): the next reclaim reads the freed
 * node in kernel/shrinker.c. The KASAN image with mm.kasan reports that
 * first read at once, naming the object and the demo as its freer
 * (tools/test-harness, kasan_shrinker_freed_while_registered). The plain
 * image's poison mode does not see a read: the walk takes the poison
 * for a dying flag and a next pointer and faults on it a step later (a
 * #GP naming neither object nor free); without the mode the freed
 * callbacks are called. */
KTEST(demo, kasan_shrinker_freed_while_registered)
{
	struct fake *f = kmalloc(sizeof(*f), 0);
	KASSERT(f != NULL);
	fake_init(f, 1, 0);
	shrinker_register(&f->s);
	kfree(f);
	shrink_all();
}
#endif

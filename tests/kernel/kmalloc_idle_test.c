/*
 * An idle CPU hands its span cache back once a sweep cycle begins
 * (heap_cpu_idle in the idle loop, spanheap_cpu_idle): the objects its
 * magazines held and the spans it cached go back to the central lists,
 * and a cycle then gives their pages to the page heap, with no
 * release-all and no allocation on that CPU. Before, an idle CPU kept
 * them until it next allocated.
 */
#include <stdatomic.h>

#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/heap_util.h"

/* 2.5 KiB objects: a class of its own (in poison mode too, red zone and
 * all), which no other thread of a test run allocates meanwhile. Fewer
 * than a magazine of the class holds, so none spill. */
enum { IDLE_SIZE = 2500, IDLE_N = 12 };
/* Ticks of every other CPU the test waits for at most: at 100 Hz, 2 s of
 * each CPU's time, where one pass of an idle CPU's loop suffices. */
enum { IDLE_TICKS = 200 };

static unsigned idle_class(void)
{
	return spanheap_class_serving(&kspanheap, IDLE_SIZE, 0);
}

struct idle_class_stats {
	size_t spans, mag_objects, in_use;
	uint64_t idle_flushes;
	uint32_t sweepgen;
};

static struct idle_class_stats idle_stats(void)
{
	static struct spanheap_stats st; /* large: not on the stack */
	spanheap_stats(&kspanheap, &st);
	const struct spanheap_class_stats *c = &st.cls[idle_class()];
	return (struct idle_class_stats){c->spans, c->mag_objects,
	                                 c->objects_in_use, st.n.idle_flushes,
	                                 st.sweepgen};
}

/* On its CPU: IDLE_N objects allocated, then all freed into its
 * magazine; the thread then ends and its CPU goes idle. */
static void leave_in_magazine(void *arg)
{
	size_t *got = arg;
	void *p[IDLE_N] = {0};
	/* Spans' objects, not the guarded pool's (mm.guard). */
	struct guard_aside *aside = kmalloc(sizeof(*aside), KM_ZERO);
	for (int i = 0; aside && i < IDLE_N; i++)
		if ((p[i] = kmalloc_plain(IDLE_SIZE, 0, aside)) != NULL)
			++*got;
	for (int i = 0; i < IDLE_N; i++)
		kfree(p[i]);
	if (aside)
		kmalloc_plain_done(aside);
	kfree(aside);
}

/* True once every CPU in mask took n ticks since start[]. */
static bool ticked(const bool *mask, const uint64_t *start, uint64_t n)
{
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		struct sched_cpu_info info;
		if (mask[i] && sched_cpu_info(i, &info) &&
		    info.ticks - start[i] < n)
			return false;
	}
	return true;
}

/* The ticks now of every CPU in mask. */
static void ticks_now(const bool *mask, uint64_t *ticks)
{
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		struct sched_cpu_info info;
		if (mask[i] && sched_cpu_info(i, &info))
			ticks[i] = info.ticks;
	}
}

/* True once every CPU in mask flushed its cache since the last flip. */
static bool all_flushed(const bool *mask)
{
	uint32_t sg = atomic_load(&kspanheap.sweepgen);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (mask[i] && __atomic_load_n(&kspanheap.caches[i].flushgen,
		                               __ATOMIC_RELAXED) != sg)
			return false;
	return true;
}

/* Until every CPU in mask flushed its cache since the last flip, or took
 * IDLE_TICKS ticks trying. */
static void wait_flushed(const bool *mask)
{
	uint64_t ticks[MAX_CPUS] = {0};
	ticks_now(mask, ticks);
	while (!all_flushed(mask) && !ticked(mask, ticks, IDLE_TICKS))
		thread_sleep_ns(SCHED_TICK_NS);
}

/* The other CPUs that ran leave_in_magazine (in ran[]). */
static unsigned others_leave(bool *ran)
{
	struct thread_handle t[MAX_CPUS] = {0};
	size_t got[MAX_CPUS] = {0};
	unsigned self = this_cpu()->id, n = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != self && atomic_load(&cpus[i].online))
			t[i] = thread_create("idle_leave", leave_in_magazine,
			                     &got[i], i);
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (!thread_handle_ok(t[i]))
			continue;
		thread_join(t[i]);
		KEXPECT_EQ(got[i], (size_t)IDLE_N);
		ran[i] = true;
		n++;
	}
	return n;
}

/* Poison mode has no magazines: its frees go to the spans at once, and
 * an idle CPU has only its cached spans to hand back. */
static bool has_magazines(void)
{
	return !kspanheap.cfg.poison;
}

KTEST(kmalloc, idle_cpus_hand_their_caches_back_after_a_flip)
{
	if (atomic_load(&ncpus_online) < 2)
		KTEST_SKIP("one CPU: no other CPU to go idle");
	heap_settle();
	struct idle_class_stats base = idle_stats();
	bool ran[MAX_CPUS] = {0};
	unsigned others = others_leave(ran);
	struct idle_class_stats held = idle_stats();
	KEXPECT(others > 0);
	/* Each other CPU caches a span of the class, and its magazine holds
	 * what it freed, unless a cycle of the sweeper's began meanwhile. */
	bool early = held.sweepgen != base.sweepgen;
	KEXPECT(early || held.spans > base.spans);
	if (has_magazines())
		KEXPECT(early || held.mag_objects >= (size_t)others * IDLE_N);

	spanheap_sweep_cycle(&kspanheap); /* the flip */
	wait_flushed(ran);
	bool every = all_flushed(ran);
	struct idle_class_stats flushed = idle_stats();
	/* Another cycle folds what came back and frees the empty spans. */
	spanheap_sweep_cycle(&kspanheap);
	struct idle_class_stats after = idle_stats();
	ktest_diag("%u idle CPUs: class %u had %zu spans (%zu before), %zu "
	           "objects in magazines; after the flip %zu objects in "
	           "magazines (%lu idle flushes); after a cycle %zu spans, "
	           "%zu in use",
	           others, idle_class(), held.spans, base.spans,
	           held.mag_objects, flushed.mag_objects,
	           (unsigned long)(flushed.idle_flushes - held.idle_flushes),
	           after.spans, after.in_use);
	/* Every CPU flushed since the flip: idle, or at a refill of an
	 * interrupt handler's or a heap thread's there. */
	KEXPECT(every);
	KEXPECT(flushed.idle_flushes > held.idle_flushes);
	KEXPECT_EQ(flushed.mag_objects, (size_t)0);
	KEXPECT_EQ(after.in_use, base.in_use);
	KEXPECT(after.spans <= base.spans);
	spanheap_check(&kspanheap);
}

/*
 * With the sweeper stopped, an idle CPU hands nothing back: the tests
 * that stop the heap's threads to count frames exactly have nothing
 * moving under them; its cache goes back at its next refill, as a
 * busy CPU's does.
 */
KTEST(kmalloc, idle_cpus_keep_their_caches_while_the_sweeper_is_stopped)
{
	if (atomic_load(&ncpus_online) < 2)
		KTEST_SKIP("one CPU: no other CPU to go idle");
	heap_settle();
	heap_threads_stop();
	struct idle_class_stats base = idle_stats();
	bool ran[MAX_CPUS] = {0};
	uint64_t ticks[MAX_CPUS] = {0};
	unsigned others = others_leave(ran);
	spanheap_sweep_cycle(&kspanheap);
	ticks_now(ran, ticks);
	while (!ticked(ran, ticks, 3))
		thread_sleep_ns(SCHED_TICK_NS);
	struct idle_class_stats held = idle_stats();
	KEXPECT(heap_threads_start());
	ktest_diag("%u idle CPUs kept %zu spans (%zu before) and %zu objects "
	           "in magazines of class %u",
	           others, held.spans, base.spans, held.mag_objects,
	           idle_class());
	KEXPECT_EQ(held.idle_flushes, base.idle_flushes);
	KEXPECT(held.spans > base.spans);
	if (has_magazines())
		KEXPECT_EQ(held.mag_objects, (size_t)others * IDLE_N);
	heap_settle();
	spanheap_check(&kspanheap);
}

/*
 * The sweeper's stop beside idle CPUs' flushes, over and over: each round
 * flips (every CPU's cache is stale then, and each idle loop flushes it)
 * and stops and starts the heap's threads. A first version counted an
 * idle flush in flight with interrupts on; a tick or a wake-up there
 * switched the idle thread out with the count raised, an idle thread runs
 * only when nothing else on its CPU can, and a stopper on that CPU spun
 * in its yield loop for good: the run hung (a review's loop, round 137 of
 * one run and 0 of the next), which the QEMU timeout fails.
 */
enum { STOP_ROUNDS = 1000 };

KTEST(kmalloc, the_sweepers_stop_beside_idle_flushes)
{
	uint64_t flushes0 = idle_stats().idle_flushes;
	for (unsigned r = 0; r < STOP_ROUNDS; r++) {
		kfree(kmalloc(IDLE_SIZE, 0));
		spanheap_sweep_cycle(&kspanheap);
		heap_threads_stop();
		KASSERT(heap_threads_start());
	}
	uint64_t flushes = idle_stats().idle_flushes - flushes0;
	ktest_diag("%u rounds, %lu idle flushes", (unsigned)STOP_ROUNDS,
	           (unsigned long)flushes);
	/* With one CPU its idle thread runs only while the test thread
	 * waits, after whose flip the test's own refill may have flushed
	 * first; with more, the others are idle through every flip. */
	if (atomic_load(&ncpus_online) > 1)
		KEXPECT(flushes > 0);
	heap_settle();
	spanheap_check(&kspanheap);
}

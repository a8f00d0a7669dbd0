/*
 * A slice is SCHED_SLICE_NS (two ticks): a busy thread with another
 * queued behind it keeps the CPU through a tick that lands inside its
 * slice and gives it up at a tick that finds the slice over. Told by
 * events, not by how many tries a fixed window held. A tick hook on
 * that CPU looks at every tick that finds the busy thread running:
 *
 *  - At the first tick of each slice it measures the slice before, by
 *    what the switch that ended it added to the thread's runtime_ns,
 *    which must be SCHED_SLICE_NS at least. The tick that ended that
 *    slice read the clock before the switch did, so a tick that
 *    preempted inside the slice shows as a shorter one however the host
 *    stalled: a stall only lengthens a slice.
 *  - It notes whether the tick lands inside the slice; the next tick in
 *    the same slice shows that the first one kept it. The test waits,
 *    for as long as it takes, until one has. A stall of the vCPU can
 *    leave ticks landing past the slice for a while, never for good. A
 *    tick the hook saw inside that was followed by a switch is no
 *    failure: the hook reads the clock before the tick does, and a stall
 *    between the two puts the tick's reading past the slice.
 *
 * The hook, not the busy thread, keeps the count: under a stall at every
 * tick, a tick is due again when one ends, and a thread switched in is
 * switched out by it before it runs an instruction, for slice after
 * slice. The test wanted one tick in 60 where the busy thread kept the
 * CPU, which a host that stalled that vCPU at each tick for those 60
 * failed. A scheduler that preempted at every tick ends a slice short at
 * once; one that never preempted lets a slice run SLICE_MAX_TICKS ticks.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"

#define SLICES_CHECKED 10 /* ended slices the hook measures, at least */
/* Ticks no slice lasts with a thread queued: the first tick past
 * SCHED_SLICE_NS ends it, and a stall adds no ticks to it. */
#define SLICE_MAX_TICKS 100

static _Atomic uint64_t peer_runs;
static _Atomic bool pair_stop;
/* The busy thread, on busy_cpu; set by itself before it waits: */
static struct thread *_Atomic busy;
static _Atomic unsigned busy_cpu = MAX_CPUS;

/* The hook's, on busy_cpu: the slice (its start) the last tick found the
 * busy thread running in, its runtime before that slice, the ticks that
 * found it in that slice, and whether the last of them landed inside. */
static uint64_t hook_slice, hook_runtime;
static unsigned hook_ticks;
static bool hook_inside;

/* Written by the hook; read by the test once the busy thread is gone: */
static _Atomic unsigned ticks_inside, ticks_kept;
static _Atomic unsigned slices_ended, slices_short;
static _Atomic uint64_t shortest_ns;
static _Atomic bool slice_never_ended, watch_done;

/* The queued one: counts its turns on the CPU, one per loop. */
static void peer(void *arg)
{
	while (!atomic_load(&pair_stop)) {
		atomic_fetch_add(&peer_runs, 1);
		cpu_pause();
	}
}

/* A slice of the busy thread ended, and runtime is its runtime since:
 * the slice's length is what its switch added. */
static void slice_ended(uint64_t runtime)
{
	uint64_t ns = runtime - hook_runtime;
	atomic_fetch_add(&slices_ended, 1);
	if (ns < atomic_load(&shortest_ns))
		atomic_store(&shortest_ns, ns);
	if (ns < SCHED_SLICE_NS)
		atomic_fetch_add(&slices_short, 1);
}

/* The tick hook. The busy thread's slice fields are written only by its
 * CPU with interrupts off, so this CPU's tick reads them whole. */
static void slice_tick(void)
{
	struct cpu *c = this_cpu();
	struct thread *t = atomic_load(&busy);
	if (c->id != atomic_load(&busy_cpu) || !t || c->current != t ||
	    atomic_load(&watch_done))
		return;
	uint64_t start = t->slice_start_ns;
	if (start != hook_slice) {
		if (hook_slice)
			slice_ended(t->runtime_ns);
		hook_slice = start;
		hook_runtime = t->runtime_ns;
		hook_ticks = 0;
	} else if (hook_inside) {
		atomic_fetch_add(&ticks_kept, 1);
	}
	if (++hook_ticks > SLICE_MAX_TICKS)
		atomic_store(&slice_never_ended, true);
	hook_inside = time_now_ns() - start < SCHED_SLICE_NS;
	if (hook_inside)
		atomic_fetch_add(&ticks_inside, 1);
	if (atomic_load(&slices_short) || atomic_load(&slice_never_ended) ||
	    (atomic_load(&slices_ended) >= SLICES_CHECKED &&
	     atomic_load(&ticks_kept)))
		atomic_store(&watch_done, true);
}

/* The busy one: runs until the hook has seen enough. */
static void watcher(void *arg)
{
	atomic_store(&busy, thread_current());
	while (!atomic_load(&watch_done))
		cpu_pause();
	atomic_store(&busy, NULL);
	atomic_store(&pair_stop, true);
}

static void slice_watch_reset(unsigned cpu)
{
	atomic_store(&peer_runs, 0);
	atomic_store(&pair_stop, false);
	hook_slice = hook_runtime = 0;
	hook_ticks = 0;
	hook_inside = false;
	atomic_store(&ticks_inside, 0);
	atomic_store(&ticks_kept, 0);
	atomic_store(&slices_ended, 0);
	atomic_store(&slices_short, 0);
	atomic_store(&shortest_ns, UINT64_MAX);
	atomic_store(&slice_never_ended, false);
	atomic_store(&watch_done, false);
	atomic_store(&busy_cpu, cpu);
}

KTEST(sched, busy_thread_keeps_the_cpu_through_a_tick_of_its_slice)
{
	unsigned cpu = this_cpu()->id;
	slice_watch_reset(cpu);
	atomic_store(&sched_tick_hook, slice_tick);
	struct thread_handle w = thread_create("watcher", watcher, NULL, cpu);
	struct thread_handle p = thread_create("peer", peer, NULL, cpu);
	KASSERT(thread_handle_ok(w) && thread_handle_ok(p));
	thread_join(w);
	thread_join(p);
	atomic_store(&sched_tick_hook, NULL);
	atomic_store(&busy_cpu, MAX_CPUS);
	unsigned ended = atomic_load(&slices_ended);
	unsigned short_slices = atomic_load(&slices_short);
	unsigned kept = atomic_load(&ticks_kept);
	bool never_ended = atomic_load(&slice_never_ended);
	if (ended)
		ktest_diag("%u slices of the busy thread ended, the shortest "
		           "after %lu us (a slice is %lu us)",
		           ended,
		           (unsigned long)(atomic_load(&shortest_ns) / 1000),
		           (unsigned long)(SCHED_SLICE_NS / 1000));
	if (never_ended)
		ktest_diag("a slice of the busy thread lasted %u ticks",
		           SLICE_MAX_TICKS + 1);
	ktest_diag("%u ticks landed inside a slice of it, %u of them kept it; "
	           "the queued one counted %lu turns",
	           atomic_load(&ticks_inside), kept,
	           (unsigned long)atomic_load(&peer_runs));
	KEXPECT_EQ(short_slices, 0);
	KEXPECT(!never_ended);
	/* What the hook waited for, unless it stopped at one of those: */
	if (!short_slices && !never_ended) {
		KEXPECT(ended >= SLICES_CHECKED);
		KEXPECT(kept > 0);
	}
}

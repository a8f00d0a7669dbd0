/*
 * The per-CPU magazines resized under interrupt frees (spanheap_cache.c,
 * "Sizes"): on every CPU a thread allocates a burst of objects of two
 * classes, then frees them all, so that its magazines spill and shrink,
 * then refill and grow again; meanwhile the same CPU's timer tick frees
 * objects the thread handed it and allocates and frees its own, of the
 * same classes, landing in the thread's restartable sequences and slow
 * paths alike. Every object holds a pattern of its own tag and address in
 * every word, checked before each free, so an object handed out twice or
 * written while free is caught; each CPU must be seen with a shrunk
 * magazine and again with a full-sized one; spanheap_check at the end.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "mm/rseq.h"
#include "mm/sizeclasses.h"

/* Two classes: 64 bytes (magazine 128, floor 64) and 256 (128 down to 16). */
#define SMALL    64
#define BIG      256
#define BURST    400 /* objects of each class a round: spills >= 3 times */
#define RING     64  /* thread-to-tick handoffs per CPU */
#define TICK_OWN 8   /* objects a tick allocates, freed at the next tick */
#define MIN_TICK 15  /* ticks per CPU that found objects to free */

struct tagged {
	void *p;
	uint64_t tag;
};

/* Per CPU: a ring its thread fills and its timer tick empties (both on
 * that CPU, so ordering against the interrupt is all they need). */
static struct {
	struct tagged ring[RING];
	_Atomic unsigned head;       /* written by the thread */
	_Atomic unsigned tail;       /* written by the tick */
	struct tagged own[TICK_OWN]; /* the tick's */
	uint64_t serial;             /* the tick's */
	_Atomic unsigned busy_ticks; /* ticks that freed something */
	bool seen_shrunk, seen_regrown;
	unsigned rounds;
} percpu[MAX_CPUS];

static _Atomic bool tick_on;
static _Atomic unsigned tick_inside;
static _Atomic uint64_t n_bad, n_thread_nulls, n_tick_allocs, n_tick_frees;

static uint64_t word_of(uint64_t tag, const void *p, size_t i)
{
	return (tag * 0x9e3779b97f4a7c15ull) ^ ((uintptr_t)p + 8 * i);
}

static void fill(void *p, size_t size, uint64_t tag)
{
	uint64_t *w = p;
	for (size_t i = 0; i < size / 8; i++)
		w[i] = word_of(tag, p, i);
}

/* Checks p's pattern (all size bytes), then frees it. */
static void check_free(struct tagged t)
{
	size_t size = (t.tag & 1) ? BIG : SMALL;
	const uint64_t *w = t.p;
	for (size_t i = 0; i < size / 8; i++)
		if (w[i] != word_of(t.tag, t.p, i)) {
			atomic_fetch_add(&n_bad, 1);
			break;
		}
	kfree(t.p);
}

/* An object of the class tag's low bit names, filled; or p NULL. The
 * sizes are constants: kmalloc's pop is the inline sequence. */
static struct tagged make(uint64_t tag, unsigned flags)
{
	void *p = (tag & 1) ? kmalloc(BIG, flags) : kmalloc(SMALL, flags);
	if (p)
		fill(p, (tag & 1) ? BIG : SMALL, tag);
	return (struct tagged){p, tag};
}

/* The timer tick's part on its CPU: frees what the thread handed over,
 * then frees its own objects of the last tick and allocates new ones. */
static void tick_work(unsigned cpu)
{
	typeof(percpu[0]) *pc = &percpu[cpu];
	unsigned head = atomic_load_explicit(&pc->head, memory_order_acquire);
	unsigned tail = atomic_load_explicit(&pc->tail, memory_order_relaxed);
	if (head != tail)
		atomic_fetch_add(&pc->busy_ticks, 1);
	for (; tail != head; tail++) {
		check_free(pc->ring[tail % RING]);
		atomic_fetch_add(&n_tick_frees, 1);
	}
	atomic_store_explicit(&pc->tail, tail, memory_order_release);
	for (unsigned i = 0; i < TICK_OWN; i++) {
		if (pc->own[i].p)
			check_free(pc->own[i]);
		uint64_t tag =
		        (++pc->serial << 16) | 0x8000 | cpu << 1 | (i & 1);
		pc->own[i] = make(tag, KM_ATOMIC);
		atomic_fetch_add(&n_tick_allocs, pc->own[i].p != NULL);
	}
}

static void tick(void)
{
	atomic_fetch_add(&tick_inside, 1);
	if (atomic_load(&tick_on))
		tick_work(this_cpu()->id);
	atomic_fetch_sub(&tick_inside, 1);
}

/* Hands t to this CPU's tick, or frees it if the ring is full. */
static void hand_to_tick(unsigned cpu, struct tagged t)
{
	typeof(percpu[0]) *pc = &percpu[cpu];
	unsigned head = atomic_load_explicit(&pc->head, memory_order_relaxed);
	if (head - atomic_load_explicit(&pc->tail, memory_order_acquire) ==
	    RING) {
		check_free(t);
		return;
	}
	pc->ring[head % RING] = t;
	atomic_store_explicit(&pc->head, head + 1, memory_order_release);
}

/* This CPU's magazine of class cls: its size now, in objects (0 with no
 * slab yet), and its class's most. Interrupts off while it reads. */
static unsigned mag_size(unsigned cpu, unsigned cls, unsigned *max)
{
	uint64_t fl = read_rflags();
	cpu_cli();
	const uintptr_t *slab = kspanheap.caches[cpu].slab;
	const uintptr_t *limit = kspanheap.caches[cpu].mag[cls].limit;
	if (fl & RFLAGS_IF)
		cpu_sti();
	*max = kspanheap.mag_max[cls];
	return slab ? (unsigned)(limit - (slab + kspanheap.mag_off[cls])) : 0;
}

/* Notes whether cpu's magazine of cls is shrunk now, or back at its
 * most after it was seen shrunk. */
static void sample(unsigned cpu, unsigned cls)
{
	unsigned max, n = mag_size(cpu, cls, &max);
	if (n && n < max)
		percpu[cpu].seen_shrunk = true;
	else if (n == max && percpu[cpu].seen_shrunk)
		percpu[cpu].seen_regrown = true;
}

static void worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	static struct tagged held[MAX_CPUS][2 * BURST];
	struct tagged *h = held[cpu];
	unsigned cls_big = sizeclass_of(BIG);
	uint64_t serial = 0;
	unsigned round = 0;
	for (; round < 4 || atomic_load(&percpu[cpu].busy_ticks) < MIN_TICK;
	     round++) {
		for (unsigned i = 0; i < 2 * BURST; i++) {
			h[i] = make((++serial << 16) | cpu << 1 | (i & 1), 0);
			atomic_fetch_add(&n_thread_nulls, h[i].p == NULL);
		}
		sample(cpu, cls_big); /* grown by the refills */
		/* One object in 8 goes to the tick; the rest are freed here,
		 * spilling each magazine over and over. */
		for (unsigned i = 0; i < 2 * BURST; i++) {
			if (!h[i].p)
				continue;
			if (i % 8 == 3)
				hand_to_tick(cpu, h[i]);
			else
				check_free(h[i]);
		}
		sample(cpu, cls_big); /* shrunk by the spills */
		thread_yield();
	}
	percpu[cpu].rounds = round;
}

/* After the run, nothing in the tick's hands: frees what is left in
 * CPU cpu's ring and the tick's own objects, and reports the CPU. */
static void cpu_finish(unsigned cpu)
{
	typeof(percpu[0]) *pc = &percpu[cpu];
	for (unsigned t = pc->tail; t != pc->head; t++)
		check_free(pc->ring[t % RING]);
	pc->tail = pc->head;
	for (unsigned i = 0; i < TICK_OWN; i++)
		if (pc->own[i].p) {
			check_free(pc->own[i]);
			pc->own[i].p = NULL;
		}
	ktest_diag("cpu %u: %u rounds, %u busy ticks, magazine shrunk %s, "
	           "regrown %s",
	           cpu, pc->rounds, atomic_load(&pc->busy_ticks),
	           pc->seen_shrunk ? "yes" : "no",
	           pc->seen_regrown ? "yes" : "no");
}

KTEST(magazine, shrink_and_grow_under_timer_frees)
{
	if (kspanheap.cfg.poison)
		KTEST_SKIP("mm.debug_poison: no magazines to shrink or grow");
	uint64_t restarts0 = mm_rseq_restarts();
	struct thread_handle w[MAX_CPUS];
	unsigned nw = 0, ids[MAX_CPUS];
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online))
			ids[nw++] = i;
	sched_tick_hook = tick;
	atomic_store(&tick_on, true);
	for (unsigned k = 0; k < nw; k++) {
		w[k] = thread_create("kmagirq", worker,
		                     (void *)(uintptr_t)ids[k], ids[k]);
		if (!thread_handle_ok(w[k]))
			panic("magazine test: cannot create its threads");
	}
	uint64_t t0 = time_now_ns();
	for (unsigned k = 0; k < nw; k++)
		thread_join(w[k]);
	ktest_diag("workers: %lu ms", (time_now_ns() - t0) / 1000000);
	atomic_store(&tick_on, false);
	while (atomic_load(&tick_inside) > 0)
		thread_yield();
	sched_tick_hook = NULL;
	for (unsigned k = 0; k < nw; k++) {
		cpu_finish(ids[k]);
		typeof(percpu[0]) *pc = &percpu[ids[k]];
		KEXPECT(pc->seen_shrunk);
		KEXPECT(pc->seen_regrown);
	}
	ktest_diag("ticks: %lu objects freed, %lu allocated; sequences "
	           "restarted: %lu",
	           atomic_load(&n_tick_frees), atomic_load(&n_tick_allocs),
	           (unsigned long)(mm_rseq_restarts() - restarts0));
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	KEXPECT_EQ(atomic_load(&n_thread_nulls), 0);
	KEXPECT(atomic_load(&n_tick_allocs) > 0);
	spanheap_check(&kspanheap);
}

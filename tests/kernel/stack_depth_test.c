/*
 * How deep mm/ goes on a kernel thread's stack, measured: on every CPU a
 * thread paints its stack below its current depth, then allocates and
 * frees through the slow paths (magazine refills and spills, span and
 * large allocations from the page heap, reallocs, aligned allocations)
 * while, in a second phase, the same CPU's timer interrupt allocates and
 * frees on top of it (interrupts run on the interrupted thread's stack).
 * The high-water mark is the lowest word no longer holding the paint.
 *
 * What it compares, per CPU, with D0 the thread's depth where it painted:
 *   thread alone:      mark - D0 <= MM_STACK_BUDGET + IRQ_OVERHEAD
 *   interrupts on it:  mark - D0 <= MM_STACK_BUDGET + IRQ_OVERHEAD
 *                                    + MM_IRQ_BUDGET
 * and mark < the thread's stack (THREAD_STACK_PAGES). MM_STACK_BUDGET and
 * MM_IRQ_BUDGET are the budgets tools/stack-depth.conf gives every entry
 * callable from any context, for a thread's call and an interrupt
 * handler's, which make test-stack checks the static worst cases
 * against: a slow path that grew a 16 KiB array fails both lines (the
 * thread's mark went to 17944 bytes, 18176 with the tick, when
 * spanheap_cache_refill had one). IRQ_OVERHEAD bounds an
 * interrupt's own frames (the 176-byte trap frame, trap_dispatch,
 * irq_dispatch, sched_tick: 560 bytes by the call graphs) and this test's
 * hook. No time bound: only how far the stack went.
 */
#include <stdatomic.h>

#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/string.h"
#include "kernel/thread.h"

#define MM_STACK_BUDGET 8192 /* tools/stack-depth.conf's entries */
#define MM_IRQ_BUDGET   4096 /* the same, called from an interrupt */
#define IRQ_OVERHEAD    2048
#define PAINT           0x57ac4de9a1b2c3d4ull
#define BURST           192 /* objects a round, over SIZES */
#define TICK_OWN        6   /* objects a tick holds until its next */
#define MIN_TICKS       20  /* ticks that allocated on each worker */
#define ROUNDS          6   /* at least, in each phase */

static const size_t sizes[] = {24, 200, 1000, 3000, 9000, 30000, 100000};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static struct {
	uintptr_t lo, top;          /* the worker's mapped stack */
	_Atomic unsigned tick_hits; /* ticks that allocated on it */
	void *own[TICK_OWN];        /* the tick's */
	unsigned serial;            /* the tick's */
	size_t d0[2], mark[2];
} percpu[MAX_CPUS];

static _Atomic bool tick_on;
static _Atomic unsigned tick_inside, phase;
static _Atomic uint64_t n_nulls, n_bad_fills;

static uintptr_t stack_pointer(void)
{
	uintptr_t sp;
	__asm__ volatile("movq %%rsp, %0" : "=r"(sp));
	return sp;
}

/* Fills [lo, sp - 256) with the paint; returns the depth painted from.
 * A leaf: nothing it calls lands in what it paints. */
static __attribute__((noinline)) size_t paint(uintptr_t lo, uintptr_t top)
{
	uintptr_t hi = (stack_pointer() - 256) & ~(uintptr_t)7;
	for (volatile uint64_t *w = (uint64_t *)lo; (uintptr_t)w < hi; w++)
		*w = PAINT;
	return top - hi;
}

/* The deepest the stack went since paint: top less the lowest word that
 * lost the paint. */
static size_t high_water(uintptr_t lo, uintptr_t top)
{
	const uint64_t *w = (const uint64_t *)lo;
	while ((uintptr_t)w < top && *w == PAINT)
		w++;
	return top - (uintptr_t)w;
}

static void tick_work(unsigned cpu)
{
	typeof(percpu[0]) *pc = &percpu[cpu];
	uintptr_t sp = stack_pointer();
	bool on_worker = sp >= pc->lo && sp < pc->top, got = false;
	for (unsigned i = 0; i < TICK_OWN; i++) {
		kfree(pc->own[i]);
		size_t size = sizes[(pc->serial++ + i) % NSIZES];
		pc->own[i] = kmalloc(size, KM_ATOMIC);
		got |= pc->own[i] != NULL;
	}
	if (got && on_worker)
		atomic_fetch_add(&pc->tick_hits, 1);
}

static void tick(void)
{
	atomic_fetch_add(&tick_inside, 1);
	if (atomic_load(&tick_on))
		tick_work(this_cpu()->id);
	atomic_fetch_sub(&tick_inside, 1);
}

/* The first bytes of object i of a round carry this fill while held. */
#define FILL_BYTES 64
static uint8_t fill_of(unsigned i, unsigned round)
{
	return (uint8_t)(0x5a ^ i ^ round << 3);
}

/* One round: a burst over every size (refills; the large ones from the
 * page heap), some grown by krealloc or made aligned, each object's
 * first bytes filled, then checked and freed in a stride (spills, frees
 * to the central lists and the page heap); an object handed out twice
 * or written while held by another shows as a bad fill. The slots are
 * cleared: heap_leaks scans .bss for pointers to freed objects. */
static void round_of_allocs(void **held, unsigned round)
{
	for (unsigned i = 0; i < BURST; i++) {
		size_t size = sizes[(i + round) % NSIZES];
		if (i % 16 == 5)
			held[i] = kmalloc_aligned(size, 4096, 0);
		else
			held[i] = kmalloc(size, i % 3 ? 0 : KM_ZERO);
		if (held[i] && i % 16 == 9) {
			void *q = krealloc(held[i], size * 3, 0);
			if (q)
				held[i] = q;
		}
		atomic_fetch_add(&n_nulls, held[i] == NULL);
		if (held[i])
			memset(held[i], fill_of(i, round),
			       size < FILL_BYTES ? size : FILL_BYTES);
	}
	for (unsigned s = 0; s < 7; s++)
		for (unsigned i = s; i < BURST; i += 7) {
			const uint8_t *b = held[i];
			size_t size = sizes[(i + round) % NSIZES];
			for (size_t k = 0; b && k < size && k < FILL_BYTES; k++)
				if (b[k] != fill_of(i, round)) {
					atomic_fetch_add(&n_bad_fills, 1);
					break;
				}
			kfree(held[i]);
			held[i] = NULL;
		}
}

static void worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	typeof(percpu[0]) *pc = &percpu[cpu];
	static void *held[MAX_CPUS][BURST];
	struct thread *t = thread_current();
	pc->lo = t->stack.bottom;
	pc->top = t->stack.top;
	unsigned ph = atomic_load(&phase);
	pc->d0[ph] = paint(pc->lo, pc->top);
	for (unsigned r = 0;
	     r < ROUNDS || (ph == 1 && atomic_load(&pc->tick_hits) < MIN_TICKS);
	     r++) {
		round_of_allocs(held[cpu], r);
		thread_yield();
	}
	pc->mark[ph] = high_water(pc->lo, pc->top);
}

/* Runs the workers, one per online CPU, in phase ph (1: the tick
 * allocates on top of them). */
static void run_phase(unsigned ph, const unsigned *ids, unsigned nw)
{
	struct thread_handle w[MAX_CPUS];
	atomic_store(&phase, ph);
	atomic_store(&tick_on, ph == 1);
	for (unsigned k = 0; k < nw; k++) {
		w[k] = thread_create("kstackd", worker,
		                     (void *)(uintptr_t)ids[k], ids[k]);
		if (!thread_handle_ok(w[k]))
			panic("stack depth test: cannot create its threads");
	}
	for (unsigned k = 0; k < nw; k++)
		thread_join(w[k]);
	atomic_store(&tick_on, false);
	while (atomic_load(&tick_inside) > 0)
		thread_yield();
}

/* The measure itself: a 4 KiB frame below the paint shows. Returns the
 * lowest address it wrote. */
static __attribute__((noinline)) uintptr_t deep_frame(void)
{
	volatile char a[4096];
	for (size_t i = 0; i < sizeof(a); i += 64)
		a[i] = 1;
	/* Through an asm: clang refuses to return a local's address even
	 * as an integer (-Wreturn-stack-address). */
	uintptr_t low = (uintptr_t)&a[0];
	__asm__("" : "+r"(low));
	return low;
}

static size_t frame_d0, frame_low, frame_mark;

static void frame_thread(void *arg)
{
	struct thread *t = thread_current();
	frame_d0 = paint(t->stack.bottom, t->stack.top);
	frame_low = t->stack.top - deep_frame();
	frame_mark = high_water(t->stack.bottom, t->stack.top);
}

KTEST(stack, paint_sees_a_4k_frame)
{
	struct thread_handle h =
	        thread_create("kstackf", frame_thread, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(h));
	thread_join(h);
	ktest_diag("painted from %zu bytes deep; the frame reached %zu; mark "
	           "%zu",
	           frame_d0, frame_low, frame_mark);
	KEXPECT(frame_low >= frame_d0 + 4096 - 512);
	KEXPECT(frame_mark >= frame_low);
}

KTEST(stack, mm_depth_under_timer_allocations)
{
	unsigned nw = 0, ids[MAX_CPUS];
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online))
			ids[nw++] = i;
	sched_tick_hook = tick;
	run_phase(0, ids, nw);
	run_phase(1, ids, nw);
	sched_tick_hook = NULL;
	size_t stack = THREAD_STACK_PAGES * 4096ul;
	for (unsigned k = 0; k < nw; k++) {
		typeof(percpu[0]) *pc = &percpu[ids[k]];
		for (unsigned i = 0; i < TICK_OWN; i++) {
			kfree(pc->own[i]);
			pc->own[i] = NULL;
		}
		ktest_diag(
		        "cpu %u: painted from %zu bytes deep; mark %zu alone, "
		        "%zu under %u ticks that allocated (stack %zu)",
		        ids[k], pc->d0[1], pc->mark[0], pc->mark[1],
		        atomic_load(&pc->tick_hits), stack);
		KTEST_CMP_(pc->mark[0] - pc->d0[0], <=,
		           MM_STACK_BUDGET + IRQ_OVERHEAD, (void)0);
		KTEST_CMP_(pc->mark[1] - pc->d0[1], <=,
		           MM_STACK_BUDGET + IRQ_OVERHEAD + MM_IRQ_BUDGET,
		           (void)0);
		KTEST_CMP_(pc->mark[1], <, stack, (void)0);
		KEXPECT(pc->mark[0] > pc->d0[0]); /* it measured something */
		KEXPECT(atomic_load(&pc->tick_hits) >= MIN_TICKS);
	}
	KEXPECT_EQ(atomic_load(&n_nulls), 0);
	KEXPECT_EQ(atomic_load(&n_bad_fills), 0);
}

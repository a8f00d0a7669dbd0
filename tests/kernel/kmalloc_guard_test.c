/*
 * The span heap's guarded pool (mm/spanheap_guard.c, mm.guard=N) on the
 * real kernel, with the lock checker on: a guarded object's neighbours
 * are unmapped guard pages, so an access just past its end or before its
 * start faults, and so does any access after its free; a free from an
 * interrupt handler or with interrupts off leaves the unmap to the next
 * drain; and kmalloc's storm, every refill sampled (mm.guard=1), keeps
 * every object's pattern and gives every slot back. Every test skips
 * when the heap has no pool (booted without mm.guard); tools/test-harness
 * runs them with mm.guard=1 (kmalloc_guard). The demos at the end
 * (KTEST_FAIL_DEMO only) fault or panic on purpose; the harness checks
 * their reports.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/fault_util.h"
#include "tests/kernel/guard_util.h"
#include "tests/kernel/storm_util.h"

/* n bytes from the pool itself, as a sampled kmalloc(n) gets them; NULL
 * if no slot is free. */
static uint8_t *guard_alloc(size_t n)
{
	return spanheap_guard_alloc(&kspanheap, n, 16, 0, sizeclass_of(n));
}

/* Whether guarded object p sits at its page's start (else at its end). */
static bool at_page_start(const void *p)
{
	return ((uintptr_t)p & (MM_PAGE_SIZE - 1)) == 0;
}

/* The state of the slot that holds guarded object p. */
static uint8_t slot_state(const void *p)
{
	struct spanheap_where w;
	if (!spanheap_where(&kspanheap, p, &w) ||
	    w.kind != SPANHEAP_WHERE_GUARD || w.index >= kspanheap.guard.nslots)
		return 0xff;
	return atomic_load(&kspanheap.guard.slot[w.index].state);
}

/* Drains until p's slot is unmapped: spanheap_guard_drain_all sleeps
 * while another thread (another CPU's guarded call, the sweeper) drains,
 * however long its shootdown waits for a vCPU the host does not run;
 * the rounds of drain and yield this did before could run out first
 * (flake audit). */
static bool drained(const void *p)
{
	spanheap_guard_drain_all(&kspanheap);
	return slot_state(p) == GUARD_FREE;
}

/* Holds the pool's drain (its one-drainer flag), so that no other thread
 * unmaps what this test frees until drain_let_go. */
static void drain_hold(void)
{
	while (atomic_exchange(&kspanheap.guard.draining, true))
		thread_yield();
}

static void drain_let_go(void)
{
	atomic_store(&kspanheap.guard.draining, false);
}

/* Checks a guarded object of n bytes, fresh from the pool: its size,
 * alignment and zeroes, and the fault at the byte past its end or before
 * its start (whichever neighbour is a guard), which spanheap_where gives
 * to the object. Returns whether it sits at its page's start. */
static bool check_fresh(uint8_t *p, size_t n)
{
	KEXPECT(spanheap_guard_owns(&kspanheap.guard, p));
	KEXPECT_EQ(ksize(p), n);
	KEXPECT_EQ((uintptr_t)p % 16, 0);
	size_t nonzero = 0;
	for (size_t k = 0; k < n; k++)
		nonzero += p[k] != 0;
	KEXPECT_EQ(nonzero, 0);
	bool start = at_page_start(p);
	uint8_t *probe = start ? p - 1 : p + n;
	if (!start)
		KEXPECT(at_page_start(probe)); /* n is a multiple of 16 */
	KEXPECT(read_faults_at(probe));
	struct spanheap_where w;
	KEXPECT(spanheap_where(&kspanheap, probe, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_GUARD);
	KEXPECT(w.on_guard);
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_ALLOCATED);
	KEXPECT_EQ(w.start, (uintptr_t)p);
	KEXPECT_EQ(w.asked, n);
	if (start)
		KEXPECT_EQ(w.before, 1);
	else
		KEXPECT_EQ(w.offset, n);
	return start;
}

/*
 * Objects from the pool until one of each placement is seen (the pool
 * alternates, but other CPUs' samples may come between): each is its
 * size, zeroed and 16-aligned; the byte past a page-end one and the byte
 * before a page-start one fault on a guard page, given to the object.
 * After its free any access faults, and the object reads as freed.
 */
KTEST(kmalloc_guard, object_faults_past_its_ends_and_after_its_free)
{
	NEED_POOL();
	enum { N = 112 };
	bool seen[2] = {false, false};
	for (unsigned tries = 0; tries < 16 && !(seen[0] && seen[1]); tries++) {
		uint8_t *p = guard_alloc(N);
		KASSERT(p != NULL);
		seen[check_fresh(p, N)] = true;
		memset(p, 0x5a, N);
		kfree(p);
		KEXPECT(drained(p));
		KEXPECT(read_faults_at(p));
		KEXPECT(read_faults_at(p + N - 1));
		struct spanheap_where w;
		KEXPECT(spanheap_where(&kspanheap, p + 10, &w));
		KEXPECT_EQ(w.kind, SPANHEAP_WHERE_GUARD);
		KEXPECT_EQ(w.state, SPANHEAP_OBJ_FREE);
		KEXPECT(!w.on_guard);
		KEXPECT_EQ(w.offset, 10);
		KEXPECT(w.freed.ns != 0);
	}
	KEXPECT(seen[0]);
	KEXPECT(seen[1]);
}

/*
 * The report of a freed guarded object (what the page-fault handler
 * prints for its CR2, through addrinfo): the object, its state, and the
 * last allocation and free.
 */
KTEST(kmalloc_guard, freed_object_report_names_it)
{
	NEED_POOL();
	uint8_t *p = guard_alloc(100);
	KASSERT(p != NULL);
	kfree(p);
	KEXPECT(drained(p));
	capture_start();
	spanheap_where_log(&kspanheap, p + 4);
	capture_stop();
	char want[96];
	ksnprintf(want, sizeof(want),
	          "4 bytes into guarded object %p (free; "
	          "100 bytes asked",
	          (void *)p);
	KEXPECT(seen_has(want));
	KEXPECT(seen_has("last allocated on CPU"));
	KEXPECT(seen_has("last freed on CPU"));
}

/*
 * A free with interrupts off cannot unmap (the shootdown waits for the
 * other CPUs): the object holds the poison, its slot waits FREED, still
 * mapped, until a drain, after which a read faults. Other threads' drains
 * are held off meanwhile, so the wait is seen.
 */
KTEST(kmalloc_guard, free_with_interrupts_off_waits_for_the_drain)
{
	NEED_POOL();
	enum { N = 48 };
	uint8_t *p = guard_alloc(N);
	KASSERT(p != NULL);
	memset(p, 0x11, N);
	drain_hold();
	uint64_t flags = read_rflags();
	cpu_cli();
	kfree(p);
	uint8_t state = slot_state(p);
	if (flags & RFLAGS_IF)
		cpu_sti();
	KEXPECT_EQ(state, GUARD_FREED);
	KEXPECT_EQ(slot_state(p), GUARD_FREED);
	KEXPECT(!read_faults_at(p));
	size_t unpoisoned = 0;
	for (unsigned k = 0; k < N; k++)
		unpoisoned += p[k] != SPANHEAP_POISON_BYTE;
	KEXPECT_EQ(unpoisoned, 0);
	struct spanheap_where w;
	KEXPECT(spanheap_where(&kspanheap, p, &w));
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_FREE);
	drain_let_go();
	KEXPECT(drained(p));
	KEXPECT(read_faults_at(p));
}

static uint8_t *_Atomic tick_victim;
static _Atomic bool tick_freed;

/* From a timer interrupt, on whichever CPU ticks first: frees the
 * victim. */
static void tick_free(void)
{
	uint8_t *p = atomic_exchange(&tick_victim, NULL);
	if (!p)
		return;
	kfree(p);
	atomic_store(&tick_freed, true);
}

/* The same from a timer interrupt handler. */
KTEST(kmalloc_guard, free_from_the_timer_interrupt_waits_for_the_drain)
{
	NEED_POOL();
	uint8_t *p = guard_alloc(200);
	KASSERT(p != NULL);
	drain_hold();
	atomic_store(&tick_freed, false);
	atomic_store(&tick_victim, p);
	sched_tick_hook = tick_free;
	while (!atomic_load(&tick_freed))
		thread_sleep_ns(1000000);
	sched_tick_hook = NULL;
	KEXPECT_EQ(slot_state(p), GUARD_FREED);
	KEXPECT_EQ(p[199], SPANHEAP_POISON_BYTE);
	drain_let_go();
	KEXPECT(drained(p));
	KEXPECT(read_faults_at(p + 199));
}

/* ---- The storm, every refill sampled ------------------------------------ */

#define GSTORM_LIVE  16
#define GSTORM_OPS   3000
#define GSTORM_HAND  32
#define GSTORM_IRQ   4
#define GSTORM_TICKS 100 /* interrupt allocations, over all CPUs */

/* Objects start with their size and owner; every byte after is the
 * owner's and the address's byte. */
struct gobj {
	uint32_t size, owner;
};

static uint8_t fill_byte(uint32_t owner, const void *p)
{
	return (uint8_t)(owner * 37u ^ ((uintptr_t)p >> 4));
}

static void gobj_fill(void *p, size_t n, uint32_t owner)
{
	*(struct gobj *)p = (struct gobj){(uint32_t)n, owner};
	memset((uint8_t *)p + sizeof(struct gobj), fill_byte(owner, p),
	       n - sizeof(struct gobj));
}

static void *_Atomic ghand[GSTORM_HAND];
static void *girq[MAX_CPUS][GSTORM_IRQ]; /* that CPU's handler's */
static unsigned girq_turn[MAX_CPUS];     /* that CPU's handler's */
static _Atomic bool girq_on;
static _Atomic unsigned girq_inside, gworkers;
static _Atomic uint64_t g_bad, g_nulls, g_guarded, g_irq_allocs;
static _Atomic uint64_t g_irq_guarded_frees;

/* Checks p's pattern and frees it. */
static void gobj_free(void *p)
{
	const struct gobj *h = p;
	const uint8_t *b = p;
	size_t bad = h->size < sizeof(*h) || h->size > ksize(p);
	uint8_t want = fill_byte(h->owner, p);
	for (size_t k = sizeof(*h); !bad && k < h->size; k++)
		bad += b[k] != want;
	atomic_fetch_add(&g_bad, bad);
	kfree(p);
}

/* 16 to 1 KiB, one in 8 up to 4 KiB: what the pool can take. */
static void *gobj_alloc(uint64_t r, uint32_t owner, unsigned flags)
{
	size_t n = r % 8 ? 16 + (r >> 8) % 1009 : 1025 + (r >> 8) % 3072;
	void *p;
	if (r % 5 == 1 && !(flags & KM_ATOMIC))
		p = kzalloc(n, flags);
	else if (r % 7 == 2)
		p = kmalloc_aligned(n, (size_t)16 << (r >> 16) % 7, flags);
	else
		p = kmalloc(n, flags);
	if (!p)
		return NULL;
	atomic_fetch_add(&g_guarded, spanheap_guard_owns(&kspanheap.guard, p));
	atomic_fetch_add(&g_bad, ksize(p) < n);
	gobj_fill(p, n, owner);
	return p;
}

static uint64_t gnext(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* From every CPU's timer tick: frees the slot's old object (guarded or
 * not) and puts a KM_ATOMIC one there. */
static void gstorm_tick(void)
{
	atomic_fetch_add(&girq_inside, 1);
	if (atomic_load(&girq_on)) {
		unsigned cpu = this_cpu()->id;
		void **slot = &girq[cpu][girq_turn[cpu]++ % GSTORM_IRQ];
		if (*slot) {
			atomic_fetch_add(
			        &g_irq_guarded_frees,
			        spanheap_guard_owns(&kspanheap.guard, *slot));
			gobj_free(*slot);
		}
		uint64_t r = 0x9e3779b97f4a7c15ull * (girq_turn[cpu] + cpu);
		*slot = gobj_alloc(r ^ (r >> 29), 0x100 | cpu, KM_ATOMIC);
		atomic_fetch_add(&g_irq_allocs, *slot != NULL);
	}
	atomic_fetch_sub(&girq_inside, 1);
}

static void gstorm_worker(void *arg)
{
	uint32_t owner = (uint32_t)(uintptr_t)arg;
	uint64_t rnd = 0x2545f4914f6cdd1dull * (owner + 3);
	void *live[GSTORM_LIVE] = {0};
	for (unsigned i = 0; i < GSTORM_OPS; i++) {
		void **s = &live[gnext(&rnd) % GSTORM_LIVE];
		if (*s && gnext(&rnd) % 4 == 0) {
			void *old = atomic_exchange(
			        &ghand[gnext(&rnd) % GSTORM_HAND], *s);
			if (old)
				gobj_free(old); /* often another CPU's */
		} else if (*s) {
			gobj_free(*s);
		}
		*s = gobj_alloc(gnext(&rnd), owner, 0);
		atomic_fetch_add(&g_nulls, *s == NULL);
		if (i % 64 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < GSTORM_LIVE; k++)
		if (live[k])
			gobj_free(live[k]);
	atomic_fetch_sub(&gworkers, 1);
}

/* Runs the workers, one a CPU, and the tick hook until both are done;
 * frees what is left handed off or held by the handlers. */
static void gstorm_run(void)
{
	cpu_storm_run(&(struct cpu_storm){.name = "gstorm",
	                                  .worker = gstorm_worker,
	                                  .tick = gstorm_tick,
	                                  .running = &gworkers,
	                                  .irq_on = &girq_on,
	                                  .irq_inside = &girq_inside,
	                                  .irq_allocs = &g_irq_allocs,
	                                  .irq_min = GSTORM_TICKS});
	for (unsigned k = 0; k < GSTORM_HAND; k++) {
		void *p = atomic_exchange(&ghand[k], NULL);
		if (p)
			gobj_free(p);
	}
	for (unsigned c = 0; c < MAX_CPUS; c++)
		for (unsigned k = 0; k < GSTORM_IRQ; k++)
			if (girq[c][k]) {
				gobj_free(girq[c][k]);
				girq[c][k] = NULL;
			}
}

/*
 * With mm.guard=1 every refill and out-of-line allocation is the pool's
 * while it has a slot: threads on every CPU and every CPU's timer
 * interrupt allocate, fill, check and free (crossing CPUs), some of it
 * guarded. No pattern breaks, no thread allocation fails, the pool
 * served some, some of them freed by interrupt handlers (unmapped by a
 * later drain), and every slot it handed out came back; the heap checks.
 */
KTEST(kmalloc_guard, storm_every_cpu_and_interrupts_gives_every_slot_back)
{
	NEED_POOL();
	struct spanheap_stats st0, st;
	spanheap_guard_drain(&kspanheap);
	spanheap_stats(&kspanheap, &st0);
	gstorm_run();
	heap_release_all(); /* its sweep cycle drains the pool too */
	spanheap_guard_drain(&kspanheap);
	spanheap_stats(&kspanheap, &st);
	ktest_diag("guard storm: %lu of the objects guarded, %lu interrupt "
	           "allocations, %lu guarded frees from interrupts; pool: "
	           "%lu allocs, %lu frees, %lu turned away full, %lu for "
	           "want of memory",
	           atomic_load(&g_guarded), atomic_load(&g_irq_allocs),
	           atomic_load(&g_irq_guarded_frees),
	           st.guard_allocs - st0.guard_allocs,
	           st.guard_frees - st0.guard_frees,
	           st.guard_full - st0.guard_full,
	           st.guard_nomem - st0.guard_nomem);
	KEXPECT_EQ(atomic_load(&g_bad), 0);
	KEXPECT_EQ(atomic_load(&g_nulls), 0);
	KEXPECT(atomic_load(&g_guarded) > 0);
	KEXPECT(st.guard_allocs > st0.guard_allocs);
	KEXPECT_EQ(st.guard_live, st0.guard_live);
	KEXPECT_EQ(st.guard_allocs - st0.guard_allocs,
	           st.guard_frees - st0.guard_frees);
	spanheap_check(&kspanheap);
}

/* ---- Misuse (KTEST_FAIL_DEMO only: each faults or panics) ------------ */

#ifdef KTEST_FAIL_DEMO
/* A guarded object of n bytes (a multiple of 16) at its page's end, or
 * at its start: the pool alternates, so the second try has it. */
static uint8_t *guard_alloc_at(size_t n, bool start)
{
	for (unsigned tries = 0; tries < 4; tries++) {
		uint8_t *p = guard_alloc(n);
		if (!p || at_page_start(p) == start)
			return p;
		kfree(p);
	}
	return NULL;
}

/* With mm.guard: a write one byte past a guarded object at its page's
 * end lands on the guard page after it; the report names the object. */
KTEST(demo, kmalloc_guard_overrun_faults)
{
	NEED_POOL();
	uint8_t *p = guard_alloc_at(112, false);
	KASSERT(p != NULL);
	ktest_diag("write past the end at %#lx", (unsigned long)(p + 112));
	*(volatile uint8_t *)(p + 112) = 1;
	ktest_fail_at(__FILE__, __LINE__,
	              "the write past the end did not "
	              "fault");
}

/* With mm.guard=1: a read of a guarded object after its free: its page
 * is unmapped; the report names the object, its allocation and free (by
 * this function: kzalloc's out-of-line call is sampled at 1 in 1). */
KTEST(demo, kmalloc_guard_use_after_free_faults)
{
	NEED_POOL();
	uint8_t *p = kzalloc(100, 0);
	KASSERT(p != NULL && spanheap_guard_owns(&kspanheap.guard, p));
	kfree(p);
	spanheap_guard_drain(&kspanheap);
	ktest_diag("use after free at %#lx", (unsigned long)(p + 10));
	(void)*(volatile uint8_t *)(p + 10);
	ktest_fail_at(__FILE__, __LINE__, "the read after free did not fault");
}

/* With mm.guard: a guarded object freed twice. */
KTEST(demo, kfree_guard_double_free)
{
	NEED_POOL();
	uint8_t *p = guard_alloc(64);
	KASSERT(p != NULL);
	kfree(p);
	ktest_diag("kfree of %p", (void *)p);
	kfree(p);
	ktest_fail_at(__FILE__, __LINE__, "the double free went unseen");
}
#endif

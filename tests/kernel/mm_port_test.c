/*
 * kernel/mm_port.c on the real page tables: reserved space is unbacked,
 * map backs it with zeroed frames, unused gives the frames back and makes
 * a touch fault, used maps fresh zeroed frames again.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/stw.h"
#include "tests/kernel/mm_test_util.h"
#include "tests/kernel/fault_util.h"
#include "kernel/thread.h"
#include "mm/port.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/smp_util.h"

#define NPAGES 8

/* Page-table pages are created on first map and kept (paging.c), so tests
 * that count frames map and unmap their range once before the baseline. */
static bool warm_tables(uint8_t *p, size_t nbytes)
{
	if (!mm_port_map(p, nbytes))
		return false;
	test_port_unused(p, nbytes);
	return true;
}

KTEST(mm_port, reserve_map_unused_used)
{
	uint8_t *p = mm_port_reserve(NPAGES * MM_PAGE_SIZE, 1 << 21);
	KASSERT(p != NULL);
	KEXPECT_EQ((uintptr_t)p % (1 << 21), 0);
	KEXPECT(read_faults_at(p)); /* reserved, not backed */
	KEXPECT(mm_port_map(p, 0)); /* nothing to back: done, not refused */
	KASSERT(warm_tables(p, NPAGES * MM_PAGE_SIZE));
	heap_settle(); /* the heap's threads must not move the pool meanwhile */
	size_t frames0 = frames_free_count(), meta0 = heap_meta_frames();

	KASSERT(mm_port_map(p, NPAGES * MM_PAGE_SIZE));
	KEXPECT_EQ(frames_free_count(), frames0 - NPAGES);
	KEXPECT_EQ(heap_meta_frames(), meta0 + NPAGES); /* held for good */
	int nonzero = 0;
	for (size_t i = 0; i < NPAGES * MM_PAGE_SIZE; i++)
		nonzero += p[i] != 0;
	KEXPECT_EQ(nonzero, 0);
	for (size_t i = 0; i < NPAGES * MM_PAGE_SIZE; i++)
		p[i] = 0xa5;

	test_port_unused(p + 2 * MM_PAGE_SIZE, 3 * MM_PAGE_SIZE);
	KEXPECT_EQ(frames_free_count(), frames0 - NPAGES + 3);
	KEXPECT(read_faults_at(p + 3 * MM_PAGE_SIZE));
	KEXPECT_EQ(p[MM_PAGE_SIZE], 0xa5); /* neighbours untouched */
	KEXPECT_EQ(p[5 * MM_PAGE_SIZE], 0xa5);

	KASSERT(mm_port_used(p + 2 * MM_PAGE_SIZE, 3 * MM_PAGE_SIZE));
	KEXPECT_EQ(p[3 * MM_PAGE_SIZE + 7], 0); /* fresh, zeroed */
	test_port_unused(p, NPAGES * MM_PAGE_SIZE);
	KEXPECT_EQ(frames_free_count(), frames0);
}

KTEST(mm_port, reserve_refuses_bad_requests)
{
	KEXPECT(mm_port_reserve(0, MM_PAGE_SIZE) == NULL);
	KEXPECT(mm_port_reserve(100, MM_PAGE_SIZE) == NULL);
	KEXPECT(mm_port_reserve(MM_PAGE_SIZE, 3 * MM_PAGE_SIZE) == NULL);
	KEXPECT(mm_port_reserve(4ull << 40, MM_PAGE_SIZE) == NULL);
	void *a = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
	void *b = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
	KEXPECT(a != NULL && b != NULL && a != b);
}

/* Only a range mm_port_reserve returned, the latest first, goes back: one
 * that also covers an earlier, live reservation must not move the bump
 * pointer below it, or the next reservation would overlap that one. */
KTEST(mm_port, unreserve_gives_back_only_the_latest_reservation)
{
	uint8_t *a = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
	uint8_t *b = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
	KASSERT(a != NULL && b == a + MM_PAGE_SIZE);
	mm_port_unreserve(a, 2 * MM_PAGE_SIZE); /* a and b: not one range */
	uint8_t *c = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
	KEXPECT(c == b + MM_PAGE_SIZE);
	mm_port_unreserve(b, MM_PAGE_SIZE); /* not the latest: kept */
	mm_port_unreserve(c, MM_PAGE_SIZE);
	KEXPECT(mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE) == c);
	/* Latest first, each exactly as reserved, they all go back. */
	mm_port_unreserve(c, MM_PAGE_SIZE);
	mm_port_unreserve(b, MM_PAGE_SIZE);
	mm_port_unreserve(a, MM_PAGE_SIZE);
	KEXPECT(mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE) == a);
	/* With alignment gaps between them, all still go back. */
	uint8_t *e = mm_port_reserve(MM_PAGE_SIZE, 2ull << 20);
	uint8_t *d = mm_port_reserve(MM_PAGE_SIZE, 2ull << 20);
	KASSERT(e != NULL && d == e + (2ull << 20));
	mm_port_unreserve(d, MM_PAGE_SIZE);
	mm_port_unreserve(e, MM_PAGE_SIZE);
	mm_port_unreserve(a, MM_PAGE_SIZE);
	KEXPECT(mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE) == a);
}

/* An alignment or a size so large that the range's arithmetic wraps
 * past 2^64 is refused, and the bump pointer stays where it was: the next
 * reservation follows the last one, inside the mm region. */
KTEST(mm_port, reserve_refuses_a_range_that_wraps)
{
	uint8_t *a = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
	KASSERT(a != NULL);
	/* align_up to 2^63 wraps to 0, below the region. */
	KEXPECT(mm_port_reserve(MM_PAGE_SIZE, 1ull << 63) == NULL);
	/* base + nbytes wraps to just below base. */
	KEXPECT(mm_port_reserve(-(size_t)MM_PAGE_SIZE, MM_PAGE_SIZE) == NULL);
	uint8_t *b = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
	KEXPECT(b == a + MM_PAGE_SIZE);
	KEXPECT((uintptr_t)b >= MM_REGION_BASE &&
	        (uintptr_t)b < MM_REGION_BASE + MM_REGION_SIZE);
}

/* The port's undo stack holds the latest 16 reservations (RESERVE_UNDO_MAX
 * in mm_port.c): a 17th pushes the oldest out, and that one is kept for
 * good. And only a whole reservation goes back, not a part of it. */
KTEST(mm_port, unreserve_keeps_the_oldest_and_wholes_only)
{
	enum { N = 16 + 1 };
	uint8_t *r[N];
	for (unsigned i = 0; i < N; i++) {
		r[i] = mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE);
		KASSERT(r[i] != NULL && r[i] == r[0] + i * MM_PAGE_SIZE);
	}
	for (unsigned i = N; i-- > 0;)
		mm_port_unreserve(r[i], MM_PAGE_SIZE);
	/* r[1..16] went back; r[0], out of the stack, did not. */
	KEXPECT(mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE) == r[1]);
	uint8_t *c = mm_port_reserve(2 * MM_PAGE_SIZE, MM_PAGE_SIZE);
	KASSERT(c == r[2]);
	mm_port_unreserve(c, MM_PAGE_SIZE); /* half of it: kept */
	KEXPECT(mm_port_reserve(MM_PAGE_SIZE, MM_PAGE_SIZE) ==
	        c + 2 * MM_PAGE_SIZE);
}

KTEST(mm_port, map_failure_leaves_nothing_mapped)
{
	uint8_t *p = mm_port_reserve(NPAGES * MM_PAGE_SIZE, MM_PAGE_SIZE);
	KASSERT(p != NULL);
	KASSERT(warm_tables(p, NPAGES * MM_PAGE_SIZE));
	/* Take every frame but 3, then ask for 8 pages; no background
	 * scavenger batch of the heap's may give frames back meanwhile. */
	heap_settle();
	paddr_t head = frames_drain(3);
	KEXPECT(!mm_port_map(p, NPAGES * MM_PAGE_SIZE));
	KEXPECT_EQ(frames_free_count(), 3);
	for (int i = 0; i < NPAGES; i++)
		KEXPECT(!vm_translate((uintptr_t)p + i * MM_PAGE_SIZE, NULL,
		                      NULL));
	frames_refill(head);
}

/* A lock another CPU holds, while this one looks (the owner test). */
static mm_lock_t owner_lock;
static _Atomic int owner_step;
static _Atomic bool owner_saw_held;

static void hold_elsewhere(void *arg)
{
	unsigned long irq = mm_lock_acquire(&owner_lock);
	atomic_store(&owner_saw_held, mm_lock_held(&owner_lock));
	atomic_store(&owner_step, 1);
	while (atomic_load(&owner_step) != 2)
		cpu_pause();
	mm_lock_release(&owner_lock, irq);
}

/* Held means held by this CPU (what every _locked call asserts), not
 * taken by anyone: a lock another CPU holds is not held here. */
KTEST(mm_port, lock_is_irqsave_and_tracks_owner)
{
	mm_lock_init(&owner_lock, "test", MM_RANK_HEAP);
	KEXPECT(!mm_lock_held(&owner_lock));
	unsigned long irq = mm_lock_acquire(&owner_lock);
	KEXPECT(mm_lock_held(&owner_lock));
	/* Interrupts off while held, back on after. */
	KEXPECT_EQ(read_rflags() & RFLAGS_IF, 0);
	mm_lock_release(&owner_lock, irq);
	KEXPECT(!mm_lock_held(&owner_lock));
	KEXPECT(read_rflags() & RFLAGS_IF);

	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("another CPU's hold needs two CPUs");
	atomic_store(&owner_step, 0);
	atomic_store(&owner_saw_held, false);
	struct thread_handle t =
	        thread_create("lock_owner", hold_elsewhere, NULL, other);
	KASSERT(thread_handle_ok(t));
	while (atomic_load(&owner_step) != 1)
		thread_yield();
	bool held_here = mm_lock_held(&owner_lock);
	atomic_store(&owner_step, 2);
	thread_join(t);
	KEXPECT(atomic_load(&owner_saw_held));
	KEXPECT(!held_here);
}

KTEST(mm_port, unused_begin_under_a_leaf_lock_then_finish)
{
	enum { N = 16 };
	uint8_t *p = mm_port_reserve(N * MM_PAGE_SIZE, 1 << 21);
	KASSERT(p != NULL);
	KASSERT(mm_port_prepare(p, 1 << 21));
	KASSERT(mm_port_used(p, N * MM_PAGE_SIZE));
	/* 2 KiB: from kmalloc, before the count starts; not the guarded
	 * pool's (mm.guard), whose free would give a frame back. */
	static struct guard_aside aside;
	struct mm_unused_batch *b = kmalloc_plain(sizeof(*b), 0, &aside);
	kmalloc_plain_done(&aside);
	KASSERT(b != NULL);
	heap_settle(); /* the heap's threads must not move the pool meanwhile */
	size_t frames0 = frames_free_count();
	for (int i = 0; i < N; i++)
		p[i * MM_PAGE_SIZE] = 0x77;
	/* Under a heap-rank (leaf) lock: the checker panics if begin takes
	 * any lock, and begin must not wait for other CPUs. */
	mm_lock_t heap;
	mm_lock_init(&heap, "test_heap", MM_RANK_HEAP);
	mm_unused_batch_init(b);
	unsigned long irq = mm_lock_acquire(&heap);
	mm_port_unused_begin(p + 4 * MM_PAGE_SIZE, 8 * MM_PAGE_SIZE, b);
	mm_lock_release(&heap, irq);
	KEXPECT_EQ(b->npages, 8);
	KEXPECT(read_faults_at(p + 5 * MM_PAGE_SIZE));
	KEXPECT_EQ(frames_free_count(), frames0);
	mm_port_unused_finish(b);
	KEXPECT_EQ(b->npages, 0);
	KEXPECT_EQ(frames_free_count(), frames0 + 8);
	/* Pages 2-5, of which 4 and 5 are unmapped already: only the two
	 * mapped ones go into the batch, and back to the pool. */
	mm_port_unused_begin(p + 2 * MM_PAGE_SIZE, 4 * MM_PAGE_SIZE, b);
	KEXPECT_EQ(b->npages, 2);
	mm_port_unused_finish(b);
	KEXPECT_EQ(frames_free_count(), frames0 + 10);
	/* used maps only the holes: page 1 keeps its data. */
	KASSERT(mm_port_used(p, N * MM_PAGE_SIZE));
	KEXPECT_EQ(p[1 * MM_PAGE_SIZE], 0x77);
	KEXPECT_EQ(p[3 * MM_PAGE_SIZE], 0);
	KEXPECT_EQ(p[5 * MM_PAGE_SIZE], 0);
	test_port_unused(p, N * MM_PAGE_SIZE);
	kfree(b);
	KEXPECT_EQ(frames_free_count(), frames0 + N);
}

static mm_event_t event;
static _Atomic bool waker_went;

static void wake_later(void *arg)
{
	thread_sleep_ns(20000000);
	atomic_store(&waker_went, true);
	mm_event_wake(&event);
}

/* No wall-clock upper bound (TCG stalls): a wake shows as a true return,
 * a timeout as false after at least the timeout. */
KTEST(mm_port, event_wait_times_out_or_is_woken)
{
	mm_event_init(&event, "test_event");
	uint64_t t0 = mm_port_now_ns();
	uint64_t seen = mm_event_prepare(&event);
	KEXPECT(!mm_event_wait(&event, seen, 30000000)); /* nobody wakes */
	KEXPECT(mm_port_now_ns() - t0 >= 30000000);
	mm_event_wake(&event); /* after prepare: the wait returns at once */
	KEXPECT(mm_event_wait(&event, seen, 60000000000ull));
	KEXPECT_NE(mm_event_prepare(&event), seen);
	atomic_store(&waker_went, false);
	struct thread_handle t =
	        thread_create("waker", wake_later, NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	seen = mm_event_prepare(&event);
	KEXPECT(mm_event_wait(&event, seen, 60000000000ull));
	KEXPECT(atomic_load(&waker_went)); /* only the waker moves it */
	thread_join(t);
	/* The longest timeout waits until woken: its deadline saturates
	 * rather than wrapping to one already past. */
	atomic_store(&waker_went, false);
	t = thread_create("waker", wake_later, NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	seen = mm_event_prepare(&event);
	KEXPECT(mm_event_wait(&event, seen, UINT64_MAX));
	KEXPECT(atomic_load(&waker_went));
	thread_join(t);
	uint64_t cpu0 = mm_port_thread_cpu_ns();
	KEXPECT(mm_port_thread_cpu_ns() >= cpu0);
}

/* The probe of the test below: 1 armed, 4 running, 2 "cannot sleep",
 * 3 "can sleep". */
static _Atomic int probe;
static unsigned probe_cpu;

static void probe_tick(void)
{
	int armed = 1;
	if (this_cpu()->id != probe_cpu ||
	    !atomic_compare_exchange_strong(&probe, &armed, 4))
		return;
	cpu_sti(); /* a handler that let interrupts in again */
	bool can = mm_port_can_sleep();
	cpu_cli();
	atomic_store(&probe, can ? 3 : 2);
}

/* An interrupt handler cannot sleep even with interrupts on: it runs on
 * the stack of the thread it interrupted (here a thread that could). */
KTEST(mm_port, cannot_sleep_in_an_interrupt_with_interrupts_on)
{
	KEXPECT(mm_port_can_sleep()); /* interrupts on, nothing held */
	probe_cpu = this_cpu()->id;   /* threads never migrate */
	atomic_store(&probe, 1);
	sched_tick_hook = probe_tick;
	while (atomic_load(&probe) != 2 && atomic_load(&probe) != 3)
		cpu_pause(); /* busy: the tick interrupts this thread */
	sched_tick_hook = NULL;
	KEXPECT_EQ(atomic_load(&probe), 2);
}

static void thread_nothing(void *arg)
{
	(void)arg;
}

/* mm_port_thread_join frees the handle mm_port_thread_start allocated:
 * afterwards the handle carries the span heap's free marker (cookie ^
 * address, in word 1), which only a free writes. Only an allocation on
 * this CPU could hand it out again before the read: it sits in this CPU's
 * magazine (in poison mode, which has none, in its span, which this CPU
 * caches: no sweep claims a cached span), and nothing on this CPU
 * allocates meanwhile (the heap's scavenger and sweeper never do), nor
 * does any other thread flush every CPU's cache (a release-all). */
KTEST(mm_port, thread_join_frees_the_handle)
{
	struct mm_thread *t =
	        mm_port_thread_start("mm_port_nothing", thread_nothing, NULL);
	KASSERT(t != NULL);
	mm_port_thread_join(t);
	uintptr_t a = (uintptr_t)t;
	/* A handle the guarded pool took (mm.guard) has its page unmapped
	 * at the free: ask the pool instead of reading it. */
	struct spanheap_where w;
	if (spanheap_guard_owns(&kspanheap.guard, t))
		KEXPECT(spanheap_where(&kspanheap, t, &w) &&
		        w.state == SPANHEAP_OBJ_FREE);
	else
		KEXPECT_EQ(kasan_peek_u64((void *)(a + 8)),
		           kspanheap.mag_cookie ^ a);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): a wait on an
 * mm event with a spinlock held must panic with the lock checker's
 * reason, naming the event and the lock, not only "cannot sleep". */
static struct spinlock demo_held =
        SPINLOCK_INIT("demo_held", LOCK_RANK_TEST_LOW);

KTEST(demo, mm_event_wait_holding_a_spinlock)
{
	mm_event_init(&event, "demo_event");
	unsigned long irq = spin_lock_irqsave(&demo_held);
	(void)mm_event_wait(&event, mm_event_prepare(&event), 1000000);
	spin_unlock_irqrestore(&demo_held, irq);
}
#endif

static unsigned each_calls[MAX_CPUS];
static bool each_stopped, each_self_called;

static void each_note(unsigned cpu, void *arg)
{
	(void)arg;
	if (cpu < MAX_CPUS)
		each_calls[cpu]++;
	each_stopped &= stw_stopped();
	each_self_called |= cpu == this_cpu()->id;
}

/* mm_port_each_other_cpu calls fn once for every other online CPU, none
 * for this one, all while the world is stopped; under a stop this CPU
 * already holds, it makes no second one. */
KTEST(mm_port, each_other_cpu_calls_every_other_cpu_parked)
{
	for (int round = 0; round < 2; round++) {
		for (unsigned i = 0; i < MAX_CPUS; i++)
			each_calls[i] = 0;
		each_stopped = true;
		each_self_called = false;
		if (round)
			stw_stop("test");
		KEXPECT(mm_port_each_other_cpu(each_note, NULL));
		if (round) {
			KEXPECT(stw_stopped_by_this_cpu());
			stw_start();
		}
		KEXPECT(!stw_stopped());
		unsigned self = this_cpu()->id, calls = 0;
		for (unsigned i = 0; i < MAX_CPUS; i++) {
			bool other = i != self && atomic_load(&cpus[i].online);
			KEXPECT_EQ(each_calls[i], other ? 1u : 0u);
			calls += each_calls[i];
		}
		KEXPECT_EQ(calls + 1, atomic_load(&ncpus_online));
		KEXPECT(each_stopped);
		KEXPECT(!each_self_called);
	}
}

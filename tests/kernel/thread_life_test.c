/*
 * What a thread's life leaves behind: its run queue's count of threads
 * up by one while it lives and back down once it exits, THREAD_ANY_CPU
 * placing it by those counts, its stack unmapped and its slot free once
 * it is joined, and an expected-fault hook armed by one thread kept
 * across a switch, neither lost to it nor lent to the next thread.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/kstack.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/thread_testing.h"

static unsigned nthreads_on(unsigned cpu)
{
	struct sched_cpu_info info = {0};
	KEXPECT(sched_cpu_info(cpu, &info));
	return info.nthreads;
}

/* Parked threads: each polls until told to go, asleep a tick at a time,
 * so that it holds its place in its run queue's count. */
static _Atomic bool park_go;

static void park(void *arg)
{
	while (!atomic_load(&park_go))
		thread_sleep_ns(SCHED_TICK_NS);
}

static void unpark_all(struct thread_handle *h, unsigned n)
{
	atomic_store(&park_go, true);
	for (unsigned i = 0; i < n; i++)
		thread_join(h[i]);
	atomic_store(&park_go, false);
}

/*
 * A run queue counts the threads homed there: one more for each made, one
 * fewer for each that exits. A count that only grew would make
 * THREAD_ANY_CPU shun a CPU for threads long gone. The counts here are
 * exact because only this thread makes threads meanwhile (tests run one
 * at a time, and none leaves a thread behind): the heap's scavenger and
 * sweeper are homed for good and counted alike before and after, their
 * sleeps and wakes move no count, and no thread migrates.
 */
KTEST(thread, run_queue_counts_a_thread_until_it_exits)
{
	enum { N = 3 };
	unsigned cpu = this_cpu()->id, before = nthreads_on(cpu);
	struct thread_handle h[N];
	for (unsigned i = 0; i < N; i++) {
		h[i] = thread_create("parked", park, NULL, cpu);
		KASSERT(thread_handle_ok(h[i]));
	}
	KEXPECT_EQ(nthreads_on(cpu), before + N);
	unpark_all(h, N);
	KEXPECT_EQ(nthreads_on(cpu), before);
}

#if KTEST_HOOKS
static _Atomic int made_state = -1;
static _Atomic unsigned made_nthreads;

static void note_made(uintptr_t arg)
{
	const struct thread *t = (const struct thread *)arg;
	atomic_store(&made_state, (int)t->state);
	atomic_store(&made_nthreads, nthreads_on(t->cpu->id));
}

/*
 * A thread is in its run queue's table and the list of all threads from
 * thread_new on, before its creator's wake queues it: it must already be
 * BLOCKED and counted there. It was left THREAD_RUNNING (0, from the
 * struct's memset) and uncounted until a second stretch under the lock:
 * sched_check, a snapshot or a shell's ps in between saw a second running
 * thread on the CPU, with its CPU time counted from boot.
 */
KTEST(thread, a_thread_being_made_is_blocked_and_counted)
{
	unsigned cpu = this_cpu()->id, before = nthreads_on(cpu);
	atomic_store(&thread_testing_made, note_made);
	struct thread_handle h = thread_create("being_made", park, NULL, cpu);
	atomic_store(&thread_testing_made, NULL);
	KASSERT(thread_handle_ok(h));
	int state = atomic_load(&made_state);
	unsigned counted = atomic_load(&made_nthreads);
	KEXPECT_EQ(state, THREAD_BLOCKED);
	KEXPECT_EQ(counted, before + 1);
	sched_check();
	unpark_all(&h, 1);
	KEXPECT_EQ(nthreads_on(cpu), before);
}
#endif

/*
 * THREAD_ANY_CPU takes the CPU with the fewest threads: every CPU but
 * one is given more threads than it (parked ones), and the new thread
 * must land there, not on the busiest.
 */
#define PARK_MAX 64

static unsigned land_cpu;

static void note_cpu(void *arg)
{
	land_cpu = this_cpu()->id;
}

KTEST(thread, any_cpu_takes_the_one_with_the_fewest_threads)
{
	static struct thread_handle parked[PARK_MAX];
	unsigned n[MAX_CPUS], online = 0, least = MAX_CPUS, np = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (!atomic_load(&cpus[i].online))
			continue;
		online++;
		n[i] = nthreads_on(i);
		if (least == MAX_CPUS || n[i] < n[least])
			least = i;
	}
	if (online < 2)
		KTEST_SKIP("one CPU");
	/* Raise every other CPU to more than the least's count. */
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (i == least || !atomic_load(&cpus[i].online))
			continue;
		for (unsigned k = n[i]; k <= n[least] && np < PARK_MAX; k++) {
			parked[np] = thread_create("parked", park, NULL, i);
			KASSERT(thread_handle_ok(parked[np]));
			np++;
		}
	}
	land_cpu = MAX_CPUS;
	struct thread_handle t =
	        thread_create("anywhere", note_cpu, NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
	ktest_diag("cpu %u had the fewest threads (%u); the thread ran on "
	           "cpu %u",
	           least, n[least], land_cpu);
	KEXPECT_EQ(t.cpu, least);
	KEXPECT_EQ(land_cpu, least);
	unpark_all(parked, np);
}

/*
 * A joined thread's stack goes back: its pages unmapped and its slot
 * free (kstack_is_guard answers only for a slot in use). Kept, every
 * thread would cost its stack's frames and one of the region's slots
 * for good.
 */
static struct kstack seen_stack;

static void note_stack(void *arg)
{
	seen_stack = thread_current()->stack;
	*(volatile uint64_t *)seen_stack.bottom = 1; /* mapped while it runs */
}

KTEST(thread, join_frees_the_stack)
{
	struct thread_handle t =
	        thread_create("stacked", note_stack, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
	KASSERT(seen_stack.top != 0);
	KEXPECT(!vm_translate(seen_stack.bottom, NULL, NULL));
	KEXPECT(!vm_translate(seen_stack.top - PAGE_SIZE, NULL, NULL));
	KEXPECT(!kstack_is_guard(seen_stack.guard));
}

/*
 * An expected-fault hook belongs to the thread that armed it: the switch
 * saves it with the thread and gives the CPU the next thread's. This
 * thread arms one and lets another thread on its CPU run, which must find
 * no hook armed; back here, a fault must still be caught.
 */
static _Atomic bool other_saw_a_hook, other_ran;

static void look_for_hook(void *arg)
{
	unsigned long flags = read_rflags();
	cpu_cli();
	atomic_store(&other_saw_a_hook, this_cpu()->fault_catch != NULL);
	if (flags & RFLAGS_IF)
		cpu_sti();
	atomic_store(&other_ran, true);
}

KTEST(thread, fault_hook_stays_with_its_thread_across_a_switch)
{
	atomic_store(&other_saw_a_hook, false);
	atomic_store(&other_ran, false);
	struct thread_handle t =
	        thread_create("other", look_for_hook, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(t));
	struct fault_catch fc;
	volatile bool caught = false;
	if (fault_catch_arm(&fc) == 0) {
		while (!atomic_load(&other_ran))
			thread_yield();
		(void)*(volatile uint64_t *)0x0000800000000000ull;
		fault_catch_disarm(&fc);
	} else {
		caught = true;
	}
	thread_join(t);
	KEXPECT(!atomic_load(&other_saw_a_hook));
	KEXPECT(caught);
	KEXPECT_EQ(fc.vector, VEC_GP);
}

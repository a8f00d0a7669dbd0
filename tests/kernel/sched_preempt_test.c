/*
 * Preemption that was put off: a reschedule asked for while this CPU had
 * preemption disabled (a tick that found the slice over with a thread
 * queued) is taken by the preempt_enable that ends the stretch, whether
 * it is a bare preempt_enable or a spin_unlock's, not by the next
 * interrupt. Told by whether the queued thread ran before the enable
 * returned, with no tick between that could have switched, never by
 * wall time. And the other half: a reschedule asked for and then made
 * voluntarily is not left pending for the next thread.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "arch/x86_64/cpu.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"

static _Atomic bool queued_ran;

static uint64_t cpu_ticks(void)
{
	return *(volatile uint64_t *)&this_cpu()->ticks;
}

static void note_run(void *arg)
{
	atomic_store(&queued_ran, true);
}

/* The thread that turns preemption off and on, while watched (NULL: no
 * one), and whether a tick found it running with preemption on before
 * the queued thread ran: a tick that may have made the switch itself. */
static struct thread *_Atomic off_watched;
static _Atomic bool tick_could_switch;

/* The tick hook. current and preempt_count are this CPU's, read in its
 * own interrupt. */
static void off_tick(void)
{
	struct cpu *c = this_cpu();
	if (c->current == atomic_load(&off_watched) && c->preempt_count == 0 &&
	    !atomic_load(&queued_ran))
		atomic_store(&tick_could_switch, true);
}

/* Taken with interrupts on (the spin_unlock case): rank STW, below every
 * lock an interrupt handler takes, as the lock checker wants. */
static struct spinlock off_lock = SPINLOCK_INIT("preempt_off", LOCK_RANK_STW);

enum off_how { BY_PREEMPT_DISABLE, BY_SPIN_LOCK };

static void turn_off(enum off_how how)
{
	if (how == BY_PREEMPT_DISABLE)
		preempt_disable();
	else
		spin_lock(&off_lock);
}

static void turn_on(enum off_how how)
{
	if (how == BY_PREEMPT_DISABLE)
		preempt_enable();
	else
		spin_unlock(&off_lock);
}

/*
 * Queues a thread on this CPU, turns preemption off and waits (interrupts
 * on) for a tick to ask for the switch; then turns it on. Returns false
 * when the try does not count, for the caller to try again: the queued
 * thread ran before preemption went off (a tick came first), or a tick
 * found preemption back on before the queued thread ran (between the
 * enable's count going to 0 and its switch), and may have switched.
 * Told by the order of events, not by ticks counted: a tick that came
 * while preemption was off, or once the queued thread ran (a stall in
 * the switch lets one in at its first instruction with interrupts on),
 * cannot have made the switch. Counting ticks until the queued thread
 * ran failed a correct kernel for those.
 */
static bool run_once(enum off_how how, bool *ran_at_once)
{
	struct cpu *c = this_cpu();
	atomic_store(&queued_ran, false);
	atomic_store(&tick_could_switch, false);
	thread_yield(); /* a fresh slice: the window below is short */
	struct thread_handle t = thread_create("queued", note_run, NULL, c->id);
	*ran_at_once = false;
	KEXPECT(thread_handle_ok(t));
	if (!thread_handle_ok(t))
		return true;
	turn_off(how);
	atomic_store(&off_watched, thread_current());
	atomic_store(&sched_tick_hook, off_tick);
	bool early = atomic_load(&queued_ran);
	while (!early && !*(volatile bool *)&c->need_resched)
		cpu_pause();
	turn_on(how);
	*ran_at_once = atomic_load(&queued_ran);
	atomic_store(&sched_tick_hook, NULL);
	atomic_store(&off_watched, NULL);
	while (!atomic_load(&queued_ran))
		cpu_pause();
	thread_join(t);
	return !early && !atomic_load(&tick_could_switch);
}

KTEST(sched, preempt_enable_takes_a_pending_reschedule)
{
	static const struct {
		enum off_how how;
		const char *name;
	} cases[] = {
	        {BY_PREEMPT_DISABLE, "preempt_enable"},
	        {BY_SPIN_LOCK, "spin_unlock"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool at_once = false, done = false;
		int tries = 0;
		while (tries < 10 && !done) {
			tries++;
			done = run_once(cases[i].how, &at_once);
		}
		KASSERT(done);
		if (!at_once)
			ktest_diag("%s: the queued thread had not run when it "
			           "returned (try %d)",
			           cases[i].name, tries);
		KEXPECT(at_once);
	}
}

static void ignore_vector(struct trap_frame *f)
{
}

/*
 * Invariant 3: the way out of an interrupt preempts only code that ran
 * with interrupts on. An interrupt taken with them off (a software int;
 * a device's cannot come then) returns to code that turned them off on
 * purpose, and a switch there would run another thread inside its
 * critical section. A reschedule pending and a thread queued, the int
 * must return here before the queued thread runs.
 */
KTEST(sched, an_interrupt_taken_with_interrupts_off_does_not_preempt)
{
	struct cpu *c = this_cpu();
	atomic_store(&queued_ran, false);
	struct thread_handle t = thread_create("queued", note_run, NULL, c->id);
	KASSERT(thread_handle_ok(t));
	irq_register(IRQ_VEC_TEST, ignore_vector);
	cpu_cli();
	c->need_resched = true;
	__asm__ volatile("int %0" ::"i"(IRQ_VEC_TEST) : "memory");
	bool ran_inside = atomic_load(&queued_ran);
	cpu_sti();
	irq_register(IRQ_VEC_TEST, NULL);
	while (!atomic_load(&queued_ran))
		thread_yield();
	thread_join(t);
	KEXPECT(!ran_inside);
}

/*
 * A reschedule asked for (a tick found the slice over) and then made by
 * the thread itself, blocking on its own: the switch answers the request,
 * so the next thread must not find it still pending. It did: need_resched
 * was cleared only by the preemption paths, and the next thread lost its
 * slice at its first interrupt. Read by that thread, as its first act,
 * with no tick since the block (else the try does not count: a tick may
 * ask again by right).
 */
static struct waitq resched_wq = WAITQ_INIT("resched_wq");
static bool resched_gate;         /* protected by resched_wq.lock */
static uint64_t resched_asked_at; /* ticks when the block asked */
static _Atomic bool resched_seen; /* need_resched as the next one saw */
static _Atomic uint64_t resched_seen_at;

/* The blocker's condition (resched_wq.lock held, interrupts off): the
 * first call asks for a reschedule, as a tick would, then blocks. */
static bool block_after_asking(void *arg)
{
	bool *asked = arg;
	if (resched_gate || *asked)
		return resched_gate;
	*asked = true;
	this_cpu()->need_resched = true;
	resched_asked_at = cpu_ticks();
	return false;
}

static void read_need_resched(void *arg)
{
	cpu_cli();
	atomic_store(&resched_seen,
	             *(volatile bool *)&this_cpu()->need_resched);
	atomic_store(&resched_seen_at, cpu_ticks());
	cpu_sti();
	unsigned long irq = spin_lock_irqsave(&resched_wq.lock);
	resched_gate = true;
	waitq_wake_all_locked(&resched_wq);
	spin_unlock_irqrestore(&resched_wq.lock, irq);
}

KTEST(sched, a_voluntary_switch_clears_need_resched)
{
	bool counted = false;
	for (int try = 0; try < 20 && !counted; try++) {
		bool asked = false;
		resched_gate = false;
		thread_yield(); /* a fresh slice: the next one runs later */
		struct thread_handle t = thread_create(
		        "reader", read_need_resched, NULL, this_cpu()->id);
		KASSERT(thread_handle_ok(t));
		KASSERT(waitq_wait_until(&resched_wq, block_after_asking,
		                         &asked));
		thread_join(t);
		/* Counted only if the reader ran after our block and no
		 * tick came between. */
		counted = asked &&
		          atomic_load(&resched_seen_at) == resched_asked_at;
		if (counted && atomic_load(&resched_seen))
			ktest_diag("need_resched still set after a block, "
			           "try %d",
			           try);
		KEXPECT(!counted || !atomic_load(&resched_seen));
	}
	KEXPECT(counted);
}

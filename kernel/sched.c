/*
 * The scheduler: per-CPU run queues, the context-switch protocol, timer
 * ticks and preemption, sleeping, waking, and the idle loop.
 *
 * Representation: each CPU has a runqueue (FIFO of runnable threads, a list
 * of sleepers sorted by wake time, a count of threads homed there). A
 * thread never leaves its home CPU, so one lock, its CPU's run-queue lock,
 * covers every scheduling field of the thread (see struct thread).
 *
 * Switch protocol: the outgoing thread takes its run-queue lock with
 * interrupts off, picks the next thread and calls context_switch; the
 * incoming thread (back from its own context_switch, or new in
 * thread_entry) finishes the switch: it marks the previous thread off the
 * CPU, releases the lock, and wakes the joiners of a thread that exited.
 *
 * Wake-ups race with a thread that is about to block: a thread marks
 * itself BLOCKED or SLEEPING under the lock and switches away afterwards.
 * A waker that finds it still current only sets it RUNNABLE; the switch
 * then requeues it instead of losing the wake-up.
 *
 * Invariants:
 *   1. A RUNNABLE thread that is not current is on its run queue exactly
 *      once; the idle thread is never on it.
 *   2. A thread's stack is freed only once it is DEAD and off its CPU.
 *   3. Preemption happens only with preempt_count 0 (no spinlock held)
 *      and interrupts on in the preempted code: on the way out of the
 *      outermost interrupt, or in the preempt_enable that ends a stretch
 *      with preemption off during which a reschedule was asked for.
 *   4. A thread is in its run queue's table of live threads (live[])
 *      from creation (or adoption) until the join that frees it takes it
 *      out, under the run-queue lock; thread_wake reads no struct it has
 *      not found there under that lock.
 *   5. Every switch clears its CPU's need_resched: the request is for a
 *      switch, and it has happened, however the thread left the CPU.
 */
#include "kernel/sched.h"
#include "kernel/thread.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "kernel/heap.h"
#include "kernel/irq.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/rcu.h"
#include "kernel/sched_internal.h"
#include "kernel/time.h"

struct runqueue runqueues[MAX_CPUS];
/* Joiners waiting for a thread to exit: its lock (rank WAITQ) guards the
 * queue; sched_finish_switch wakes it once a dead thread is off its CPU. */
struct waitq thread_exit_wq = WAITQ_INIT("thread_exit");
void (*_Atomic sched_tick_hook)(void);
static _Atomic bool sched_running;

extern void context_switch(uint64_t *save_rsp, uint64_t load_rsp);

struct runqueue *rq_of(struct cpu *c)
{
	return &runqueues[c->id];
}

struct thread *thread_current(void)
{
	return this_cpu()->current;
}

struct thread_handle thread_self(void)
{
	return thread_handle_of(this_cpu()->current);
}

/*
 * The current thread's runtime plus its slice so far. No run-queue lock:
 * both fields of the current thread are written only by this CPU with
 * interrupts off (sched_switch_locked, thread_adopt_current), so with
 * interrupts off here nothing can change them under us. Taking the lock
 * instead would forbid calls under a leaf lock or a run-queue lock.
 */
uint64_t thread_cpu_time_ns(void)
{
	unsigned long flags = read_rflags();
	cpu_cli();
	struct thread *t = this_cpu()->current;
	uint64_t ns = t->runtime_ns + (time_now_ns() - t->slice_start_ns);
	if (flags & RFLAGS_IF)
		cpu_sti();
	return ns;
}

/* Prints the scheduler state of t and panics: a broken invariant. */
__attribute__((noreturn)) static void sched_broken(const char *what,
                                                   const struct thread *t)
{
	panic("sched: %s: thread %s (id %llu, cpu %u) state %d on_cpu %d "
	      "queued %d, on cpu %u",
	      what, t->name, (unsigned long long)t->id, t->cpu->id, t->state,
	      t->on_cpu, t->queued, this_cpu()->id);
}

static void enqueue(struct runqueue *rq, struct thread *t)
{
	if (t->queued || t->state != THREAD_RUNNABLE)
		sched_broken("enqueue", t);
	t->queued = true;
	t->rq_next = NULL;
	if (rq->tail)
		rq->tail->rq_next = t;
	else
		rq->head = t;
	rq->tail = t;
}

static struct thread *dequeue(struct runqueue *rq)
{
	struct thread *t = rq->head;
	if (t) {
		t->queued = false;
		rq->head = t->rq_next;
		if (!rq->head)
			rq->tail = NULL;
	}
	return t;
}

static void remove_sleeper(struct runqueue *rq, struct thread *t)
{
	for (struct thread **p = &rq->sleepers; *p; p = &(*p)->sleep_next)
		if (*p == t) {
			*p = t->sleep_next;
			return;
		}
}

/*
 * Finishes a switch on the incoming thread: see the protocol above.
 * Locking: rq->lock held (taken by the outgoing thread); released here.
 */
void sched_finish_switch(struct runqueue *rq)
{
	struct thread *prev = rq->switched_from;
	bool dead = false;
	if (prev) {
		prev->on_cpu = false;
		dead = prev->state == THREAD_DEAD;
		rq->switched_from = NULL;
	}
	spin_unlock(&rq->lock);
	if (dead)
		waitq_wake_all(&thread_exit_wq);
}

/*
 * Gives the CPU to the next runnable thread (or idle), requeueing the
 * current one if it is still runnable. Returns when the current thread
 * runs again, with rq->lock still held for the caller to release through
 * sched_finish_switch. Any reschedule asked for is answered here, whoever
 * switches (a yield, a block, a sleep, a preemption): left pending, it
 * would cut the next thread's slice at its first interrupt. Locking:
 * rq->lock held, interrupts off.
 */
void sched_switch_locked(struct runqueue *rq)
{
	struct cpu *c = this_cpu();
	struct thread *prev = c->current;
	uint64_t now = time_now_ns();
	c->need_resched = false;
	rcu_note_qs(); /* no read-side section switches (or sleeps) */
	if (prev->state == THREAD_RUNNING || prev->state == THREAD_RUNNABLE) {
		prev->state = THREAD_RUNNABLE;
		if (prev != c->idle)
			enqueue(rq, prev);
	}
	struct thread *next = dequeue(rq);
	if (!next)
		next = c->idle;
	next->state = THREAD_RUNNING;
	prev->runtime_ns += now - prev->slice_start_ns;
	next->slice_start_ns = now;
	if (next == prev)
		return;
	if (next->on_cpu || next->cpu != c)
		sched_broken("switch to a thread that is running", next);
	c->current = next;
	next->on_cpu = true;
	prev->fault_catch = c->fault_catch;
	c->fault_catch = next->fault_catch;
	rq->switched_from = prev;
	context_switch(&prev->saved_rsp, next->saved_rsp);
	/* Back on this thread: whoever switched to us holds rq->lock. */
}

/* Switches away and returns once this thread runs again.
 * Interrupts off on entry and on return. */
static void switch_now(void)
{
	struct runqueue *rq = rq_of(this_cpu());
	spin_lock(&rq->lock);
	sched_switch_locked(rq);
	sched_finish_switch(rq);
}

/*
 * A yield that finds nothing else to run here pauses: its caller waits,
 * mostly for another CPU (`while (!done) thread_yield();`), and without
 * a pause that loop is a spin that starves whatever shares this core: an
 * SMT sibling, a vCPU the host runs on the same CPU (PAUSE is what a
 * hypervisor's pause-loop exiting sees), and under QEMU 7.2's
 * single-threaded TCG with -icount the next vCPU in turn, which got no
 * instructions at all (DESIGN "-icount"; the test
 * sched.a_yield_loop_lets_the_cpu_it_waits_for_run hung there). A yield
 * that switches does not pause: this CPU had work.
 */
void thread_yield(void)
{
	/* Refused (test mode only: else a panic), a yield that let nothing
	 * run: the caller holds nothing that a real one would have given. */
	if (!lockcheck_may_sleep("thread_yield")) {
		cpu_pause();
		return;
	}
	unsigned long flags = read_rflags();
	cpu_cli();
	/* Read unlocked, as the idle loop does: a hint. A thread queued
	 * just after is run by this switch all the same. */
	bool alone = !rq_of(this_cpu())->head;
	switch_now();
	if (alone)
		cpu_pause();
	if (flags & RFLAGS_IF)
		cpu_sti();
}

/* Marks the current thread sleeping until now + ns and puts it on the
 * sleeper list. A deadline past the clock's range saturates to
 * UINT64_MAX, which no tick reaches: wrapped around, it would lie in the
 * past and the next tick would wake the thread. Locking: rq->lock held. */
static void add_sleeper_locked(struct runqueue *rq, uint64_t ns)
{
	struct thread *self = thread_current();
	uint64_t now = time_now_ns();
	self->wake_ns = ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
	self->state = THREAD_SLEEPING;
	struct thread **p = &rq->sleepers;
	while (*p && (*p)->wake_ns <= self->wake_ns)
		p = &(*p)->sleep_next;
	self->sleep_next = *p;
	*p = self;
}

void thread_sleep_ns(uint64_t ns)
{
	/* Refused (test mode only), an early return, as after a thread_wake:
	 * unlike sema_acquire, whose caller would go on holding a unit it
	 * never took, nothing here pretends to have happened. */
	if (!lockcheck_may_sleep("thread_sleep"))
		return;
	unsigned long flags = read_rflags();
	cpu_cli();
	struct runqueue *rq = rq_of(this_cpu());
	spin_lock(&rq->lock);
	add_sleeper_locked(rq, ns);
	sched_switch_locked(rq);
	sched_finish_switch(rq);
	if (flags & RFLAGS_IF)
		cpu_sti();
}

void thread_sleep_unlock(struct spinlock *held, unsigned long irq_state,
                         uint64_t ns)
{
	if (!lockcheck_may_sleep_releasing("thread_sleep_unlock", held,
	                                   irq_state)) {
		/* Test mode only (the checker recorded it): a wake-up at
		 * once, held released as a sleep would leave it. */
		spin_unlock_irqrestore(held, irq_state);
		return;
	}
	struct runqueue *rq = rq_of(this_cpu());
	spin_lock(&rq->lock);
	add_sleeper_locked(rq, ns);
	spin_unlock(&rq->lock);
	/* A waker that takes `held` from here on finds us SLEEPING. */
	spin_unlock(held);
	switch_now();
	if (irq_state & RFLAGS_IF)
		cpu_sti();
}

/* Marks the current thread blocked; it switches away at sched_block().
 * Called with a wait-queue lock held, interrupts off. */
void sched_prepare_block(void)
{
	struct thread *self = thread_current();
	struct runqueue *rq = rq_of(this_cpu());
	spin_lock(&rq->lock);
	self->state = THREAD_BLOCKED;
	spin_unlock(&rq->lock);
}

/* Switches away unless woken since sched_prepare_block. Interrupts off. */
void sched_block(void)
{
	switch_now();
}

/* Reports a wake of h, which is no live thread's, saying why: a panic; in
 * the lock checker's test mode recorded. No spinlock held. */
static void wake_refused(struct thread_handle h, const char *why)
{
	lockcheck_misuse("thread_wake(id %llu at %p) on cpu %u: not a live "
	                 "thread (%s)",
	                 (unsigned long long)h.id, (void *)h.t, this_cpu()->id,
	                 why);
}

/* Makes t runnable if it is blocked or sleeping; true if its CPU, idle,
 * should be kicked. Locking: rq->lock held, t live on rq. */
static bool wake_locked(struct runqueue *rq, struct thread *t)
{
	struct cpu *c = t->cpu;
	if (t->state != THREAD_BLOCKED && t->state != THREAD_SLEEPING)
		return false;
	if (t->state == THREAD_SLEEPING)
		remove_sleeper(rq, t);
	t->state = THREAD_RUNNABLE;
	if (t != c->current)
		enqueue(rq, t);
	return c->current == c->idle;
}

/*
 * Basic algorithm: take the run-queue lock of h's home CPU (h.cpu, not
 * read from the struct) and look h up in that run queue's table of live
 * threads, by id. The join that frees a struct takes it out of the table
 * under that lock first, and ids are never reused, so a match is h's
 * thread, live until we unlock; no match is refused without a read of
 * the struct, which may be freed, reused or unmapped by now.
 */
void thread_wake(struct thread_handle h)
{
	if (!h.t || h.cpu >= MAX_CPUS) {
		wake_refused(h, h.t ? "no home CPU" : "no thread at all");
		return;
	}
	struct cpu *c = &cpus[h.cpu];
	struct runqueue *rq = rq_of(c);
	const char *why = NULL;
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	struct thread *t = thread_live_locked(rq, h, &why);
	bool kick = t && wake_locked(rq, t);
	spin_unlock_irqrestore(&rq->lock, irq);
	/* t is not read from here on: once woken it may exit and be
	 * freed. */
	if (!t)
		wake_refused(h, why);
	else if (kick)
		sched_kick(c);
}

/* Asks CPU c to reschedule soon. Any context. */
void sched_kick(struct cpu *c)
{
	if (c == this_cpu())
		c->need_resched = true;
	else if (atomic_load(&c->online))
		lapic_send_ipi(c->apic_id, IRQ_VEC_RESCHED);
}

void sched_tick(void)
{
	struct cpu *c = this_cpu();
	c->ticks++;
	rcu_tick();
	void (*hook)(void) = atomic_load(&sched_tick_hook);
	if (hook)
		hook();
	if (!atomic_load(&sched_running) || !c->idle)
		return;
	struct runqueue *rq = rq_of(c);
	spin_lock(&rq->lock);
	uint64_t now = time_now_ns();
	while (rq->sleepers && rq->sleepers->wake_ns <= now) {
		struct thread *t = rq->sleepers;
		rq->sleepers = t->sleep_next;
		t->state = THREAD_RUNNABLE;
		if (t != c->current)
			enqueue(rq, t);
	}
	if (rq->head && (c->current == c->idle ||
	                 now - c->current->slice_start_ns >= SCHED_SLICE_NS))
		c->need_resched = true;
	spin_unlock(&rq->lock);
}

static void timer_irq(struct trap_frame *f)
{
	sched_tick();
}

static void resched_irq(struct trap_frame *f)
{
	this_cpu()->need_resched = true;
}

/* Preemption point: the outermost interrupt is returning to a thread. */
static void irq_exit(struct trap_frame *f)
{
	struct cpu *c = this_cpu();
	if (!c->need_resched || c->preempt_count > 0 || !c->idle ||
	    !(f->rflags & RFLAGS_IF))
		return;
	switch_now();
}

void sched_resched_pending(void)
{
	struct cpu *c = this_cpu();
	if (!(read_rflags() & RFLAGS_IF))
		return;
	/* Interrupts off from here: a tick cannot switch us in between. */
	cpu_cli();
	if (c->need_resched && c->preempt_count == 0 && c->irq_depth == 0 &&
	    c->idle)
		switch_now();
	cpu_sti();
}

/* The idle thread: run whatever is runnable, else halt until an
 * interrupt. "sti; hlt" cannot lose a wake-up: sti takes effect after
 * hlt has started waiting. Each pass first gives the heap's per-CPU
 * cache back if a sweep cycle began since it last did (heap_cpu_idle). */
__attribute__((noreturn)) void sched_idle_loop(void)
{
	for (;;) {
		heap_cpu_idle();
		rcu_note_qs();
		cpu_cli();
		struct cpu *c = this_cpu();
		if (rq_of(c)->head || c->need_resched) {
			switch_now();
			continue;
		}
		__asm__ volatile("sti; hlt" ::: "memory");
	}
}

bool sched_cpu_info(unsigned cpu, struct sched_cpu_info *out)
{
	if (cpu >= MAX_CPUS || !atomic_load(&cpus[cpu].online))
		return false;
	struct cpu *c = &cpus[cpu];
	struct runqueue *rq = rq_of(c);
	*out = (struct sched_cpu_info){0};
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	out->nthreads = rq->nthreads;
	for (struct thread *t = rq->head; t; t = t->rq_next)
		out->nqueued++;
	for (struct thread *t = rq->sleepers; t; t = t->sleep_next)
		out->nsleeping++;
	out->ticks = *(volatile uint64_t *)&c->ticks;
	if (c->current)
		for (unsigned i = 0; i < THREAD_NAME_MAX; i++)
			out->current[i] = c->current->name[i];
	spin_unlock_irqrestore(&rq->lock, irq);
	return true;
}

void sched_init(void)
{
	for (unsigned i = 0; i < MAX_CPUS; i++)
		spin_init(&runqueues[i].lock, "runqueue", LOCK_RANK_RUNQUEUE);
	struct cpu *c = this_cpu();
	struct thread *main = thread_adopt_current("main", false);
	struct thread *idle = thread_alloc_idle(c);
	if (!main || !idle)
		panic("sched: no memory for the boot CPU's threads");
	c->idle = idle;
	irq_register(IRQ_VEC_TIMER, timer_irq);
	irq_register(IRQ_VEC_RESCHED, resched_irq);
	irq_set_exit_hook(irq_exit);
	atomic_store(&sched_running, true);
}

void sched_start_ap(void)
{
	struct cpu *c = this_cpu();
	struct thread *idle = thread_adopt_current("idle", true);
	if (!idle)
		panic("sched: no memory for cpu %u's idle thread", c->id);
	c->idle = idle;
	sched_idle_loop();
}

/*
 * The scheduler's interface beyond threads (thread.h): start-up on each
 * CPU, the timer tick and its rate, preemption put off by preempt_enable,
 * and the threads and a CPU's run queue as the shell shows them. Split
 * from thread.h, which is for whoever makes, runs or waits for threads.
 */
#ifndef KERNEL_SCHED_H
#define KERNEL_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/thread.h"
#include "kernel/time.h"

/* One thread as thread_snapshot saw it. */
struct thread_info {
	char name[THREAD_NAME_MAX];
	uint64_t id;
	unsigned cpu;
	enum thread_state state;
	bool idle;
	uint64_t cpu_ns; /* CPU time, its current slice included */
};

/*
 * Copies up to max threads (oldest first) into out; returns how many
 * threads exist. The states and times are read without the run-queue
 * locks, so a thread caught mid-switch may show a slightly stale time.
 * Thread context or interrupts off; takes the threads lock (rank THREADS).
 */
unsigned thread_snapshot(struct thread_info *out, unsigned max);

/* The same for every thread, into an array from kmalloc (the caller
 * kfrees it) sized to the threads there are, however many: *n says how
 * many it holds. Returns NULL, with nothing allocated, when memory is
 * short. Thread context (it allocates). */
struct thread_info *thread_snapshot_all(unsigned *n);

/* Calls fn with the live part [lo, hi) of every thread's stack, from its
 * lowest live word (its saved stack pointer; a parked CPU's trap frame,
 * which holds the registers; for the caller, its callee-saved registers
 * stored in this call's frame, below its own) to the top:
 * the dead frames below, stale pointers, are left out. Only with the
 * world stopped by this CPU (it panics otherwise); fn runs under the
 * threads lock (rank THREADS): it takes no lock. Exited threads not
 * joined yet are left out. (The leak scan's roots: heap_leaks.c.) */
void thread_each_live_stack(void (*fn)(uintptr_t lo, uintptr_t hi, void *arg),
                            void *arg);

/* The thread whose stack's slot holds va (its guard page, for a fault
 * there), its name, id, CPU and state into *out; false if no thread's
 * stack holds it (a CPU's IST or boot stack) or the list cannot be read
 * safely. Only on the panicking CPU, after panic_begin stopped the
 * others: it reads the list without its lock, and not at all while the
 * lock is held (the list may be half-changed). For the exception
 * handler's report. */
bool thread_stack_owner_in_panic(uintptr_t va, struct thread_info *out);

/* The state's name ("running", "sleeping", ...). Any context. */
const char *thread_state_name(enum thread_state s);

/* One CPU's run queue as sched_cpu_info saw it. */
struct sched_cpu_info {
	unsigned nthreads; /* homed there, idle excluded */
	unsigned nqueued;  /* runnable, waiting for the CPU */
	unsigned nsleeping;
	uint64_t ticks; /* timer interrupts taken */
	char current[THREAD_NAME_MAX];
};

/* Fills *out for CPU cpu; false if it is not online. Thread context or
 * interrupts off, no run-queue lock held (takes cpu's, rank RUNQUEUE). */
bool sched_cpu_info(unsigned cpu, struct sched_cpu_info *out);

/* Checks every online CPU's run queue against sched.c's invariants (see
 * sched_check.c) and panics naming what is broken and the thread. Thread
 * context or interrupts off, no run-queue lock held (takes each CPU's in
 * turn, rank RUNQUEUE). */
void sched_check(void);

/* The scheduler. sched_init makes the boot context thread main and gives
 * the boot CPU its idle thread: the boot CPU, once, after time_init,
 * interrupts off. Each AP then runs sched_start_ap, once, interrupts off,
 * which never returns: the AP's boot context becomes its idle thread. */
void sched_init(void);
void sched_start_ap(void) __attribute__((noreturn));

/* Timer interrupt work: wake due sleepers, preempt an expired slice. The
 * timer interrupt's handler only (interrupts off, this CPU's run-queue lock
 * not held). */
void sched_tick(void);

/* The reschedule a tick or a resched IPI asked for while preemption was
 * off, taken now: switches to the next runnable thread if this CPU has
 * one pending, interrupts are on, preemption is on and this is no
 * interrupt handler; else does nothing (the next interrupt's way out, or
 * the next preempt_enable, takes it). For preempt_enable; any context
 * but NMI. */
void sched_resched_pending(void);

/* A test hook called from every timer tick on every CPU (or NULL). */
extern void (*_Atomic sched_tick_hook)(void);

/* The scheduler tick rate: the periodic LAPIC timer's. */
#define SCHED_HZ      TIMER_HZ
#define SCHED_TICK_NS (1000000000ull / SCHED_HZ)
/* A thread's turn on a CPU with others queued: a tick ends it once this
 * much time has passed since the thread was switched in. */
#define SCHED_SLICE_NS (2 * SCHED_TICK_NS)

#endif

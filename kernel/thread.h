/*
 * Kernel threads: create, exit, join, yield, sleep; the scheduler that runs
 * them (per-CPU run queues, timer preemption, an idle thread per CPU); and
 * wait queues. A thread stays on the CPU it was created for (no migration),
 * which keeps every scheduling decision under one run-queue lock.
 *
 * The scheduler's own interface (start-up, the tick, the run queues'
 * counts) is in sched.h; a thread's handle, what join and wake take, in
 * thread_handle.h.
 *
 * Contexts: each declaration says. What may sleep is for threads with no
 * spinlock held, preemption and interrupts on (the lock checker reports
 * any other); thread_wake, waitq_wake_*, sema_release and sema_try_acquire
 * may also run in interrupt handlers (not NMIs: they take spinlocks).
 */
#ifndef KERNEL_THREAD_H
#define KERNEL_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/kstack.h"
#include "kernel/spinlock.h"
#include "kernel/thread_handle.h"
#include "kernel/time.h"

#define THREAD_NAME_MAX    24
#define THREAD_STACK_PAGES 8

enum thread_state {
	THREAD_RUNNING,  /* current on its CPU */
	THREAD_RUNNABLE, /* on its run queue, or woken before switching out */
	THREAD_BLOCKED,  /* on a wait queue */
	THREAD_SLEEPING, /* on its CPU's sleeper list until wake_ns */
	THREAD_DEAD,     /* exited; its joiner frees it */
};

struct cpu;
struct fault_catch;

struct thread {
	/* Immutable after creation: */
	uint64_t id; /* from 1, never reused (64 bits do not wrap) */
	char name[THREAD_NAME_MAX];
	struct cpu *cpu; /* home CPU */
	struct kstack stack;
	bool boot_stack;   /* runs on a stack it does not own */
	bool frame_struct; /* this struct is a frame: made before the heap */
	void (*fn)(void *);
	void *arg;

	/* Protected by cpu's run-queue lock: */
	uint64_t saved_rsp;
	enum thread_state state;
	bool on_cpu; /* its registers are live on the CPU */
	bool queued; /* on the run queue */
	struct thread *rq_next;
	struct thread *sleep_next;
	struct thread *id_next; /* its run queue's table of live threads */
	uint64_t wake_ns;
	/* Written only by the home CPU, with interrupts off: that CPU may
	 * read them for its current thread without the lock (thread_cpu_time_ns
	 * is the way for other modules). */
	uint64_t slice_start_ns;
	uint64_t runtime_ns; /* time spent running, up to the last switch */

	struct fault_catch
	        *fault_catch; /* its armed hook, while switched out */

	/* Protected by the lock of the wait queue it is on: */
	struct thread *wq_next;
	bool wq_queued;
	bool wq_granted; /* a sema_release handed it a unit (waitq.c) */

	/* Protected by the threads lock (thread.c): the list of all threads,
	 * from creation (or adoption) to join; and whether a join has
	 * claimed it. */
	struct thread *all_next;
	bool join_claimed;

	/* Written and read by the thread itself: inside a shrinker's
	 * callback (kernel/shrinker.c), which must not reclaim again. */
	bool reclaiming;
};

/* Makes the cache thread structs come from ("thread" in slabinfo).
 * heap_init calls it once the span heap is up, before the heap's own
 * threads: boot CPU, thread context. Panics if it cannot. */
void thread_cache_init(void);

/*
 * Creates a runnable thread running fn(arg) on CPU cpu_id (or, with
 * THREAD_ANY_CPU, the CPU with the fewest threads) and returns its
 * handle. Returns THREAD_NONE, with nothing allocated, when memory is
 * short or the CPU is not online.
 * Panics, naming the thread, when name or fn is NULL, and where it may not
 * sleep (the lock checker's reasons), in its test mode too. Thread
 * context, after heap_init (the struct comes from the thread cache).
 */
#define THREAD_ANY_CPU (~0u)
struct thread_handle thread_create(const char *name, void (*fn)(void *),
                                   void *arg, unsigned cpu_id);

/* Ends the calling thread; its joiner frees it. Panics, naming the
 * cause, when the thread may not sleep (a spinlock held, preemption or
 * interrupts disabled, an interrupt handler: the lock checker's reasons,
 * in its test mode too) or is a boot thread (main or an idle thread),
 * which never exits. */
__attribute__((noreturn)) void thread_exit(void);

/* Waits for h's thread to exit and frees its stack and struct. Every
 * thread is joined exactly once: a join of a thread already joined (h
 * stale: its struct freed, or reused by a newer thread) is reported by
 * the lock checker, 'thread_join(id 42 at 0x...): not a live thread
 * (joined already?)' (a panic; in its test mode recorded, and the join
 * returns, the struct left alone); a join that another join has claimed
 * panics naming the thread, and so does a join of a boot thread (main or
 * a CPU's idle thread), which would wait for good. Thread context, no
 * spinlock held, interrupts on: a join that may not sleep is reported by
 * the lock checker (a panic; in its test mode recorded, and the thread
 * is left alone, neither claimed nor freed). */
void thread_join(struct thread_handle h);

/* Lets other runnable threads on this CPU run first; with none, pauses
 * (PAUSE, the spin-wait hint: a caller's yield loop is then a spin, which
 * must let a core's sibling or the host's other vCPU run). Thread context, no
 * spinlock held, preemption and interrupts on, not a CPU's idle thread
 * and not before the CPU's scheduler started (else refused, reported by
 * the lock checker: a panic; in its test mode recorded, and the yield
 * returns at once, as one with nothing else runnable does: it owes its
 * caller nothing, so there is no failure to return). */
void thread_yield(void);

/* Sleeps at least ns nanoseconds, unless thread_wake ends the sleep
 * first; wakes within one timer tick after (ns 0 sleeps until the next
 * tick). A deadline past the clock's range (ns near UINT64_MAX) never
 * comes: only thread_wake ends such a sleep. Thread context, as for
 * thread_yield; refused in the lock checker's test mode, it returns at
 * once, as a sleep a thread_wake ended would (so no result: a caller
 * that needs the time to have passed checks the clock again). */
void thread_sleep_ns(uint64_t ns);

/*
 * Sleeps as thread_sleep_ns(ns) does, after releasing held (taken with
 * spin_lock_irqsave, irq_state as it returned): a waker that needs held
 * cannot slip between the caller's check and the sleep. Thread context;
 * held is the only spinlock the caller holds, and interrupts were on
 * before it (the lock checker says so otherwise, as for any sleep).
 */
void thread_sleep_unlock(struct spinlock *held, unsigned long irq_state,
                         uint64_t ns);

/* The calling thread; in an interrupt handler, the interrupted one. Any
 * context, once sched_init (on an AP, sched_start_ap) has run: NULL
 * before. */
struct thread *thread_current(void);

/* The calling thread's handle, for a waker to keep; as thread_current. */
struct thread_handle thread_self(void);

/* CPU time of the calling thread: the nanoseconds it has run, its slice
 * included; never decreases. Any context but NMI (in an interrupt
 * handler, the interrupted thread's); takes no lock. */
uint64_t thread_cpu_time_ns(void);

/* Makes h's thread runnable if it is blocked or sleeping. One not asleep
 * yet is left as it is (the wake is lost: a sleeper checks its condition
 * under a lock its sleep releases, as wait queues and thread_sleep_unlock
 * do). Any context but NMI; h must be a live thread's (not yet joined): a
 * stale handle (its thread joined, the struct freed, unmapped or reused
 * by a newer thread) or one that was never a thread's is reported by the
 * lock checker, 'thread_wake(id 42 at 0x...) on cpu 1: not a live thread
 * (...)' (a panic; in its test mode recorded, and nothing done); the
 * struct is not read unless h is live. A wake racing the join of an
 * exiting thread (from an interrupt handler, say) finds the thread dead
 * and does nothing, or, if the join freed it first, is a stale wake: a
 * waker that may still run must be stopped before the join. */
void thread_wake(struct thread_handle h);

/* Wait queues and semaphores (waitq.h) come with threads. */
#include "kernel/waitq.h"

#endif

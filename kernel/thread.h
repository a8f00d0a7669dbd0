/*
 * Kernel threads: create, exit, join, yield, sleep; the scheduler that runs
 * them (per-CPU run queues, timer preemption, an idle thread per CPU); and
 * wait queues. A thread stays on the CPU it was created for (no migration),
 * which keeps every scheduling decision under one run-queue lock.
 *
 * The scheduler's own interface (start-up, the tick, the run queues'
 * counts) is in sched.h.
 *
 * Contexts: each declaration says. What may sleep is for threads with no
 * spinlock held, preemption and interrupts on (the lock checker reports
 * any other); thread_wake, waitq_wake_*, sema_release and sema_try_acquire
 * may also run in interrupt handlers (not NMIs: they take spinlocks).
 */
#ifndef KERNEL_THREAD_H
#define KERNEL_THREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/kstack.h"
#include "kernel/spinlock.h"
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

/* struct thread.magic: a live thread's, and the poison its free leaves. */
#define THREAD_MAGIC       0x54687264u /* "Thrd" */
#define THREAD_MAGIC_FREED 0xdeadf7eeu

struct thread {
	/* Immutable after creation; poisoned (THREAD_MAGIC_FREED) when the
	 * joiner frees the struct, so that thread_wake can tell a freed
	 * thread from a live one: */
	uint32_t magic;
	char name[THREAD_NAME_MAX];
	unsigned id;
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

	/* Protected by the threads lock (thread.c): the list of all threads,
	 * from creation (or adoption) to join; and whether a join has
	 * claimed it. */
	struct thread *all_next;
	bool join_claimed;
};

/*
 * Creates a runnable thread running fn(arg) on CPU cpu_id (or, with
 * THREAD_ANY_CPU, the CPU with the fewest threads). Returns NULL, with
 * nothing allocated, when memory is short or the CPU is not online.
 * Panics, naming the thread, when name or fn is NULL. Thread context,
 * after heap_init (the struct comes from kmalloc).
 */
#define THREAD_ANY_CPU (~0u)
struct thread *thread_create(const char *name, void (*fn)(void *), void *arg,
                             unsigned cpu_id);

/* Ends the calling thread; its joiner frees it. Panics, naming the
 * cause, when the thread may not sleep (a spinlock held, preemption or
 * interrupts disabled, an interrupt handler: the lock checker's reasons,
 * in its test mode too) or is a boot thread (main or an idle thread),
 * which never exits. */
__attribute__((noreturn)) void thread_exit(void);

/* Waits for t to exit and frees its stack and struct. Every thread is
 * joined exactly once: a join of a thread already joined (its struct no
 * longer a live thread's) or one that another join has claimed panics,
 * naming it, and so does a join of a boot thread (main or a CPU's idle
 * thread), which would wait for good. A struct freed and reused by a new thread
 * since cannot be told apart: that join waits for the new thread.
 * Thread context, no spinlock held, interrupts on: a join that may not
 * sleep is reported by the lock checker (a panic; in its test mode
 * recorded, and t is left alone, neither claimed nor freed). */
void thread_join(struct thread *t);

/* Lets other runnable threads on this CPU run first. Thread context, no
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
 * once, as a sleep that a thread_wake ended at once would. That is within
 * the contract every caller already copes with (it takes nothing, so
 * there is nothing to undo) and so needs no result: a caller that needs
 * the time to have passed checks the clock and sleeps again. */
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

/*
 * CPU time of the calling thread: the nanoseconds it has run, its current
 * slice included. Any context but NMI (in an interrupt handler it is the
 * interrupted thread's), and takes no lock, so a leaf-lock holder may call
 * it. Never decreases for a given thread.
 */
uint64_t thread_cpu_time_ns(void);

/* One thread as thread_snapshot saw it. */
struct thread_info {
	char name[THREAD_NAME_MAX];
	unsigned id, cpu;
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

/* The state's name ("running", "sleeping", ...). Any context. */
const char *thread_state_name(enum thread_state s);

/* Makes a blocked or sleeping thread runnable. One not asleep yet is left
 * as it is (the wake is lost: a sleeper checks its condition under a lock
 * its sleep releases, as wait queues and thread_sleep_unlock do). Any
 * context but NMI; t must be a live thread: a struct that is not (joined
 * and freed, its magic poisoned, or never a thread) is reported by the
 * lock checker, 'thread_wake(0x...): not a live thread ...' (a panic; in
 * its test mode recorded, and t left alone). A freed struct that a new
 * thread has since reused cannot be told apart: that wake goes to the new
 * thread, as for thread_join. */
void thread_wake(struct thread *t);

/* Wait queues and semaphores (waitq.h) come with threads. */
#include "kernel/waitq.h"

#endif

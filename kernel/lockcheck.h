/*
 * The lock checker's interface for the spinlock code, the scheduler and
 * tests. In test mode a violation is recorded (count and message) instead
 * of panicking, so a test can provoke each rule and see it fire.
 */
#ifndef KERNEL_LOCKCHECK_H
#define KERNEL_LOCKCHECK_H

#include <stdbool.h>

#include "kernel/spinlock.h"

#ifndef LOCKCHECK
#define LOCKCHECK 1
#endif

/* Called by spin_lock and spin_lock_irqsave, preemption off: before the
 * wait for l (irqs_on: interrupts were on), checking rank order, leaves
 * and interrupt use; then once l is held, pushing it on this CPU's stack.
 * Any context but NMI; a violation panics or is recorded (a spin flag
 * outside the rank table, lockcheck_record.c), no spinlock is taken. */
void lockcheck_acquire(struct spinlock *l, bool irqs_on);
void lockcheck_acquired(struct spinlock *l);
/* Returns false when l is not held by this CPU (reported). Called with
 * interrupts as they were while l was held: if they are on, l is checked
 * as held with them on. */
bool lockcheck_release(struct spinlock *l);

/* Called by spin_unlock_irqrestore just before it enables interrupts:
 * every lock this CPU still holds (one taken after the lock released,
 * which an out-of-order release leaves) is held with interrupts on from
 * now on, and is checked as if taken so. Interrupts off. */
void lockcheck_irqs_on(void);

/* For a function that needs l held (a _locked one, named by what): true
 * when this CPU holds it; false when not (reported; in test mode the
 * caller then does nothing). */
bool lockcheck_held(const struct spinlock *l, const char *what);

/* Called by irq_dispatch when a handler for vector returned with this
 * CPU's held-lock stack or preemption count unlike on entry (nheld, the
 * lock on top of the stack, top, and preempt_count then), or with
 * interrupts enabled (irqs_on; irq_dispatch has disabled them again):
 * reports the lock it kept, the interrupted code's lock it released (with
 * one of its own in its place, too), the count, or the interrupts.
 * Interrupts off. */
void lockcheck_irq_return(unsigned vector, int nheld,
                          const struct spinlock *top, int preempt_count,
                          bool irqs_on);

/* Called before a thread sleeps or yields: no spinlock may be held, nor
 * preemption or interrupts off, nor an interrupt handler running; and
 * there must be a thread to sleep that is not its CPU's idle thread (not
 * before the CPU's scheduler started). Returns false otherwise (reported
 * naming the first reason; in test mode the caller then refuses to
 * sleep). */
bool lockcheck_may_sleep(const char *what);

/* The same for a sleep on a wait queue or semaphore: the report names
 * what and object, the queue's or semaphore's name ("sema_acquire(x)"). */
bool lockcheck_may_sleep_on(const char *what, const char *object);

/* The same for a caller that cannot refuse (thread_exit, which never
 * returns): panics naming the reason, in test mode too. */
void lockcheck_must_sleep(const char *what);

/* The same for a sleep that releases held (taken with spin_lock_irqsave,
 * which returned irq_state): held is the one spinlock allowed, and
 * interrupts must have been on before it (thread_sleep_unlock). */
bool lockcheck_may_sleep_releasing(const char *what,
                                   const struct spinlock *held,
                                   unsigned long irq_state);

/* A misuse that a sleeping primitive finds in its own state (a semaphore
 * released past its maximum, bad numbers for sema_init): panics with the
 * message, or in test mode records it, and the caller then leaves its
 * state consistent. Any context but NMI; no spinlock of the primitive's
 * held (a panic would leave it taken). */
__attribute__((format(printf, 1, 2))) void lockcheck_misuse(const char *fmt,
                                                            ...);

/* Called by preempt_enable when the preemption count is already 0:
 * reports the enable without its disable (the caller then leaves the
 * count at 0). */
void lockcheck_preempt_underflow(void);

/* Called by preempt_enable when the preemption count is no more than
 * the spinlocks this CPU holds (each holds one): a stray enable, which
 * would make the holder preemptible. Reports it; the caller then leaves
 * the count as it is. */
void lockcheck_preempt_under_lock(void);

/* Test mode: record instead of panic. Returns the previous mode. */
bool lockcheck_set_record(bool on);
/* While in test mode, record only violations whose message holds
 * fragment (a string that outlives the mode); any other panics as
 * outside it, naming the fragment. NULL: record any. Returns the
 * previous fragment. For a test that records while other CPUs run. */
const char *lockcheck_record_only(const char *fragment);
/* The violations recorded so far; each counted once its message is the
 * last one (so a count seen raised has its message, or a later one). */
unsigned lockcheck_violations(void);
/* A copy of the last recorded message, whole though other CPUs record
 * meanwhile: this CPU's, valid until its next call on this CPU (so an
 * interrupt handler that calls it may replace a thread's copy). */
const char *lockcheck_last_violation(void);

#endif

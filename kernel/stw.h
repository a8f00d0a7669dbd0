/*
 * Stop-the-world: park every other CPU, spinning with interrupts off, so
 * the caller sees memory no other CPU is changing; and the semaphore that
 * governs it:
 *
 *   stw_sema       the right to stop the world; held from stw_stop to
 *                  stw_start.
 *
 * Thread context only; the caller may sleep in stw_stop while another
 * stopper holds the world.
 */
#ifndef KERNEL_STW_H
#define KERNEL_STW_H

#include <stdbool.h>

#include "kernel/thread.h"

extern struct semaphore stw_sema;

/* Installs the park IPI. Boot CPU, before SMP. */
void stw_init(void);

/* Returns once every other online CPU is parked; while some CPU does not
 * take the park IPI (interrupts off), prints every second a line naming
 * the CPUs still awaited, and goes on waiting. reason is kept until
 * stw_start, for a debugger and for the panic of a nested stop (a stop by
 * the CPU that holds the world, which would wait for itself). No CPU
 * comes online until stw_start (it waits in cpu_set_online, percpu.h).
 * Where it may not sleep it panics naming why, in the lock checker's test
 * mode too (it cannot return with the world running). */
void stw_stop(const char *reason);

/* Releases the parked CPUs and waits until all have left the park. The
 * thread that called stw_stop, and only it, calls this: from another CPU
 * or an interrupt handler it panics naming the stop. */
void stw_start(void);

/* While the world is stopped by this CPU: where parked CPU cpu's trap
 * frame is, on the stack of the thread it interrupted (the frame holds
 * its registers; below it the stack is dead). 0 if cpu never parked. */
uintptr_t stw_parked_sp(unsigned cpu);

/* True while the world is stopped (for assertions). */
bool stw_stopped(void);

/* True when this CPU stopped the world (and so holds it). */
bool stw_stopped_by_this_cpu(void);

#endif

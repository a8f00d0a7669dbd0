/*
 * The per-CPU area. cpu_init_local makes each CPU's struct cpu its arch
 * per-CPU pointer (arch/x86_64/cpu_local.h: the GS base), and the struct's
 * first word points at itself, so this_cpu() is one load and works in any
 * context once kmain or the AP entry has called cpu_init_local.
 */
#ifndef KERNEL_PERCPU_H
#define KERNEL_PERCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/cpu_local.h"

#define MAX_CPUS       64
#define LOCKS_HELD_MAX 16

struct thread;
struct spinlock;
struct fault_catch;

struct cpu {
	/* Immutable once the CPU is online: */
	struct cpu *self; /* arch_cpu_local_get() reads it */
	unsigned id;      /* index into cpus[], 0 = the boot CPU */
	uint32_t apic_id;

	/* Touched only by this CPU (with interrupts off where it matters): */
	struct fault_catch *fault_catch; /* armed expected-fault hook */
	int irq_depth;                   /* > 0 inside an interrupt handler */
	int preempt_count;               /* > 0: no preemption */
	struct spinlock *held[LOCKS_HELD_MAX]; /* lock checker's stack */
	int nheld;
	uint64_t ticks; /* timer interrupts taken */

	/* Scheduler state, protected by this CPU's run-queue lock: */
	struct thread *current;
	struct thread *idle;
	void *sched; /* struct runqueue, owned by kernel/sched.c */
	bool need_resched;

	/* Atomic, any CPU: */
	_Atomic bool online;
};

_Static_assert(offsetof(struct cpu, self) == 0,
               "arch_cpu_local_get reads the area's first word");

#define CPU_FAULT_CATCH_OFFSET 16 /* used by arch/x86_64/fault.S */

extern struct cpu cpus[MAX_CPUS];

/* CPUs that came online, counted up during SMP bring-up. Atomic. */
extern _Atomic unsigned ncpus_online;

/* A set of CPUs by index into cpus[]: bit i is cpus[i]. */
typedef uint64_t cpumask_t;
_Static_assert(MAX_CPUS <= 64, "a cpumask_t holds every CPU");

static inline cpumask_t cpumask_of(unsigned id)
{
	return (cpumask_t)1 << id;
}

/* Writes " 2 3" for the CPUs of m into buf (size bytes, at least 1),
 * cut short if it does not fit: the lists of CPUs a waiter names. Any
 * context. */
#define CPUMASK_IDS_MAX (4 * MAX_CPUS + 1)
void cpumask_format(cpumask_t m, char *buf, size_t size);

/* The number of CPUs in m. (No __builtin_popcountll: without POPCNT it
 * calls libgcc, which the kernel does not link.) */
static inline unsigned cpumask_weight(cpumask_t m)
{
	unsigned n = 0;
	for (; m; m &= m - 1)
		n++;
	return n;
}

static inline struct cpu *this_cpu(void)
{
	return arch_cpu_local_get();
}

/* Makes cpus[id] this CPU's per-CPU area and fills id/apic id. */
void cpu_init_local(unsigned id, uint32_t apic_id);

/*
 * The online set and the gate that keeps it still (percpu.c says why).
 *
 * cpus_online_hold returns the online CPUs and keeps any other CPU from
 * coming online until cpus_online_release; a TLB shootdown and a
 * stop-the-world hold it from their snapshot until every CPU in it has
 * answered. It may spin while a CPU is coming online (a few stores). Any
 * context but NMI; not recursive: a holder must not hold it again (a CPU
 * waiting to come online would keep the inner hold out, and wait for the
 * outer one).
 *
 * cpu_set_online marks this CPU online once no holder is left (so it may
 * spin for as long as a stop-the-world lasts), then flushes its whole TLB:
 * shootdowns before it did not reach it. The CPU itself, once, at
 * bring-up, interrupts off.
 */
cpumask_t cpus_online_hold(void);
void cpus_online_release(void);
void cpu_set_online(void);

/* Sends vector to every CPU in m (never this one, in practice). Any
 * context but NMI. */
void cpus_send_ipi(cpumask_t m, unsigned vector);

static inline bool in_irq(void)
{
	return this_cpu()->irq_depth > 0;
}

#endif

/*
 * The per-CPU base pointer. On x86_64 it lives in the GS base MSR: each
 * CPU points GS at its own per-CPU area, whose first word points at the
 * area itself, so reading the pointer back is one load from %gs:0 and
 * needs neither a lock nor interrupts off.
 *
 * The kernel never runs user code, so KERNEL_GS_BASE (what SWAPGS would
 * swap in) is kept 0 and SWAPGS is never used.
 *
 * Contexts: arch_cpu_local_set runs once per CPU at bring-up, with
 * interrupts off, before anything reads the pointer; the readers are
 * callable in any context, NMI included, once it has run.
 */
#ifndef ARCH_X86_64_CPU_LOCAL_H
#define ARCH_X86_64_CPU_LOCAL_H

#include <stdint.h>

#include "cpu.h"

/* Makes base this CPU's per-CPU area. *(void **)base must equal base. */
static inline void arch_cpu_local_set(void *base)
{
	wrmsr(MSR_GS_BASE, (uintptr_t)base);
	wrmsr(MSR_KERNEL_GS_BASE, 0);
}

/* This CPU's per-CPU area, as given to arch_cpu_local_set. */
static inline void *arch_cpu_local_get(void)
{
	void *p;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(p));
	return p;
}

#endif

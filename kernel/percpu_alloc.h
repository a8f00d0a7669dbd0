/*
 * Dynamic per-CPU memory, Linux's alloc_percpu: a zeroed copy of an object
 * for every possible CPU, over mm/pcpu.h's allocator kpcpu (set up by
 * heap_init, with a unit for each CPU the MADT lists: every CPU that may
 * ever come online, since a CPU's index is below that count).
 *
 *   T *h = alloc_percpu(T);                    a handle, or NULL
 *   void *h = __alloc_percpu(size, align);     align: a power of two up
 *                                              to a page (0: 8)
 *   per_cpu_ptr(h, cpu)                        CPU cpu's copy of *h
 *   this_cpu_ptr(h)                            this CPU's (preemption off)
 *   this_cpu_add(h, d), this_cpu_inc(h)        a 64-bit counter's add,
 *                                              safe against interrupts
 *   percpu_counter_sum(h)                      the sum over every CPU
 *   free_percpu(h)
 *
 * The handle is CPU 0's copy: read and written through *h it is CPU 0's
 * alone. Copies are PCPU_UNIT_BYTES apart (mm/pcpu.h says why one
 * stride).
 *
 * Contexts: alloc_percpu, __alloc_percpu and free_percpu in thread
 * context (they may sleep in the heap); per_cpu_ptr, this_cpu_add,
 * this_cpu_inc and percpu_counter_sum in any context but NMI;
 * this_cpu_ptr where the caller cannot move to another CPU (an interrupt
 * handler, interrupts or preemption off). Misuse (a free of a pointer
 * not from alloc_percpu, an interior pointer, another CPU's copy, a
 * double free) panics naming the pointer.
 */
#ifndef KERNEL_PERCPU_ALLOC_H
#define KERNEL_PERCPU_ALLOC_H

#include "kernel/percpu.h"
#include "mm/pcpu.h"

extern struct pcpu kpcpu;

static inline void *__alloc_percpu(size_t size, size_t align)
{
	return pcpu_alloc(&kpcpu, size, align);
}

#define alloc_percpu(type) \
	((type *)__alloc_percpu(sizeof(type), _Alignof(type)))

static inline void free_percpu(void *h)
{
	pcpu_free(&kpcpu, h);
}

#define per_cpu_ptr(h, cpu) ((__typeof__(h))pcpu_ptr(&kpcpu, (h), (cpu)))

#define this_cpu_ptr(h) per_cpu_ptr((h), this_cpu()->id)

static inline void this_cpu_add(int64_t *h, int64_t d)
{
	pcpu_add(&kpcpu, h, d);
}

static inline void this_cpu_inc(int64_t *h)
{
	pcpu_add(&kpcpu, h, 1);
}

static inline int64_t percpu_counter_sum(const int64_t *h)
{
	return pcpu_sum(&kpcpu, h);
}

#endif

/*
 * Kernel stacks with a guard page: each stack takes a fixed 64 KiB slot of
 * the kstack region; the lowest page of the slot stays unmapped so that an
 * overflow faults instead of corrupting what lies below.
 */
#ifndef KERNEL_KSTACK_H
#define KERNEL_KSTACK_H

#include <stdbool.h>
#include <stdint.h>

#define KSTACK_SLOT_SIZE (64ull << 10)
#define KSTACK_MAX_PAGES (KSTACK_SLOT_SIZE / 4096 - 1)

struct kstack {
	uintptr_t guard;  /* the unmapped page: [guard, guard + 4096) */
	uintptr_t bottom; /* lowest mapped address */
	uintptr_t top;    /* initial stack pointer (exclusive end) */
	uint32_t gen;     /* its slot's generation: a stale copy is refused */
};

/* Maps npages (1..KSTACK_MAX_PAGES) of stack above a guard page. Returns
 * false, with nothing allocated, when frames or slots run out (or npages
 * is out of that range). Any context but NMI (boot, before the scheduler,
 * makes the APs' stacks with interrupts off). */
bool kstack_alloc(unsigned npages, struct kstack *out);

/* Unmaps the stack, shoots its TLB entries down on every CPU, and frees
 * its frames and slot. Thread context with interrupts on. Panics, naming
 * the stack and leaving every mapping alone, if s was freed already (its
 * slot free, or another stack's since), is not a kernel stack (as
 * kstack_alloc filled it: whole pages, the guard right below), or has
 * fewer or more pages than kstack_alloc made it with. */
void kstack_free(const struct kstack *s);

/* Like kstack_free, without the shootdown: for a stack no other online
 * CPU can have in its TLB (an AP that never came online; INIT flushed
 * it). Any context but NMI, no spinlock of rank KSTACK or above held (it
 * takes the kstack, vm and frame pool locks in turn). The same checks. */
void kstack_free_local(const struct kstack *s);

/* Panics, naming the slot, unless every slot's pages agree with its
 * state: a free slot has none mapped; a used one exactly the npages
 * below its top that its stack was made with (its guard and the rest
 * below unmapped). Meaningful only while no stack is made or freed (their
 * pages change outside the lock), as after a test's threads are joined.
 * Thread context. */
void kstack_check(void);

/* True when va lies in the guard page of a kernel stack (the boot stack's
 * included): a fault there is a stack overflow. Any context, takes no lock
 * (the fault handler asks). */
bool kstack_is_guard(uintptr_t va);

/* True when va lies in the guard page of the stack that sp is on (the
 * faulting code's RSP): a fault there is that stack's overflow, while a
 * fault in another stack's guard is a stray pointer, not an overflow of
 * the stack it ran on. Any context, takes no lock. */
bool kstack_is_own_guard(uintptr_t va, uintptr_t sp);

/* The stack that holds address sp, as [*lo, *hi): a kernel stack's slot
 * (its top is the slot's end) or the boot stack. False for another. Any
 * context, no lock. */
bool kstack_bounds(uintptr_t sp, uintptr_t *lo, uintptr_t *hi);

#endif

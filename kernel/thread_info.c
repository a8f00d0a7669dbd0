/*
 * Reading the threads: the snapshot the shell and the tests print, and
 * the live part of every thread's stack for a stopped world's scan (the
 * leak checker's). Both walk the list of all threads (thread.c) under its
 * lock; the owner of a stack, for a panic's report, walks it without.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/heap.h"
#include "kernel/kstack.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/sched_internal.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "kernel/stw.h"
#include "kernel/thread.h"
#include "kernel/time.h"

const char *thread_state_name(enum thread_state s)
{
	switch (s) {
	case THREAD_RUNNING:
		return "running";
	case THREAD_RUNNABLE:
		return "runnable";
	case THREAD_BLOCKED:
		return "blocked";
	case THREAD_SLEEPING:
		return "sleeping";
	case THREAD_DEAD:
		return "dead";
	}
	return "?";
}

unsigned thread_snapshot(struct thread_info *out, unsigned max)
{
	unsigned n = 0;
	uint64_t now = time_now_ns();
	unsigned long irq = spin_lock_irqsave(&thread_list_lock);
	for (struct thread *t = thread_list_head; t; t = t->all_next, n++) {
		if (n >= max)
			continue;
		struct thread_info *ti = &out[n];
		memcpy(ti->name, t->name, sizeof(ti->name));
		ti->id = t->id;
		ti->cpu = t->cpu->id;
		/* Racy reads, for display: see the header. */
		ti->state = *(volatile enum thread_state *)&t->state;
		ti->idle = t->cpu->idle == t;
		uint64_t run = *(volatile uint64_t *)&t->runtime_ns;
		uint64_t start = *(volatile uint64_t *)&t->slice_start_ns;
		if (ti->state == THREAD_RUNNING && now > start)
			run += now - start;
		ti->cpu_ns = run;
	}
	spin_unlock_irqrestore(&thread_list_lock, irq);
	return n;
}

/* The lowest live word of thread t's stack, the world stopped by this
 * CPU: its saved stack pointer, or, running, the trap frame of its
 * CPU's park; this thread's is mine. 0 if none is known. */
static uintptr_t live_sp(const struct thread *t, const struct thread *me,
                         uintptr_t mine)
{
	if (t == me)
		return mine;
	if (!t->on_cpu)
		return t->saved_rsp;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (cpus[i].current == t)
			return stw_parked_sp(i);
	return 0;
}

void thread_each_live_stack(void (*fn)(uintptr_t lo, uintptr_t hi, void *arg),
                            void *arg)
{
	if (!stw_stopped_by_this_cpu())
		panic("thread_each_live_stack: the world is running (the "
		      "stacks move)");
	struct thread *me = thread_current();
	/* This thread's callee-saved registers, stored below every frame
	 * of its callers (this one's pushes too): a pointer a caller holds
	 * only in a register is read as the others' saved ones are. */
	uintptr_t regs[6];
	__asm__ volatile("mov %%rbx, 0(%0)\n\tmov %%rbp, 8(%0)\n\t"
	                 "mov %%r12, 16(%0)\n\tmov %%r13, 24(%0)\n\t"
	                 "mov %%r14, 32(%0)\n\tmov %%r15, 40(%0)"
	                 :
	                 : "r"(regs)
	                 : "memory");
	unsigned long irq = spin_lock_irqsave(&thread_list_lock);
	for (struct thread *t = thread_list_head; t; t = t->all_next) {
		uintptr_t sp = t->state == THREAD_DEAD
		                       ? 0
		                       : live_sp(t, me, (uintptr_t)regs);
		uintptr_t lo, hi;
		if (sp && kstack_bounds(sp, &lo, &hi))
			fn(sp, hi, arg);
	}
	spin_unlock_irqrestore(&thread_list_lock, irq);
	__asm__ volatile("" : : "r"(regs) : "memory"); /* live until here */
}

struct thread_info *thread_snapshot_all(unsigned *n)
{
	unsigned room = thread_snapshot(NULL, 0);
	for (;;) {
		/* Room for a few made meanwhile; more, and it is sized
		 * again, so no thread is left out. */
		room += 8;
		struct thread_info *ti = kcalloc(room, sizeof(*ti), 0);
		if (!ti)
			return NULL;
		unsigned count = thread_snapshot(ti, room);
		if (count <= room) {
			*n = count;
			return ti;
		}
		kfree(ti);
		room = count;
	}
}

/* The most threads the walk below follows: every thread but the boot
 * threads has one of kstack.c's 4096 slots, so more means a cycle in a
 * corrupt list. */
#define OWNER_WALK_MAX (4096 + MAX_CPUS + 1)

bool thread_stack_owner_in_panic(uintptr_t va, struct thread_info *out)
{
	/* The panicking CPU may not wait for the lock: its holder may be
	 * this CPU or one the panic stopped. With the others stopped, a
	 * lock free (no ticket out) means no one is half-way through a
	 * change of the list. */
	if (!panic_here() || atomic_load(&thread_list_lock.next) !=
	                             atomic_load(&thread_list_lock.serving))
		return false;
	struct thread *t = thread_list_head;
	for (unsigned n = 0; t && n < OWNER_WALK_MAX; t = t->all_next, n++) {
		/* A stack's slot: its guard is the slot's unmapped bottom. */
		uintptr_t top = t->stack.top;
		if (t->boot_stack || !top || va < top - KSTACK_SLOT_SIZE ||
		    va >= top)
			continue;
		memcpy(out->name, t->name, sizeof(out->name));
		out->id = t->id;
		out->cpu = t->cpu->id;
		out->state = t->state;
		out->idle = false;
		out->cpu_ns = 0;
		return true;
	}
	return false;
}

/*
 * kstack_free as other CPUs see it: the stack's pages are shot down on
 * every CPU before their frames go back to the pool, so a CPU that read
 * the stack just before (a thread that ran on it, a joiner that looked)
 * faults after instead of reading frames that may be another owner's by
 * then. QEMU's TCG keeps a software TLB per vCPU that stays stale until
 * it is flushed, so a missing shootdown shows as a read that goes
 * through (as in mm_port_unused_test.c, whose set-up this follows).
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "kernel/kstack.h"
#include "kernel/ktest.h"
#include "kernel/thread.h"
#include "tests/kernel/fault_util.h"
#include "tests/kernel/smp_util.h"

#define NPAGES 4

static struct kstack stack;
static _Atomic int step;
static _Atomic unsigned stale, first_sum;

/* On the other CPU: read every page of the stack (its TLB now maps them
 * all), spin on step alone with interrupts on (the shootdown's IPI must
 * get in) until the stack is freed, then count the pages a read still
 * goes through to. */
static void reader(void *arg)
{
	(void)arg;
	unsigned sum = 0;
	for (unsigned i = 0; i < NPAGES; i++)
		sum += *(volatile uint8_t *)(stack.bottom + i * PAGE_SIZE);
	atomic_store(&first_sum, sum);
	atomic_store(&step, 1);
	while (atomic_load(&step) != 2)
		cpu_pause();
	unsigned n = 0;
	for (unsigned i = 0; i < NPAGES; i++)
		n += !read_faults_at(
		        (volatile uint8_t *)(stack.bottom + i * PAGE_SIZE));
	atomic_store(&stale, n);
	atomic_store(&step, 3);
}

KTEST(kstack, free_shoots_the_stack_down_on_other_cpus)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	KASSERT(kstack_alloc(NPAGES, &stack));
	for (unsigned i = 0; i < NPAGES; i++)
		*(volatile uint8_t *)(stack.bottom + i * PAGE_SIZE) = 0x5a;
	atomic_store(&step, 0);
	atomic_store(&stale, ~0u);
	struct thread_handle t =
	        thread_create("kstack_reader", reader, NULL, other);
	KASSERT(thread_handle_ok(t));
	while (atomic_load(&step) != 1)
		thread_yield();
	kstack_free(&stack);
	atomic_store(&step, 2);
	thread_join(t);
	KEXPECT_EQ(atomic_load(&first_sum), NPAGES * 0x5au);
	KEXPECT_EQ(atomic_load(&step), 3);
	KEXPECT_EQ(atomic_load(&stale), 0);
}

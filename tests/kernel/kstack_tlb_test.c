/*
 * kstack_free as other CPUs see it: the stack's pages are shot down on
 * every CPU before their frames go back to the pool, so a CPU that read
 * the stack just before (a thread that ran on it, a joiner that looked)
 * faults after instead of reading frames that may be another owner's by
 * then. QEMU's TCG keeps a software TLB per vCPU that stays stale until
 * it is flushed, so a missing shootdown shows as a read that goes
 * through (as in mm_port_unused_test.c, whose set-up this follows).
 */
#include "arch/x86_64/layout.h"
#include "kernel/kstack.h"
#include "kernel/ktest.h"
#include "kernel/thread.h"
#include "tests/kernel/smp_util.h"
#include "tests/kernel/tlb_reader_util.h"

#define NPAGES 4

static struct kstack stack;
static struct tlb_reader reader;

KTEST(kstack, free_shoots_the_stack_down_on_other_cpus)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	KASSERT(kstack_alloc(NPAGES, &stack));
	tlb_reader_start(&reader, (void *)stack.bottom, NPAGES, other);
	kstack_free(&stack);
	tlb_reader_expect_none_left(&reader);
}

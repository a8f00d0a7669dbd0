/*
 * A double free across contexts on one CPU (KTEST_FAIL_DEMO only: it
 * panics; tools/test-harness's kfree_twice_by_a_handler_mid_push checks
 * the message names the pointer).
 *
 * kfree(p) runs single-stepped, interrupts off, as rseq_test.c's trials.
 * At its first step inside the push's restartable sequence the #DB hook
 * frees p, as an interrupt handler on this CPU may, then restarts the
 * sequence as irq_dispatch would. The free's test of the marker is the
 * sequence's first instruction, so the restart finds the marker the
 * handler's free stored and the call panics "double free". Until a
 * review the test was C, before the sequence: the restarted push put p
 * into the magazine a second time and the free returned.
 */
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/trap.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "mm/rseq.h"
#include "tests/kernel/single_step_util.h"

#ifdef KTEST_FAIL_DEMO
static void *twice;
static bool hook_freed;

/* After each instruction of the traced kfree: the first time the call
 * stands inside a sequence (past its start), p's second free. */
static void free_again_mid_push(struct trap_frame *f)
{
	uintptr_t ip = f->rip;
	if (hook_freed || !mm_rseq_restart(&ip))
		return;
	f->rflags &= ~RFLAGS_TF;
	hook_freed = true;
	kfree(twice);
	mm_rseq_restart(&f->rip);
}

KTEST(demo, kfree_twice_by_a_handler_mid_push)
{
	if (kspanheap.cfg.poison || kspanheap.guard.base)
		KTEST_SKIP("mm.debug_poison or mm.guard: the free takes no "
		           "magazine's sequence");
	twice = kmalloc(64, KM_ATOMIC);
	KASSERT(twice != NULL);
	ktest_diag("kfree of %p", twice);
	trap_set_debug_hook(free_again_mid_push);
	uint64_t flags = read_rflags();
	cpu_cli();
	single_step_on();
	kfree(twice);
	single_step_off();
	if (flags & RFLAGS_IF)
		cpu_sti();
	trap_set_debug_hook(NULL);
	ktest_fail_at(__FILE__, __LINE__,
	              "the second free of %p went unseen (%s)", twice,
	              hook_freed ? "freed twice, into the magazine"
	                         : "the hook found no sequence");
}
#endif

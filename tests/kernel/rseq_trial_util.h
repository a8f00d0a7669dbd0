/*
 * The single-stepped trials of the restartable sequences' tests
 * (rseq_test.c: kmalloc's magazines; rseq_stash_test.c: the constructor
 * caches' stashes): a call runs with RFLAGS.TF set and interrupts off,
 * and at its k-th trap the #DB hook either does what a handler on this
 * CPU may (interfere, the including file's) and restarts as irq_dispatch
 * does (BY_HOOK), or lets in an IPI that lands at that boundary, through
 * irq_dispatch's own restart (BY_IPI; rseq_test.c's BY_SWITCH has the
 * IPI switch to another thread). Trial k = 0, 1, 2, ... until the call
 * finishes before its k-th step. One CPU, thread context; a test at a
 * time (the state is the file's).
 */
#ifndef TESTS_KERNEL_RSEQ_TRIAL_UTIL_H
#define TESTS_KERNEL_RSEQ_TRIAL_UTIL_H

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/trap.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "mm/rseq.h"
#include "tests/kernel/single_step_util.h"

/* How the k-th step is interrupted: by the #DB hook itself, by an IPI
 * that it lets in, or by that IPI's switch to another thread. */
enum interrupter { BY_HOOK, BY_IPI, BY_SWITCH };

/* The hook's part of a trial. */
static struct {
	enum interrupter by;
	unsigned step, target;
	bool fired, restarted;
	bool ipi_due;      /* sent by the hook, not handled yet */
	uintptr_t ip;      /* where the k-th step stopped (BY_IPI) */
	void *g1, *g2, *s; /* freed and allocated by the "handler" */
} trial;

/* What an interrupt handler on this CPU may do (the including file's):
 * move the magazine's top or the stash's count, set trial.fired. */
static void interfere(void);

/* The IPI of a BY_IPI or BY_SWITCH trial, first: whether it is the one
 * the hook sent (else nothing to do). irq_dispatch has restarted the
 * sequence it landed in (or not) before this runs: it landed at
 * trial.ip, and a restart moved the frame back to the start of a
 * sequence, at most a few dozen bytes. */
static inline bool trial_ipi_landed(struct trap_frame *f)
{
	if (!trial.ipi_due)
		return false;
	trial.ipi_due = false;
	trial.restarted = f->rip != trial.ip;
	if (f->rip > trial.ip || trial.ip - f->rip > 64)
		ktest_fail_at(__FILE__, __LINE__,
		              "step %u: the IPI landed at %#lx, not at %#lx",
		              trial.target, (unsigned long)f->rip,
		              (unsigned long)trial.ip);
	return true;
}

static void trial_step_hook(struct trap_frame *f)
{
	if (trial.step++ != trial.target)
		return;
	f->rflags &= ~RFLAGS_TF;
	if (trial.by != BY_HOOK) {
		/* Pending until the iretq sets IF; taken before the
		 * instruction at f->rip (IRET has no interrupt shadow). */
		trial.ip = f->rip;
		trial.ipi_due = true;
		lapic_send_ipi(this_cpu()->apic_id, IRQ_VEC_TEST);
		f->rflags |= RFLAGS_IF;
		return;
	}
	interfere();
	trial.restarted = mm_rseq_restart(&f->rip);
}

static inline void trace_off(void)
{
	single_step_off();
	if (trial.ipi_due) {
		/* A late IPI must not free the handler's objects again. */
		trial.ipi_due = false;
		ktest_fail_at(__FILE__, __LINE__,
		              "step %u: the IPI did not land at once",
		              trial.target);
	}
}

/* Trials of op (k: the step to interrupt; false: failed), interrupted by
 * by (ipi: the IPI's handler, for BY_IPI and BY_SWITCH), until one
 * finishes untouched; the trials that restarted a sequence. */
static unsigned trial_run(bool (*op)(unsigned k), enum interrupter by,
                          void (*ipi)(struct trap_frame *f))
{
	unsigned restarts = 0;
	trial.by = by;
	if (by != BY_HOOK)
		irq_register(IRQ_VEC_TEST, ipi);
	trap_set_debug_hook(trial_step_hook);
	for (unsigned k = 0; k < 1000; k++) {
		uint64_t flags = read_rflags();
		cpu_cli();
		bool ok = op(k);
		KEXPECT(!(read_rflags() & RFLAGS_IF));
		if (flags & RFLAGS_IF)
			cpu_sti();
		if (!ok || !trial.fired)
			break; /* failed, or finished before its k-th step */
		restarts += trial.restarted;
	}
	trap_set_debug_hook(NULL);
	if (by != BY_HOOK)
		irq_register(IRQ_VEC_TEST, NULL);
	return restarts;
}

#endif

/*
 * Lock-free heap PTE changes (vm_pte_set / vm_pte_clear) racing on two
 * CPUs. A test hook holds each CPU between finding the entry and changing
 * it until the other has found it too, so both see the same old entry:
 * exactly one set may install its frame, exactly one clear may take the
 * frame. Needs two CPUs and the test hooks.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/paging_testing.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/thread.h"
#include "kernel/tlb.h"
#include "tests/kernel/smp_util.h"

#if KTEST_HOOKS

/* PML4 slot 509 (free for tests), away from the other tests' pages. */
#define RACE_VA 0xfffffe8080000000ull

static _Atomic unsigned arrived, met;

/* Holds the caller until both racers have found the entry. Each racer
 * that saw the other counts in met, which the test expects to be 2: one
 * that gave up raced no one, and the test passed anyway until a review
 * found it. The wait has no time bound: under TCG the host can leave the
 * other racer's vCPU unscheduled for many seconds, and a 10 s bound then
 * failed a correct kernel (met 1). A racer that never comes hangs the
 * run instead, and run-ktest's timeout names this test as the last one
 * started. */
static void rendezvous(uintptr_t va)
{
	if (va != RACE_VA)
		return;
	atomic_fetch_add(&arrived, 1);
	while (atomic_load(&arrived) < 2)
		cpu_pause();
	atomic_fetch_add(&met, 1);
}

struct racer {
	paddr_t pa; /* set: the frame to install; clear: the frame taken */
	bool clear;
	int err;
};

static void race_one(void *arg)
{
	struct racer *r = arg;
	r->err = r->clear ? vm_pte_clear(RACE_VA, &r->pa)
	                  : vm_pte_set(RACE_VA, r->pa, VM_WRITE);
}

/* Runs a on another CPU and b here, at once. */
static bool race(unsigned cpu, struct racer *a, struct racer *b)
{
	atomic_store(&arrived, 0);
	atomic_store(&met, 0);
	atomic_store(&paging_testing_pte_change, rendezvous);
	struct thread_handle t = thread_create("pte_racer", race_one, a, cpu);
	if (thread_handle_ok(t)) {
		race_one(b);
		thread_join(t);
	}
	atomic_store(&paging_testing_pte_change, NULL);
	return thread_handle_ok(t);
}

KTEST(paging, racing_pte_changes_have_one_winner)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	KASSERT_EQ(vm_prepare_range(RACE_VA, PAGE_SIZE), 0);
	paddr_t fa = frame_alloc(), fb = frame_alloc();
	KASSERT(fa && fb);
	for (int round = 0; round < 3; round++) {
		struct racer a = {.pa = fa}, b = {.pa = fb};
		KASSERT(race(cpu, &a, &b));
		KEXPECT_EQ(met, 2); /* an atomic load */
		KEXPECT_EQ((a.err == 0) + (b.err == 0), 1);
		KEXPECT_EQ(a.err + b.err, -VM_EEXIST);
		paddr_t mapped = 0;
		KEXPECT(vm_translate(RACE_VA, &mapped, NULL));
		KEXPECT_EQ(mapped, a.err == 0 ? fa : fb);

		struct racer c = {.clear = true}, d = {.clear = true};
		KASSERT(race(cpu, &c, &d));
		KEXPECT_EQ(met, 2); /* an atomic load */
		if (c.err == 0 && d.err == 0)
			ktest_fail_at(__FILE__, __LINE__,
			              "both clears took frame %#llx and %#llx",
			              (unsigned long long)c.pa,
			              (unsigned long long)d.pa);
		KEXPECT_EQ((c.err == 0) + (d.err == 0), 1);
		KEXPECT_EQ(c.err == 0 ? c.pa : d.pa, mapped);
		KEXPECT(!vm_translate(RACE_VA, NULL, NULL));
	}
	vm_pte_clear(RACE_VA, NULL);
	tlb_shootdown(RACE_VA, 1);
	frame_free(fa);
	frame_free(fb);
}

#endif

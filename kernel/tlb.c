/*
 * TLB shootdown (see tlb.h). One shootdown at a time, serialised by
 * shootdown_lock, which is taken without disabling interrupts: a CPU
 * spinning for it can still answer the holder's IPI. The request (range
 * and a count of CPUs yet to flush) lives in static memory that only the
 * lock holder writes.
 *
 * The CPUs to flush are one snapshot of the online set, taken with
 * cpus_online_hold and held until the last of them has answered: the
 * count and the IPIs cover the same CPUs, and a CPU coming online waits
 * (then flushes everything itself).
 *
 * A CPU answers the IPI only with interrupts on. One that keeps them off
 * for good (a bug) would make the sender wait for ever without a word, so
 * while it waits the sender names the range and the CPUs that have not
 * flushed yet every TLB_WAIT_REPORT_NS, as stw_stop does. It keeps
 * waiting: the range's frames must not be reused while a CPU may still
 * translate it.
 */
#include "kernel/tlb.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/tlbflush.h"
#include "kernel/format.h"
#include "kernel/irq.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/stw.h"
#include "kernel/time.h"
#include "kernel/tlb_testing.h"

/* How often tlb_shootdown names the CPUs it is still waiting for. */
#define TLB_WAIT_REPORT_NS 1000000000ull

/* Rank SHOOTDOWN, the lowest (kernel/lockrank.h), taken with interrupts
 * on and never in an interrupt handler; nothing is held when it is taken.
 * Protects the request below: one shootdown at a time. */
static struct spinlock shootdown_lock =
        SPINLOCK_INIT("shootdown", LOCK_RANK_SHOOTDOWN);

/* Written by the lock holder before the IPIs, read by the handlers: */
static uintptr_t req_va;
static size_t req_npages;
static _Atomic unsigned req_pending;
static _Atomic cpumask_t req_waiting; /* the CPUs counted in req_pending */

TEST_HOOK_DEFINE(tlb_testing_before_send);
TEST_HOOK_DEFINE(tlb_testing_still_waiting);

void tlb_flush_local(uintptr_t va, size_t npages)
{
	if (npages > TLB_FULL_FLUSH_PAGES) {
		arch_tlb_flush_all();
		return;
	}
	for (size_t i = 0; i < npages; i++)
		arch_tlb_flush_page(va + i * PAGE_SIZE);
}

static void tlb_irq(struct trap_frame *f)
{
	tlb_flush_local(req_va, req_npages);
	atomic_fetch_and(&req_waiting, ~cpumask_of(this_cpu()->id));
	atomic_fetch_sub_explicit(&req_pending, 1, memory_order_release);
}

/* Prints "tlb: shootdown of [va, limit) ... still waiting ... for cpu 2 3"
 * naming the CPUs that have not flushed yet, as one line. */
static void report_waiting(uint64_t waited_ns)
{
	cpumask_t missing = atomic_load(&req_waiting);
	if (!missing)
		return; /* the last one is counting itself out */
	char ids[CPUMASK_IDS_MAX];
	cpumask_format(missing, ids, sizeof(ids));
	printk("tlb: shootdown of [%#lx, %#lx) (%zu page%s) by cpu %u still "
	       "waiting after %llu ms for cpu%s to take the flush IPI "
	       "(interrupts off?)\n",
	       (unsigned long)req_va,
	       (unsigned long)(req_va + req_npages * PAGE_SIZE), req_npages,
	       req_npages == 1 ? "" : "s", this_cpu()->id,
	       (unsigned long long)(waited_ns / 1000000), ids);
	TEST_HOOK(tlb_testing_still_waiting, missing);
}

/* Waits until every CPU sent the IPI has flushed; says which have not
 * every TLB_WAIT_REPORT_NS (only then is the clock read again). */
static void wait_flushed(void)
{
	uint64_t start = time_now_ns();
	uint64_t next = start + TLB_WAIT_REPORT_NS;
	while (atomic_load_explicit(&req_pending, memory_order_acquire) > 0) {
		cpu_pause();
		uint64_t now = time_now_ns();
		if (now >= next) {
			report_waiting(now - start);
			next = now + TLB_WAIT_REPORT_NS;
		}
	}
}

/* Sign-extended from bit 47: an address the MMU translates at all. */
static bool canonical(uintptr_t va)
{
	return (uintptr_t)((intptr_t)(va << 16) >> 16) == va;
}

/* It must start on a page boundary (the flush steps a page at a time from
 * va, so an offset would leave the last page out) and lie in one
 * canonical half without wrapping past 2^64 (no page there can be
 * mapped: a caller's arithmetic went wrong). */
const char *tlb_range_error(uintptr_t va, size_t npages)
{
	if (va % PAGE_SIZE)
		return "the range does not start on a page boundary";
	if (!canonical(va))
		return "the range starts at a non-canonical address";
	if (npages == 0)
		return NULL;
	if (npages - 1 > (UINTPTR_MAX - va) / PAGE_SIZE)
		return "the range runs past 2^64";
	uintptr_t last = va + (npages - 1) * PAGE_SIZE;
	if (!canonical(last) || (last ^ va) >> 63)
		return "the range leaves the canonical half it starts in";
	return NULL;
}

void tlb_init(void)
{
	irq_register(IRQ_VEC_TLB, tlb_irq);
}

void tlb_shootdown(uintptr_t va, size_t npages)
{
	/* Either way it would wait for CPUs that may be waiting for this
	 * one. An interrupt handler has interrupts off too, but says so
	 * first: the caller to fix is the one it interrupted from. */
	if (this_cpu()->irq_depth > 0)
		panic("tlb_shootdown(%#lx, %zu pages) in an interrupt handler "
		      "on cpu %u: it waits for every other CPU to flush, and "
		      "they may be waiting for this one; unmap from a thread",
		      (unsigned long)va, npages, this_cpu()->id);
	const char *bad = tlb_range_error(va, npages);
	if (bad)
		panic("tlb_shootdown(%#lx, %zu page%s): %s", (unsigned long)va,
		      npages, npages == 1 ? "" : "s", bad);
	if (stw_stopped_by_this_cpu()) {
		/* The others are parked and flush all when released: no one
		 * to wait for, so interrupts may be off. */
		tlb_flush_local(va, npages);
		return;
	}
	if (!(read_rflags() & RFLAGS_IF))
		panic("tlb_shootdown(%#lx, %zu pages) with interrupts off: it "
		      "would wait for CPUs that may be waiting for this one",
		      (unsigned long)va, npages);
	spin_lock(&shootdown_lock);
	tlb_flush_local(va, npages);
	struct cpu *self = this_cpu();
	/* Exactly the CPUs counted get the IPI, and none comes online
	 * until they all have flushed (percpu.h). */
	cpumask_t targets = cpus_online_hold() & ~cpumask_of(self->id);
	req_va = va;
	req_npages = npages;
	atomic_store(&req_waiting, targets);
	atomic_store(&req_pending, cpumask_weight(targets));
	TEST_HOOK(tlb_testing_before_send, self->id);
	cpus_send_ipi(targets, IRQ_VEC_TLB);
	wait_flushed();
	/* Done: a freed page's address left in bss kept, for the leak scan
	 * (kernel/heap_leaks.c), whatever the heap put there next. */
	req_va = 0;
	req_npages = 0;
	cpus_online_release();
	spin_unlock(&shootdown_lock);
}

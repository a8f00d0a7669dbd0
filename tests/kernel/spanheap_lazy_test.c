/*
 * A CPU's first use of a span heap from an interrupt handler: its cache,
 * all zero until then (mm/spanheap_init.c, spanheap_cache_set_up), is set
 * up by the handler's call itself, with interrupts off, after the heap's
 * other CPUs ran for sweep cycles. On a heap of the test's own, so that
 * CPUs no one used exist (the kernel's heap has been used everywhere by
 * now): a handler on CPU B allocates (its first call: an allocation) and
 * frees one of two objects, a handler on CPU C frees the other (its first
 * call: a free of B's object); then the flush of every CPU and the
 * checker, which also finds every CPU that took no part all zero.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "kernel/heap.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "mm/spanheap_internal.h"

static struct mheap lazy_heap;
static struct spanheap *lsh;

/* What the handler does on its CPU, and what it saw. */
static struct {
	_Atomic int op; /* 1: allocate two, free one; 2: free obj[1] */
	_Atomic bool done, used_before, used_after;
	uint64_t *obj[2];
	_Atomic unsigned cpu;
} irq;

static void pattern(uint64_t *p)
{
	for (unsigned i = 2; i < 8; i++)
		p[i] = (uintptr_t)p ^ i;
}

static bool pattern_ok(const uint64_t *p)
{
	for (unsigned i = 2; i < 8; i++)
		if (p[i] != ((uintptr_t)p ^ i))
			return false;
	return true;
}

static void first_use_handler(struct trap_frame *f)
{
	(void)f;
	unsigned cpu = this_cpu()->id;
	atomic_store(&irq.cpu, cpu);
	atomic_store(&irq.used_before, spanheap_cache_used(lsh, cpu));
	if (atomic_load(&irq.op) == 1) {
		irq.obj[0] = spanheap_alloc(lsh, 64, MM_ATOMIC);
		irq.obj[1] = spanheap_alloc(lsh, 64, MM_ATOMIC);
		if (irq.obj[0] && irq.obj[1]) {
			pattern(irq.obj[0]);
			pattern(irq.obj[1]);
			spanheap_free(lsh, irq.obj[0]);
		}
	} else if (pattern_ok(irq.obj[1])) {
		spanheap_free(lsh, irq.obj[1]);
		irq.obj[1] = NULL;
	}
	atomic_store(&irq.used_after, spanheap_cache_used(lsh, cpu));
	atomic_store(&irq.done, true);
}

/* Runs op in the handler on CPU cpu (by IPI) and waits for it. */
static void on_cpu_irq(unsigned cpu, int op)
{
	atomic_store(&irq.op, op);
	atomic_store(&irq.done, false);
	lapic_send_ipi(cpus[cpu].apic_id, IRQ_VEC_TEST);
	while (!atomic_load(&irq.done))
		cpu_pause();
}

/* A CPU online and not yet a user of lsh, other than not; MAX_CPUS if
 * none. */
static unsigned unused_cpu(cpumask_t online, unsigned not )
{
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if ((online & cpumask_of(i)) &&
		    i != not &&!spanheap_cache_used(lsh, i))
			return i;
	return MAX_CPUS;
}

/* Objects of a few classes allocated and freed, with sweep cycles. */
static void churn(void)
{
	void *p[32];
	for (unsigned r = 0; r < 6; r++) {
		for (unsigned i = 0; i < 32; i++) {
			p[i] = spanheap_alloc(lsh, 16 << (i % 6), 0);
			KASSERT(p[i] != NULL);
		}
		for (unsigned i = 0; i < 32; i++)
			spanheap_free(lsh, p[i]);
		spanheap_sweep_cycle(lsh);
	}
}

KTEST(spanheap_lazy, first_use_from_an_interrupt_handler)
{
	static bool made;
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = 256ull << 20;
	hc.reserve_pages = 64;
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	if (!made) {
		KASSERT(lsh = kzalloc(sizeof(*lsh), 0));
		KASSERT(mheap_init(&lazy_heap, &hc) &&
		        spanheap_init(lsh, &lazy_heap, &cfg));
		made = true;
	}
	churn();
	cpumask_t online = cpus_online_hold();
	cpus_online_release();
	unsigned b = unused_cpu(online, MAX_CPUS);
	unsigned c = unused_cpu(online, b);
	if (c == MAX_CPUS)
		KTEST_SKIP("two CPUs that have not used the test's heap");
	irq_register(IRQ_VEC_TEST, first_use_handler);
	on_cpu_irq(b, 1);
	KEXPECT_EQ(atomic_load(&irq.cpu), b);
	KEXPECT(!atomic_load(&irq.used_before) && atomic_load(&irq.used_after));
	KASSERT(irq.obj[0] && irq.obj[1]);
	on_cpu_irq(c, 2);
	KEXPECT_EQ(atomic_load(&irq.cpu), c);
	KEXPECT(!atomic_load(&irq.used_before) && atomic_load(&irq.used_after));
	KEXPECT(irq.obj[1] == NULL); /* its pattern held: freed */
	irq_register(IRQ_VEC_TEST, NULL);
	/* B and C flushed as other CPUs, their objects back in their spans;
	 * the checker visits every CPU, finding the unused ones zero. */
	spanheap_flush_all(lsh);
	spanheap_check(lsh);
	spanheap_release_all(lsh);
	spanheap_check(lsh);
}

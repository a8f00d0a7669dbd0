/*
 * In-kernel cost figures, printed as KTAP diagnostics (benchmarks, not
 * pass/fail): an uncontended lock_irqsave+unlock, a context switch, and a
 * TLB shootdown round trip. Under `make bench-kernel` QEMU runs with
 * -icount shift=0, so rdtsc counts guest instructions and the figures are
 * instructions per operation; in a normal run they are TSC ticks.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "kernel/tlb.h"
#include "mm/mm.h"

#define BENCH_VA 0xfffffe8080000000ull

static struct spinlock bench_lock = SPINLOCK_INIT("bench", LOCK_RANK_TEST_LOW);

KTEST(bench, lock_irqsave_unlock)
{
	enum { N = 20000 };
	uint64_t start = rdtsc();
	for (int i = 0; i < N; i++) {
		unsigned long irq = spin_lock_irqsave(&bench_lock);
		spin_unlock_irqrestore(&bench_lock, irq);
	}
	uint64_t per = (rdtsc() - start) / N;
	ktest_diag("bench lock_irqsave+unlock_irqrestore: %lu tsc/op", per);
	KEXPECT(per > 0);
}

static _Atomic bool pong_stop;

static void ponger(void *arg)
{
	while (!atomic_load(&pong_stop))
		thread_yield();
}

KTEST(bench, context_switch)
{
	enum { N = 5000 };
	atomic_store(&pong_stop, false);
	struct thread *t =
	        thread_create("ponger", ponger, NULL, this_cpu()->id);
	KASSERT(t != NULL);
	thread_yield(); /* let it start */
	uint64_t start = rdtsc();
	for (int i = 0; i < N; i++)
		thread_yield(); /* two switches: to the ponger and back */
	uint64_t per = (rdtsc() - start) / (2 * N);
	atomic_store(&pong_stop, true);
	thread_join(t);
	ktest_diag("bench context switch (yield to yield): %lu tsc/switch",
	           per);
	KEXPECT(per > 0);
}

KTEST(bench, tlb_shootdown_round_trip)
{
	unsigned others = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		others += i != this_cpu()->id && atomic_load(&cpus[i].online);
	if (others == 0)
		KTEST_SKIP("needs two CPUs");
	enum { N = 500 };
	uint64_t start = rdtsc();
	for (int i = 0; i < N; i++)
		tlb_shootdown(BENCH_VA, 1);
	uint64_t per = (rdtsc() - start) / N;
	ktest_diag("bench tlb shootdown, 1 page, %u other CPUs: %lu tsc/op",
	           others, per);
	KEXPECT(per > 0);
}

KTEST(bench, scavenge_throughput)
{
	/* mheap_release_all of 16 MiB of free backed pages: unmapping,
	 * shootdown, frames back to the pool. */
	enum { N = 4096 };
	static struct mheap h;
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 1ull << 30;
	KASSERT(mheap_init(&h, &cfg));
	uint8_t *p = mheap_alloc_pages(&h, N, 0);
	KASSERT(p != NULL);
	for (size_t i = 0; i < N; i++)
		p[i * MM_PAGE_SIZE] = 1;
	mheap_free_pages(&h, p, N);
	uint64_t start = rdtsc();
	size_t released = mheap_release_all(&h);
	uint64_t ticks = rdtsc() - start;
	KASSERT(released >= N);
	uint64_t per = ticks / released;
	uint64_t per_ms = time_tsc_per_ms();
	ktest_diag("bench scavenge (release-all, %zu pages): %lu tsc/page, "
	           "%lu pages/s at the calibrated TSC rate",
	           released, per, per ? per_ms * 1000 / per : 0);
	KEXPECT(per > 0);
}

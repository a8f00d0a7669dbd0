/*
 * A heap page given back and its frame reused, as a CPU that had the page
 * in its TLB sees it: CPU B touches a large object's pages, CPU A frees
 * the object, scavenges it (mheap_release_all: PTEs cleared, one
 * shootdown, frames back to the pool), takes those very frames from the
 * pool and fills them as their new owner. B's reads and writes of the old
 * addresses must then fault (the fault hook reports the vector and the
 * address), never read or change the new owner's bytes. QEMU's TCG keeps
 * a software TLB per vCPU that stays stale until it is flushed, so a
 * missing or short shootdown shows as a read or write that goes through.
 *
 * The second test has B keep interrupts off from before the scavenge
 * until after its PTEs are gone: the shootdown must wait for B's
 * acknowledgement (B answers only once it turns them on), and the frames
 * must not reach their new owner before that, so B reads the old bytes or
 * faults, and the owner's pattern never.
 *
 * mheap_release_all is called on the page heap itself: the span heap's
 * release (spanheap_release_all) stops the world first, and a parked CPU
 * flushes its whole TLB when let go, which would hide the shootdown.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "tests/kernel/fault_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/smp_util.h"

#define NPAGES          12 /* over SC_MAX_SIZE: a large object, its own span */
#define OLD_BYTE        0x5au /* what the object held */
#define OWNER_BYTE      0xc3u /* what the frames' new owner writes */
#define B_WRITE         0x11u /* what B tries to write through the old address */
#define IRQ_OFF_HOLD_NS 200000000ull /* how long B waits, interrupts off */

struct toucher {
	volatile uint8_t *base;
	bool irq_off;
	_Atomic int step;
	/* Counted by B: */
	_Atomic unsigned first_sum;      /* the old bytes, read at first */
	_Atomic unsigned owner_seen;     /* reads that found OWNER_BYTE */
	_Atomic unsigned reads_through;  /* after the flush */
	_Atomic unsigned writes_through; /* after the flush */
	_Atomic unsigned old_seen_irq_off;
	_Atomic bool unmapped_irq_off; /* B saw the PTEs go, interrupts off */
	struct thread_handle t;
};

static struct toucher tch;

/* Reads page i through a fault hook; counts a read that went through,
 * and one that found the new owner's byte. Unchecked by KASAN
 * (kernel/kasan.h): the pages were given back on purpose, and a read
 * through a stale TLB entry is what the test looks for. */
static KASAN_UNCHECKED void try_read(struct toucher *b, unsigned i,
                                     _Atomic unsigned *through)
{
	volatile uint8_t *p = b->base + i * PAGE_SIZE + 64;
	if (read_faults_at(p))
		return;
	atomic_fetch_add(through, 1);
	if (*p == OWNER_BYTE)
		atomic_fetch_add(&b->owner_seen, 1);
}

static bool all_unmapped(const struct toucher *b)
{
	for (unsigned i = 0; i < NPAGES; i++)
		if (vm_translate((uintptr_t)b->base + i * PAGE_SIZE, NULL,
		                 NULL))
			return false;
	return true;
}

/* B, interrupts off: waits until A's scavenge cleared the PTEs (A is
 * then in the shootdown, which cannot end before this CPU answers), holds
 * on a while longer, then reads through its TLB. Each wait is bounded
 * (interrupts come back on after it, and the test goes on): a batch of
 * other pages taken before the object's would wait for this CPU before
 * clearing the object's PTEs. */
static void hold_interrupts_off(struct toucher *b)
{
	cpu_cli();
	atomic_store(&b->step, 3);
	uint64_t until = time_now_ns() + IRQ_OFF_HOLD_NS;
	while (!all_unmapped(b) && time_now_ns() < until)
		cpu_pause();
	atomic_store(&b->unmapped_irq_off, all_unmapped(b));
	until = time_now_ns() + IRQ_OFF_HOLD_NS;
	while (time_now_ns() < until && atomic_load(&b->step) < 4)
		cpu_pause();
	_Atomic unsigned old = 0;
	for (unsigned i = 0; i < NPAGES; i++)
		try_read(b, i, &old);
	atomic_store(&b->old_seen_irq_off, atomic_load(&old));
	cpu_sti(); /* the shootdown's IPI comes in here */
}

/* B. A moves on without waiting for B to see each step, so B waits for
 * a step or any later one: waiting for step 2 exactly, a vCPU the host
 * left unscheduled found 4 and spun for ever (1 run in about 30). */
static void toucher_body(void *arg)
{
	struct toucher *b = arg;
	unsigned sum = 0;
	for (unsigned i = 0; i < NPAGES; i++)
		sum += b->base[i * PAGE_SIZE + 64];
	atomic_store(&b->first_sum, sum);
	atomic_store(&b->step, 1);
	while (atomic_load(&b->step) < 2)
		cpu_pause();
	if (b->irq_off)
		hold_interrupts_off(b);
	while (atomic_load(&b->step) < 4)
		cpu_pause();
	for (unsigned i = 0; i < NPAGES; i++)
		try_read(b, i, &b->reads_through);
	for (unsigned i = 0; i < NPAGES; i++) {
		volatile uint8_t *p = b->base + i * PAGE_SIZE + 128;
		if (!write_faults_at(p, B_WRITE))
			atomic_fetch_add(&b->writes_through, 1);
	}
	atomic_store(&b->step, 5);
}

/* Takes frames from the pool until it holds every frame of want (they
 * were just given back), fills each with OWNER_BYTE, and gives the
 * others back. Returns how many of want it got; *mask: which. */
static unsigned take_frames(const paddr_t *want, unsigned n, uint32_t *mask)
{
	paddr_t others = 0;
	unsigned got = 0;
	*mask = 0;
	while (got < n) {
		paddr_t pa = frame_alloc();
		if (!pa)
			break;
		unsigned i = 0;
		while (i < n && want[i] != pa)
			i++;
		if (i < n) {
			memset(phys_to_virt(pa), OWNER_BYTE, PAGE_SIZE);
			*mask |= 1u << i;
			got++;
			continue;
		}
		*(paddr_t *)phys_to_virt(pa) = others;
		others = pa;
	}
	while (others) {
		paddr_t next = *(paddr_t *)phys_to_virt(others);
		frame_free(others);
		others = next;
	}
	return got;
}

/* The bytes of the frames of want in mask that are not OWNER_BYTE. */
static size_t owner_bytes_changed(const paddr_t *want, uint32_t mask)
{
	size_t bad = 0;
	for (unsigned i = 0; i < NPAGES; i++) {
		if (!(mask >> i & 1))
			continue;
		const uint8_t *f = phys_to_virt(want[i]);
		for (size_t k = 0; k < PAGE_SIZE; k++)
			bad += f[k] != OWNER_BYTE;
	}
	return bad;
}

static void scavenge_and_reuse(bool irq_off)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	HEAP_SKIP_IF_FREES_SCAVENGE();
	heap_settle();
	heap_threads_stop();
	uint8_t *p = kmalloc(NPAGES * PAGE_SIZE, 0);
	KASSERT(p != NULL);
	memset(p, OLD_BYTE, NPAGES * PAGE_SIZE);
	paddr_t pa[NPAGES];
	for (unsigned i = 0; i < NPAGES; i++)
		KASSERT(vm_translate((uintptr_t)p + i * PAGE_SIZE, &pa[i],
		                     NULL));
	struct toucher *b = &tch;
	memset(b, 0, sizeof(*b));
	b->base = p;
	b->irq_off = irq_off;
	b->t = thread_create("heap_tlb", toucher_body, b, other);
	KASSERT(thread_handle_ok(b->t));
	while (atomic_load(&b->step) != 1)
		thread_yield();
	kfree(p);
	atomic_store(&b->step, 2);
	while (irq_off && atomic_load(&b->step) != 3)
		thread_yield();
	size_t given = mheap_release_all(&kheap);
	uint32_t mask;
	unsigned got = take_frames(pa, NPAGES, &mask);
	atomic_store(&b->step, 4);
	thread_join(b->t);
	ktest_diag("gave back %zu pages; took back %u of the object's %u "
	           "frames; B: %u reads and %u writes went through after the "
	           "flush, %u reads found the new owner's byte",
	           given, got, NPAGES, atomic_load(&b->reads_through),
	           atomic_load(&b->writes_through),
	           atomic_load(&b->owner_seen));
	if (irq_off)
		ktest_diag("B, interrupts off, saw the PTEs %s and read %u "
		           "pages through its TLB then",
		           atomic_load(&b->unmapped_irq_off) ? "cleared"
		                                             : "still set",
		           atomic_load(&b->old_seen_irq_off));
	KEXPECT_EQ(atomic_load(&b->step), 5);
	KEXPECT_EQ(atomic_load(&b->first_sum), NPAGES * OLD_BYTE);
	KEXPECT(all_unmapped(b));
	KEXPECT_EQ(got, NPAGES);
	KEXPECT_EQ(atomic_load(&b->reads_through), 0);
	KEXPECT_EQ(atomic_load(&b->writes_through), 0);
	KEXPECT_EQ(atomic_load(&b->owner_seen), 0);
	KEXPECT_EQ(owner_bytes_changed(pa, mask), 0);
	for (unsigned i = 0; i < NPAGES; i++)
		if (mask >> i & 1)
			frame_free(pa[i]);
	KEXPECT(heap_threads_start());
}

KTEST(heap_tlb, a_scavenged_page_faults_on_a_cpu_that_cached_it)
{
	scavenge_and_reuse(false);
}

KTEST(heap_tlb, the_frame_waits_for_a_cpu_with_interrupts_off)
{
	scavenge_and_reuse(true);
}

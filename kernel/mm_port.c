/*
 * The kernel's implementation of mm/port.h: address space from the mm
 * region (layout.h), memory from the frame pool mapped through the kernel
 * page tables, irqsave spinlocks, and panic/printk for diagnostics.
 *
 * mm locks are the kernel's ranked ticket spinlocks (kernel/spinlock.c),
 * always taken irqsave; MM_RANK_HEAP maps to the leaf rank LOCK_RANK_HEAP.
 */
#include "mm/port.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "kernel/tlb.h"

_Static_assert(MM_PAGE_SIZE == PAGE_SIZE, "mm/ and the MMU agree on pages");

_Static_assert(sizeof(struct spinlock) <= sizeof(mm_lock_t),
               "mm_lock_t must hold the kernel's spinlock");

/* Next free address of the mm region; reservations are never returned. */
static struct spinlock reserve_lock =
        SPINLOCK_INIT("mm_reserve", LOCK_RANK_MM_RESERVE);
static uintptr_t mm_region_next = MM_REGION_BASE; /* by reserve_lock */

static struct spinlock *klock(const mm_lock_t *l)
{
	return (struct spinlock *)(uintptr_t)l->opaque;
}

void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank)
{
	spin_init(klock(l), name,
	          rank == MM_RANK_HEAP ? LOCK_RANK_HEAP : LOCK_RANK_FRAMES);
}

unsigned long mm_lock_acquire(mm_lock_t *l)
{
	return spin_lock_irqsave(klock(l));
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	spin_unlock_irqrestore(klock(l), irq_state);
}

bool mm_lock_held(const mm_lock_t *l)
{
	return spin_held(klock(l));
}

unsigned long mm_cpu_pin(void)
{
	unsigned long flags = read_rflags();
	cpu_cli();
	return flags;
}

void mm_cpu_unpin(unsigned long irq_state)
{
	if (irq_state & RFLAGS_IF)
		cpu_sti();
}

unsigned mm_cpu_id(void)
{
	return this_cpu()->id;
}

void *mm_port_reserve(size_t nbytes, size_t align)
{
	if (nbytes == 0 || nbytes % PAGE_SIZE || align < PAGE_SIZE ||
	    (align & (align - 1)))
		return NULL;
	unsigned long irq = spin_lock_irqsave(&reserve_lock);
	uintptr_t base = align_up(mm_region_next, align);
	void *r = NULL;
	if (base >= mm_region_next &&
	    base + nbytes <= MM_REGION_BASE + MM_REGION_SIZE &&
	    base + nbytes > base) {
		mm_region_next = base + nbytes;
		r = (void *)base;
	}
	spin_unlock_irqrestore(&reserve_lock, irq);
	return r;
}

/* Unmaps [addr, addr + nbytes) where mapped and frees the frames. */
static void unmap_range(uintptr_t addr, size_t nbytes)
{
	for (uintptr_t va = addr; va < addr + nbytes; va += PAGE_SIZE) {
		paddr_t pa;
		if (vm_unmap_page(va, &pa) == 0)
			frame_free(pa);
	}
}

bool mm_port_map(void *addr, size_t nbytes)
{
	uintptr_t base = (uintptr_t)addr;
	for (uintptr_t va = base; va < base + nbytes; va += PAGE_SIZE) {
		paddr_t pa = frame_alloc();
		if (!pa) {
			unmap_range(base, va - base);
			return false;
		}
		memset(phys_to_virt(pa), 0, PAGE_SIZE);
		int err = vm_map_page(va, pa, VM_WRITE);
		if (err) {
			frame_free(pa);
			unmap_range(base, va - base);
			if (err != -VM_ENOMEM)
				panic("mm_port_map: %#lx: error %d",
				      (unsigned long)va, -err);
			return false;
		}
	}
	return true;
}

void mm_port_unused(void *addr, size_t nbytes)
{
	/* Per batch: unmap, shoot down, then free. No CPU may still reach a
	 * frame when it goes back to the pool (DESIGN.md). */
	enum { BATCH = 64 };
	paddr_t frames[BATCH];
	uintptr_t base = (uintptr_t)addr, limit = base + nbytes;
	while (base < limit) {
		uintptr_t end = base + BATCH * PAGE_SIZE < limit
		                        ? base + BATCH * PAGE_SIZE
		                        : limit;
		unsigned n = 0;
		for (uintptr_t va = base; va < end; va += PAGE_SIZE)
			if (vm_unmap_page(va, &frames[n]) == 0)
				n++;
		if (n > 0)
			tlb_shootdown(base, (end - base) / PAGE_SIZE);
		for (unsigned i = 0; i < n; i++)
			frame_free(frames[i]);
		base = end;
	}
}

bool mm_port_used(void *addr, size_t nbytes)
{
	/* Only the pages that are not mapped need a frame: a range handed
	 * out may mix scavenged and backed pages. */
	uintptr_t base = (uintptr_t)addr;
	for (uintptr_t va = base; va < base + nbytes; va += PAGE_SIZE) {
		if (vm_translate(va, NULL, NULL))
			continue;
		paddr_t pa = frame_alloc();
		if (pa) {
			memset(phys_to_virt(pa), 0, PAGE_SIZE);
			if (vm_map_page(va, pa, VM_WRITE) == 0)
				continue;
			frame_free(pa);
		}
		/* Out of memory: take back what this call mapped. */
		for (uintptr_t v = base; v < va; v += PAGE_SIZE) {
			paddr_t f;
			if (vm_unmap_page(v, &f) == 0)
				frame_free(f);
		}
		return false;
	}
	return true;
}

bool mm_port_prepare(void *addr, size_t nbytes)
{
	return vm_prepare_range((uintptr_t)addr, nbytes) == 0;
}

void mm_unused_batch_init(struct mm_unused_batch *b)
{
	b->npages = 0;
	b->lo = UINTPTR_MAX;
	b->hi = 0;
}

void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b)
{
	uintptr_t base = (uintptr_t)addr;
	for (uintptr_t va = base; va < base + nbytes; va += PAGE_SIZE) {
		paddr_t pa;
		if (b->npages == MM_UNUSED_BATCH_PAGES)
			mm_panic("mm_port_unused_begin: batch full at %#lx",
			         va);
		if (vm_pte_clear(va, &pa) != 0)
			continue; /* already unmapped (never used) */
		b->cookie[b->npages++] = pa;
	}
	if (base < b->lo)
		b->lo = base;
	if (base + nbytes > b->hi)
		b->hi = base + nbytes;
}

void mm_port_unused_finish(struct mm_unused_batch *b)
{
	if (b->npages > 0 && b->hi > b->lo)
		tlb_shootdown(b->lo, (b->hi - b->lo) / PAGE_SIZE);
	for (size_t i = 0; i < b->npages; i++)
		frame_free(b->cookie[i]);
	mm_unused_batch_init(b);
}

size_t mm_port_free_pages(void)
{
	return frames_free_hint();
}

uint64_t mm_port_now_ns(void)
{
	return time_now_ns();
}

bool mm_port_thread_start(const char *name, void (*fn)(void *), void *arg)
{
	return thread_create(name, fn, arg, THREAD_ANY_CPU) != NULL;
}

uint64_t mm_port_thread_cpu_ns(void)
{
	unsigned long irq = read_rflags();
	cpu_cli();
	struct thread *t = thread_current();
	uint64_t ns = t->runtime_ns + (time_now_ns() - t->slice_start_ns);
	if (irq & RFLAGS_IF)
		cpu_sti();
	return ns;
}

/* An mm_event_t: a pending flag and at most one sleeping waiter, under a
 * spinlock of rank WAITQ (wake takes the waiter's run-queue lock). */
struct kernel_event {
	struct spinlock lock;
	bool pending;
	struct thread *waiter;
};

_Static_assert(sizeof(struct kernel_event) <= sizeof(mm_event_t),
               "mm_event_t must hold the kernel's event");

static struct kernel_event *kevent(mm_event_t *e)
{
	return (struct kernel_event *)(uintptr_t)e->opaque;
}

void mm_event_init(mm_event_t *e, const char *name)
{
	struct kernel_event *k = kevent(e);
	spin_init(&k->lock, name, LOCK_RANK_WAITQ);
	k->pending = false;
	k->waiter = NULL;
}

void mm_event_wait(mm_event_t *e, uint64_t timeout_ns)
{
	struct kernel_event *k = kevent(e);
	unsigned long irq = spin_lock_irqsave(&k->lock);
	if (!k->pending) {
		k->waiter = thread_current();
		thread_sleep_unlock(&k->lock, irq, timeout_ns);
		irq = spin_lock_irqsave(&k->lock);
		k->waiter = NULL;
	}
	k->pending = false;
	spin_unlock_irqrestore(&k->lock, irq);
}

void mm_event_wake(mm_event_t *e)
{
	struct kernel_event *k = kevent(e);
	unsigned long irq = spin_lock_irqsave(&k->lock);
	k->pending = true;
	if (k->waiter) {
		thread_wake(k->waiter);
		k->waiter = NULL;
	}
	spin_unlock_irqrestore(&k->lock, irq);
}

void mm_panic(const char *fmt, ...)
{
	static char msg[1024]; /* mm_panic does not return */
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	panic("mm: %s", msg);
}

void mm_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printk("mm: ");
	vprintk(fmt, ap);
	printk("\n");
	va_end(ap);
}

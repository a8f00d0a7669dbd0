/*
 * The kernel's implementation of mm/port.h: address space from the mm
 * region (layout.h), memory from the frame pool mapped through the kernel
 * page tables, irqsave spinlocks, and panic/printk for diagnostics.
 *
 * Until SMP arrives there is one CPU: mm_cpu_id is 0, and the spinlock is
 * a test-and-set lock with interrupts off. Rank checking and ticket locks
 * come with the SMP issue (kernel/spinlock.c).
 */
#include "mm/port.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/printk.h"
#include "kernel/string.h"

_Static_assert(MM_PAGE_SIZE == PAGE_SIZE, "mm/ and the MMU agree on pages");

struct kernel_mm_lock {
	atomic_uint locked;
	unsigned owner_cpu;
	const char *name;
	enum mm_lock_rank rank;
};

_Static_assert(sizeof(struct kernel_mm_lock) <= sizeof(mm_lock_t),
               "mm_lock_t must hold the kernel's lock");

/* Next free address of the mm region; reservations are never returned.
 * Protected by reserve_lock. */
static uintptr_t mm_region_next = MM_REGION_BASE;
static mm_lock_t reserve_lock;

static struct kernel_mm_lock *klock(const mm_lock_t *l)
{
	return (struct kernel_mm_lock *)(uintptr_t)l->opaque;
}

void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank)
{
	struct kernel_mm_lock *k = klock(l);
	atomic_store(&k->locked, 0);
	k->owner_cpu = ~0u;
	k->name = name;
	k->rank = rank;
}

unsigned long mm_lock_acquire(mm_lock_t *l)
{
	struct kernel_mm_lock *k = klock(l);
	unsigned long flags = read_rflags();
	cpu_cli();
	if (atomic_load_explicit(&k->locked, memory_order_relaxed) &&
	    k->owner_cpu == mm_cpu_id())
		panic("mm lock %s: recursive acquire on cpu %u", k->name,
		      mm_cpu_id());
	while (atomic_exchange_explicit(&k->locked, 1, memory_order_acquire))
		cpu_pause();
	k->owner_cpu = mm_cpu_id();
	return flags;
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	struct kernel_mm_lock *k = klock(l);
	if (!mm_lock_held(l))
		panic("mm lock %s: released by cpu %u, which does not hold it",
		      k->name, mm_cpu_id());
	k->owner_cpu = ~0u;
	atomic_store_explicit(&k->locked, 0, memory_order_release);
	if (irq_state & RFLAGS_IF)
		cpu_sti();
}

bool mm_lock_held(const mm_lock_t *l)
{
	const struct kernel_mm_lock *k = klock(l);
	return atomic_load_explicit(&k->locked, memory_order_relaxed) &&
	       k->owner_cpu == mm_cpu_id();
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
	return 0;
}

void *mm_port_reserve(size_t nbytes, size_t align)
{
	if (nbytes == 0 || nbytes % PAGE_SIZE || align < PAGE_SIZE ||
	    (align & (align - 1)))
		return NULL;
	static bool ready;
	if (!ready) {
		mm_lock_init(&reserve_lock, "mm_reserve", MM_RANK_FRAMES);
		ready = true;
	}
	unsigned long irq = mm_lock_acquire(&reserve_lock);
	uintptr_t base = align_up(mm_region_next, align);
	void *r = NULL;
	if (base >= mm_region_next &&
	    base + nbytes <= MM_REGION_BASE + MM_REGION_SIZE &&
	    base + nbytes > base) {
		mm_region_next = base + nbytes;
		r = (void *)base;
	}
	mm_lock_release(&reserve_lock, irq);
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
	/* One CPU: the local invlpg in vm_unmap_page is the whole shootdown. */
	unmap_range((uintptr_t)addr, nbytes);
}

bool mm_port_used(void *addr, size_t nbytes)
{
	return mm_port_map(addr, nbytes);
}

void mm_panic(const char *fmt, ...)
{
	char msg[256];
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

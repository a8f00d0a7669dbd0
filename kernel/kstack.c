/*
 * Kernel stacks in the kstack region (see kstack.h): slot i covers
 * [KSTACK_REGION_BASE + i * 64 KiB, +64 KiB); a bitmap records used slots.
 * Each slot has a generation, bumped when a stack in it is freed; a
 * struct kstack carries the generation it was allocated at, so a second
 * free of it (the slot free again, or another stack's by then) is told
 * apart from the first and refused before anything is unmapped; and the
 * number of pages its stack was made with, so that a free of fewer (a
 * struct kstack changed since) is refused too.
 * Locking: the kstack lock protects the slot bitmap, generations and page
 * counts only; mapping happens outside it on a slot the caller now owns.
 * Contexts: as kstack.h says of each function (kstack_free, which shoots
 * TLB entries down, is the one that needs a thread with interrupts on).
 */
#include "kstack.h"

#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/kstack_testing.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/tlb.h"

#define KSTACK_SLOTS 4096

/* Rank KSTACK, taken irqsave and alone; protects: */
static struct spinlock kstack_lock = SPINLOCK_INIT("kstack", LOCK_RANK_KSTACK);
static uint64_t slot_used[KSTACK_SLOTS / 64];
static uint32_t slot_gen[KSTACK_SLOTS];   /* bumped by each free */
static uint8_t slot_npages[KSTACK_SLOTS]; /* what its stack was made with */

/* Takes a free slot for a stack of npages; its generation goes to *gen.
 * -1 when none is left. */
static long slot_take(unsigned npages, uint32_t *gen)
{
	long slot = -1;
	unsigned long irq = spin_lock_irqsave(&kstack_lock);
	for (unsigned w = 0; w < KSTACK_SLOTS / 64 && slot < 0; w++) {
		if (~slot_used[w] == 0)
			continue;
		unsigned b = (unsigned)__builtin_ctzll(~slot_used[w]);
		slot_used[w] |= 1ull << b;
		slot = (long)(w * 64 + b);
		*gen = slot_gen[slot];
		slot_npages[slot] = (uint8_t)npages;
	}
	spin_unlock_irqrestore(&kstack_lock, irq);
	return slot;
}

/*
 * Starts the free of s: panics unless s is a stack of the region whose
 * slot is used at s's generation, then bumps the generation, so that a
 * second free of s (or one racing with this) is refused while the slot
 * stays used until slot_put. Returns the slot.
 */
static unsigned long slot_release_begin(const struct kstack *s)
{
	uintptr_t off = s->top - KSTACK_REGION_BASE;
	unsigned long slot = off / KSTACK_SLOT_SIZE - 1;
	/* A bottom off a page boundary would unmap a page too few (its
	 * frame lost, the slot returned with it mapped). */
	if (s->top <= KSTACK_REGION_BASE || off % KSTACK_SLOT_SIZE != 0 ||
	    slot >= KSTACK_SLOTS || s->bottom >= s->top ||
	    s->top - s->bottom > KSTACK_MAX_PAGES * PAGE_SIZE ||
	    s->bottom % PAGE_SIZE != 0 || s->guard != s->bottom - PAGE_SIZE)
		panic("kstack_free: stack 0x%lx-0x%lx (guard 0x%lx) is not a "
		      "kernel stack (a struct kstack that kstack_alloc did not "
		      "fill?)",
		      (unsigned long)s->bottom, (unsigned long)s->top,
		      (unsigned long)s->guard);
	unsigned long npages = (s->top - s->bottom) / PAGE_SIZE;
	unsigned long irq = spin_lock_irqsave(&kstack_lock);
	bool used = slot_used[slot / 64] & (1ull << (slot % 64));
	uint32_t gen = slot_gen[slot];
	unsigned made = slot_npages[slot];
	if (used && gen == s->gen && npages == made)
		slot_gen[slot]++;
	spin_unlock_irqrestore(&kstack_lock, irq);
	if (!used || gen != s->gen)
		panic("kstack_free: stack 0x%lx-0x%lx (slot %lu) was freed "
		      "already: %s (generation %u, the slot's %u)",
		      (unsigned long)s->bottom, (unsigned long)s->top, slot,
		      used ? "the slot holds another stack since"
		           : "the slot is free",
		      s->gen, gen);
	/* A bottom raised by whole pages passes the checks above, and would
	 * leave the pages below it mapped, their frames lost, in a slot free
	 * again: the next stack there fails to map or has no guard (review). */
	if (npages != made)
		panic("kstack_free: stack 0x%lx-0x%lx (slot %lu) has %lu "
		      "page%s, but kstack_alloc made it with %u (its struct "
		      "kstack changed since?)",
		      (unsigned long)s->bottom, (unsigned long)s->top, slot,
		      npages, npages == 1 ? "" : "s", made);
	return slot;
}

static void slot_put(unsigned long slot)
{
	unsigned long irq = spin_lock_irqsave(&kstack_lock);
	slot_used[slot / 64] &= ~(1ull << (slot % 64));
	spin_unlock_irqrestore(&kstack_lock, irq);
}

TEST_HOOK_DEFINE(kstack_testing_unmapping);

/*
 * Unmaps the npages pages below top and frees their frames, after every
 * CPU has forgotten them: another CPU that ran on this stack may still
 * hold TLB entries for it, and would read the frames' next owner's data
 * (DESIGN.md: a frame returns to the pool only after every CPU flushed it).
 * Thread context, interrupts on, unless shoot is false (nothing but this
 * CPU ever saw the pages).
 */
static void unmap_pages(uintptr_t top, unsigned npages, bool shoot)
{
	TEST_HOOK(kstack_testing_unmapping, top);
	paddr_t frames[KSTACK_MAX_PAGES];
	unsigned n = 0;
	for (unsigned i = 1; i <= npages; i++) {
		paddr_t pa;
		if (vm_unmap_page(top - i * PAGE_SIZE, &pa) == 0)
			frames[n++] = pa;
	}
	if (shoot && n > 0)
		tlb_shootdown(top - npages * PAGE_SIZE, npages);
	for (unsigned i = 0; i < n; i++)
		frame_free(frames[i]);
}

bool kstack_alloc(unsigned npages, struct kstack *out)
{
	if (npages == 0 || npages > KSTACK_MAX_PAGES)
		return false;
	uint32_t gen;
	long slot = slot_take(npages, &gen);
	if (slot < 0)
		return false;
	uintptr_t base =
	        KSTACK_REGION_BASE + (uintptr_t)slot * KSTACK_SLOT_SIZE;
	uintptr_t top = base + KSTACK_SLOT_SIZE;
	for (unsigned i = 1; i <= npages; i++) {
		paddr_t pa = frame_alloc();
		if (!pa || vm_map_page(top - i * PAGE_SIZE, pa, VM_WRITE)) {
			if (pa)
				frame_free(pa);
			unmap_pages(top, i - 1, false);
			slot_put((unsigned long)slot);
			return false;
		}
	}
	out->top = top;
	out->bottom = top - npages * PAGE_SIZE;
	out->guard = out->bottom - PAGE_SIZE;
	out->gen = gen;
	return true;
}

static void free_stack(const struct kstack *s, bool shoot)
{
	unsigned long slot = slot_release_begin(s);
	unmap_pages(s->top, (unsigned)((s->top - s->bottom) / PAGE_SIZE),
	            shoot);
	slot_put(slot);
}

void kstack_free(const struct kstack *s)
{
	free_stack(s, true);
}

void kstack_free_local(const struct kstack *s)
{
	free_stack(s, false);
}

/* The pages of slot's 64 KiB mapped, as a bit mask (bit i: the page i
 * pages above the slot's base, which is the guard's). */
static unsigned slot_mapped(unsigned long slot)
{
	uintptr_t base = KSTACK_REGION_BASE + slot * KSTACK_SLOT_SIZE;
	unsigned mapped = 0;
	for (unsigned i = 0; i < KSTACK_SLOT_SIZE / PAGE_SIZE; i++)
		if (vm_translate(base + i * PAGE_SIZE, NULL, NULL))
			mapped |= 1u << i;
	return mapped;
}

void kstack_check(void)
{
	const unsigned all = (unsigned)(KSTACK_SLOT_SIZE / PAGE_SIZE);
	for (unsigned long slot = 0; slot < KSTACK_SLOTS; slot++) {
		unsigned long irq = spin_lock_irqsave(&kstack_lock);
		bool used = slot_used[slot / 64] & (1ull << (slot % 64));
		unsigned npages = slot_npages[slot];
		spin_unlock_irqrestore(&kstack_lock, irq);
		unsigned long base =
		        KSTACK_REGION_BASE + slot * KSTACK_SLOT_SIZE;
		unsigned got = slot_mapped(slot);
		if (!used && got)
			panic("kstack_check: slot %lu (0x%lx) is free, but its "
			      "pages %#x are mapped (bit i: i pages above the "
			      "slot's base; a free that left them, or a stack "
			      "made in a slot it did not take?)",
			      slot, base, got);
		if (!used)
			continue;
		/* The stack is the top npages pages; the guard and the
		 * rest below stay unmapped. */
		unsigned want = npages == 0 || npages >= all
		                        ? ~0u
		                        : ((1u << all) - 1) &
		                                  ~((1u << (all - npages)) - 1);
		if (got != want)
			panic("kstack_check: slot %lu (0x%lx) holds a stack of "
			      "%u pages, but its mapped pages are %#x, not %#x "
			      "(bit i: i pages above the slot's base)",
			      slot, base, npages, got, want);
	}
}

bool kstack_is_guard(uintptr_t va)
{
	if (va >= (uintptr_t)__boot_stack_guard &&
	    va < (uintptr_t)__boot_stack_bottom)
		return true;
	if (va < KSTACK_REGION_BASE ||
	    va >= KSTACK_REGION_BASE + KSTACK_SLOTS * KSTACK_SLOT_SIZE)
		return false;
	uintptr_t off = va - KSTACK_REGION_BASE;
	unsigned long slot = off / KSTACK_SLOT_SIZE;
	if (!(slot_used[slot / 64] & (1ull << (slot % 64))))
		return false;
	/* Everything in a used slot below its lowest mapped page is guard. */
	return !vm_translate(align_down(va, PAGE_SIZE), NULL, NULL);
}

bool kstack_is_own_guard(uintptr_t va, uintptr_t sp)
{
	if (!kstack_is_guard(va))
		return false;
	/* The boot stack's guard lies below its bounds, and RSP may be in
	 * it already. */
	if (va >= (uintptr_t)__boot_stack_guard &&
	    va < (uintptr_t)__boot_stack_bottom)
		return sp >= (uintptr_t)__boot_stack_guard &&
		       sp < (uintptr_t)__boot_stack_top;
	/* A region stack's guard is the unmapped bottom of its slot, which
	 * kstack_bounds gives whole. */
	uintptr_t lo, hi;
	return kstack_bounds(sp, &lo, &hi) && va >= lo && va < hi;
}

bool kstack_bounds(uintptr_t sp, uintptr_t *lo, uintptr_t *hi)
{
	if (sp >= KSTACK_REGION_BASE &&
	    sp - KSTACK_REGION_BASE < KSTACK_REGION_SIZE) {
		*lo = sp & ~(uintptr_t)(KSTACK_SLOT_SIZE - 1);
		*hi = *lo + KSTACK_SLOT_SIZE;
		return true;
	}
	if (sp >= (uintptr_t)__boot_stack_bottom &&
	    sp < (uintptr_t)__boot_stack_top) {
		*lo = (uintptr_t)__boot_stack_bottom;
		*hi = (uintptr_t)__boot_stack_top;
		return true;
	}
	return false;
}

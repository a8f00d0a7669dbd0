/*
 * The physical frame source (see frames.h): two bitmaps over [0, ram_top),
 * one bit per frame. "managed" says the frame belongs to the pool; "free"
 * says it is free now. A free of a frame that is not managed or already
 * free is caught and reported. Allocation is next-fit over 64-bit words.
 *
 * The bitmaps live in the first conventional region large enough for them,
 * reached through the direct map (the loader's, then the kernel's).
 */
#include "frames.h"

#include "kernel/bootinfo.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"

/* Immutable after frames_init(): */
static uint64_t *managed_bits, *free_bits;
static size_t nwords; /* words in each bitmap */
static paddr_t bitmap_base, bitmap_limit;

/* Protected by frames_lock: */
static struct spinlock frames_lock = SPINLOCK_INIT("frames", LOCK_RANK_FRAMES);
static size_t hint_word, nfree, nmanaged;

static inline size_t frame_index(paddr_t pa)
{
	return (size_t)(pa / PAGE_SIZE);
}

static void add_range(paddr_t base, paddr_t limit)
{
	base = align_up(base, PAGE_SIZE);
	limit = align_down(limit, PAGE_SIZE);
	if (base < FRAMES_LOW_LIMIT)
		base = FRAMES_LOW_LIMIT;
	for (paddr_t pa = base; pa < limit; pa += PAGE_SIZE) {
		/* Never the bitmaps themselves, never the kernel image. */
		if ((pa >= bitmap_base && pa < bitmap_limit) ||
		    (pa >= boot_state.kernel_phys_base &&
		     pa < boot_state.kernel_phys_limit))
			continue;
		size_t i = frame_index(pa);
		uint64_t bit = 1ull << (i % 64);
		if (managed_bits[i / 64] & bit)
			continue;
		managed_bits[i / 64] |= bit;
		free_bits[i / 64] |= bit;
		nmanaged++;
		nfree++;
	}
}

void frames_init(void)
{
	size_t nframes = frame_index(align_up(boot_state.ram_top, PAGE_SIZE));
	nwords = (nframes + 63) / 64;
	size_t bytes = align_up(2 * nwords * sizeof(uint64_t), PAGE_SIZE);
	for (size_t i = 0; i < boot_state.nregions && !bitmap_limit; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		paddr_t base =
		        r->base < FRAMES_LOW_LIMIT ? FRAMES_LOW_LIMIT : r->base;
		if (r->type == EFI_CONVENTIONAL_MEMORY && r->limit > base &&
		    r->limit - base >= bytes) {
			bitmap_base = base;
			bitmap_limit = base + bytes;
		}
	}
	if (!bitmap_limit)
		panic("frames: no conventional region holds the %zu-byte "
		      "bitmaps",
		      bytes);
	managed_bits = phys_to_virt(bitmap_base);
	free_bits = managed_bits + nwords;
	memset(managed_bits, 0, bytes);
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (r->type == EFI_CONVENTIONAL_MEMORY)
			add_range(r->base, r->limit);
	}
}

void frames_reclaim_boot_memory(void)
{
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (mem_type_usable(r->type) &&
		    r->type != EFI_CONVENTIONAL_MEMORY)
			add_range(r->base, r->limit);
	}
}

paddr_t frame_alloc(void)
{
	paddr_t pa = 0;
	unsigned long irq = spin_lock_irqsave(&frames_lock);
	for (size_t n = 0; n < nwords; n++) {
		size_t w = (hint_word + n) % nwords;
		if (free_bits[w] == 0)
			continue;
		unsigned bit = (unsigned)__builtin_ctzll(free_bits[w]);
		free_bits[w] &= ~(1ull << bit);
		hint_word = w;
		nfree--;
		pa = ((paddr_t)w * 64 + bit) * PAGE_SIZE;
		break;
	}
	spin_unlock_irqrestore(&frames_lock, irq);
	return pa;
}

void frame_free(paddr_t pa)
{
	size_t i = frame_index(pa);
	if (pa % PAGE_SIZE || i / 64 >= nwords ||
	    !(managed_bits[i / 64] & (1ull << (i % 64))))
		panic("frames: free of %#llx, which is not a frame of the pool",
		      (unsigned long long)pa);
	unsigned long irq = spin_lock_irqsave(&frames_lock);
	bool was_free = free_bits[i / 64] & (1ull << (i % 64));
	free_bits[i / 64] |= 1ull << (i % 64);
	if (!was_free)
		nfree++;
	spin_unlock_irqrestore(&frames_lock, irq);
	if (was_free)
		panic("frames: double free of frame %#llx",
		      (unsigned long long)pa);
}

size_t frames_free_count(void)
{
	return nfree;
}

size_t frames_managed_count(void)
{
	return nmanaged;
}

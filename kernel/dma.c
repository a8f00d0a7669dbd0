/*
 * DMA buffers (dma.h): runs of frames from the pool, reached through the
 * direct map, and a table of the live ones so that a free can check its
 * argument.
 *
 * Representation: live[] holds a record per live buffer (its direct-map
 * address and the nbytes it was asked for; va 0: a free slot), searched
 * linearly: at most DMA_MAX_BUFFERS, and a driver holds a few (rings,
 * descriptor tables) for long. freed[] remembers the last DMA_FREED_RING
 * buffers given back, so that a second free of one is named a double
 * free rather than a foreign pointer (until its address is handed out
 * again, when it is live and the second free is taken as the owner's).
 *
 * Invariants: 1. every live record's frames are allocated in the pool,
 * [phys, phys + pages(nbytes)); 2. no two live records overlap; 3.
 * nlive is the count of records with va != 0.
 *
 * Locking: table_lock (rank DMA, irqsave) protects live[], freed[],
 * freed_next and nlive. It is never held across a call into the frame
 * pool or a print: dma_alloc takes the frames first and then a slot;
 * dma_free takes the record out and then gives the frames back.
 */
#include "dma.h"

#include <stdatomic.h>

#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/shrinker.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"

#define DMA_FREED_RING 16

struct dma_record {
	uintptr_t va; /* direct-map address; 0: slot free */
	size_t nbytes;
};

static struct spinlock table_lock = SPINLOCK_INIT("dma", LOCK_RANK_DMA);
/* Protected by table_lock: */
static struct dma_record live[DMA_MAX_BUFFERS];
static uintptr_t freed[DMA_FREED_RING];
static unsigned freed_next;
static _Atomic size_t nlive; /* written under table_lock; read racily */

static size_t pages_of(size_t nbytes)
{
	return nbytes / PAGE_SIZE + (nbytes % PAGE_SIZE != 0);
}

/* Why a request cannot be met whatever the pool holds, or NULL. */
static const char *bad_request(size_t nbytes, size_t align, paddr_t limit,
                               unsigned flags)
{
	if (nbytes == 0)
		return "size 0";
	if (nbytes > SIZE_MAX - (PAGE_SIZE - 1))
		return "size too large to round up to whole pages";
	if (align == 0 || (align & (align - 1)))
		return "alignment not a power of two";
	if (flags & ~(unsigned)DMA_ZERO)
		return "unknown flags";
	if (limit <= FRAMES_LOW_LIMIT ||
	    (limit - FRAMES_LOW_LIMIT) / PAGE_SIZE < pages_of(nbytes))
		return "limit leaves no room above the pool's lowest frame "
		       "(1 MiB)";
	return NULL;
}

/* Puts a record in a free slot; false if the table is full. */
static bool record(uintptr_t va, size_t nbytes)
{
	bool ok = false;
	unsigned long irq = spin_lock_irqsave(&table_lock);
	for (size_t i = 0; i < DMA_MAX_BUFFERS && !ok; i++) {
		if (live[i].va)
			continue;
		live[i] = (struct dma_record){.va = va, .nbytes = nbytes};
		atomic_fetch_add(&nlive, 1);
		ok = true;
	}
	spin_unlock_irqrestore(&table_lock, irq);
	return ok;
}

void *dma_alloc(size_t nbytes, size_t align, paddr_t limit, unsigned flags,
                paddr_t *phys)
{
	const char *why = bad_request(nbytes, align, limit, flags);
	if (why) {
		printk("dma_alloc(%zu, align %#zx, limit %#llx, flags %#x): "
		       "refused: %s\n",
		       nbytes, align, (unsigned long long)limit, flags, why);
		return NULL;
	}
	size_t npages = pages_of(nbytes);
	size_t align_pages = align > PAGE_SIZE ? align / PAGE_SIZE : 1;
	bool injected;
	paddr_t pa = frames_alloc_contig_within(npages, align_pages, limit,
	                                        &injected);
	/* Short of frames, a caller that may sleep has the shrinkers and the
	 * heap give back what they keep, and asks once more (shrinker.h);
	 * not for a search longer than the whole pool, which no reclaim
	 * serves (it emptied every shrinker's cache for nothing). */
	bool fits = npages + (align_pages - 1) <= frames_managed_count();
	if (!pa && !injected && fits && reclaim_frames())
		pa = frames_alloc_contig_within(npages, align_pages, limit,
		                                &injected);
	if (!pa && injected) {
		/* As smp.no_ist's line names the option that withheld the
		 * stacks: a developer proving a driver's error path must
		 * tell it from a real shortage. */
		printk("dma_alloc(%zu, align %#zx, limit %#llx): failure "
		       "injected by the frame pool's fault injection (mmfail "
		       "frame), not a shortage\n",
		       nbytes, align, (unsigned long long)limit);
		return NULL;
	}
	if (!pa) {
		/* The search is for the size and the alignment's slack
		 * together (frames.h): say so, or a pool of many free
		 * frames seems to lack "1 frame". */
		printk("dma_alloc(%zu, align %#zx, limit %#llx): no run of "
		       "%zu free frames fits (%zu for the buffer, %zu of "
		       "slack for the alignment)\n",
		       nbytes, align, (unsigned long long)limit,
		       npages + (align_pages - 1), npages, align_pages - 1);
		return NULL;
	}
	void *va = phys_to_virt(pa);
	if (!record((uintptr_t)va, nbytes)) {
		frames_free_contig(pa, npages);
		printk("dma_alloc(%zu): refused: %u buffers live, the most "
		       "the table holds\n",
		       nbytes, DMA_MAX_BUFFERS);
		return NULL;
	}
	if (flags & DMA_ZERO)
		memset(va, 0, npages * PAGE_SIZE);
	*phys = pa;
	return va;
}

/* Why (p, nbytes) is not a live buffer's; with take, the record is
 * removed when it is. Locking: table_lock must be held. */
static const char *find_locked(uintptr_t p, size_t nbytes, bool take)
{
	for (size_t i = 0; i < DMA_MAX_BUFFERS; i++) {
		struct dma_record *r = &live[i];
		if (!r->va || p < r->va ||
		    p - r->va >= pages_of(r->nbytes) * PAGE_SIZE)
			continue;
		if (p != r->va)
			return "inside a DMA buffer, not its start";
		if (nbytes != r->nbytes)
			return "not the size the buffer was allocated with";
		if (take) {
			r->va = 0;
			atomic_fetch_sub(&nlive, 1);
			freed[freed_next++ % DMA_FREED_RING] = p;
		}
		return NULL;
	}
	for (size_t i = 0; i < DMA_FREED_RING; i++)
		if (freed[i] == p)
			return "freed already (a double free)";
	return "not a buffer dma_alloc returned";
}

static const char *check(const void *p, size_t nbytes, bool take)
{
	unsigned long irq = spin_lock_irqsave(&table_lock);
	const char *why = find_locked((uintptr_t)p, nbytes, take);
	spin_unlock_irqrestore(&table_lock, irq);
	return why;
}

const char *dma_free_check(const void *p, size_t nbytes)
{
	return p ? check(p, nbytes, false) : NULL;
}

void dma_free(void *p, size_t nbytes)
{
	if (!p)
		return;
	const char *why = check(p, nbytes, true);
	if (why)
		panic("dma_free(%p, %zu): %s", p, nbytes, why);
	frames_free_contig((uintptr_t)p - DIRECT_MAP_BASE, pages_of(nbytes));
}

size_t dma_live_count(void)
{
	return atomic_load(&nlive);
}

bool kvirt_to_phys(const void *p, paddr_t *pa)
{
	return vm_translate((uintptr_t)p, pa, NULL);
}

const char *kvirt_range_to_phys(const void *p, size_t nbytes, paddr_t *pa)
{
	uintptr_t va = (uintptr_t)p;
	if (nbytes == 0 || va + nbytes - 1 < va)
		return "empty or wrapping range";
	paddr_t first, at;
	if (!vm_translate(va, &first, NULL))
		return "not mapped";
	/* Each later page must map right after the first. */
	uintptr_t last = align_down(va + nbytes - 1, PAGE_SIZE);
	for (uintptr_t pg = align_down(va, PAGE_SIZE) + PAGE_SIZE;
	     pg && pg <= last; pg += PAGE_SIZE) {
		if (!vm_translate(pg, &at, NULL))
			return "not mapped";
		if (at != first + (pg - va))
			return "not physically contiguous";
	}
	*pa = first;
	return NULL;
}

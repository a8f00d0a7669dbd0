/*
 * DMA buffers (dma.h): runs of frames from the pool, reached through the
 * direct map, and a table of the live ones so that a free can check its
 * argument.
 *
 * Representation: live[] holds a record per live buffer (its direct-map
 * address and the nbytes it was asked for; va 0: a free slot), searched
 * linearly: at most DMA_MAX_BUFFERS, and a driver holds a few (rings,
 * descriptor tables) for long. freed[] remembers the last DMA_FREED_RING
 * buffers given back (address and size), so that a second free of one
 * is named a double free rather than a foreign pointer (until its
 * address is handed out again, when it is live and the second free is
 * taken as the owner's), and addrinfo names a use after the free.
 *
 * Invariants: 1. every live record's frames are allocated in the pool,
 * [phys, phys + pages(nbytes)); 2. no two live records overlap; 3.
 * nlive is the count of records with va != 0.
 *
 * Locking: table_lock (rank DMA, irqsave) serialises the writers of
 * live[], freed[], freed_next and nlive. It is never held across a call
 * into the frame pool or a print: dma_alloc takes the frames first and
 * then a slot; dma_free takes the record out and then gives the frames
 * back. The usercopy check and addrinfo read the table with no lock
 * (dma_find: their contexts may hold any lock): a record's va is
 * cleared, its nbytes stored, then its va (release), and a reader reads
 * va again after nbytes, skipping a record that changed meanwhile (only
 * a slot freed and filled again at the same address, under the reader,
 * can pair the old nbytes with the new record).
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
	_Atomic uintptr_t va; /* direct-map address; 0: slot free */
	_Atomic size_t nbytes;
};

static struct spinlock table_lock = SPINLOCK_INIT("dma", LOCK_RANK_DMA);
/* Protected by table_lock: */
static struct dma_record live[DMA_MAX_BUFFERS];
static struct dma_record freed[DMA_FREED_RING];
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

/* Fills record r for dma_find's readers: nbytes before va. Locking:
 * table_lock must be held. */
static void put(struct dma_record *r, uintptr_t va, size_t nbytes)
{
	atomic_store_explicit(&r->va, 0, memory_order_relaxed);
	atomic_store_explicit(&r->nbytes, nbytes, memory_order_release);
	atomic_store_explicit(&r->va, va, memory_order_release);
}

/* Puts a record in a free slot; false if the table is full. */
static bool record(uintptr_t va, size_t nbytes)
{
	bool ok = false;
	unsigned long irq = spin_lock_irqsave(&table_lock);
	for (size_t i = 0; i < DMA_MAX_BUFFERS && !ok; i++) {
		if (atomic_load_explicit(&live[i].va, memory_order_relaxed))
			continue;
		put(&live[i], va, nbytes);
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
		uintptr_t va =
		        atomic_load_explicit(&r->va, memory_order_relaxed);
		size_t rb =
		        atomic_load_explicit(&r->nbytes, memory_order_relaxed);
		if (!va || p < va || p - va >= pages_of(rb) * PAGE_SIZE)
			continue;
		if (p != va)
			return "inside a DMA buffer, not its start";
		if (nbytes != rb)
			return "not the size the buffer was allocated with";
		if (take) {
			atomic_store_explicit(&r->va, 0, memory_order_release);
			atomic_fetch_sub(&nlive, 1);
			put(&freed[freed_next++ % DMA_FREED_RING], p, rb);
		}
		return NULL;
	}
	for (size_t i = 0; i < DMA_FREED_RING; i++)
		if (atomic_load_explicit(&freed[i].va, memory_order_relaxed) ==
		    p)
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

/* Whether record r, read with no lock, is whole and its pages meet
 * [a, a + n): *out gets it. */
static bool meets(struct dma_record *r, uintptr_t a, size_t n,
                  struct dma_extent *out)
{
	uintptr_t va = atomic_load_explicit(&r->va, memory_order_acquire);
	if (!va)
		return false;
	size_t nbytes = atomic_load_explicit(&r->nbytes, memory_order_acquire);
	/* Read again: a record emptied and filled meanwhile is skipped
	 * (its new owner's buffer was not handed out when the caller's
	 * range was formed). */
	if (atomic_load_explicit(&r->va, memory_order_acquire) != va)
		return false;
	size_t bytes = pages_of(nbytes) * PAGE_SIZE;
	if (a + n <= va || a >= va + bytes)
		return false;
	*out = (struct dma_extent){.va = va, .nbytes = nbytes, .bytes = bytes};
	return true;
}

bool dma_find(const void *p, size_t n, struct dma_extent *out)
{
	uintptr_t a = (uintptr_t)p;
	if (n == 0 || a + n < a)
		return false;
	for (size_t i = 0; i < DMA_MAX_BUFFERS; i++)
		if (meets(&live[i], a, n, out)) {
			out->freed = false;
			return true;
		}
	for (size_t i = 0; i < DMA_FREED_RING; i++)
		if (meets(&freed[i], a, n, out)) {
			out->freed = true;
			return true;
		}
	return false;
}

const char *dma_copy_refused(const void *p, size_t n, bool to_user)
{
	struct dma_extent e;
	uintptr_t a = (uintptr_t)p;
	/* Buffers lie in the direct map; a copy at a stack or the image,
	 * or with no buffer live, skips the table's 256 slots. */
	if (a - DIRECT_MAP_BASE >= DIRECT_MAP_SIZE ||
	    !atomic_load_explicit(&nlive, memory_order_relaxed))
		return NULL;
	/* A freed buffer's frames may serve anyone now: only the live
	 * table judges. */
	for (size_t i = 0; n && a + n > a && i < DMA_MAX_BUFFERS; i++) {
		if (!meets(&live[i], a, n, &e) ||
		    (a >= e.va && a + n <= e.va + e.bytes))
			continue;
		printk("usercopy: a copy %s of %zu bytes at %p leaves DMA "
		       "buffer %#lx (%zu bytes, %zu pages): %s\n",
		       to_user ? "to user" : "from user", n, p, e.va, e.nbytes,
		       (size_t)(e.bytes / PAGE_SIZE),
		       a < e.va ? "it starts before the buffer"
		                : "it runs past the buffer's last page");
		return "leaves its DMA buffer";
	}
	return NULL;
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

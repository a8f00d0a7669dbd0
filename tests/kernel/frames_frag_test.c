/*
 * Physical fragmentation against contiguous runs: the kernel heap maps
 * its arena frame by frame (kernel/mm_port.c) and gives frames back as
 * it scavenges, so after churn its live pages, and the page tables and
 * metadata its growth took, lie scattered through the pool. This fills
 * 64 MiB of the pool through kmalloc (mixed sizes, a third of
 * them large), frees every other object, gives every free page back,
 * then frees the rest, and at each step reports the free frames, the
 * largest free run and whether dma_alloc of 64 KiB, 1 MiB and 2 MiB
 * (aligned to their size, below 4 GiB) succeeds (figures: docs/DESIGN.md,
 * "Physical contiguity and DMA"). It asserts that a run is never longer
 * than the free count, that every object freed gives the pool back all
 * but what the heap keeps for good (page tables, metadata), and that this
 * kept part does not cut the pool into short runs: with everything
 * freed, the largest run is within 8 MiB of what it was before
 * (frame_alloc_lasting; before it, 58 MiB shorter on 512 MiB).
 */
#include "kernel/dma.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ktest.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"

#define FRAG_MAX_OBJS 16384
/* The fill: 64 MiB, or three quarters of the pool if that is less. The
 * heap's growth lasts, and later tests assume a heap grown by less than
 * 128 MiB (shell_heapmap's row) and frames to back every grown chunk
 * (frames_inject's growth sweep). The docs' 512 MiB figures filled three
 * quarters in a one-off run. */
#define FRAG_FILL_PAGES  16384
#define FRAG_BLOCK_PAGES 512 /* 2 MiB */

static void *frag_objs[FRAG_MAX_OBJS];

/* The longest run of free frames now (frames_longest_free_run, from the
 * pool's summaries: a bisection on frames_alloc_contig took 40 s of a
 * frames.debug_fill run, which fills every frame a probe gave back),
 * checked by taking it whole once: the pool must have such a run. *end
 * is where the lowest run that long ends (0 if there is none). */
static size_t largest_free_run(paddr_t *end)
{
	size_t n = frames_longest_free_run();
	paddr_t pa = n ? frames_alloc_contig(n) : 0;
	KEXPECT(!n || pa);
	if (pa)
		frames_free_contig(pa, n);
	*end = pa ? pa + n * PAGE_SIZE : 0;
	return n;
}

/* Whether dma_alloc of nbytes, aligned to nbytes, below 4 GiB succeeds. */
static bool dma_fits(size_t nbytes)
{
	paddr_t phys;
	void *p = dma_alloc(nbytes, nbytes, DMA_LIMIT_32BIT, 0, &phys);
	if (p)
		dma_free(p, nbytes);
	return p != NULL;
}

struct frag_figures {
	size_t free_pages, run_pages;
	paddr_t run_end;
};

static struct frag_figures frag_report(const char *step)
{
	struct frag_figures f = {.free_pages = frames_free_count()};
	f.run_pages = largest_free_run(&f.run_end);
	ktest_diag("%s: %zu KiB free, largest run %zu KiB; dma 64K %s, 1M "
	           "%s, 2M %s",
	           step, f.free_pages * 4, f.run_pages * 4,
	           dma_fits(64 << 10) ? "ok" : "FAILS",
	           dma_fits(1 << 20) ? "ok" : "FAILS",
	           dma_fits(2 << 20) ? "ok" : "FAILS");
	return f;
}

/* A size: two in three small (16 B to 4 KiB), one in three large (8 KiB
 * to 256 KiB), from a fixed sequence. */
static size_t frag_size(uint64_t *seed)
{
	*seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
	uint64_t r = *seed >> 33;
	if (r % 3)
		return 16 + (r >> 2) % 4096;
	return 8192 + (r >> 2) % (248 << 10);
}

/* kmallocs until left frames are free; returns the count. */
static size_t frag_fill(size_t left)
{
	uint64_t seed = 42;
	size_t n = 0;
	while (n < FRAG_MAX_OBJS && frames_free_count() > left) {
		size_t size = frag_size(&seed);
		frag_objs[n] = kmalloc(size, 0);
		if (!frag_objs[n])
			break;
		memset(frag_objs[n], 0x6b, size);
		n++;
	}
	return n;
}

/* Frees every other object of the n, from first on, clearing their
 * slots (heap_leaks, later, scans .bss for pointers to freed objects),
 * and lets the heap give every free page back. */
static void frag_free_from(size_t first, size_t n)
{
	for (size_t i = first; i < n; i += 2) {
		kfree(frag_objs[i]);
		frag_objs[i] = NULL;
	}
	heap_settle();
}

KTEST(frames_frag, churn_report)
{
	heap_threads_stop();
	heap_settle();
	struct frag_figures f0 = frag_report("before");
	KEXPECT(f0.run_pages <= f0.free_pages);
	size_t fill = FRAG_FILL_PAGES < f0.free_pages / 4 * 3
	                      ? FRAG_FILL_PAGES
	                      : f0.free_pages / 4 * 3;
	size_t n = frag_fill(f0.free_pages - fill);
	ktest_diag("filled with %zu objects", n);
	struct frag_figures f1 = frag_report("filled");
	KEXPECT(f1.run_pages <= f1.free_pages);
	frag_free_from(0, n);
	struct frag_figures f2 = frag_report("every other freed");
	KEXPECT(f2.run_pages <= f2.free_pages);
	KEXPECT(f2.free_pages > f1.free_pages);
	frag_free_from(1, n);
	struct frag_figures f3 = frag_report("all freed");
	KEXPECT(f3.run_pages <= f3.free_pages);
	/* What the growth took for good: page tables, span map, palloc
	 * metadata, the heaps' atomic reserves: well under a sixteenth. */
	size_t kept = f0.free_pages > f3.free_pages
	                      ? f0.free_pages - f3.free_pages
	                      : 0;
	ktest_diag("kept by the heap for good: %zu KiB", kept * 4);
	/* With mm.kasan, its shadow too: an eighth of the arena touched,
	 * mapped for good (kernel/kasan.c). */
	size_t used = f0.free_pages - f1.free_pages;
	KEXPECT(kept < used / 16 + (kasan_enabled() ? used / 8 : 0));
	/* Nothing is live: the frames the heap keeps must not cut the pool
	 * it gave back into short runs (frame_alloc_lasting): the largest
	 * run is within four 2 MiB blocks of what it was, and a buffer that
	 * long less 10 MiB, 2 MiB aligned, fits below 4 GiB, or below the
	 * end of that run where it lies above 4 GiB: with more than 4 GiB
	 * of RAM (q35 keeps 2 GiB below 4 GiB beside its PCI hole, from 2.75
	 * GiB up) the longest run is above, and at -m 5G no run below 4 GiB
	 * could hold it ("dma_alloc(3210739712, align 0x200000, limit
	 * 0x100000000): no run of 784383 free frames fits"). */
	KEXPECT(f3.run_pages + 4 * FRAG_BLOCK_PAGES >= f0.run_pages);
	size_t big_bytes =
	        f0.run_pages > 5 * FRAG_BLOCK_PAGES
	                ? (f0.run_pages - 5 * FRAG_BLOCK_PAGES) * PAGE_SIZE
	                : 2 << 20;
	paddr_t limit =
	        f0.run_end > DMA_LIMIT_32BIT ? f0.run_end : DMA_LIMIT_32BIT;
	paddr_t phys;
	void *big = dma_alloc(big_bytes, 2 << 20, limit, 0, &phys);
	KEXPECT(big != NULL);
	if (big)
		dma_free(big, big_bytes);
	KEXPECT(heap_threads_start());
	frames_check();
}

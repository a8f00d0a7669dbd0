/*
 * The frame source: its totals match the memory map, and allocating every
 * frame then freeing them all returns the pool to the same count.
 */
#include "arch/x86_64/paging.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"

KTEST(frames, totals_match_memory_map)
{
	uint64_t usable = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (!mem_type_usable(r->type))
			continue;
		paddr_t base =
		        r->base < FRAMES_LOW_LIMIT ? FRAMES_LOW_LIMIT : r->base;
		if (r->limit > base)
			usable += (r->limit - base) / PAGE_SIZE;
	}
	uint64_t image =
	        (boot_state.kernel_phys_limit - boot_state.kernel_phys_base) /
	        PAGE_SIZE;
	/* Managed = usable RAM above 1 MiB - kernel image - pool metadata. */
	uint64_t meta = frames_metadata_bytes() / PAGE_SIZE;
	KEXPECT(meta > 0);
	KEXPECT_EQ(frames_managed_count(), usable - image - meta);
	KEXPECT(frames_free_count() <= frames_managed_count());
	KEXPECT(frames_free_count() > frames_managed_count() / 2);
	frames_check();
}

/* Pages of [base, limit) at or above 1 MiB and outside the kernel image. */
static uint64_t pages_the_pool_may_take(paddr_t base, paddr_t limit)
{
	if (base < FRAMES_LOW_LIMIT)
		base = FRAMES_LOW_LIMIT;
	if (limit <= base)
		return 0;
	uint64_t n = (limit - base) / PAGE_SIZE;
	paddr_t lo = base > boot_state.kernel_phys_base
	                     ? base
	                     : boot_state.kernel_phys_base;
	paddr_t hi = limit < boot_state.kernel_phys_limit
	                     ? limit
	                     : boot_state.kernel_phys_limit;
	return hi > lo ? n - (hi - lo) / PAGE_SIZE : n;
}

/* The boot line's "reclaimed from loader and boot services" (main.c) is
 * this count: until a review it summed the regions whole, the kernel
 * image (loader data) and boot memory below 1 MiB with them, which the
 * pool never takes (2.4 MiB more than it took under OVMF). */
KTEST(frames, reclaimed_count_leaves_out_the_image_and_the_first_mib)
{
	uint64_t want = 0, whole = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (!mem_type_usable(r->type) ||
		    r->type == EFI_CONVENTIONAL_MEMORY)
			continue;
		want += pages_the_pool_may_take(r->base, r->limit);
		whole += (r->limit - r->base) / PAGE_SIZE;
	}
	ktest_diag("reclaimed %zu pages of %llu in the regions",
	           frames_reclaimed_count(), (unsigned long long)whole);
	KEXPECT(frames_boot_memory_reclaimed());
	KEXPECT_EQ(frames_reclaimed_count(), want);
	/* The image is loader data: the regions hold more than the pool. */
	KEXPECT(want < whole);
}

KTEST(frames, alloc_all_then_free_all)
{
	/* The heap's scavenger must not give frames back meanwhile. */
	heap_settle();
	size_t baseline = frames_free_count();
	/* Chain the allocated frames through their first word. */
	paddr_t head = 0;
	size_t n = 0;
	bool in_range = true, low = false;
	for (paddr_t pa; (pa = frame_alloc()) != 0; n++) {
		in_range &= pa < boot_state.ram_top && pa % PAGE_SIZE == 0;
		low |= pa < FRAMES_LOW_LIMIT;
		*(paddr_t *)phys_to_virt(pa) = head;
		head = pa;
	}
	KEXPECT_EQ(n, baseline);
	KEXPECT_EQ(frames_free_count(), 0);
	KEXPECT(in_range);
	KEXPECT(!low);
	KEXPECT_EQ(frame_alloc(), 0); /* empty pool says so */
	frames_refill(head);
	KEXPECT_EQ(frames_free_count(), baseline);
	frames_check();
}

KTEST(frames, frames_are_distinct_and_reusable)
{
	paddr_t a = frame_alloc(), b = frame_alloc();
	KASSERT(a && b);
	KEXPECT_NE(a, b);
	*(volatile uint64_t *)phys_to_virt(a) = 1;
	*(volatile uint64_t *)phys_to_virt(b) = 2;
	KEXPECT_EQ(*(volatile uint64_t *)phys_to_virt(a), 1);
	heap_settle(); /* the heap's threads must not move the pool meanwhile */
	size_t before = frames_free_count();
	frame_free(a);
	frame_free(b);
	KEXPECT_EQ(frames_free_count(), before + 2);
}

/* frames.debug_fill (test-kernel-smp1 boots with it): a frame freed
 * holds FRAMES_DEBUG_FILL in every byte, whatever its owner left, and so
 * does every frame handed out (the allocation checks it, and panics on a
 * frame written while free), so that a user taking frames for zero reads
 * garbage in every run with it (the whole kernel suite passes so). The
 * frames taken back need not be the ones freed: another CPU may take
 * those meanwhile, and any free frame holds the fill. */
KTEST(frames, debug_fill_leaves_garbage_in_free_frames)
{
	if (!cmdline_flag("frames.debug_fill"))
		KTEST_SKIP("boots without frames.debug_fill");
	paddr_t a = frame_alloc(), b = frames_alloc_contig(2);
	KASSERT(a && b);
	memset(phys_to_virt(a), 0, PAGE_SIZE);
	memset(phys_to_virt(b), 0, 2 * PAGE_SIZE);
	frame_free(a);
	frames_free_contig(b, 2);
	a = frame_alloc();
	b = frames_alloc_contig(2);
	KASSERT(a && b);
	size_t filled = 0;
	for (size_t k = 0; k < PAGE_SIZE; k++)
		filled += ((uint8_t *)phys_to_virt(a))[k] == FRAMES_DEBUG_FILL;
	for (size_t k = 0; k < 2 * PAGE_SIZE; k++)
		filled += ((uint8_t *)phys_to_virt(b))[k] == FRAMES_DEBUG_FILL;
	KEXPECT_EQ(filled, 3 * PAGE_SIZE);
	frame_free(a);
	frames_free_contig(b, 2);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness, booted with
 * frames.debug_fill): a word written into a frame after its free must
 * panic naming the frame when the pool hands it out again. */
KTEST(demo, frame_written_after_free)
{
	paddr_t a = frame_alloc();
	KASSERT(a != 0);
	frame_free(a);
	((volatile uint64_t *)phys_to_virt(a))[3] = 0x1234;
	/* The lowest free frame first: a again, unless another CPU took
	 * it; take until it comes. */
	for (unsigned i = 0; i < 4096 && frame_alloc() != a; i++)
		;
	ktest_fail_at(__FILE__, __LINE__,
	              "a frame written while free was handed out");
}
#endif

KTEST(frames, contiguous_runs_are_lowest_first)
{
	paddr_t a = frames_alloc_contig(16);
	KASSERT(a != 0);
	KEXPECT_EQ(a % PAGE_SIZE, 0);
	KEXPECT(a >= FRAMES_LOW_LIMIT);
	frames_free_contig(a, 16);
	/* First fit: freed, the same run is found again. */
	paddr_t b = frames_alloc_contig(16);
	KEXPECT_EQ(b, a);
	frames_free_contig(b, 16);
	KEXPECT_EQ(frames_alloc_contig(0), 0); /* refused, logged */
	frames_check();
}

/* frames_alloc_contig_within: aligned, below the limit, the slack given
 * back; bad arguments return 0 and take nothing. */
KTEST(frames, constrained_runs_are_aligned_below_the_limit)
{
	heap_settle(); /* the heap's threads must not move the pool */
	size_t before = frames_free_count();
	bool inj;
	paddr_t a = frames_alloc_contig_within(3, 16, UINT64_MAX, &inj);
	KASSERT(a != 0);
	KEXPECT_EQ(a % (16 * PAGE_SIZE), 0);
	KEXPECT_EQ(frames_free_count(), before - 3); /* slack back */
	frames_free_contig(a, 3);
	/* First fit: the lowest run ends at a + 3 pages, so a limit one
	 * byte lower finds none. */
	KEXPECT_EQ(frames_alloc_contig_within(3, 16, a + 3 * PAGE_SIZE, &inj),
	           a);
	frames_free_contig(a, 3);
	KEXPECT_EQ(
	        frames_alloc_contig_within(3, 16, a + 3 * PAGE_SIZE - 1, &inj),
	        0);
	KEXPECT_EQ(frames_alloc_contig_within(0, 1, UINT64_MAX, &inj), 0);
	KEXPECT_EQ(frames_alloc_contig_within(1, 0, UINT64_MAX, &inj), 0);
	KEXPECT_EQ(frames_alloc_contig_within(1, 3, UINT64_MAX, &inj), 0);
	KEXPECT_EQ(frames_alloc_contig_within(SIZE_MAX, 2, UINT64_MAX, &inj),
	           0);
	KEXPECT_EQ(frames_free_count(), before);
	frames_check();
}

/* The pool's only free frames: [run + 1 page, + nfree pages), a run one
 * frame past a 16-frame boundary, so that an aligned request takes its
 * middle and must give back a head (and a tail if nfree > 18). */
static void constrained_in_a_misaligned_hole(size_t nfree)
{
	heap_settle();
	size_t baseline = frames_free_count();
	paddr_t x = frames_alloc_contig(48);
	KASSERT(x != 0);
	paddr_t rest = frames_drain(0);
	paddr_t b = align_up(x, 16 * PAGE_SIZE) + PAGE_SIZE;
	frames_free_contig(b, nfree);
	bool inj;
	paddr_t got = frames_alloc_contig_within(3, 16, UINT64_MAX, &inj);
	size_t left = frames_free_count();
	KEXPECT_EQ(got, b + 15 * PAGE_SIZE);
	/* Head (15 frames) and tail given back: all but the 3 taken. */
	KEXPECT_EQ(left, nfree - 3);
	if (got)
		frames_free_contig(got, 3);
	/* Take the hole back whole (whatever a broken call left), then
	 * give x and the drained frames back. */
	while (frames_free_count() && frame_alloc())
		;
	frames_free_contig(x, 48);
	frames_refill(rest);
	KEXPECT_EQ(frames_free_count(), baseline);
	frames_check();
}

KTEST(frames, constrained_runs_give_back_the_head_and_tail_slack)
{
	constrained_in_a_misaligned_hole(18); /* head only */
	constrained_in_a_misaligned_hole(21); /* head and tail */
}

/* The first page at or above 1 MiB that lies in a region of the memory
 * map which is not RAM (firmware or device memory), or 0 if none does. */
static paddr_t firmware_page(void)
{
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (!mem_type_usable(r->type) && r->base >= FRAMES_LOW_LIMIT)
			return r->base;
	}
	return 0;
}

/* The pool holds its holes allocated, so a free of one would pass its
 * double-free check and hand the page out next; frame_free asks
 * frames_not_managed first (demo.frame_free_of_the_kernel_image shows
 * the panic). */
KTEST(frames, pages_outside_the_pool_are_named)
{
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KEXPECT(frames_not_managed(pa) == NULL);
	frame_free(pa);
	KEXPECT_STREQ(frames_not_managed(pa + 8), "not page-aligned");
	KEXPECT_STREQ(frames_not_managed(0),
	              "below 1 MiB, which the pool never hands out");
	KEXPECT_STREQ(frames_not_managed(0x9f000),
	              "below 1 MiB, which the pool never hands out");
	KEXPECT_STREQ(frames_not_managed(boot_state.kernel_phys_base),
	              "the kernel image");
	KEXPECT_STREQ(
	        frames_not_managed(boot_state.kernel_phys_limit - PAGE_SIZE),
	        "the kernel image");
	/* Past every region (sorted by base; the last ends highest). */
	paddr_t past = boot_state.regions[boot_state.nregions - 1].limit;
	KEXPECT_STREQ(frames_not_managed(align_up(past, PAGE_SIZE)),
	              "in no region of the memory map");
	paddr_t fw = firmware_page();
	if (fw)
		KEXPECT_STREQ(frames_not_managed(fw),
		              "firmware or device memory (see the memory map)");
}

/* The pool's metadata sits at the start of the first conventional region
 * above 1 MiB that holds it (frames.c): a conventional page, so only
 * frames_not_managed's own test of the range names it, and keeps a free of
 * it from handing the pool's bitmaps out. */
KTEST(frames, the_pools_metadata_is_named)
{
	size_t bytes = frames_metadata_bytes();
	paddr_t meta = 0;
	for (size_t i = 0; i < boot_state.nregions && !meta; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		paddr_t base =
		        r->base < FRAMES_LOW_LIMIT ? FRAMES_LOW_LIMIT : r->base;
		if (r->type == EFI_CONVENTIONAL_MEMORY && r->limit > base &&
		    r->limit - base >= bytes)
			meta = base;
	}
	KASSERT(meta != 0);
	KEXPECT_STREQ(frames_not_managed(meta), "the pool's own metadata");
	KEXPECT_STREQ(frames_not_managed(meta + bytes - PAGE_SIZE),
	              "the pool's own metadata");
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness). */
KTEST(demo, frame_free_of_the_kernel_image)
{
	/* A page of the running kernel: the pool must refuse it, not hand
	 * it out to the next frame_alloc. */
	frame_free(boot_state.kernel_phys_base + PAGE_SIZE);
	ktest_fail_at(__FILE__, __LINE__,
	              "frame_free took a page of the kernel image");
}

/* frames_free_contig checks every frame of its run, not the first alone:
 * a run from a frame of the pool into a hole (firmware, the kernel image,
 * the metadata, held allocated by the pool) must panic naming the hole's
 * page, not free it. The run's first frame is one of ours: of every frame
 * drained, one whose next page is not the pool's. */
KTEST(demo, frames_free_contig_into_a_hole)
{
	paddr_t head = frames_drain(0), pick = 0;
	for (paddr_t pa = head; pa && !pick; pa = *(paddr_t *)phys_to_virt(pa))
		if (frames_not_managed(pa + PAGE_SIZE))
			pick = pa;
	KASSERT(pick != 0);
	paddr_t hole = pick + PAGE_SIZE;
	ktest_diag("freeing [%#lx, +2 pages): %#lx is %s", (unsigned long)pick,
	           (unsigned long)hole, frames_not_managed(hole));
	frames_free_contig(pick, 2);
	ktest_fail_at(__FILE__, __LINE__,
	              "frames_free_contig freed %#lx, not the pool's",
	              (unsigned long)hole);
}
#endif

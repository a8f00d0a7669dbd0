/*
 * The frame source: its totals match the memory map, and allocating every
 * frame then freeing them all returns the pool to the same count.
 */
#include "arch/x86_64/paging.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
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

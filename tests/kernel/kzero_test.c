/*
 * The kernel heap's zeroed allocations on every path (kzalloc, kcalloc,
 * kmalloc_aligned with KM_ZERO, krealloc with KM_ZERO in place and
 * moving, kmem_cache_zalloc), each over memory just filled and freed,
 * reused as it is and after heap_release_all gave its frames back: the
 * frame pool's first frames are then filled with a pattern and freed, so
 * the pages mapped again get frames that held another user's data (the
 * pool hands out its lowest frames first). tests/kernel/zero_paths_util.h
 * holds the paths; the host runs them too (spanheap_zero_paths_test.c).
 */
#include "arch/x86_64/layout.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/zero_paths_run_util.h"

/* 2 MiB: more than any path maps at once (the largest, 1 MiB, and its
 * metadata). It was 8 MiB, 46 fills a run: with mm_port_used's zeroing
 * left out of the heap's arena, 512 frames found the same 3613792 bytes
 * not zero after a release as 2048 did, for a quarter of the fills
 * (every run of the kernel suite, five a make test, pays them). */
#define DIRTY_FRAMES 512

/* Takes the pool's first DIRTY_FRAMES frames (fewer if it runs short),
 * fills them with ZP_FILL and gives them back. */
static void dirty_pool_frames(void)
{
	paddr_t head = 0;
	for (unsigned i = 0; i < DIRTY_FRAMES; i++) {
		paddr_t pa = frame_alloc();
		if (!pa)
			break;
		memset(phys_to_virt(pa), ZP_FILL, PAGE_SIZE);
		*(paddr_t *)phys_to_virt(pa) = head;
		head = pa;
	}
	while (head) {
		paddr_t next = *(paddr_t *)phys_to_virt(head);
		*(paddr_t *)phys_to_virt(head) =
		        ZP_FILL * 0x0101010101010101ull;
		frame_free(head);
		head = next;
	}
}

KTEST(kzero, every_zeroed_path_over_dirty_memory_and_frames)
{
	zp_run(&kspanheap, dirty_pool_frames);
}

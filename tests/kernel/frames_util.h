/* Taking the frame pool down on purpose, for tests of what happens when
 * memory is short. */
#ifndef TESTS_KERNEL_FRAMES_UTIL_H
#define TESTS_KERNEL_FRAMES_UTIL_H

#include "arch/x86_64/layout.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"

/* Frames left over a test's own need (page tables, metadata, the other
 * threads' allocations meanwhile). */
#define FRAMES_TEST_MARGIN 4096

/* Skips the current test, saying how much it needs, unless `pages` frames
 * and FRAMES_TEST_MARGIN are free: a test that grows the heap by a fixed
 * size, on a machine smaller than make test's default (MEM=64M). */
#define KTEST_NEED_FREE_FRAMES(pages)                                     \
	do {                                                              \
		size_t need_ = (size_t)(pages) + FRAMES_TEST_MARGIN;      \
		if (frames_free_count() < need_) {                        \
			ktest_diag("needs %zu MiB free; %zu MiB are",     \
			           need_ >> 8, frames_free_count() >> 8); \
			KTEST_SKIP("not enough memory on this machine");  \
		}                                                         \
	} while (0)

/* Allocates frames until `left` are free; returns them as a list linked
 * through their first word, for frames_refill. */
static inline paddr_t frames_drain(size_t left)
{
	paddr_t head = 0;
	while (frames_free_count() > left) {
		paddr_t pa = frame_alloc();
		*(paddr_t *)phys_to_virt(pa) = head;
		head = pa;
	}
	return head;
}

/* A 2 MiB-aligned frame P the test owns with the 2 MiB after it: the
 * pool's frames are RAM, so the direct map holds P in a large page (2
 * MiB, or 1 GiB where RAM fills one). *run is the 4 MiB run taken, for
 * frames_free_contig(*run, FRAMES_OWNED_RUN); 0 if there is none. */
#define FRAMES_OWNED_RUN (2 * LARGE_PAGE_SIZE / PAGE_SIZE)

static inline paddr_t frames_owned_large(paddr_t *run)
{
	*run = frames_alloc_contig(FRAMES_OWNED_RUN);
	return *run ? align_up(*run, LARGE_PAGE_SIZE) : 0;
}

/* Gives back a list from frames_drain. */
static inline void frames_refill(paddr_t head)
{
	while (head) {
		paddr_t next = *(paddr_t *)phys_to_virt(head);
		frame_free(head);
		head = next;
	}
}

#endif

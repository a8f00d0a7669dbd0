/* Taking the frame pool down on purpose, for tests of what happens when
 * memory is short. */
#ifndef TESTS_KERNEL_FRAMES_UTIL_H
#define TESTS_KERNEL_FRAMES_UTIL_H

#include "arch/x86_64/layout.h"
#include "kernel/frames.h"

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

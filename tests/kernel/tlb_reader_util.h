/*
 * A reader on another CPU that shows whether pages taken away were shot
 * down there: it reads every page first (its TLB then maps them all),
 * spins touching none of them, with interrupts on so that a shootdown's
 * IPI gets in, and after the pages are gone counts those a read still
 * goes through to. QEMU's TCG keeps a software TLB per vCPU that stays
 * stale until it is flushed, so a missing or short shootdown shows as a
 * count above 0.
 */
#ifndef TESTS_KERNEL_TLB_READER_UTIL_H
#define TESTS_KERNEL_TLB_READER_UTIL_H

#include <stdatomic.h>
#include <stdint.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "kernel/ktest.h"
#include "kernel/thread.h"
#include "tests/kernel/fault_util.h"

#define TLB_READER_BYTE 0x5au /* what each page's first byte holds */

struct tlb_reader {
	volatile uint8_t *base;
	unsigned npages;
	_Atomic int step; /* 1: read them all, 2: they are gone, 3: counted */
	_Atomic unsigned stale, first_sum;
	struct thread_handle t;
};

static void tlb_reader_body(void *arg)
{
	struct tlb_reader *r = arg;
	unsigned sum = 0;
	for (unsigned i = 0; i < r->npages; i++)
		sum += r->base[i * PAGE_SIZE];
	atomic_store(&r->first_sum, sum);
	atomic_store(&r->step, 1);
	while (atomic_load(&r->step) != 2)
		cpu_pause();
	unsigned n = 0;
	for (unsigned i = 0; i < r->npages; i++)
		n += !read_faults_at(r->base + i * PAGE_SIZE);
	atomic_store(&r->stale, n);
	atomic_store(&r->step, 3);
}

/* Writes TLB_READER_BYTE into each of npages mapped pages at base and
 * starts the reader on cpu; returns once it has read them all. */
static inline void tlb_reader_start(struct tlb_reader *r, void *base,
                                    unsigned npages, unsigned cpu)
{
	r->base = base;
	r->npages = npages;
	for (unsigned i = 0; i < npages; i++)
		r->base[i * PAGE_SIZE] = TLB_READER_BYTE;
	atomic_store(&r->step, 0);
	atomic_store(&r->stale, ~0u);
	r->t = thread_create("tlb_reader", tlb_reader_body, r, cpu);
	KASSERT(thread_handle_ok(r->t));
	while (atomic_load(&r->step) != 1)
		thread_yield();
}

/* After the pages were taken away: lets the reader try them again, joins
 * it, and expects it to have read them all before and none after. */
static inline void tlb_reader_expect_none_left(struct tlb_reader *r)
{
	atomic_store(&r->step, 2);
	thread_join(r->t);
	unsigned first_sum = atomic_load(&r->first_sum);
	unsigned pages_still_read = atomic_load(&r->stale);
	KEXPECT_EQ(first_sum, r->npages * TLB_READER_BYTE);
	KEXPECT_EQ(atomic_load(&r->step), 3);
	KEXPECT_EQ(pages_still_read, 0);
}

#endif

/*
 * This CPU's TLB: forget one page, or everything. Kernel mappings are
 * global (PTE_G), so a CR3 reload would keep them; the full flush toggles
 * CR4.PGE instead, which drops global entries too (Intel SDM vol. 3A,
 * "Invalidation of TLBs and Paging-Structure Caches").
 *
 * Both act on the calling CPU only; other CPUs need a shootdown
 * (kernel/tlb.h). Any context, NMI included; neither takes a lock.
 */
#ifndef ARCH_X86_64_TLBFLUSH_H
#define ARCH_X86_64_TLBFLUSH_H

#include <stdint.h>

#include "cpu.h"

/* Drops this CPU's translation of the page holding va. */
static inline void arch_tlb_flush_page(uintptr_t va)
{
	invlpg(va);
}

/* Drops every translation this CPU holds, global ones included. The
 * caller keeps interrupts as they are. An interrupt between the two
 * writes finds PGE off, so a full flush of its own there (two writes
 * that leave PGE off) flushes nothing until the outer one turns PGE back
 * on. Today the only full flush an interrupt can land in is a shootdown
 * sender's own local one, and a review found no request that can reach
 * it there and count on its flush before the outer one ends; a new caller
 * of this in interrupt context must keep that so. */
static inline void arch_tlb_flush_all(void)
{
	uint64_t cr4 = read_cr4();
	write_cr4(cr4 & ~CR4_PGE);
	write_cr4(cr4);
}

#endif

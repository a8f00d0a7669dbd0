/*
 * TLB shootdown: after a kernel mapping is removed or narrowed, every CPU
 * must forget it before the frame is reused. tlb_shootdown flushes the
 * range here and on every other online CPU and returns once all have
 * acknowledged. Ranges over TLB_FULL_FLUSH_PAGES flush everything.
 *
 * Thread context with interrupts enabled and no irqsave lock held: it
 * waits for other CPUs, which answer only with interrupts on
 * (DESIGN.md, "Scavenging: the rules"); the thread that stopped the
 * world (stw.h) may call it with interrupts off, as it waits for no one
 * (the others flush everything when let go). The CPUs it waits for are
 * those online when it starts; a CPU coming online meanwhile waits for it
 * (cpus_online_hold, percpu.h) and flushes everything on arrival. While
 * a CPU has not flushed (interrupts off for good: a bug), it keeps
 * waiting and names that CPU and the range every second. A range that
 * does not start on a page boundary, or runs past 2^64 or out of the
 * canonical half it starts in, is a caller's bug: it panics naming it.
 */
#ifndef KERNEL_TLB_H
#define KERNEL_TLB_H

#include <stddef.h>
#include <stdint.h>

#define TLB_FULL_FLUSH_PAGES 32

void tlb_init(void);
void tlb_shootdown(uintptr_t va, size_t npages);

/* Why [va, va + npages pages) is no range to flush, or NULL if it is one:
 * the check tlb_shootdown panics on, for a caller that would rather ask
 * first. Any context. */
const char *tlb_range_error(uintptr_t va, size_t npages);

/* Flushes [va, va + npages pages) on this CPU only (arch_tlb_flush_page,
 * or arch_tlb_flush_all over TLB_FULL_FLUSH_PAGES). Any context. */
void tlb_flush_local(uintptr_t va, size_t npages);

#endif

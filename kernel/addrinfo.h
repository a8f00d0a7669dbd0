/*
 * What a kernel address is, for reports: the page-fault report's CR2 and
 * the shell's addrinfo. Names the region of the address space
 * (arch/x86_64/layout.h) that holds it, and inside it what it can: the
 * NULL page, a kernel stack's guard page, the kernel image's section and
 * symbol, the direct map's physical address, whether the frame pool owns
 * that frame and the DMA buffer (live or freed lately) it lies in, and
 * for the heap arena the object and its state (mm/spanheap_where.h),
 * with poison mode's records of its callers.
 */
#ifndef KERNEL_ADDRINFO_H
#define KERNEL_ADDRINFO_H

#include <stdbool.h>
#include <stdint.h>

/*
 * printks "<indent><label> <a>: <what a is>", then, for an address of
 * the heap arena, the span heap's own lines (mm_log, "mm: spanheap: ...").
 * Reads no memory at a, takes no lock (the heap's description reads its
 * span table, span structs and an object's free marker, without locks):
 * any context, the exception handlers' included.
 */
void addrinfo_print(const char *indent, const char *label, uint64_t a);

/*
 * For a #PF at rip reading or writing cr2: addrinfo_print of cr2 as
 * "CR2", then, if rip is a span heap's magazine sequence reading through
 * a NULL magazine array (heap_fault_unset_mags), a line saying the heap
 * was used before spanheap_init. Contexts as addrinfo_print's.
 */
void addrinfo_print_fault(const char *indent, uint64_t rip, uint64_t cr2);

/*
 * addrinfo_print for a thread (the shell): the heap's structures are read
 * under the thread's fault hook, so a span freed and its pages unmapped
 * while they are read (mm.debug_pagealloc) is no panic. False, the output
 * cut short, if that happened. Thread context.
 */
bool addrinfo_print_caught(const char *indent, const char *label, uint64_t a);

struct trap_frame;

/*
 * For a #GP (a non-canonical address takes one, not a #PF): printks each
 * general register whose value is no canonical address, with what it may
 * be: poison mode's fill of a freed object (0xdb...), its red zone
 * (0xbb...), a free object's marker (naming the object), or garbage.
 * Takes no lock, reads no memory the heap does not map: the exception
 * handler's.
 */
void addrinfo_print_regs(const char *indent, const struct trap_frame *f);

#endif

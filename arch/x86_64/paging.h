/*
 * The kernel address space: 4-level page tables the kernel builds for
 * itself (see layout.h), and 4 KiB map / unmap / translate / protect.
 *
 * Locking: map/unmap/protect take the vm lock (irqsave) and may allocate
 * page-table frames under it; callers own the virtual range they change.
 * Page-table pages are created on first map and never freed. Every entry
 * changes in one atomic step, so lock-free readers and the lock-free heap
 * PTE calls below never see half an update. Unmap and protect flush only
 * this CPU's TLB; other CPUs need a shootdown.
 * Any context but NMI; vm_translate takes no lock.
 */
#ifndef ARCH_X86_64_PAGING_H
#define ARCH_X86_64_PAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

/* Page-table entry bits. */
#define PTE_P    (1ull << 0)
#define PTE_W    (1ull << 1)
#define PTE_U    (1ull << 2)
#define PTE_PWT  (1ull << 3)
#define PTE_PCD  (1ull << 4)
#define PTE_A    (1ull << 5)
#define PTE_D    (1ull << 6)
#define PTE_PS   (1ull << 7)
#define PTE_G    (1ull << 8)
#define PTE_NX   (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

/*
 * Mapping permissions; every mapping is readable and kernel-only. They sit
 * on bits 9-11, which no PTE_* constant above uses (in an entry they are
 * ignored by the MMU, and pte_flags translates anyway), so a PTE_* value
 * passed by mistake (PTE_W, PTE_U, PTE_PCD...) always has a bit outside
 * VM_FLAGS_ALL, and the map calls refuse it with -VM_EINVAL instead of
 * making a different mapping. (PTE_NX does not fit in unsigned: the
 * compiler's overflow warning catches it.) VM_WRITE and VM_EXEC together
 * are refused too: no kernel page is writable and executable (W^X).
 */
enum vm_flags {
	VM_READ = 0,
	VM_WRITE = 1 << 9,
	VM_EXEC = 1 << 10,
	VM_NOCACHE = 1 << 11,
	VM_FLAGS_ALL = VM_WRITE | VM_EXEC | VM_NOCACHE,
};
_Static_assert((VM_FLAGS_ALL & (PTE_P | PTE_W | PTE_U | PTE_PWT | PTE_PCD |
                                PTE_A | PTE_D | PTE_PS | PTE_G)) == 0,
               "VM_* flags must not share a bit with a PTE_* bit");

/* Errors returned (negated) by the map API. */
enum vm_error {
	VM_OK = 0,
	VM_EINVAL = 1, /* misaligned, non-canonical, inside a large page,
	                  page 0 (never mapped), flags outside
	                  VM_FLAGS_ALL, or VM_WRITE with VM_EXEC (W^X) */
	VM_EEXIST = 2, /* already mapped */
	VM_ENOENT = 3, /* not mapped */
	VM_ENOMEM = 4, /* no frame for a page-table page */
};

/*
 * Where page-table pages come from. The kernel passes its frame pool, so
 * that arch/ does not call into kernel/ for memory.
 *
 * alloc returns a free frame's physical address, or 0 when none is left;
 * the contents are undefined (paging zeroes the frame). It is called with
 * the vm lock held (irqsave, rank VM), so it may take only locks ranked
 * above VM and must not sleep; it is also called before the kernel runs on
 * its own page tables, from paging_init.
 *
 * There is no free: page-table pages are never freed, which is what lets
 * heap PTEs change without a lock (vm_prepare_range below).
 */
struct paging_frame_source {
	paddr_t (*alloc)(void);
};

/* Builds the kernel's page tables from frames of src (copied; src need not
 * outlive the call) and switches to them. Boot CPU, once. */
void paging_init(const struct paging_frame_source *src);

/* Prints the layout of the kernel address space. */
void paging_print_layout(void);

/* Maps the 4 KiB page at va to pa. Returns 0 or -enum vm_error. */
int vm_map_page(uintptr_t va, paddr_t pa, unsigned flags);

/* Unmaps va (local TLB flush only); stores the frame in *pa if non-NULL.
 * Returns 0 or -VM_ENOENT / -VM_EINVAL. */
int vm_unmap_page(uintptr_t va, paddr_t *pa);

/* Changes the permissions of the mapped page at va. */
int vm_protect_page(uintptr_t va, unsigned flags);

/*
 * Heap pages (DESIGN.md, "Scavenging: the rules"): vm_prepare_range
 * creates the page-table pages of [va, va + nbytes) now, under the vm lock,
 * and they are kept for good. Afterwards the page's owner (the heap's
 * bitmaps say who) sets and clears its PTE with vm_pte_set/vm_pte_clear,
 * which take no lock and allocate nothing: callable with the heap lock
 * held. vm_pte_clear flushes only this CPU's TLB. Each checks and changes
 * the entry in one compare-and-swap: of two calls racing on one entry
 * (which the ownership rule forbids), one succeeds and the other returns
 * -VM_EEXIST / -VM_ENOENT, so a frame is never handed out twice.
 * vm_pte_set refuses (-VM_EINVAL) a pa that is misaligned or has bits
 * outside PTE_ADDR, and flags outside VM_FLAGS_ALL, as vm_map_page does.
 * vm_prepare_range returns 0; -VM_EINVAL, with nothing made, for a range
 * that is misaligned, wraps past 2^64 or leaves the canonical half it
 * starts in (one may end exactly at 2^64); or, the tables made so far
 * kept, -VM_ENOMEM, or -VM_EINVAL when it runs into a large page.
 */
int vm_prepare_range(uintptr_t va, size_t nbytes);
int vm_pte_set(uintptr_t va, paddr_t pa, unsigned flags);
int vm_pte_clear(uintptr_t va, paddr_t *pa);

/* Looks va up, large pages included: returns false if unmapped, else the
 * physical address and enum vm_flags of the mapping. Any context. */
bool vm_translate(uintptr_t va, paddr_t *pa, unsigned *flags);

/* The size of the largest page the direct map uses (2 MiB or 1 GiB). */
uint64_t paging_direct_map_page_size(void);

/* Page-table pages made so far; they are never freed. Any context. */
size_t paging_table_pages(void);

#endif

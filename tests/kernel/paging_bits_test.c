/*
 * The kernel page tables' entries bit by bit, read by a walk of the live
 * tables from CR3: what vm_translate reports (permissions) leaves out
 * bits that matter all the same (global, user, write-through, page size)
 * and those of the upper levels. Every leaf is present, global and
 * kernel-only, NX unless executable, and uncached with both PCD and PWT;
 * every upper entry the kernel makes is present, writable and
 * kernel-only. Also what an unaligned or non-canonical address, or one
 * with no tables, may not change; the TLB flush of vm_pte_clear; the
 * lock-free walk's stop at a large page. Found by a mutation review of
 * arch/x86_64/paging.c: each mutant these tests fail passed the other
 * paging tests.
 */
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/frames_util.h"

/* PML4 slot 509 (free for tests), away from the other tests' pages. */
#define BITS_VA 0xfffffe8040000000ull

/* The bits of an entry the MMU, not the kernel, may set. */
#define HW_SET (PTE_A | PTE_D)

/* The leaf entry of va in the live tables and its level (0 for a 4 KiB
 * page), or 0 when none is present; each upper entry on the way to it
 * is checked to be present, writable and kernel-only. */
static uint64_t raw_leaf(uintptr_t va, int *level)
{
	uint64_t *table = phys_to_virt(read_cr3() & PTE_ADDR);
	for (int l = 3; l >= 0; l--) {
		uint64_t e = table[(va >> (PAGE_SHIFT + 9 * l)) & 511];
		if (!(e & PTE_P))
			return 0;
		if (l == 0 || (e & PTE_PS)) {
			*level = l;
			return e;
		}
		KEXPECT_EQ(e & ~PTE_ADDR & ~HW_SET, PTE_P | PTE_W);
		table = phys_to_virt(e & PTE_ADDR);
	}
	return 0;
}

/* The leaf bits enum vm_flags f must give. */
static uint64_t want_bits(unsigned f)
{
	uint64_t b = PTE_P | PTE_G;
	if (f & VM_WRITE)
		b |= PTE_W;
	if (!(f & VM_EXEC))
		b |= PTE_NX;
	if (f & VM_NOCACHE)
		b |= PTE_PCD | PTE_PWT;
	return b;
}

/* Expects va's 4 KiB leaf to map pa with exactly the bits of f. */
static void expect_leaf(uintptr_t va, paddr_t pa, unsigned f)
{
	int level = -1;
	uint64_t e = raw_leaf(va, &level);
	KASSERT(e != 0);
	KEXPECT_EQ(level, 0);
	KEXPECT_EQ(e & PTE_ADDR, pa);
	if ((e & ~PTE_ADDR & ~HW_SET) != want_bits(f))
		ktest_diag("flags %#x: entry %#llx", f, (unsigned long long)e);
	KEXPECT_EQ(e & ~PTE_ADDR & ~HW_SET, want_bits(f));
	unsigned got = ~0u;
	KEXPECT(vm_translate(va, NULL, &got));
	KEXPECT_EQ(got, f);
}

static const unsigned all_flags[] = {
        VM_READ,
        VM_WRITE,
        VM_EXEC,
        VM_EXEC | VM_NOCACHE,
        VM_WRITE | VM_NOCACHE,
        VM_READ | VM_NOCACHE,
};

KTEST(paging, entries_hold_exactly_the_bits_asked_for)
{
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	for (unsigned i = 0; i < sizeof(all_flags) / sizeof(all_flags[0]);
	     i++) {
		KASSERT_EQ(vm_map_page(BITS_VA, pa, all_flags[i]), 0);
		expect_leaf(BITS_VA, pa, all_flags[i]);
		/* vm_protect_page to every other set, then back. */
		unsigned other = all_flags[(i + 1) % (sizeof(all_flags) /
		                                      sizeof(all_flags[0]))];
		KEXPECT_EQ(vm_protect_page(BITS_VA, other), 0);
		expect_leaf(BITS_VA, pa, other);
		KEXPECT_EQ(vm_unmap_page(BITS_VA, NULL), 0);
	}
	/* The lock-free heap calls make the same entries. */
	KASSERT_EQ(vm_prepare_range(BITS_VA, LARGE_PAGE_SIZE), 0);
	for (unsigned i = 0; i < sizeof(all_flags) / sizeof(all_flags[0]);
	     i++) {
		KASSERT_EQ(vm_pte_set(BITS_VA, pa, all_flags[i]), 0);
		expect_leaf(BITS_VA, pa, all_flags[i]);
		KEXPECT_EQ(vm_pte_clear(BITS_VA, NULL), 0);
	}
	frame_free(pa);
}

/* The direct map: large pages where RAM fills them, read-write, NX,
 * global, cached; the image's text and rodata in 4 KiB pages, r--. */
KTEST(paging, direct_map_entries_are_large_global_and_nx)
{
	paddr_t run, big = frames_owned_large(&run);
	KASSERT(big != 0);
	int level = -1;
	uint64_t e = raw_leaf((uintptr_t)phys_to_virt(big), &level);
	KASSERT(e != 0);
	KEXPECT(level == 1 || level == 2);
	KEXPECT(level == 1 || paging_direct_map_page_size() == HUGE_PAGE_SIZE);
	KEXPECT_EQ(e & ~PTE_ADDR & ~HW_SET,
	           PTE_P | PTE_W | PTE_G | PTE_NX | PTE_PS);
	/* Offsets in the upper half of the large page translate too. */
	uint64_t size = PAGE_SIZE << (9 * level);
	paddr_t base = big & ~(size - 1);
	KEXPECT_EQ(e & PTE_ADDR, base);
	paddr_t probe[] = {base + size / 2 + 0x123, base + size - 1};
	for (unsigned i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
		paddr_t pa = 0;
		KEXPECT(vm_translate((uintptr_t)phys_to_virt(probe[i]), &pa,
		                     NULL));
		KEXPECT_EQ(pa, probe[i]);
	}
	frames_free_contig(run, FRAMES_OWNED_RUN);
	/* The image's first text page: a 4 KiB page, r-- nx. */
	paddr_t text = boot_state.kernel_phys_base +
	               ((uintptr_t)__text_start - boot_state.kernel_virt_base);
	e = raw_leaf((uintptr_t)phys_to_virt(text), &level);
	KASSERT(e != 0);
	KEXPECT_EQ(level, 0);
	KEXPECT_EQ(e & ~PTE_ADDR & ~HW_SET, PTE_P | PTE_G | PTE_NX);
	/* Global entries stay in the TLB across CR3 loads only with
	 * CR4.PGE on. */
	KEXPECT(read_cr4() & CR4_PGE);
}

/* An address with the upper 16 bits cleared indexes the same tables as
 * the canonical one but is not it; an unaligned one is inside a page,
 * not the page. Neither may unmap, protect, clear or translate it. */
KTEST(paging, non_canonical_or_unaligned_addresses_change_nothing)
{
	const uintptr_t alias = BITS_VA & 0x0000ffffffffffffull;
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KASSERT_EQ(vm_map_page(BITS_VA, pa, VM_WRITE), 0);
	KEXPECT(!vm_translate(alias, NULL, NULL));
	KEXPECT_EQ(vm_map_page(alias, pa, VM_WRITE), -VM_EINVAL);
	KEXPECT_EQ(vm_unmap_page(alias, NULL), -VM_EINVAL);
	KEXPECT_EQ(vm_protect_page(alias, VM_READ), -VM_EINVAL);
	KEXPECT_EQ(vm_unmap_page(BITS_VA + 8, NULL), -VM_EINVAL);
	KEXPECT_EQ(vm_protect_page(BITS_VA + 8, VM_READ), -VM_EINVAL);
	expect_leaf(BITS_VA, pa, VM_WRITE);
	KEXPECT_EQ(vm_unmap_page(BITS_VA, NULL), 0);

	KASSERT_EQ(vm_prepare_range(BITS_VA, LARGE_PAGE_SIZE), 0);
	KASSERT_EQ(vm_pte_set(BITS_VA, pa, VM_WRITE), 0);
	KEXPECT_EQ(vm_pte_set(alias, pa, VM_WRITE), -VM_EINVAL);
	KEXPECT_EQ(vm_pte_clear(alias, NULL), -VM_EINVAL);
	KEXPECT_EQ(vm_pte_clear(BITS_VA + 8, NULL), -VM_EINVAL);
	KEXPECT_EQ(vm_prepare_range(BITS_VA + 8, 0), -VM_EINVAL);
	KEXPECT_EQ(vm_prepare_range(alias, 0), -VM_EINVAL);
	expect_leaf(BITS_VA, pa, VM_WRITE);
	KEXPECT_EQ(vm_pte_clear(BITS_VA, NULL), 0);
	frame_free(pa);
}

/* Where no table was ever made (slot 509 at 400 GiB, which no test
 * uses) nothing is mapped, and each call says so. A prepare there makes
 * the page directory and the page table (the slot's PDPT is made first,
 * by a prepare at BITS_VA), and the count of table pages says so; other
 * CPUs may make tables meanwhile, so it is a lower bound. */
KTEST(paging, calls_where_no_table_exists)
{
	const uintptr_t va = 0xfffffe8000000000ull + (400ull << 30);
	KASSERT_EQ(vm_prepare_range(BITS_VA, LARGE_PAGE_SIZE), 0);
	KEXPECT(!vm_translate(va, NULL, NULL));
	KEXPECT_EQ(vm_unmap_page(va, NULL), -VM_ENOENT);
	KEXPECT_EQ(vm_protect_page(va, VM_WRITE), -VM_ENOENT);
	KEXPECT_EQ(vm_pte_clear(va, NULL), -VM_ENOENT);
	KEXPECT_EQ(vm_pte_set(va, 0x1000, VM_WRITE), -VM_ENOENT);
	size_t tables = paging_table_pages();
	KASSERT_EQ(vm_prepare_range(va, LARGE_PAGE_SIZE), 0);
	KEXPECT(paging_table_pages() >= tables + 2);
	KEXPECT_EQ(vm_unmap_page(va, NULL), -VM_ENOENT);
}

/* vm_pte_clear flushes this CPU's TLB: an entry loaded by a touch
 * before the clear is not used after it. */
KTEST(paging, touch_after_pte_clear_faults)
{
	KASSERT_EQ(vm_prepare_range(BITS_VA, LARGE_PAGE_SIZE), 0);
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KASSERT_EQ(vm_pte_set(BITS_VA, pa, VM_WRITE), 0);
	*(volatile uint8_t *)BITS_VA = 1; /* load the TLB entry */
	KEXPECT_EQ(vm_pte_clear(BITS_VA, NULL), 0);
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		(void)*(volatile uint8_t *)(BITS_VA + 5);
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "stale TLB entry used");
	} else {
		KEXPECT_EQ(fc.vector, VEC_PF);
		KEXPECT_EQ(fc.error & PF_PRESENT, 0);
		KEXPECT_EQ(fc.cr2, BITS_VA + 5);
	}
	frame_free(pa);
}

/*
 * The lock-free PTE calls stop at a large page: its entry is a leaf, not
 * a table. Taking it for one, a walk into the direct map would read the
 * large page's first frame as the next table, and vm_pte_set would write
 * into whatever entry it found there. The test owns a 2 MiB page of the
 * direct map, P, and zeroes its first frame: a walk that took P's entry
 * for a table would change word 5 of that frame (the entry of P + 5
 * pages). A 1 GiB page holding P has a first frame that is not the
 * test's, so the test needs P in a 2 MiB page (machines with less than a
 * GiB of RAM in one piece, like the 512 MiB of make test, have only those).
 */
KTEST(paging, pte_calls_stop_at_a_large_page)
{
	paddr_t run, big = frames_owned_large(&run);
	KASSERT(big != 0);
	int level = -1;
	KASSERT(raw_leaf((uintptr_t)phys_to_virt(big), &level) != 0);
	if (level != 1) {
		frames_free_contig(run, FRAMES_OWNED_RUN);
		KTEST_SKIP("the pool's run lies in a 1 GiB page");
	}
	const uintptr_t va = DIRECT_MAP_BASE + big + 5 * PAGE_SIZE;
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	volatile uint64_t *first = phys_to_virt(big);
	memset((void *)first, 0, PAGE_SIZE);
	int set = vm_pte_set(va, pa, VM_WRITE);
	uint64_t after5 = first[5];
	int clear = vm_pte_clear(va, NULL);
	KEXPECT_EQ(set, -VM_ENOENT);
	KEXPECT_EQ(clear, -VM_ENOENT);
	KEXPECT_EQ(after5, 0);
	KEXPECT_EQ(first[5], 0);
	paddr_t got = 0;
	KEXPECT(vm_translate(va, &got, NULL));
	KEXPECT_EQ(got, big + 5 * PAGE_SIZE);
	frame_free(pa);
	frames_free_contig(run, FRAMES_OWNED_RUN);
}

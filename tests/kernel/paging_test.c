/*
 * The 4 KiB map API on the live kernel page tables: map, translate, unmap,
 * protect, the errors for bad calls, and that the hardware enforces what
 * the entries say (write to read-only, execute from NX, touch unmapped).
 */
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/fault_util.h"
#include "tests/kernel/frames_util.h"

/* PML4 slot 509: nothing else lives there. */
#define TEST_VA 0xfffffe8000000000ull

static paddr_t map_test_page(uintptr_t va, unsigned flags)
{
	paddr_t pa = frame_alloc();
	if (pa && vm_map_page(va, pa, flags) != 0) {
		frame_free(pa);
		return 0;
	}
	return pa;
}

static void unmap_test_page(uintptr_t va)
{
	paddr_t pa;
	if (vm_unmap_page(va, &pa) == 0)
		frame_free(pa);
}

KTEST(paging, map_translate_unmap)
{
	paddr_t pa = map_test_page(TEST_VA, VM_WRITE);
	KASSERT(pa != 0);
	paddr_t got;
	unsigned flags;
	KEXPECT(vm_translate(TEST_VA + 0x123, &got, &flags));
	KEXPECT_EQ(got, pa + 0x123);
	KEXPECT_EQ(flags, VM_WRITE);
	/* The mapping and the direct map see the same frame. */
	*(volatile uint64_t *)TEST_VA = 0x1122334455667788ull;
	KEXPECT_EQ(*(volatile uint64_t *)phys_to_virt(pa),
	           0x1122334455667788ull);
	paddr_t out = 0;
	KEXPECT_EQ(vm_unmap_page(TEST_VA, &out), 0);
	KEXPECT_EQ(out, pa);
	KEXPECT(!vm_translate(TEST_VA, NULL, NULL));
	frame_free(pa);
}

KTEST(paging, bad_calls_are_refused)
{
	paddr_t pa = map_test_page(TEST_VA, VM_WRITE);
	KASSERT(pa != 0);
	KEXPECT_EQ(vm_map_page(TEST_VA, pa, VM_WRITE), -VM_EEXIST);
	KEXPECT_EQ(vm_map_page(TEST_VA + 1, pa, VM_WRITE), -VM_EINVAL);
	KEXPECT_EQ(vm_map_page(TEST_VA + PAGE_SIZE, pa + 8, 0), -VM_EINVAL);
	KEXPECT_EQ(vm_map_page(0x0000800000000000ull, pa, 0), -VM_EINVAL);
	/* Inside a large page of the direct map. */
	paddr_t run, big = frames_owned_large(&run);
	KASSERT(big != 0);
	KEXPECT_EQ(vm_map_page(DIRECT_MAP_BASE + big, pa, 0), -VM_EINVAL);
	frames_free_contig(run, FRAMES_OWNED_RUN);
	KEXPECT_EQ(vm_unmap_page(TEST_VA + PAGE_SIZE, NULL), -VM_ENOENT);
	KEXPECT_EQ(vm_protect_page(TEST_VA + PAGE_SIZE, 0), -VM_ENOENT);
	unmap_test_page(TEST_VA);
	KEXPECT_EQ(vm_unmap_page(TEST_VA, NULL), -VM_ENOENT);
}

KTEST(paging, write_to_read_only_faults)
{
	paddr_t pa = map_test_page(TEST_VA, VM_READ);
	KASSERT(pa != 0);
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		*(volatile uint32_t *)TEST_VA = 1;
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "write did not fault");
	} else {
		KEXPECT_EQ(fc.vector, VEC_PF);
		KEXPECT_EQ(fc.cr2, TEST_VA);
		KEXPECT_EQ(fc.error & (PF_PRESENT | PF_WRITE),
		           PF_PRESENT | PF_WRITE);
	}
	/* After vm_protect the same write goes through. */
	KEXPECT_EQ(vm_protect_page(TEST_VA, VM_WRITE), 0);
	*(volatile uint32_t *)TEST_VA = 7;
	KEXPECT_EQ(*(volatile uint32_t *)phys_to_virt(pa), 7);
	unmap_test_page(TEST_VA);
}

KTEST(paging, execute_from_nx_faults)
{
	paddr_t pa = map_test_page(TEST_VA, VM_WRITE);
	KASSERT(pa != 0);
	/* mov $42, %eax; ret */
	static const uint8_t code[] = {0xb8, 42, 0, 0, 0, 0xc3};
	memcpy((void *)TEST_VA, code, sizeof(code));
	int (*fn)(void) = (int (*)(void))TEST_VA;
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		fn();
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "NX page executed");
	} else {
		KEXPECT_EQ(fc.vector, VEC_PF);
		KEXPECT(fc.error & PF_FETCH);
		KEXPECT_EQ(fc.cr2, TEST_VA);
	}
	KEXPECT_EQ(vm_protect_page(TEST_VA, VM_EXEC), 0);
	KEXPECT_EQ(fn(), 42);
	unmap_test_page(TEST_VA);
}

KTEST(paging, touch_after_unmap_faults)
{
	paddr_t pa = map_test_page(TEST_VA, VM_WRITE);
	KASSERT(pa != 0);
	*(volatile uint8_t *)TEST_VA = 1; /* load the TLB entry */
	unmap_test_page(TEST_VA);
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		(void)*(volatile uint8_t *)(TEST_VA + 5);
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "stale TLB entry used");
	} else {
		KEXPECT_EQ(fc.vector, VEC_PF);
		KEXPECT_EQ(fc.error & PF_PRESENT, 0);
		KEXPECT_EQ(fc.cr2, TEST_VA + 5);
	}
}

KTEST(paging, many_pages_share_tables)
{
	/* 600 pages cross a page-table boundary (512 entries). Counted by
	 * the tables made and the frames handed back, not by the pool's
	 * free count: a background thread (the scavenger, the sweeper, a
	 * thread's exit) may give frames back meanwhile, and once did
	 * (the harness's direct_map_5g: "frames_free_count() <= before"). */
	enum { N = 600 };
	static paddr_t pas[N];
	size_t tables = paging_table_pages();
	int mapped = 0;
	for (int i = 0; i < N; i++) {
		pas[i] = map_test_page(TEST_VA + (uintptr_t)i * PAGE_SIZE,
		                       VM_WRITE);
		mapped += pas[i] != 0;
	}
	KASSERT_EQ(mapped, N);
	/* At most a PDPT, a PD and two PTs for slot 509, however many of
	 * them earlier tests made: the pages share their tables. */
	KEXPECT(paging_table_pages() <= tables + 4);
	for (int i = 0; i < N; i++)
		*(volatile int *)(TEST_VA + (uintptr_t)i * PAGE_SIZE) = i;
	int ok = 0;
	for (int i = 0; i < N; i++)
		ok += *(volatile int *)(TEST_VA + (uintptr_t)i * PAGE_SIZE) ==
		      i;
	KEXPECT_EQ(ok, N);
	/* Each unmap hands back the frame mapped there; the tables stay. */
	size_t tables_mapped = paging_table_pages();
	int back = 0;
	for (int i = 0; i < N; i++) {
		paddr_t pa = 0;
		if (vm_unmap_page(TEST_VA + (uintptr_t)i * PAGE_SIZE, &pa) == 0)
			frame_free(pa);
		back += pa == pas[i];
	}
	KEXPECT_EQ(back, N);
	KEXPECT_EQ(paging_table_pages(), tables_mapped);
}

/* The last 4 MiB of the address space, above the kernel image (which
 * starts at KERNEL_VIRT_BASE and takes a few MiB): a range that ends
 * exactly at 2^64. */
#define TOP_VA 0xffffffffffc00000ull

KTEST(paging, prepare_range_reaches_the_top_of_the_address_space)
{
	/* va + nbytes is 0 here: both chunks must be prepared, so that
	 * the lock-free PTE calls work on every page of the range. */
	KASSERT_EQ(vm_prepare_range(TOP_VA, 4ull << 20), 0);
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	uintptr_t last = 0xfffffffffffff000ull;
	KEXPECT_EQ(vm_pte_set(TOP_VA, pa, VM_WRITE), 0);
	KEXPECT_EQ(vm_pte_clear(TOP_VA, NULL), 0);
	KASSERT_EQ(vm_pte_set(last, pa, VM_WRITE), 0);
	*(volatile uint64_t *)last = 0x5a5a;
	KEXPECT_EQ(*(volatile uint64_t *)phys_to_virt(pa), 0x5a5a);
	paddr_t out = 0;
	KEXPECT_EQ(vm_pte_clear(last, &out), 0);
	KEXPECT_EQ(out, pa);
	frame_free(pa);
}

KTEST(paging, prepare_range_refuses_ranges_that_wrap)
{
	size_t tables = paging_table_pages();
	/* Past 2^64 into page 0: its last byte, 0x1fffff, is canonical. */
	KEXPECT_EQ(vm_prepare_range(TOP_VA, 6ull << 20), -VM_EINVAL);
	KEXPECT_EQ(vm_prepare_range(0xfffffffffffff000ull, 2 * PAGE_SIZE),
	           -VM_EINVAL);
	/* From the lower half across the non-canonical hole. */
	KEXPECT_EQ(
	        vm_prepare_range(0x00007fffffe00000ull, 0xffff000000400000ull),
	        -VM_EINVAL);
	/* Refused before anything was built. */
	KEXPECT_EQ(paging_table_pages(), tables);
}

KTEST(paging, pte_set_refuses_a_frame_address_with_flag_bits)
{
	KASSERT_EQ(vm_prepare_range(TEST_VA, LARGE_PAGE_SIZE), 0);
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	/* Bit 62 is above PTE_ADDR: it must not land in the entry. */
	KEXPECT_EQ(vm_pte_set(TEST_VA, pa | (1ull << 62), VM_WRITE),
	           -VM_EINVAL);
	KEXPECT_EQ(vm_pte_set(TEST_VA, pa | (1ull << 52), VM_WRITE),
	           -VM_EINVAL);
	KEXPECT(!vm_translate(TEST_VA, NULL, NULL));
	vm_pte_clear(TEST_VA, NULL);
	frame_free(pa);
}

KTEST(paging, page_zero_is_never_mapped)
{
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KEXPECT_EQ(vm_map_page(0, pa, VM_READ), -VM_EINVAL);
	/* The tables over page 0 exist once the SMP trampoline (below
	 * 1 MiB, at its own address) was mapped; prepare them anyway. */
	KEXPECT_EQ(vm_prepare_range(0, LARGE_PAGE_SIZE), 0);
	KEXPECT_EQ(vm_pte_set(0, pa, VM_READ), -VM_EINVAL);
	KEXPECT(!vm_translate(0, NULL, NULL));
	vm_unmap_page(0, NULL);
	vm_pte_clear(0, NULL);
	frame_free(pa);
}

/* Hardware PTE_* bits passed where enum vm_flags belongs used to land on
 * other meanings (PTE_W was VM_EXEC's bit, PTE_U VM_NOCACHE's) or be
 * ignored: every bit outside VM_FLAGS_ALL is refused, and nothing is
 * mapped or changed. */
KTEST(paging, flags_outside_vm_flags_are_refused)
{
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	static const unsigned bad[] = {(unsigned)PTE_W, (unsigned)PTE_U,
	                               (unsigned)PTE_PCD, (unsigned)PTE_PS,
	                               1u << 31};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		KEXPECT_EQ(vm_map_page(TEST_VA, pa, VM_WRITE | bad[i]),
		           -VM_EINVAL);
		KEXPECT(!vm_translate(TEST_VA, NULL, NULL));
	}
	KASSERT_EQ(vm_map_page(TEST_VA, pa, VM_WRITE), 0);
	unsigned flags = 0;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		KEXPECT_EQ(vm_protect_page(TEST_VA, bad[i]), -VM_EINVAL);
		KEXPECT(vm_translate(TEST_VA, NULL, &flags));
		KEXPECT_EQ(flags, VM_WRITE);
	}
	unmap_test_page(TEST_VA);
	KASSERT_EQ(vm_prepare_range(TEST_VA, LARGE_PAGE_SIZE), 0);
	pa = frame_alloc();
	KASSERT(pa != 0);
	KEXPECT_EQ(vm_pte_set(TEST_VA, pa, VM_WRITE | (unsigned)PTE_U),
	           -VM_EINVAL);
	KEXPECT(!vm_translate(TEST_VA, NULL, NULL));
	vm_pte_clear(TEST_VA, NULL);
	frame_free(pa);
}

/* W^X: a page both writable and executable is refused by every map
 * call (the AP trampoline asked for one, until a review), and nothing
 * is mapped or changed. */
KTEST(paging, writable_and_executable_is_refused)
{
	const unsigned wx = VM_WRITE | VM_EXEC;
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KEXPECT_EQ(vm_map_page(TEST_VA, pa, wx), -VM_EINVAL);
	KEXPECT(!vm_translate(TEST_VA, NULL, NULL));
	KASSERT_EQ(vm_map_page(TEST_VA, pa, VM_EXEC), 0);
	unsigned flags = 0;
	KEXPECT_EQ(vm_protect_page(TEST_VA, wx), -VM_EINVAL);
	KEXPECT(vm_translate(TEST_VA, NULL, &flags));
	KEXPECT_EQ(flags, VM_EXEC);
	unmap_test_page(TEST_VA);
	KASSERT_EQ(vm_prepare_range(TEST_VA, LARGE_PAGE_SIZE), 0);
	pa = frame_alloc();
	KASSERT(pa != 0);
	KEXPECT_EQ(vm_pte_set(TEST_VA, pa, wx), -VM_EINVAL);
	KEXPECT(!vm_translate(TEST_VA, NULL, NULL));
	vm_pte_clear(TEST_VA, NULL);
	frame_free(pa);
}

/* The direct map's alias of the image's text and rodata is read-only
 * too (W^X): until a review it was the direct map's rw- large pages, and
 * a write through phys_to_virt changed the kernel's code. Data keeps a
 * writable alias; the first and last pages of each part are checked, and
 * a write to a text byte through its alias faults. */
KTEST(paging, the_image_text_and_rodata_have_no_writable_alias)
{
	const uintptr_t ro[] = {
	        (uintptr_t)__text_start, (uintptr_t)__text_end - PAGE_SIZE,
	        (uintptr_t)__rodata_start, (uintptr_t)__rodata_end - PAGE_SIZE};
	for (unsigned i = 0; i < sizeof ro / sizeof ro[0]; i++) {
		paddr_t pa;
		unsigned f;
		KASSERT(vm_translate(ro[i], &pa, NULL));
		KASSERT(vm_translate((uintptr_t)phys_to_virt(pa), NULL, &f));
		if ((f & VM_WRITE) || (f & VM_EXEC))
			ktest_fail_at(
			        __FILE__, __LINE__,
			        "the alias of %#lx is mapped with flags %#x",
			        (unsigned long)ro[i], f);
	}
	paddr_t pa;
	unsigned f;
	KASSERT(vm_translate((uintptr_t)__data_start, &pa, NULL));
	KASSERT(vm_translate((uintptr_t)phys_to_virt(pa), NULL, &f));
	KEXPECT(f & VM_WRITE);
	volatile uint8_t *alias = phys_to_virt(
	        boot_state.kernel_phys_base +
	        ((uintptr_t)__text_start - boot_state.kernel_virt_base));
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		uint8_t v = *alias;
		*alias = v; /* the byte it holds: harmless if it goes through */
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__,
		              "a write to kernel text through the direct map "
		              "did not fault");
	} else {
		KEXPECT_EQ(fc.vector, VEC_PF);
		KEXPECT_EQ(fc.cr2, (uintptr_t)alias);
	}
}

/* A GiB of slot 509 no other test uses: its tables are made here. */
#define DIRTY_VA   (TEST_VA + (300ull << 30))
#define DIRTY_N    64
#define DIRTY_SPAN (4ull << 20) /* two page tables' worth */

/* Takes the pool's first DIRTY_N frames (lowest first) into f, fills
 * each with 0xff (an entry that is present, writable and huge in every
 * slot) and gives them back: the next frames taken are these. */
static void dirty_first_frames(paddr_t *f)
{
	for (unsigned i = 0; i < DIRTY_N; i++) {
		f[i] = frame_alloc();
		KASSERT(f[i] != 0);
		memset(phys_to_virt(f[i]), 0xff, PAGE_SIZE);
	}
	for (unsigned i = 0; i < DIRTY_N; i++)
		frame_free(f[i]);
}

/* The physical address of the table at level (as paging.c counts: 1 the
 * page directory, 0 the page table) that translates va, walked from CR3;
 * 0 if absent. */
static paddr_t table_of_level(uintptr_t va, int level)
{
	paddr_t t = read_cr3() & PTE_ADDR;
	for (int l = 3; l > level; l--) {
		uint64_t e =
		        ((uint64_t *)phys_to_virt(t))[va >> (12 + 9 * l) & 511];
		if (!(e & PTE_P) || (e & PTE_PS))
			return 0;
		t = e & PTE_ADDR;
	}
	return t;
}

/* The entries of the table at t that are not 0, but the first n. */
static size_t entries_set_past(paddr_t t, unsigned n)
{
	size_t set = 0;
	for (unsigned i = n; i < 512; i++)
		set += ((uint64_t *)phys_to_virt(t))[i] != 0;
	return set;
}

/*
 * A frame the pool hands out holds whatever its last owner left; a page
 * table made of one that is not cleared maps its garbage (a present entry
 * in a new table is the classic bug). The tables made over a fresh range
 * here come from frames filled with 0xff just before (the pool hands out
 * its lowest frames first; the line says how many did, as a frame freed
 * meanwhile by another CPU may come first): every entry of theirs must
 * be clear, the range map nothing, fault when read, and take a first
 * mapping.
 */
KTEST(paging, new_tables_over_dirty_frames_map_nothing)
{
	paddr_t f[DIRTY_N];
	dirty_first_frames(f);
	KASSERT_EQ(vm_prepare_range(DIRTY_VA, DIRTY_SPAN), 0);
	/* DIRTY_VA is 1 GiB-aligned: its directory's first two entries are
	 * the two page tables, and nothing else is set. */
	paddr_t t[3] = {table_of_level(DIRTY_VA, 1),
	                table_of_level(DIRTY_VA, 0),
	                table_of_level(DIRTY_VA + DIRTY_SPAN - 1, 0)};
	unsigned dirtied = 0;
	for (unsigned i = 0; i < 3; i++)
		for (unsigned k = 0; k < DIRTY_N; k++)
			dirtied += t[i] && t[i] == f[k];
	ktest_diag("of the range's directory and two page tables, %u were "
	           "dirtied frames",
	           dirtied);
	KASSERT(t[0] && t[1] && t[2] && t[1] != t[2]);
	KEXPECT_EQ(entries_set_past(t[0], 2), 0);
	KEXPECT_EQ(entries_set_past(t[1], 0), 0);
	KEXPECT_EQ(entries_set_past(t[2], 0), 0);
	size_t mapped = 0;
	for (uintptr_t va = DIRTY_VA; va < DIRTY_VA + DIRTY_SPAN;
	     va += PAGE_SIZE)
		mapped += vm_translate(va, NULL, NULL);
	KEXPECT_EQ(mapped, 0);
	KEXPECT(read_faults_at((volatile uint8_t *)DIRTY_VA));
	KEXPECT(read_faults_at(
	        (volatile uint8_t *)(DIRTY_VA + DIRTY_SPAN - PAGE_SIZE)));
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KEXPECT_EQ(vm_pte_set(DIRTY_VA, pa, VM_WRITE), 0);
	*(volatile uint64_t *)DIRTY_VA = 0x5a5a;
	KEXPECT_EQ(*(volatile uint64_t *)phys_to_virt(pa), 0x5a5a);
	KEXPECT_EQ(vm_pte_clear(DIRTY_VA, NULL), 0);
	frame_free(pa);
}

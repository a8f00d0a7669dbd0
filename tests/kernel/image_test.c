/*
 * The kernel's own address space as paging_init left it: W^X per section,
 * NULL unmapped, the direct map, the boot stack's guard page.
 */
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/kstack.h"
#include "kernel/ktest.h"

static const int rodata_word = 0x5a5a5a5a;
static volatile uint8_t bss_code[64];

/* Expects a fault of the given vector when writing *p; returns the catch. */
static bool write_faults(volatile uint8_t *p, struct fault_catch *fc)
{
	if (fault_catch_arm(fc) == 0) {
		*p = *p;
		fault_catch_disarm(fc);
		return false;
	}
	return true;
}

KTEST(image, section_permissions)
{
	unsigned f;
	KASSERT(vm_translate((uintptr_t)__text_start, NULL, &f));
	KEXPECT_EQ(f, VM_EXEC);
	KASSERT(vm_translate((uintptr_t)&rodata_word, NULL, &f));
	KEXPECT_EQ(f, VM_READ);
	KASSERT(vm_translate((uintptr_t)bss_code, NULL, &f));
	KEXPECT_EQ(f, VM_WRITE);
	KEXPECT(read_cr0() & CR0_WP);
	KEXPECT(rdmsr(MSR_EFER) & EFER_NXE);
}

KTEST(image, text_and_rodata_are_not_writable)
{
	struct fault_catch fc;
	KEXPECT(write_faults((volatile uint8_t *)__text_start, &fc));
	KEXPECT_EQ(fc.vector, VEC_PF);
	KEXPECT_EQ(fc.error & (PF_PRESENT | PF_WRITE), PF_PRESENT | PF_WRITE);
	KEXPECT(write_faults((volatile uint8_t *)&rodata_word, &fc));
	KEXPECT_EQ(fc.cr2, (uintptr_t)&rodata_word);
}

KTEST(image, data_is_not_executable)
{
	bss_code[0] = 0xc3; /* ret */
	void (*fn)(void) = (void (*)(void))(uintptr_t)bss_code;
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		fn();
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "bss executed");
		return;
	}
	KEXPECT_EQ(fc.vector, VEC_PF);
	KEXPECT(fc.error & PF_FETCH);
}

KTEST(image, null_page_is_unmapped)
{
	KEXPECT(!vm_translate(0, NULL, NULL));
	struct fault_catch fc;
	volatile uintptr_t near_null = 8; /* hidden from -Warray-bounds */
	if (fault_catch_arm(&fc) == 0) {
		(void)*(volatile int *)near_null;
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "NULL+8 readable");
		return;
	}
	KEXPECT_EQ(fc.vector, VEC_PF);
	KEXPECT_EQ(fc.cr2, 8);
	KEXPECT_EQ(fc.error & PF_PRESENT, 0);
}

KTEST(image, direct_map_covers_ram)
{
	paddr_t pa;
	unsigned f;
	/* rw- nx, but the image's text (and rodata): r-- nx (W^X). A frame
	 * of the pool's and the last page of RAM, not page 0 or the low
	 * MiB: the direct map holds RAM only, and firmware may reserve
	 * them (OVMF does not). */
	paddr_t frame = frame_alloc();
	KASSERT(frame != 0);
	paddr_t probe[] = {frame, boot_state.kernel_phys_base,
	                   boot_state.ram_top - PAGE_SIZE};
	unsigned want[] = {VM_WRITE, VM_READ, VM_WRITE};
	for (unsigned i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
		KEXPECT(vm_translate((uintptr_t)phys_to_virt(probe[i]), &pa,
		                     &f));
		KEXPECT_EQ(pa, probe[i]);
		KEXPECT_EQ(f, want[i]);
	}
	/* The image is reachable both ways, and both see one frame. */
	KEXPECT(vm_translate((uintptr_t)&rodata_word, &pa, NULL));
	KEXPECT_EQ(*(const int *)phys_to_virt(pa), rodata_word);
	uint64_t size = paging_direct_map_page_size();
	KEXPECT(size == LARGE_PAGE_SIZE || size == HUGE_PAGE_SIZE);
	frame_free(frame);
}

/* What a walk of the live page tables found: leaves, and the first
 * leaf that is writable and executable, or user-accessible. */
struct wx_walk {
	unsigned leaves, bad;
	uintptr_t bad_va;
	uint64_t bad_entry;
};

static uintptr_t sign_extend(uintptr_t va)
{
	return (uintptr_t)((int64_t)(va << 16) >> 16);
}

/* Walks the table at pa (level 3 the PML4, 0 a page table) mapping from
 * base. A leaf's rights are its path's: writable if every entry on it is,
 * executable if none has NX. */
static void wx_walk_table(struct wx_walk *w, paddr_t pa, int level,
                          uintptr_t base, bool wr_above, bool nx_above)
{
	const volatile uint64_t *t = phys_to_virt(pa);
	for (unsigned i = 0; i < 512; i++) {
		uint64_t e = t[i];
		if (!(e & PTE_P))
			continue;
		uintptr_t va =
		        sign_extend(base + ((uintptr_t)i << (12 + 9 * level)));
		bool wr = wr_above && (e & PTE_W);
		bool nx = nx_above || (e & PTE_NX);
		if (level > 0 && !(e & PTE_PS) && !(e & PTE_U)) {
			wx_walk_table(w, e & PTE_ADDR, level - 1, va, wr, nx);
			continue;
		}
		w->leaves++;
		if (((wr && !nx) || (e & PTE_U)) && w->bad++ == 0) {
			w->bad_va = va;
			w->bad_entry = e;
		}
	}
}

/* W^X over the whole address space, not only the image's sections: no
 * page the kernel maps, now, is both writable and executable, and none is
 * a user page (the kernel has no user mode). A guard for mappings to come:
 * the one rwx page a review found, the AP trampoline's, is unmapped
 * before tests run (smp.the_trampoline_page_is_not_writable_where_it_runs
 * checks it). Other CPUs may change heap entries meanwhile; page-table
 * pages are never freed, so the walk stays safe. */
KTEST(image, no_page_is_writable_and_executable)
{
	struct wx_walk w = {0};
	wx_walk_table(&w, read_cr3() & PTE_ADDR, 3, 0, true, false);
	ktest_diag("%u leaves", w.leaves);
	KEXPECT(w.leaves > 0);
	if (w.bad)
		ktest_fail_at(__FILE__, __LINE__,
		              "%u leaves are writable and executable, or user; "
		              "the first maps %#lx (entry %#llx)",
		              w.bad, (unsigned long)w.bad_va,
		              (unsigned long long)w.bad_entry);
}

KTEST(image, boot_stack_guard_is_unmapped)
{
	KEXPECT(!vm_translate((uintptr_t)__boot_stack_guard, NULL, NULL));
	KEXPECT(vm_translate((uintptr_t)__boot_stack_bottom, NULL, NULL));
	KEXPECT(kstack_is_guard((uintptr_t)__boot_stack_guard + 100));
	KEXPECT(!kstack_is_guard((uintptr_t)__boot_stack_bottom));
	/* We are running on it. */
	uint64_t rsp;
	__asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
	KEXPECT(rsp > (uintptr_t)__boot_stack_bottom &&
	        rsp <= (uintptr_t)__boot_stack_top);
}

/*
 * The kernel's own page tables.
 *
 * paging_init builds, from frames of the frame source the kernel hands it
 * (struct paging_frame_source: arch/ does not know the kernel's pool):
 *   - the direct map at DIRECT_MAP_BASE of the RAM the memory map lists,
 *     and nothing else (paging_direct.c), in pages of up to 1 GiB when the
 *     CPU has them (CPUID 0x80000001 EDX.26), else 2 MiB, RW+NX;
 *   - the kernel image section by section with 4 KiB pages: text R-X,
 *     rodata R--, data and bss RW-+NX, the boot stack's guard page absent;
 * sets EFER.NXE, CR0.WP and CR4.PGE, and loads CR3. Nothing maps virtual
 * address 0, so a NULL dereference faults.
 *
 * Page-table pages are reached through the direct map, and are never freed:
 * an unmapped range keeps its tables for the next map.
 *
 * Entries are shared without a common lock: heap PTEs are set and cleared
 * by whoever owns the page (vm_pte_set/vm_pte_clear, no lock), while
 * vm_translate and the lock-free walk read entries on any CPU, and the MMU
 * itself sets the accessed and dirty bits. So every entry is read with one
 * atomic load (pte_load) and written with one atomic store, and a change
 * that depends on the old value (present or not) is a compare-and-swap on
 * the value it checked: two changes to one entry cannot both act on the
 * same old value.
 */
#include <stdatomic.h>

#include "paging.h"
#include "paging_internal.h"
#include "paging_testing.h"

#include "cpu.h"
#include "kernel/bootinfo.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"

/* Immutable after paging_init(): */
static paddr_t kernel_pml4;
static uint64_t direct_page_size;
static struct paging_frame_source frame_source;

/*
 * The vm lock protects the shape of the tables: only its holder creates a
 * page-table page and writes the upper-level entry that links it (walk
 * with create), so two walks cannot both fill one empty slot, and the
 * frame for a new table is taken under it. vm_map_page, vm_unmap_page and
 * vm_protect_page also run under it, which orders them with each other.
 *
 * It does not protect leaf entries in general: heap PTEs in prepared
 * ranges are changed with no lock by the page's owner (vm_pte_set and
 * vm_pte_clear, callable under the heap lock, a leaf), and readers
 * (vm_translate, prepared_leaf) take no lock. What keeps those safe is
 * that tables are never freed and entries change atomically (see above).
 *
 * Rank VM (kernel/lockrank.h), always taken irqsave; the one lock taken
 * under it is the frame pool's (rank FRAMES, through frame_source.alloc)
 * when a walk creates a table.
 */
static struct spinlock vm_lock = SPINLOCK_INIT("vm", LOCK_RANK_VM);

/* Replaces *e with v if it still holds *old; else loads it into *old. */
static inline bool pte_cas(uint64_t *e, uint64_t *old, uint64_t v)
{
	return __atomic_compare_exchange_n(e, old, v, false, __ATOMIC_ACQ_REL,
	                                   __ATOMIC_ACQUIRE);
}

static inline uint64_t *table_of(uint64_t entry)
{
	return phys_to_virt(entry & PTE_ADDR);
}

static bool canonical(uintptr_t va)
{
	return (uint64_t)((int64_t)(va << 16) >> 16) == va;
}

/* The flags a map call accepts: enum vm_flags only, and never writable
 * and executable at once (W^X). */
static bool flags_ok(unsigned flags)
{
	return !(flags & ~VM_FLAGS_ALL) &&
	       (flags & (VM_WRITE | VM_EXEC)) != (VM_WRITE | VM_EXEC);
}

/* flags: enum vm_flags only (the callers refuse any other bit). */
static uint64_t pte_flags(unsigned flags)
{
	uint64_t f = PTE_P | PTE_G;
	if (flags & VM_WRITE)
		f |= PTE_W;
	if (!(flags & VM_EXEC))
		f |= PTE_NX;
	if (flags & VM_NOCACHE)
		f |= PTE_PCD | PTE_PWT;
	return f;
}

static unsigned vm_flags_of(uint64_t pte)
{
	unsigned f = VM_READ;
	if (pte & PTE_W)
		f |= VM_WRITE;
	if (!(pte & PTE_NX))
		f |= VM_EXEC;
	if (pte & PTE_PCD)
		f |= VM_NOCACHE;
	return f;
}

/* Page-table pages made so far (never freed). Atomic: read lock-free. */
static _Atomic size_t table_pages;

/* Returns a zeroed frame for a page-table page, or 0. */
static paddr_t alloc_table(void)
{
	paddr_t pa = frame_source.alloc();
	if (pa) {
		memset(phys_to_virt(pa), 0, PAGE_SIZE);
		atomic_fetch_add_explicit(&table_pages, 1,
		                          memory_order_relaxed);
	}
	return pa;
}

size_t paging_table_pages(void)
{
	return atomic_load_explicit(&table_pages, memory_order_relaxed);
}

/*
 * Walks from the PML4 down to the table at stop_level (0 = the page table)
 * for va, creating missing tables when create is set. Returns NULL when a
 * table is missing (and not created), when a large page is in the way
 * (*large set), or when no frame is left. Locking: vm_lock must be held
 * when create is set (paging_init runs before any other CPU).
 */
uint64_t *paging_walk(uintptr_t va, int stop_level, bool create, bool *large)
{
	uint64_t *table = phys_to_virt(kernel_pml4);
	*large = false;
	for (int level = 3; level > stop_level; level--) {
		uint64_t *e = &table[level_index(va, level)];
		uint64_t v = pte_load(e);
		if (!(v & PTE_P)) {
			if (!create)
				return NULL;
			paddr_t pa = alloc_table();
			if (!pa)
				return NULL;
			/* Upper levels are permissive; the leaf decides. */
			v = pa | PTE_P | PTE_W;
			pte_store(e, v);
		} else if (v & PTE_PS) {
			*large = true;
			return NULL;
		}
		table = table_of(v);
	}
	return table;
}

/* A page that may be mapped: aligned, canonical, and not page 0, which
 * stays unmapped so that a NULL dereference faults (layout.h). */
static bool leaf_va_ok(uintptr_t va)
{
	return va % PAGE_SIZE == 0 && canonical(va) && va != 0;
}

/*
 * Finds the leaf entry for va under vm_lock, creating tables if create.
 * Returns NULL with *err set when there is none.
 */
static uint64_t *leaf_locked(uintptr_t va, bool create, int *err)
{
	bool large;
	uint64_t *pt = paging_walk(va, 0, create, &large);
	if (!pt) {
		*err = large ? -VM_EINVAL : create ? -VM_ENOMEM : -VM_ENOENT;
		return NULL;
	}
	return &pt[level_index(va, 0)];
}

int vm_map_page(uintptr_t va, paddr_t pa, unsigned flags)
{
	int err = VM_OK;
	if (!leaf_va_ok(va) || pa & ~PTE_ADDR || !flags_ok(flags))
		return -VM_EINVAL;
	unsigned long irq = spin_lock_irqsave(&vm_lock);
	uint64_t *e = leaf_locked(va, true, &err);
	if (e) {
		uint64_t old = pte_load(e);
		do {
			if (old & PTE_P) {
				err = -VM_EEXIST;
				break;
			}
		} while (!pte_cas(e, &old, pa | pte_flags(flags)));
	}
	spin_unlock_irqrestore(&vm_lock, irq);
	return err;
}

/*
 * Changes the present leaf entry of va under vm_lock: clears it (unmap) or
 * rewrites its permissions, then flushes this CPU's TLB. Stores the old
 * frame in *pa if non-NULL. Returns 0 or -VM_EINVAL / -VM_ENOENT.
 */
static int change_leaf(uintptr_t va, bool unmap, unsigned flags, paddr_t *pa)
{
	int err = VM_OK;
	if (va % PAGE_SIZE || !canonical(va) || !flags_ok(flags))
		return -VM_EINVAL;
	unsigned long irq = spin_lock_irqsave(&vm_lock);
	uint64_t *e = leaf_locked(va, false, &err);
	if (e) {
		/* A CAS, not a plain store: the MMU may set A/D meanwhile. */
		uint64_t old = pte_load(e), v;
		do {
			if (!(old & PTE_P)) {
				err = -VM_ENOENT;
				break;
			}
			v = unmap ? 0 : (old & PTE_ADDR) | pte_flags(flags);
		} while (!pte_cas(e, &old, v));
		if (err == VM_OK) {
			if (pa)
				*pa = old & PTE_ADDR;
			invlpg(va);
		}
	}
	spin_unlock_irqrestore(&vm_lock, irq);
	return err;
}

int vm_unmap_page(uintptr_t va, paddr_t *pa)
{
	return change_leaf(va, true, 0, pa);
}

int vm_protect_page(uintptr_t va, unsigned flags)
{
	return change_leaf(va, false, flags, NULL);
}

/*
 * True when [va, va + nbytes) is page aligned and canonical throughout:
 * it may end exactly at 2^64, but not wrap past it (into page 0), and
 * both ends lie in one half, so it does not cross the non-canonical hole
 * (whose addresses would index the other half's tables). Checking the two
 * ends alone is not enough: both are canonical in either case.
 */
static bool range_ok(uintptr_t va, size_t nbytes)
{
	if (va % PAGE_SIZE || nbytes % PAGE_SIZE || nbytes == 0)
		return false;
	uintptr_t last = va + (nbytes - 1);
	return last >= va && canonical(va) && canonical(last) &&
	       (va >> 63) == (last >> 63);
}

int vm_prepare_range(uintptr_t va, size_t nbytes)
{
	if (nbytes == 0)
		return va % PAGE_SIZE || !canonical(va) ? -VM_EINVAL : VM_OK;
	if (!range_ok(va, nbytes))
		return -VM_EINVAL;
	/* By the last chunk, not by va + nbytes, which is 0 for a range
	 * that ends at 2^64. */
	uintptr_t last_chunk = align_down(va + (nbytes - 1), LARGE_PAGE_SIZE);
	int err = VM_OK;
	unsigned long irq = spin_lock_irqsave(&vm_lock);
	for (uintptr_t a = align_down(va, LARGE_PAGE_SIZE);;
	     a += LARGE_PAGE_SIZE) {
		bool large;
		if (!paging_walk(a, 0, true, &large)) {
			err = large ? -VM_EINVAL : -VM_ENOMEM;
			break;
		}
		if (a == last_chunk)
			break;
	}
	spin_unlock_irqrestore(&vm_lock, irq);
	return err;
}

/* The leaf entry of a prepared range, found without the lock: the tables
 * above it exist and are never freed. NULL if the range is not prepared. */
static uint64_t *prepared_leaf(uintptr_t va)
{
	uint64_t *table = phys_to_virt(kernel_pml4);
	for (int level = 3; level > 0; level--) {
		uint64_t e = pte_load(&table[level_index(va, level)]);
		if (!(e & PTE_P) || (e & PTE_PS))
			return NULL;
		table = table_of(e);
	}
	return &table[level_index(va, 0)];
}

TEST_HOOK_DEFINE(paging_testing_pte_change);

int vm_pte_set(uintptr_t va, paddr_t pa, unsigned flags)
{
	/* As vm_map_page: a pa with bits outside PTE_ADDR would set NX,
	 * reserved or ignored bits of the entry. */
	if (!leaf_va_ok(va) || pa & ~PTE_ADDR || !flags_ok(flags))
		return -VM_EINVAL;
	uint64_t *e = prepared_leaf(va);
	if (!e)
		return -VM_ENOENT;
	uint64_t old = pte_load(e);
	TEST_HOOK(paging_testing_pte_change, va);
	do {
		if (old & PTE_P)
			return -VM_EEXIST;
	} while (!pte_cas(e, &old, pa | pte_flags(flags)));
	return VM_OK;
}

int vm_pte_clear(uintptr_t va, paddr_t *pa)
{
	if (va % PAGE_SIZE || !canonical(va))
		return -VM_EINVAL;
	uint64_t *e = prepared_leaf(va);
	if (!e)
		return -VM_ENOENT;
	uint64_t old = pte_load(e);
	TEST_HOOK(paging_testing_pte_change, va);
	do {
		if (!(old & PTE_P))
			return -VM_ENOENT;
	} while (!pte_cas(e, &old, 0));
	if (pa)
		*pa = old & PTE_ADDR;
	invlpg(va);
	return VM_OK;
}

bool vm_translate(uintptr_t va, paddr_t *pa, unsigned *flags)
{
	if (!canonical(va) || !kernel_pml4)
		return false;
	uint64_t *table = phys_to_virt(kernel_pml4);
	for (int level = 3; level >= 0; level--) {
		uint64_t e = pte_load(&table[level_index(va, level)]);
		if (!(e & PTE_P))
			return false;
		if (level == 0 || (e & PTE_PS)) {
			uint64_t size = PAGE_SIZE << (9 * level);
			if (pa)
				*pa = (e & PTE_ADDR & ~(size - 1)) +
				      (va & (size - 1));
			if (flags)
				*flags = vm_flags_of(e);
			return true;
		}
		table = table_of(e);
	}
	return false;
}

uint64_t paging_direct_map_page_size(void)
{
	return direct_page_size;
}

static void map_image_range(const char *start, const char *end, unsigned f)
{
	for (uintptr_t va = (uintptr_t)start; va < (uintptr_t)end;
	     va += PAGE_SIZE) {
		if (va == (uintptr_t)__boot_stack_guard)
			continue;
		paddr_t pa = boot_state.kernel_phys_base +
		             (va - boot_state.kernel_virt_base);
		int err = vm_map_page(va, pa, f);
		if (err)
			panic("paging: cannot map kernel page %#lx: error %d",
			      (unsigned long)va, -err);
	}
}

void paging_init(const struct paging_frame_source *src)
{
	uint32_t r[4];
	if (!src || !src->alloc)
		panic("paging: no frame source for page-table pages");
	frame_source = *src;
	cpuid(0x80000001, 0, r);
	direct_page_size =
	        (r[3] & (1u << 26)) ? HUGE_PAGE_SIZE : LARGE_PAGE_SIZE;
	kernel_pml4 = alloc_table();
	if (!kernel_pml4)
		panic("paging: no frame for the PML4");
	paging_map_direct(direct_page_size);
	map_image_range(__text_start, __text_end, VM_EXEC);
	map_image_range(__rodata_start, __rodata_end, VM_READ);
	map_image_range(__data_start, __bss_end, VM_WRITE);

	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
	write_cr0(read_cr0() | CR0_WP);
	write_cr3(kernel_pml4);
	/* Turning PGE on after the switch flushes everything, globals too. */
	write_cr4(read_cr4() | CR4_PGE);
}

void paging_print_layout(void)
{
	paging_print_direct_map();
	printk("paging: kernel text %p-%p r-x\n", __text_start, __text_end);
	printk("paging: rodata      %p-%p r--\n", __rodata_start, __rodata_end);
	printk("paging: data+bss    %p-%p rw- nx (boot stack guard %p)\n",
	       __data_start, __bss_end, __boot_stack_guard);
	printk("paging: kstacks     %#llx-%#llx (guard page under each)\n",
	       KSTACK_REGION_BASE, KSTACK_REGION_BASE + KSTACK_REGION_SIZE);
	printk("paging: page 0 unmapped, EFER.NXE on, CR0.WP on, CR3 %#llx\n",
	       (unsigned long long)kernel_pml4);
}

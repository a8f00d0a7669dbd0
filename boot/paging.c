/* The loader's 4-level page tables, built from one pre-sized pool of pages. */
#include "paging.h"

#include <stdbool.h>

#include "boot_info.h"

#define PAGE_SIZE  4096ull
#define LARGE_SIZE (2ull << 20)
#define PTE_P      0x001ull /* present */
#define PTE_W      0x002ull /* writable */
#define PTE_PS     0x080ull /* 2 MiB page in a PD entry */
#define PTE_ADDR   0x000ffffffffff000ull
#define PML4_SHIFT 39
#define PDPT_SHIFT 30
#define PD_SHIFT   21
#define PT_SHIFT   12
#define ENTRIES    512u
#define GIB        (1ull << 30)
/* Below 4 GiB lie the legacy holes and the APICs: the span always
 * reaches past them (the contract's limit), though only RAM in it is
 * mapped when the layout has a map. */
#define MIN_DIRECT_MAP (4 * GIB)

struct pool {
	unsigned char *base;
	size_t pages;
	size_t used;
};

/* Types whose ranges the direct map must cover: the memory the kernel
 * uses and the firmware's own (its runtime code and data, ACPI tables
 * and NVS, PAL code). Not the holes, nor memory the kernel never reads
 * through it: unusable, persistent (an NVDIMM's window, up to terabytes
 * high) and types this loader does not know (OEM and OS types), which
 * counted as RAM and sized the map, and its page tables, to them. The
 * kernel maps ACPI tables the direct map does not cover (acpi.c). */
static bool is_ram_like(uint32_t type)
{
	switch (type) {
	case EFI_LOADER_CODE:
	case EFI_LOADER_DATA:
	case EFI_BOOT_SERVICES_CODE:
	case EFI_BOOT_SERVICES_DATA:
	case EFI_RUNTIME_SERVICES_CODE:
	case EFI_RUNTIME_SERVICES_DATA:
	case EFI_CONVENTIONAL_MEMORY:
	case EFI_ACPI_RECLAIM_MEMORY:
	case EFI_ACPI_MEMORY_NVS:
	case EFI_PAL_CODE:
	case EFI_UNACCEPTED_MEMORY: /* conventional once accepted */
		return true;
	default:
		return false;
	}
}

/* Copies n bytes: the firmware's stride need not keep the descriptors
 * 8-byte aligned (as bootinfo_read_mmap), and the loader has no memcpy. */
static void copy_bytes(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
}

uint64_t paging_direct_map_limit(const void *map, size_t size, size_t desc_size,
                                 paging_ignored_fn ignored, void *ctx)
{
	const unsigned char *p = map;
	uint64_t limit = MIN_DIRECT_MAP;

	for (size_t off = 0; off + sizeof(struct efi_memory_descriptor) <= size;
	     off += desc_size) {
		struct efi_memory_descriptor d;
		uint64_t end;

		copy_bytes(&d, p + off, sizeof(d));
		/* No pages, no memory: its start is no end of RAM (the
		 * kernel skips it too). */
		if (d.number_of_pages == 0)
			continue;
		/* Clipped at 2^52 it would still ask for tables no loader
		 * can build, and no CPU reaches what lies past it. */
		if (!boot_ends_by_max_phys(d.physical_start,
		                           d.number_of_pages)) {
			if (ignored)
				ignored(ctx, &d);
			continue;
		}
		end = d.physical_start + d.number_of_pages * PAGE_SIZE;
		if (is_ram_like(d.type) && end > limit)
			limit = end;
	}
	return (limit + GIB - 1) & ~(GIB - 1);
}

/* How many aligned 1 << shift regions [start, start + size) touches; size is
 * non-zero and the range does not wrap. */
static uint64_t regions(uint64_t start, uint64_t size, unsigned shift)
{
	return ((start + size - 1) >> shift) - (start >> shift) + 1;
}

static unsigned index_of(uint64_t virt, unsigned shift)
{
	return (virt >> shift) & (ENTRIES - 1);
}

/* True when the three users of the PML4 get disjoint slots: identity maps in
 * [0, n), direct map in [d, d + n), the kernel in [k0, k1]. */
static bool slots_fit(const struct paging_layout *l)
{
	uint64_t n = regions(0, l->direct_map_limit, PML4_SHIFT);
	uint64_t d = index_of(l->direct_map_base, PML4_SHIFT);
	uint64_t k0 = index_of(l->kernel_virt, PML4_SHIFT);
	uint64_t kend = l->kernel_virt + l->kernel_size - 1;
	uint64_t k1 = index_of(kend, PML4_SHIFT);

	/* Sharing PDPTs needs the direct map on a PML4 slot boundary. */
	if (l->direct_map_base & ((1ull << PML4_SHIFT) - 1))
		return false;
	if (n > ENTRIES / 2 || d < n || d + n > ENTRIES)
		return false;
	if (kend < l->kernel_virt || k0 < n)
		return false;
	return k1 < d || k0 >= d + n;
}

/* The RAM range of l's map entry at byte off, clipped to the limit, in
 * [*start, *end); false if the entry is none (not RAM, empty, past 2^52
 * or the limit). */
static bool ram_range(const struct paging_layout *l, size_t off,
                      uint64_t *start, uint64_t *end)
{
	struct efi_memory_descriptor d;

	copy_bytes(&d, (const unsigned char *)l->map + off, sizeof(d));
	if (!is_ram_like(d.type) || d.number_of_pages == 0 ||
	    !boot_ends_by_max_phys(d.physical_start, d.number_of_pages) ||
	    d.physical_start >= l->direct_map_limit)
		return false;
	/* Pages start on 4 KiB; a firmware that says otherwise gets its
	 * pages mapped whole, not its low bits in the entries' flags. */
	*start = d.physical_start & ~(PAGE_SIZE - 1);
	*end = (d.physical_start + d.number_of_pages * PAGE_SIZE + PAGE_SIZE -
	        1) &
	       ~(PAGE_SIZE - 1);
	if (*end > l->direct_map_limit)
		*end = l->direct_map_limit;
	return true;
}

/* Whether off is a whole entry of l's map. */
static bool entry_at(const struct paging_layout *l, size_t off)
{
	return off + sizeof(struct efi_memory_descriptor) <= l->map_size;
}

size_t paging_tables_needed(const struct paging_layout *l)
{
	uint64_t kv = l->kernel_virt, ks = l->kernel_size, s, e;
	size_t ends = 0;

	if (l->direct_map_limit == 0 || l->kernel_size == 0 ||
	    (l->direct_map_limit & ((1ull << PDPT_SHIFT) - 1)) ||
	    (kv | ks | l->kernel_phys) & (PAGE_SIZE - 1) || !slots_fit(l) ||
	    (l->map && l->desc_size < sizeof(struct efi_memory_descriptor)))
		return 0;
	for (size_t off = 0; l->map && entry_at(l, off); off += l->desc_size)
		if (ram_range(l, off, &s, &e))
			ends += 2;
	/* PML4, identity PDPTs and PDs (shared by the direct map) and a PT
	 * for each end of a RAM range, then the kernel's own PDPTs, PDs
	 * and PTs. */
	return 1 + regions(0, l->direct_map_limit, PML4_SHIFT) +
	       (l->direct_map_limit >> PDPT_SHIFT) + ends +
	       regions(kv, ks, PML4_SHIFT) + regions(kv, ks, PDPT_SHIFT) +
	       regions(kv, ks, PD_SHIFT);
}

/* Returns the next zeroed page of the pool, or NULL when it is used up. */
static uint64_t *pool_take(struct pool *p)
{
	if (p->used == p->pages)
		return NULL;
	return (uint64_t *)(p->base + PAGE_SIZE * p->used++);
}

/* Returns the table that table[index] points to, creating it if absent.
 * Returns NULL when the pool is used up or the entry maps a large page. */
static uint64_t *next_table(struct pool *p, uint64_t *table, unsigned index)
{
	uint64_t *next;

	if (table[index] & PTE_P) {
		if (table[index] & PTE_PS)
			return NULL;
		return (uint64_t *)(uintptr_t)(table[index] & PTE_ADDR);
	}
	next = pool_take(p);
	if (!next)
		return NULL;
	table[index] = (uint64_t)(uintptr_t)next | PTE_P | PTE_W;
	return next;
}

/* Maps one 4 KiB page, or one 2 MiB page when large. Returns 0, or -1 when
 * a table on the way cannot be had. */
static int map_page(struct pool *p, uint64_t *pml4, uint64_t virt,
                    uint64_t phys, bool large)
{
	uint64_t *pdpt = next_table(p, pml4, index_of(virt, PML4_SHIFT));
	uint64_t *pd =
	        pdpt ? next_table(p, pdpt, index_of(virt, PDPT_SHIFT)) : NULL;
	uint64_t *pt;

	if (!pd)
		return -1;
	if (large) {
		pd[index_of(virt, PD_SHIFT)] = phys | PTE_P | PTE_W | PTE_PS;
		return 0;
	}
	pt = next_table(p, pd, index_of(virt, PD_SHIFT));
	if (!pt)
		return -1;
	pt[index_of(virt, PT_SHIFT)] = phys | PTE_P | PTE_W;
	return 0;
}

/* The PD entry that maps a, or NULL if none is there yet. */
static const uint64_t *pd_entry(const uint64_t *pml4, uint64_t a)
{
	uint64_t e = pml4[index_of(a, PML4_SHIFT)];

	if (!(e & PTE_P))
		return NULL;
	e = ((const uint64_t *)(uintptr_t)(e &
	                                   PTE_ADDR))[index_of(a, PDPT_SHIFT)];
	if (!(e & PTE_P))
		return NULL;
	return (const uint64_t *)(uintptr_t)(e & PTE_ADDR) +
	       index_of(a, PD_SHIFT);
}

/* Maps [start, end), page aligned, to itself: 2 MiB pages where a whole
 * one lies inside, 4 KiB pages at the ends. A map that lists a page
 * twice leaves it mapped once (a 2 MiB page stays, and takes no 4 KiB
 * page; a block with a page table gets 4 KiB pages). Returns 0, or -1 if
 * a table cannot be had. */
static int map_range(struct pool *p, uint64_t *pml4, uint64_t start,
                     uint64_t end)
{
	for (uint64_t a = start; a < end;) {
		const uint64_t *pde = pd_entry(pml4, a);
		bool mapped_large = pde && (*pde & PTE_PS);
		bool large = !(a & (LARGE_SIZE - 1)) && end - a >= LARGE_SIZE &&
		             !(pde && (*pde & PTE_P));

		if (!mapped_large && map_page(p, pml4, a, a, large))
			return -1;
		a += large || mapped_large ? LARGE_SIZE - (a & (LARGE_SIZE - 1))
		                           : PAGE_SIZE;
	}
	return 0;
}

/* The identity map: the map's RAM below the limit, or all of it. */
static int map_identity(struct pool *p, uint64_t *pml4,
                        const struct paging_layout *l)
{
	uint64_t s, e;

	if (!l->map)
		return map_range(p, pml4, 0, l->direct_map_limit);
	for (size_t off = 0; entry_at(l, off); off += l->desc_size)
		if (ram_range(l, off, &s, &e) && map_range(p, pml4, s, e))
			return -1;
	return 0;
}

uint64_t paging_build(void *pool, size_t pool_pages,
                      const struct paging_layout *l)
{
	struct pool p = {pool, pool_pages, 0};
	size_t need = paging_tables_needed(l);
	uint64_t *words = pool, *pml4;
	unsigned direct = index_of(l->direct_map_base, PML4_SHIFT);

	if (need == 0 || need > pool_pages)
		return 0;
	for (size_t i = 0; i < pool_pages * (PAGE_SIZE / 8); i++)
		words[i] = 0;
	pml4 = pool_take(&p);
	if (map_identity(&p, pml4, l))
		return 0;
	/* The direct map reuses the identity PDPTs: same PDs, no new pages
	 * (a slot with no RAM stays empty in both). */
	for (uint64_t i = 0; i < regions(0, l->direct_map_limit, PML4_SHIFT);
	     i++)
		pml4[direct + i] = pml4[i];
	for (uint64_t off = 0; off < l->kernel_size; off += PAGE_SIZE) {
		if (map_page(&p, pml4, l->kernel_virt + off,
		             l->kernel_phys + off, false))
			return 0;
	}
	return (uint64_t)(uintptr_t)pml4;
}

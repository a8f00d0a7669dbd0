/* The loader's page tables: identity and direct maps plus the kernel image. */
#ifndef BOOT_PAGING_H
#define BOOT_PAGING_H

#include <stddef.h>
#include <stdint.h>

/* What the tables map; every address is physical except kernel_virt. */
struct paging_layout {
	uint64_t direct_map_limit; /* multiple of 1 GiB, > 0 */
	uint64_t direct_map_base;  /* where [0, limit) appears again */
	uint64_t kernel_virt;      /* page aligned */
	uint64_t kernel_phys;      /* page aligned */
	uint64_t kernel_size;      /* bytes, page multiple, > 0 */
	/* The UEFI memory map: the identity and direct maps hold its RAM
	 * (paging_direct_map_limit's types) below the limit and nothing
	 * else; NULL: all of [0, limit) */
	const void *map;
	size_t map_size, desc_size; /* desc_size >= 40 */
};

struct efi_memory_descriptor;

/* Told of each memory-map entry paging_direct_map_limit ignores. */
typedef void (*paging_ignored_fn)(void *ctx,
                                  const struct efi_memory_descriptor *d);

/*
 * Returns the contract's direct_map_limit for the UEFI memory map
 * map[0, size), descriptors desc_size (>= 40) bytes apart: the highest
 * end of a range that is not reserved or device memory (nor empty),
 * rounded up to 1 GiB, at least 4 GiB (the legacy holes and the APICs
 * lie below). An entry that ends past 2^52, the architectural limit of
 * physical addresses, is ignored whatever its type (firmware may list
 * windows up there; mapping to 2^52 is more than the tables can) and
 * passed to ignored(ctx, entry), if ignored is not NULL, to be reported.
 */
uint64_t paging_direct_map_limit(const void *map, size_t size, size_t desc_size,
                                 paging_ignored_fn ignored, void *ctx);

/*
 * Returns the number of 4 KiB table pages paging_build needs for layout, or
 * 0 when the layout cannot be mapped with 4-level paging: the direct map
 * would not fit in the lower half or would run into the kernel's PML4 slot.
 * Exact without a map; with one, a bound: two page tables for each RAM
 * range, one for each end, which need not fall on 2 MiB.
 */
size_t paging_tables_needed(const struct paging_layout *layout);

/*
 * Builds the tables in pool (pool_pages pages at a physical address equal to
 * its pointer value, as under UEFI's identity map): identity and at
 * direct_map_base, the map's RAM below the limit (all of [0, limit)
 * without a map), with 2 MiB pages where a range holds a whole one and
 * 4 KiB pages at its ends; the kernel with 4 KiB pages. All present,
 * writable, executable, supervisor-only. Holes and device memory stay
 * unmapped: a write-back mapping of device registers beside the kernel's
 * uncached one is what the manuals leave undefined, and a speculative
 * read through it could reach the device. Returns the physical
 * address of the PML4, or 0 when the pool is too small or the layout cannot
 * be mapped.
 */
uint64_t paging_build(void *pool, size_t pool_pages,
                      const struct paging_layout *layout);

#endif

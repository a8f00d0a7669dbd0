/*
 * Takes the loader's handoff (boot/boot_info.h) into kernel memory: checks
 * magic and version, copies the UEFI memory map (honouring the descriptor
 * size the firmware reported) into sorted regions, and the command line.
 * A map the frame pool could not trust (an entry unaligned, overlapping
 * another, or free memory over the kernel image) panics naming the
 * entry, except one that ends past 2^52 (or wraps past 2^64), aligned or
 * not, which is printed and left out, as the loader leaves it out of its
 * direct map. Usable memory past the 32 TiB of the kernel's direct map
 * is printed and left out too (an entry across the end keeps its part
 * below). A map with no free memory at all panics saying so; so does a
 * handoff whose map or command line the loader's direct map does not
 * cover (a descriptor size below 40 bytes or not dividing the map's size,
 * a map past the end of the direct map), and one whose kernel image is
 * not the kernel as linked (another virtual base, an unaligned or short
 * image, one past the direct map).
 * Runs once, on the boot CPU, while the loader's direct map is live.
 * The options in the command line are read by bootinfo_cmdline.c.
 */
#include "bootinfo.h"

#include "kernel/bootinfo_testing.h"
#include "kernel/printk.h"
#include "kernel/string.h"

struct boot_state boot_state;

_Static_assert(DIRECT_MAP_SIZE == 32ull << 40,
               "the line about memory past the direct map names its size");

bool mem_type_usable(uint32_t type)
{
	return type == EFI_CONVENTIONAL_MEMORY || type == EFI_LOADER_CODE ||
	       type == EFI_LOADER_DATA || type == EFI_BOOT_SERVICES_CODE ||
	       type == EFI_BOOT_SERVICES_DATA;
}

const char *mem_type_name(uint32_t type)
{
	static const char *const names[] = {
	        "reserved",  "loader code",  "loader data",  "boot code",
	        "boot data", "runtime code", "runtime data", "conventional",
	        "unusable",  "ACPI reclaim", "ACPI NVS",     "MMIO",
	        "MMIO port", "PAL code",     "persistent",   "unaccepted",
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) ==
	                       EFI_UNACCEPTED_MEMORY + 1,
	               "a name for each type up to UEFI 2.9's last");
	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "other";
}

struct mem_totals mem_totals(const struct boot_state *b)
{
	struct mem_totals t = {0};
	for (size_t i = 0; i < b->nregions; i++) {
		const struct mem_region *r = &b->regions[i];
		uint64_t n = r->limit - r->base;
		if (mem_type_usable(r->type))
			t.usable += n;
		if (r->type == EFI_CONVENTIONAL_MEMORY)
			t.conventional += n;
		else if (r->type == EFI_UNACCEPTED_MEMORY)
			t.unaccepted += n;
		else if (r->type == EFI_ACPI_RECLAIM_MEMORY)
			t.acpi_reclaim += n;
	}
	return t;
}

const struct mem_region *mem_region_of(paddr_t pa)
{
	size_t lo = 0, hi = boot_state.nregions;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct mem_region *r = &boot_state.regions[mid];
		if (pa < r->base)
			hi = mid;
		else if (pa >= r->limit)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

/* Removes region i, closing the gap. */
static void drop_region(struct boot_state *b, size_t i)
{
	for (b->nregions--; i < b->nregions; i++)
		b->regions[i] = b->regions[i + 1];
}

/* Joins [base, limit) to the region before position i or the one at it
 * if it touches one of its type (and then that one to the next, if the
 * gap between them was all it filled); false if it touches neither. */
static bool join_region(struct boot_state *b, size_t i, paddr_t base,
                        paddr_t limit, uint32_t type)
{
	struct mem_region *prev = i > 0 ? &b->regions[i - 1] : NULL;
	struct mem_region *next = i < b->nregions ? &b->regions[i] : NULL;
	if (prev && prev->type == type && prev->limit == base) {
		prev->limit = limit;
		if (next && next->type == type && next->base == limit) {
			prev->limit = next->limit;
			drop_region(b, i);
		}
		return true;
	}
	if (next && next->type == type && next->base == limit) {
		next->base = base;
		return true;
	}
	return false;
}

/*
 * Inserts [base, limit) into b's regions, kept sorted by base. A region
 * that touches one of its own type is joined to it: firmware may split a
 * type's memory by attributes the kernel does not keep (OVMF's map of 512
 * MiB has 126 entries, none joinable), and a large machine's map could
 * pass BOOT_MMAP_MAX that way. Overlaps are not joined: check_regions refuses
 * them. Returns false, nothing changed, when the regions are full.
 */
static bool add_region(struct boot_state *b, paddr_t base, paddr_t limit,
                       uint32_t type)
{
	size_t i = b->nregions;
	while (i > 0 && b->regions[i - 1].base > base)
		i--;
	if (!join_region(b, i, base, limit, type)) {
		if (b->nregions == BOOT_MMAP_MAX)
			return false;
		/* Insertion sort by base: maps are short, nearly sorted. */
		for (size_t j = b->nregions++; j > i; j--)
			b->regions[j] = b->regions[j - 1];
		b->regions[i] = (struct mem_region){base, limit, type};
	}
	if (mem_type_usable(type) && limit > b->ram_top)
		b->ram_top = limit;
	return true;
}

/* The bytes of the command line the kernel keeps. */
static uint64_t cmdline_copied(const struct boot_info *bi)
{
	return bi->cmdline_len < BOOT_CMDLINE_MAX ? bi->cmdline_len
	                                          : BOOT_CMDLINE_MAX - 1;
}

static bool refuse(struct mmap_diag *d, const char *why,
                   const struct efi_memory_descriptor *e)
{
	*d = (struct mmap_diag){
	        why,  e->physical_start, e->number_of_pages, e->type, 0, 0,
	        false};
	return false;
}

static bool refuse_region(struct mmap_diag *d, const char *why,
                          const struct mem_region *r, paddr_t other_base,
                          paddr_t other_limit)
{
	*d = (struct mmap_diag){
	        why,     r->base,    (r->limit - r->base) / PAGE_SIZE,
	        r->type, other_base, other_limit,
	        false};
	return false;
}

/* The pool trusts what follows (frames.c): regions are disjoint, some
 * are free memory, and none of those covers the kernel image. Returns
 * false with *d naming the first region that breaks it, or the map. */
static bool check_regions(const struct boot_state *b, struct mmap_diag *d)
{
	bool any_free = false;
	for (size_t i = 0; i < b->nregions; i++) {
		const struct mem_region *r = &b->regions[i];
		if (i > 0 && r->base < r[-1].limit)
			return refuse_region(d, "overlaps the entry at", &r[-1],
			                     r->base, r->limit);
		if (r->type == EFI_CONVENTIONAL_MEMORY &&
		    r->base < b->kernel_phys_limit &&
		    b->kernel_phys_base < r->limit)
			return refuse_region(
			        d,
			        "lists free memory over the kernel "
			        "image at",
			        r, b->kernel_phys_base, b->kernel_phys_limit);
		any_free |= r->type == EFI_CONVENTIONAL_MEMORY;
	}
	/* frames_init would otherwise find no room for its own metadata
	 * and blame the size of RAM (an arena of 0 bytes). */
	if (!any_free) {
		*d = (struct mmap_diag){.why = "lists no free (conventional) "
		                               "memory at all",
		                        .whole_map = true};
		return false;
	}
	return true;
}

bool bootinfo_read_mmap(const void *map, uint64_t size, uint64_t desc_size,
                        struct boot_state *b, struct mmap_diag *d)
{
	const char *p = map;
	for (uint64_t off = 0; off < size; off += desc_size) {
		/* Copied out: UEFI's stride (desc_size) need not be a
		 * multiple of 8, so a descriptor may sit unaligned. */
		struct efi_memory_descriptor copy;
		const struct efi_memory_descriptor *e = &copy;
		memcpy(&copy, p + off, sizeof(copy));
		if (e->number_of_pages == 0)
			continue;
		/* Past 2^52, x86_64's limit, no CPU reaches it: a window
		 * firmware lists there is no reason to stop, nor RAM. The
		 * loader's test, so an end wrapping past 2^64 is left out
		 * here as there, not refused, and so is an unaligned start
		 * (the loader never looks at alignment). */
		if (!boot_ends_by_max_phys(e->physical_start,
		                           e->number_of_pages)) {
			printk("boot: memory map entry %#llx + %llu pages (%s) "
			       "ends past 2^52, the largest physical address; "
			       "ignored\n",
			       (unsigned long long)e->physical_start,
			       (unsigned long long)e->number_of_pages,
			       mem_type_name(e->type));
			continue;
		}
		if (e->physical_start % PAGE_SIZE)
			return refuse(d, "start is not page-aligned", e);
		paddr_t limit =
		        e->physical_start + e->number_of_pages * PAGE_SIZE;
		/* The kernel reaches RAM only through the direct map; past
		 * it lies the heap's space. Usable memory up there is left
		 * out, as Linux leaves out what it cannot map: the rest of
		 * the machine still boots (until this version the map was
		 * refused). An entry across the end keeps its part below. */
		if (mem_type_usable(e->type) && limit > DIRECT_MAP_SIZE) {
			paddr_t from = e->physical_start > DIRECT_MAP_SIZE
			                       ? e->physical_start
			                       : DIRECT_MAP_SIZE;
			printk("boot: memory map entry %#llx + %llu pages "
			       "(%s): %#llx-%#llx lies past the kernel's "
			       "direct map (32 TiB), left out\n",
			       (unsigned long long)e->physical_start,
			       (unsigned long long)e->number_of_pages,
			       mem_type_name(e->type), (unsigned long long)from,
			       (unsigned long long)limit);
			if (from == e->physical_start)
				continue;
			limit = DIRECT_MAP_SIZE;
		}
		if (!add_region(b, e->physical_start, limit, e->type))
			return refuse(d,
			              "the map has more than 512 regions, "
			              "touching ones of a type joined",
			              e);
	}
	return check_regions(b, d);
}

/* True when [pa, pa + n) lies below limit, without wrapping. */
static bool below(uint64_t pa, uint64_t n, uint64_t limit)
{
	return pa <= limit && n <= limit - pa;
}

/* paging_init maps the kernel's sections, [__text_start, __bss_end), page
 * by page from kernel_phys_base: the image must be where and as large as
 * the kernel was linked, or other memory would become its text and data. */
static const char *image_problem(const struct boot_info *bi)
{
	uint64_t need = align_up((uintptr_t)__bss_end - (uintptr_t)__text_start,
	                         PAGE_SIZE);
	if (bi->kernel_virt_base != (uintptr_t)__text_start)
		return "kernel image's virtual base is not the kernel's link "
		       "address";
	if (bi->kernel_phys_base % PAGE_SIZE)
		return "kernel image is not page-aligned";
	if (bi->kernel_phys_size < need)
		return "kernel image is smaller than the kernel's sections";
	if (!below(bi->kernel_phys_base, bi->kernel_phys_size,
	           bi->direct_map_limit))
		return "kernel image runs past the loader's direct map";
	return NULL;
}

/* The sizes come from the firmware: a descriptor size or a map size out of
 * reason would have the kernel read past the loader's direct map, which
 * is all it can reach before paging_init. */
const char *bootinfo_handoff_problem(const struct boot_info *bi)
{
	if (bi->mmap_desc_size < sizeof(struct efi_memory_descriptor))
		return "memory map descriptors are smaller than the 40 bytes "
		       "of one";
	if (bi->mmap_size % bi->mmap_desc_size != 0)
		return "memory map size is not a multiple of its descriptor "
		       "size";
	if (!below(bi->mmap_phys, bi->mmap_size, bi->direct_map_limit))
		return "memory map runs past the loader's direct map";
	if (bi->cmdline_phys &&
	    !below(bi->cmdline_phys, cmdline_copied(bi), bi->direct_map_limit))
		return "command line runs past the loader's direct map";
	return image_problem(bi);
}

static void copy_mmap(const struct boot_info *bi)
{
	const char *why = bootinfo_handoff_problem(bi);
	if (why)
		panic("boot: %s (memory map at %#llx: %llu bytes, descriptors "
		      "of %llu; command line at %#llx: %llu bytes; kernel "
		      "image at %#llx: %llu bytes for %#llx, linked at %p, "
		      "%llu bytes; direct map [0, %#llx))",
		      why, (unsigned long long)bi->mmap_phys,
		      (unsigned long long)bi->mmap_size,
		      (unsigned long long)bi->mmap_desc_size,
		      (unsigned long long)bi->cmdline_phys,
		      (unsigned long long)bi->cmdline_len,
		      (unsigned long long)bi->kernel_phys_base,
		      (unsigned long long)bi->kernel_phys_size,
		      (unsigned long long)bi->kernel_virt_base,
		      (void *)__text_start,
		      (unsigned long long)(__bss_end - __text_start),
		      (unsigned long long)bi->direct_map_limit);
	struct mmap_diag d;
	if (bootinfo_read_mmap(phys_to_virt(bi->mmap_phys), bi->mmap_size,
	                       bi->mmap_desc_size, &boot_state, &d))
		return;
	if (d.whole_map)
		panic("boot: memory map (%llu descriptors of %llu bytes) %s",
		      (unsigned long long)(bi->mmap_size / bi->mmap_desc_size),
		      (unsigned long long)bi->mmap_desc_size, d.why);
	if (d.other_limit)
		panic("boot: memory map entry %#llx + %llu pages (%s) %s "
		      "[%#llx, %#llx)",
		      (unsigned long long)d.base, (unsigned long long)d.npages,
		      mem_type_name(d.type), d.why,
		      (unsigned long long)d.other_base,
		      (unsigned long long)d.other_limit);
	panic("boot: memory map entry %#llx + %llu pages (%s): %s",
	      (unsigned long long)d.base, (unsigned long long)d.npages,
	      mem_type_name(d.type), d.why);
}

void bootinfo_copy(paddr_t boot_info_phys)
{
	const struct boot_info *bi = phys_to_virt(boot_info_phys);
	if (bi->magic != BOOT_INFO_MAGIC || bi->version != BOOT_INFO_VERSION ||
	    bi->size < sizeof(*bi))
		panic("boot: bad boot_info at %#llx (magic %#llx version %u)",
		      (unsigned long long)boot_info_phys,
		      (unsigned long long)bi->magic, bi->version);
	struct boot_state *b = &boot_state;
	b->kernel_phys_base = bi->kernel_phys_base;
	b->kernel_phys_limit = bi->kernel_phys_base + bi->kernel_phys_size;
	b->kernel_virt_base = bi->kernel_virt_base;
	b->rsdp = bi->rsdp_phys;
	copy_mmap(bi);
	if (bi->cmdline_phys) {
		size_t n = cmdline_copied(bi);
		memcpy(b->cmdline, phys_to_virt(bi->cmdline_phys), n);
		b->cmdline[n] = '\0';
	}
}

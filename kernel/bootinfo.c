/*
 * Takes the loader's handoff (boot/boot_info.h) into kernel memory: checks
 * magic and version, copies the UEFI memory map (honouring the descriptor
 * size the firmware reported) into sorted regions, and the command line.
 * Runs once, on the boot CPU, while the loader's direct map is live.
 */
#include "bootinfo.h"

#include "kernel/printk.h"
#include "kernel/string.h"

struct boot_state boot_state;

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
	        "MMIO port", "PAL code",     "persistent",
	};
	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "other";
}

static void add_region(paddr_t base, paddr_t limit, uint32_t type)
{
	struct boot_state *b = &boot_state;
	if (b->nregions == BOOT_MMAP_MAX)
		panic("boot: memory map has more than %d regions",
		      BOOT_MMAP_MAX);
	/* Insertion sort by base: maps are short and nearly sorted. */
	size_t i = b->nregions++;
	while (i > 0 && b->regions[i - 1].base > base) {
		b->regions[i] = b->regions[i - 1];
		i--;
	}
	b->regions[i] = (struct mem_region){base, limit, type};
	if (mem_type_usable(type) && limit > b->ram_top)
		b->ram_top = limit;
}

static void copy_mmap(const struct boot_info *bi)
{
	if (bi->mmap_desc_size < sizeof(struct efi_memory_descriptor) ||
	    bi->mmap_size % bi->mmap_desc_size != 0)
		panic("boot: memory map descriptor size %llu does not divide "
		      "map size %llu",
		      (unsigned long long)bi->mmap_desc_size,
		      (unsigned long long)bi->mmap_size);
	const char *p = phys_to_virt(bi->mmap_phys);
	for (uint64_t off = 0; off < bi->mmap_size; off += bi->mmap_desc_size) {
		const struct efi_memory_descriptor *d = (const void *)(p + off);
		if (d->number_of_pages == 0)
			continue;
		paddr_t limit =
		        d->physical_start + d->number_of_pages * PAGE_SIZE;
		if (d->physical_start % PAGE_SIZE || limit <= d->physical_start)
			panic("boot: bad memory map entry %#llx + %llu pages",
			      (unsigned long long)d->physical_start,
			      (unsigned long long)d->number_of_pages);
		add_region(d->physical_start, limit, d->type);
	}
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
		size_t n = bi->cmdline_len;
		if (n >= sizeof(b->cmdline))
			n = sizeof(b->cmdline) - 1;
		memcpy(b->cmdline, phys_to_virt(bi->cmdline_phys), n);
		b->cmdline[n] = '\0';
	}
}

bool cmdline_get(const char *key, char *buf, size_t size)
{
	size_t klen = strlen(key);
	const char *p = boot_state.cmdline;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *word = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		size_t wlen = (size_t)(p - word);
		if (wlen < klen || strncmp(word, key, klen) != 0)
			continue;
		if (wlen == klen) {
			if (size)
				buf[0] = '\0';
			return true;
		}
		if (word[klen] != '=')
			continue;
		size_t vlen = wlen - klen - 1;
		if (size) {
			if (vlen >= size)
				vlen = size - 1;
			memcpy(buf, word + klen + 1, vlen);
			buf[vlen] = '\0';
		}
		return true;
	}
	return false;
}

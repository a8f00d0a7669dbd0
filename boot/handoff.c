/* The handoff: page tables, boot_info, the final memory map and the jump. */
#include <efi.h>
#include <efilib.h>
#include <stdbool.h>

#include "boot_info.h"
#include "console.h"
#include "loader.h"
#include "paging.h"

/* The kernel sets up its own stack at once; this one only has to be valid. */
#define STACK_PAGES 4
/* Allocating the final map's buffer can split free ranges; room for that. */
#define MMAP_SLACK_DESCS 8
#define MAP_TRIES        3
#define EXIT_TRIES       4

/* The memory map as ExitBootServices accepted it; on failure, a phrase
 * naming the firmware call that failed. */
struct final_map {
	UINTN size;
	UINTN desc_size;
	UINT32 desc_version;
	const char *failed;
};

static struct boot_info *info_of(struct loader *ld)
{
	return (struct boot_info *)(UINTN)ld->info.phys;
}

/* Reads the memory map into a pool buffer the caller frees, retrying while
 * it grows. Returns EFI_SUCCESS, or an error after printing it. */
static EFI_STATUS read_memory_map(void **map, UINTN *size, UINTN *desc_size)
{
	UINTN cap = 0, key;
	UINT32 version;
	EFI_STATUS st = EFI_BUFFER_TOO_SMALL;

	*map = NULL;
	*desc_size = sizeof(EFI_MEMORY_DESCRIPTOR);
	for (int i = 0; i < MAP_TRIES && st == EFI_BUFFER_TOO_SMALL; i++) {
		*size = cap;
		st = BS->GetMemoryMap(size, *map, &key, desc_size, &version);
		if (st != EFI_BUFFER_TOO_SMALL)
			break;
		if (*map)
			BS->FreePool(*map);
		/* The pool allocation itself may add descriptors. */
		cap = *size + 4 * sizeof(EFI_MEMORY_DESCRIPTOR) +
		      4 * *desc_size;
		st = BS->AllocatePool(EfiLoaderData, cap, map);
		if (EFI_ERROR(st)) {
			*map = NULL;
			con_printf(
			        "boot: out of memory reading the memory map");
			return st;
		}
		st = EFI_BUFFER_TOO_SMALL;
	}
	if (!EFI_ERROR(st) && *desc_size < sizeof(EFI_MEMORY_DESCRIPTOR))
		st = EFI_UNSUPPORTED;
	if (EFI_ERROR(st)) {
		if (*map)
			BS->FreePool(*map);
		*map = NULL;
		con_printf("boot: cannot read the memory map (" ST_FMT ")",
		           ST_ARG(st));
	}
	return st;
}

/* Names an entry the direct map leaves out: the map is the firmware's,
 * and the kernel, which reads it again, prints its own line. */
static void report_ignored(void *ctx, const struct efi_memory_descriptor *d)
{
	(void)ctx;
	con_printf("boot: memory map entry 0x%llx + %llu pages (type %u) "
	           "ends past 2^52, the largest physical address; ignored",
	           (unsigned long long)d->physical_start,
	           (unsigned long long)d->number_of_pages, d->type);
}

/* Sizes, allocates and builds the tables for layout. */
static EFI_STATUS build_from(struct loader *ld,
                             const struct paging_layout *layout)
{
	size_t need = paging_tables_needed(layout);
	EFI_STATUS st;

	if (need == 0) {
		con_printf(
		        "boot: memory reaches 0x%llx, more than the loader's "
		        "page tables can map",
		        (unsigned long long)ld->direct_map_limit);
		return EFI_UNSUPPORTED;
	}
	st = alloc_pages(&ld->tables, need);
	if (EFI_ERROR(st)) {
		con_printf("boot: out of memory allocating page tables (%zu "
		           "pages)",
		           need);
		return st;
	}
	ld->pml4 = paging_build((void *)(UINTN)ld->tables.phys, need, layout);
	if (ld->pml4 == 0) {
		con_printf("boot: page tables do not fit their computed size");
		return EFI_ABORTED;
	}
	return EFI_SUCCESS;
}

EFI_STATUS build_page_tables(struct loader *ld)
{
	struct paging_layout layout;
	void *map;
	UINTN size, desc_size;
	EFI_STATUS st;

	st = read_memory_map(&map, &size, &desc_size);
	if (EFI_ERROR(st))
		return st;
	ld->direct_map_limit = paging_direct_map_limit(map, size, desc_size,
	                                               report_ignored, NULL);
	/* The map's RAM only: the allocations from here to the exit turn
	 * free memory into loader data, RAM either way, so this map's RAM
	 * is the final map's. */
	layout = (struct paging_layout){
	        .direct_map_limit = ld->direct_map_limit,
	        .direct_map_base = BOOT_DIRECT_MAP_BASE,
	        .kernel_virt = ld->elf.min_vaddr,
	        .kernel_phys = ld->kernel.phys,
	        .kernel_size = ld->kernel.pages * EFI_PAGE_SIZE,
	        .map = map,
	        .map_size = size,
	        .desc_size = desc_size,
	};
	st = build_from(ld, &layout);
	BS->FreePool(map);
	return st;
}

EFI_STATUS alloc_handoff(struct loader *ld)
{
	EFI_STATUS st;

	st = alloc_pages(&ld->stack, STACK_PAGES);
	if (EFI_ERROR(st)) {
		con_printf("boot: out of memory allocating the entry stack");
		return st;
	}
	st = alloc_pages(&ld->info,
	                 EFI_SIZE_TO_PAGES(sizeof(struct boot_info)));
	if (EFI_ERROR(st)) {
		con_printf("boot: out of memory allocating boot_info");
		return st;
	}
	*info_of(ld) = (struct boot_info){
	        .magic = BOOT_INFO_MAGIC,
	        .version = BOOT_INFO_VERSION,
	        .size = sizeof(struct boot_info),
	        .rsdp_phys = ld->rsdp,
	        .kernel_phys_base = ld->kernel.phys,
	        .kernel_phys_size = ld->kernel.pages * EFI_PAGE_SIZE,
	        .kernel_virt_base = ld->elf.min_vaddr,
	        .cmdline_phys = ld->cmdline.pages ? ld->cmdline.phys : 0,
	        .cmdline_len = ld->cmdline_len,
	        .direct_map_limit = ld->direct_map_limit,
	};
	return EFI_SUCCESS;
}

/* Allocates the final map's buffer: the current size plus slack. Returns
 * EFI_SUCCESS, or an error after printing it. */
static EFI_STATUS alloc_final_map(struct loader *ld)
{
	UINTN size = 0, key, desc_size = sizeof(EFI_MEMORY_DESCRIPTOR);
	UINT32 version;
	EFI_STATUS st;

	st = BS->GetMemoryMap(&size, NULL, &key, &desc_size, &version);
	if (st != EFI_BUFFER_TOO_SMALL) {
		con_printf("boot: cannot size the memory map (" ST_FMT ")",
		           ST_ARG(st));
		return EFI_ERROR(st) ? st : EFI_ABORTED;
	}
	size += MMAP_SLACK_DESCS * desc_size;
	st = alloc_pages(&ld->mmap, EFI_SIZE_TO_PAGES(size));
	if (EFI_ERROR(st)) {
		con_printf("boot: out of memory allocating the memory map");
		return st;
	}
	info_of(ld)->mmap_phys = ld->mmap.phys;
	return EFI_SUCCESS;
}

/* Gets the map into ld->mmap and exits boot services, again while the map
 * key goes stale. Nothing may allocate or print in between. Sets *attempted
 * once ExitBootServices has been called. Returns its final status. */
static EFI_STATUS try_exit(struct loader *ld, bool *attempted,
                           struct final_map *m)
{
	EFI_STATUS st = EFI_INVALID_PARAMETER;

	for (int i = 0; i < EXIT_TRIES && st == EFI_INVALID_PARAMETER; i++) {
		UINTN key;

		m->size = ld->mmap.pages * EFI_PAGE_SIZE;
		st = BS->GetMemoryMap(
		        &m->size, (EFI_MEMORY_DESCRIPTOR *)(UINTN)ld->mmap.phys,
		        &key, &m->desc_size, &m->desc_version);
		if (EFI_ERROR(st)) {
			m->failed =
			        "GetMemoryMap failed retrying ExitBootServices";
			return st;
		}
		*attempted = true;
		st = BS->ExitBootServices(ld->image, key);
	}
	m->failed = "ExitBootServices failed";
	return st;
}

/* Switches to the loader's tables and stack and jumps to the kernel, as if
 * called (RSP + 8 is 16-byte aligned, a zero return address on top). */
static __attribute__((noreturn)) void
enter_kernel(uint64_t pml4, uint64_t stack_top, uint64_t entry, uint64_t info)
{
	/* Fixed registers: none of the inputs may live in RBP, which is
	 * cleared, or in RAX/RCX, which the CR4 toggle uses. */
	__asm__ volatile("cli\n\t"
	                 "mov %0, %%cr3\n\t"
	                 /* Toggling CR4.PGE (bit 7) drops any global firmware
	                  * TLB entries that reloading CR3 would keep. */
	                 "mov %%cr4, %%rax\n\t"
	                 "mov %%rax, %%rcx\n\t"
	                 "btr $7, %%rcx\n\t"
	                 "mov %%rcx, %%cr4\n\t"
	                 "mov %%rax, %%cr4\n\t"
	                 "mov %1, %%rsp\n\t"
	                 "xor %%ebp, %%ebp\n\t"
	                 "pushq $0\n\t"
	                 "jmp *%2"
	                 :
	                 : "S"(pml4), "d"(stack_top), "b"(entry), "D"(info)
	                 : "rax", "rcx", "memory");
	__builtin_unreachable();
}

EFI_STATUS exit_and_enter(struct loader *ld)
{
	struct boot_info *info = info_of(ld);
	struct final_map m = {0};
	bool attempted = false;
	EFI_STATUS st = EFI_BUFFER_TOO_SMALL;

	/* Until ExitBootServices has been tried, a map that outgrew its
	 * buffer can still be given a bigger one. */
	for (int i = 0; i < MAP_TRIES && st == EFI_BUFFER_TOO_SMALL; i++) {
		free_pages(&ld->mmap);
		st = alloc_final_map(ld);
		if (EFI_ERROR(st))
			return st;
		st = try_exit(ld, &attempted, &m);
		if (attempted)
			break;
	}
	if (EFI_ERROR(st)) {
		/* After a failed attempt the firmware console may be gone;
		 * the retry's GetMemoryMap may be what failed. */
		if (attempted)
			con_serial_printf("boot: %s (" ST_FMT ")", m.failed,
			                  ST_ARG(st));
		else
			con_printf("boot: cannot get the final memory map "
			           "(" ST_FMT ")",
			           ST_ARG(st));
		return st;
	}
	/* Boot services are gone: from here on, no firmware calls. */
	info->mmap_size = m.size;
	info->mmap_desc_size = m.desc_size;
	info->mmap_desc_version = m.desc_version;
	enter_kernel(ld->pml4, ld->stack.phys + ld->stack.pages * EFI_PAGE_SIZE,
	             ld->elf.entry, ld->info.phys);
}

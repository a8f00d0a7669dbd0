/* State shared by the loader's files: what it has read and allocated. */
#ifndef BOOT_LOADER_H
#define BOOT_LOADER_H

#include <efi.h>

#include "cmdline.h"
#include "elf_check.h"

/* For messages: "(not found, EFI status 0x800000000000000e)". */
#define ST_FMT     "%s, EFI status 0x%llx"
#define ST_ARG(st) status_name(st), (unsigned long long)(st)

/* A run of EfiLoaderData pages; pages == 0 when not allocated. */
struct page_alloc {
	EFI_PHYSICAL_ADDRESS phys;
	UINTN pages;
};

/* Everything the loader holds; cleanup frees whatever is set. */
struct loader {
	EFI_HANDLE image;
	EFI_FILE_HANDLE root;
	void *file; /* the kernel file's contents (pool) */
	UINT64 file_size;
	const char *kernel_name; /* where it came from, for messages */
	int from_fwcfg;          /* the kernel came from fw_cfg */
	struct elf_image elf;
	struct page_alloc kernel;  /* the loaded image, [min, max_vaddr) */
	struct page_alloc cmdline; /* NUL-terminated; pages == 0: none */
	struct page_alloc tables;  /* page table pool */
	struct page_alloc stack;   /* the kernel's entry stack */
	struct page_alloc info;    /* struct boot_info */
	struct page_alloc mmap;    /* the final memory map */
	UINT64 cmdline_len;
	uint64_t rsdp;
	uint64_t direct_map_limit;
	uint64_t pml4;
};

/* A short name for st ("not found"); "error" when unknown. */
const char *status_name(EFI_STATUS st);

/* Allocates zeroed EfiLoaderData pages into *a. Returns EFI_SUCCESS, or the
 * firmware's error with *a untouched. */
EFI_STATUS alloc_pages(struct page_alloc *a, UINTN pages);

/* Frees *a if allocated and marks it free. */
void free_pages(struct page_alloc *a);

/* Says what cmdline_trim left out of the command line read from name. */
void report_cmdline_trim(const char *name, const struct cmdline_trim_result *r);

/* Reads the kernel from fw_cfg's FWCFG_KERNEL into ld->file. wait_s: poll
 * for it for up to that many seconds (a snapshot's boot; 0: do not
 * wait), with a line on the console when it starts waiting. Returns
 * EFI_SUCCESS, EFI_NOT_FOUND silently when not waiting and QEMU gave no
 * kernel (or no fw_cfg), or another error after printing it. */
EFI_STATUS fwcfg_read_kernel(struct loader *ld, unsigned wait_s);

/* Reads fw_cfg's FWCFG_CMDLINE, if any, as the command line. Returns
 * EFI_SUCCESS (also when there is none), or an error after printing it. */
EFI_STATUS fwcfg_read_cmdline(struct loader *ld);

/* Sizes the direct map from the memory map and builds the page tables.
 * Returns EFI_SUCCESS, or an error after printing it. */
EFI_STATUS build_page_tables(struct loader *ld);

/* Allocates the entry stack and boot_info and fills boot_info but for the
 * memory map. Returns EFI_SUCCESS, or an error after printing it. */
EFI_STATUS alloc_handoff(struct loader *ld);

/* Takes the final memory map, exits boot services and jumps to the kernel.
 * Returns only on failure, with the error printed (to COM1 only once an
 * ExitBootServices call has been made). */
EFI_STATUS exit_and_enter(struct loader *ld);

#endif

/* The UEFI loader: loads \kernel.elf from its own volume, or the kernel
 * QEMU's fw_cfg holds (fwcfg_load.c), and jumps into it. */
#include <efi.h>
#include <efilib.h>

#include "boot_info.h"
#include "cmdline.h"
#include "console.h"
#include "elf_check.h"
#include "fwcfg.h"
#include "loader.h"

#define KERNEL_PATH  L"\\kernel.elf"
#define CMDLINE_PATH L"\\cmdline.txt"
#define WAIT_PATH    L"\\fwcfg-wait"
#define CR4_LA57     (1ull << 12)

/* Room for the file name after EFI_FILE_INFO: FAT names are <= 255 UCS-2. */
union file_info_buf {
	EFI_FILE_INFO info;
	UINT8 raw[sizeof(EFI_FILE_INFO) + 256 * sizeof(CHAR16)];
};

const char *status_name(EFI_STATUS st)
{
	switch (st) {
	case EFI_SUCCESS:
		return "success";
	case EFI_LOAD_ERROR:
		return "load error";
	case EFI_INVALID_PARAMETER:
		return "invalid parameter";
	case EFI_UNSUPPORTED:
		return "unsupported";
	case EFI_BUFFER_TOO_SMALL:
		return "buffer too small";
	case EFI_DEVICE_ERROR:
		return "device error";
	case EFI_VOLUME_CORRUPTED:
		return "volume corrupted";
	case EFI_NO_MEDIA:
		return "no media";
	case EFI_NOT_FOUND:
		return "not found";
	case EFI_ACCESS_DENIED:
		return "access denied";
	case EFI_OUT_OF_RESOURCES:
		return "out of resources";
	case EFI_END_OF_FILE:
		return "file ended early";
	default:
		return "error";
	}
}

EFI_STATUS alloc_pages(struct page_alloc *a, UINTN pages)
{
	EFI_PHYSICAL_ADDRESS phys = 0;
	EFI_STATUS st;

	st = BS->AllocatePages(AllocateAnyPages, EfiLoaderData, pages, &phys);
	if (EFI_ERROR(st))
		return st;
	a->phys = phys;
	a->pages = pages;
	BS->SetMem((void *)(UINTN)phys, pages * EFI_PAGE_SIZE, 0);
	return EFI_SUCCESS;
}

void free_pages(struct page_alloc *a)
{
	if (a->pages)
		BS->FreePages(a->phys, a->pages);
	a->phys = 0;
	a->pages = 0;
}

/* Opens the file system the loader itself was read from. Returns
 * EFI_SUCCESS, or the firmware's error after saying which step failed. */
static EFI_STATUS open_boot_volume(struct loader *ld)
{
	EFI_LOADED_IMAGE *image;
	EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *fs;
	EFI_STATUS st;

	st = BS->HandleProtocol(ld->image, &LoadedImageProtocol,
	                        (void **)&image);
	if (EFI_ERROR(st)) {
		con_printf("boot: cannot find the loader's own image (" ST_FMT
		           ")",
		           ST_ARG(st));
		return st;
	}
	st = BS->HandleProtocol(image->DeviceHandle, &FileSystemProtocol,
	                        (void **)&fs);
	if (EFI_ERROR(st)) {
		con_printf("boot: the boot device has no file system (" ST_FMT
		           ")",
		           ST_ARG(st));
		return st;
	}
	st = fs->OpenVolume(fs, &ld->root);
	if (EFI_ERROR(st)) {
		ld->root = NULL;
		con_printf("boot: cannot open the boot volume (" ST_FMT ")",
		           ST_ARG(st));
	}
	return st;
}

/* Returns EFI_SUCCESS with *size the length of f, or the firmware's error. */
static EFI_STATUS file_size(EFI_FILE_HANDLE f, UINT64 *size)
{
	union file_info_buf buf;
	UINTN len = sizeof(buf);
	EFI_STATUS st;

	st = f->GetInfo(f, &GenericFileInfo, &len, &buf);
	if (!EFI_ERROR(st))
		*size = buf.info.FileSize;
	return st;
}

/* Reads len bytes from f, however many Read calls that takes; *got says
 * how many arrived. Returns EFI_SUCCESS, the firmware's error, or
 * EFI_END_OF_FILE when the file ends before len bytes. */
static EFI_STATUS read_all(EFI_FILE_HANDLE f, void *buf, UINT64 len,
                           UINT64 *got)
{
	*got = 0;
	while (*got < len) {
		UINTN n = len - *got;
		EFI_STATUS st = f->Read(f, &n, (UINT8 *)buf + *got);

		if (EFI_ERROR(st))
			return st;
		if (n == 0)
			return EFI_END_OF_FILE;
		*got += n;
	}
	return EFI_SUCCESS;
}

/* Opens path (shown to the user as name) and gets its size. Returns
 * EFI_SUCCESS, EFI_NOT_FOUND silently, or another error after saying so. */
static EFI_STATUS open_sized(struct loader *ld, CHAR16 *path, const char *name,
                             EFI_FILE_HANDLE *f, UINT64 *size)
{
	EFI_STATUS st;

	st = ld->root->Open(ld->root, f, path, EFI_FILE_MODE_READ, 0);
	if (st == EFI_NOT_FOUND)
		return st;
	if (EFI_ERROR(st)) {
		con_printf("boot: %s: cannot open (" ST_FMT ")", name,
		           ST_ARG(st));
		return st;
	}
	st = file_size(*f, size);
	if (EFI_ERROR(st)) {
		con_printf("boot: %s: cannot get its size (" ST_FMT ")", name,
		           ST_ARG(st));
		(*f)->Close(*f);
	}
	return st;
}

/* Reads the whole of \kernel.elf into ld->file. Returns EFI_SUCCESS, or
 * an error after printing what went wrong. */
static EFI_STATUS read_kernel(struct loader *ld)
{
	EFI_FILE_HANDLE f;
	UINT64 size, got;
	EFI_STATUS st;

	st = open_sized(ld, KERNEL_PATH, "kernel.elf", &f, &size);
	if (st == EFI_NOT_FOUND)
		con_printf("boot: kernel.elf: not found on the boot volume");
	if (EFI_ERROR(st))
		return st;
	ld->kernel_name = "kernel.elf";
	/* A zero-byte pool request may fail; elf_check reports the size. */
	st = BS->AllocatePool(EfiLoaderData, size ? size : 1, &ld->file);
	if (EFI_ERROR(st)) {
		ld->file = NULL;
		f->Close(f);
		con_printf(
		        "boot: out of memory reading kernel.elf (%llu bytes)",
		        (unsigned long long)size);
		return st;
	}
	st = read_all(f, ld->file, size, &got);
	f->Close(f);
	if (EFI_ERROR(st)) {
		con_printf("boot: kernel.elf: read failed after %llu of %llu "
		           "bytes (" ST_FMT ")",
		           (unsigned long long)got, (unsigned long long)size,
		           ST_ARG(st));
		return st;
	}
	ld->file_size = size;
	return EFI_SUCCESS;
}

/* Validates ld->file and copies its segments into fresh pages (zeroed, so
 * the bss is ready). Returns EFI_SUCCESS, or an error after printing it. */
static EFI_STATUS load_kernel(struct loader *ld)
{
	struct elf_image *elf = &ld->elf;
	const char *why;
	UINTN pages;
	EFI_STATUS st;

	if (elf_check(ld->file, ld->file_size, BOOT_KERNEL_WINDOW_BASE,
	              BOOT_KERNEL_WINDOW_LIMIT, elf, &why)) {
		if (elf->bad_phdr >= 0)
			con_printf("boot: %s: segment %d: %s", ld->kernel_name,
			           elf->bad_phdr, why);
		else
			con_printf("boot: %s: %s", ld->kernel_name, why);
		return EFI_LOAD_ERROR;
	}
	pages = (elf->max_vaddr - elf->min_vaddr) / EFI_PAGE_SIZE;
	st = alloc_pages(&ld->kernel, pages);
	if (EFI_ERROR(st)) {
		con_printf("boot: out of memory loading the kernel (%llu KiB)",
		           (unsigned long long)pages * 4);
		return st;
	}
	for (size_t i = 0; i < elf->nsegs; i++) {
		const struct elf_segment *s = &elf->segs[i];
		UINT8 *dst = (UINT8 *)(UINTN)ld->kernel.phys +
		             (s->vaddr - elf->min_vaddr);

		BS->CopyMem(dst, (UINT8 *)ld->file + s->offset, s->filesz);
	}
	return EFI_SUCCESS;
}

void report_cmdline_trim(const char *name, const struct cmdline_trim_result *r)
{
	if (r->dropped == CMDLINE_NUL_BYTE)
		con_printf("boot: %s: a NUL byte at offset %llu (saved as "
		           "UTF-16?): not text, ignored",
		           name, (unsigned long long)r->at);
	else if (r->dropped == CMDLINE_TOO_LONG)
		con_printf("boot: %s: longer than %u bytes: using the words "
		           "before offset %llu",
		           name, CMDLINE_MAX, (unsigned long long)r->at);
}

/* Reads the optional \cmdline.txt into one page. Returns EFI_SUCCESS (also
 * when there is none), or an error after printing it. */
static EFI_STATUS read_cmdline(struct loader *ld)
{
	EFI_FILE_HANDLE f;
	UINT64 size, got;
	struct cmdline_trim_result r;
	EFI_STATUS st;

	st = open_sized(ld, CMDLINE_PATH, "cmdline.txt", &f, &size);
	if (st == EFI_NOT_FOUND)
		return EFI_SUCCESS;
	if (EFI_ERROR(st))
		return st;
	/* One byte past the limit says whether the cut splits a word. */
	if (size > CMDLINE_MAX + 1)
		size = CMDLINE_MAX + 1;
	st = alloc_pages(&ld->cmdline, 1);
	if (EFI_ERROR(st)) {
		f->Close(f);
		con_printf("boot: out of memory reading cmdline.txt");
		return st;
	}
	st = read_all(f, (void *)(UINTN)ld->cmdline.phys, size, &got);
	f->Close(f);
	if (EFI_ERROR(st)) {
		con_printf("boot: cmdline.txt: read failed after %llu of %llu "
		           "bytes (" ST_FMT ")",
		           (unsigned long long)got, (unsigned long long)size,
		           ST_ARG(st));
		return st;
	}
	r = cmdline_trim((char *)(UINTN)ld->cmdline.phys, size);
	report_cmdline_trim("cmdline.txt", &r);
	ld->cmdline_len = r.len;
	return EFI_SUCCESS;
}

/* How long to wait for a kernel in fw_cfg: 0 unless the boot volume holds
 * \fwcfg-wait (a snapshot's boot, tools/snapshot), whose text is the
 * seconds. Returns EFI_SUCCESS, or an error after printing it. */
static EFI_STATUS wait_seconds(struct loader *ld, unsigned *secs)
{
	char text[16];
	EFI_FILE_HANDLE f;
	UINT64 size, got;
	EFI_STATUS st;

	*secs = 0;
	st = open_sized(ld, WAIT_PATH, "fwcfg-wait", &f, &size);
	if (st == EFI_NOT_FOUND)
		return EFI_SUCCESS;
	if (EFI_ERROR(st))
		return st;
	/* Past the buffer: too long for any valid text. */
	st = read_all(f, text, size < sizeof(text) ? size : sizeof(text), &got);
	f->Close(f);
	if (EFI_ERROR(st)) {
		con_printf("boot: fwcfg-wait: read failed (" ST_FMT ")",
		           ST_ARG(st));
		return st;
	}
	if (size > sizeof(text) || fwcfg_wait_seconds(text, size, secs)) {
		con_printf("boot: fwcfg-wait: not a number of seconds in "
		           "[1, %u]",
		           FWCFG_WAIT_MAX);
		return EFI_INVALID_PARAMETER;
	}
	return EFI_SUCCESS;
}

/* The kernel from fw_cfg when QEMU was given one (its command line then
 * comes from fw_cfg too), else \kernel.elf. Returns EFI_SUCCESS, or an
 * error after printing it. */
static EFI_STATUS read_kernel_anywhere(struct loader *ld)
{
	unsigned wait_s;
	EFI_STATUS st = wait_seconds(ld, &wait_s);

	if (EFI_ERROR(st))
		return st;
	st = fwcfg_read_kernel(ld, wait_s);
	if (st == EFI_SUCCESS)
		con_printf("boot: the kernel and its command line come from "
		           "fw_cfg (" FWCFG_KERNEL ", " FWCFG_CMDLINE ")");
	return st == EFI_NOT_FOUND && !wait_s ? read_kernel(ld) : st;
}

/* Returns the ACPI 2.0+ RSDP from the configuration table, or 0. */
static uint64_t find_rsdp(void)
{
	static EFI_GUID acpi20 = ACPI_20_TABLE_GUID;

	for (UINTN i = 0; i < ST->NumberOfTableEntries; i++) {
		EFI_CONFIGURATION_TABLE *t = &ST->ConfigurationTable[i];

		if (CompareGuid(&t->VendorGuid, &acpi20) == 0)
			return (uint64_t)(UINTN)t->VendorTable;
	}
	return 0;
}

/* Every step that needs boot services, in order. Returns EFI_SUCCESS, or
 * the first error after printing it. */
static EFI_STATUS prepare(struct loader *ld)
{
	EFI_STATUS st;
	uint64_t cr4;

	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	if (cr4 & CR4_LA57) {
		con_printf("boot: firmware runs with 5-level paging, which "
		           "the loader does not support");
		return EFI_UNSUPPORTED;
	}
	st = open_boot_volume(ld);
	if (!EFI_ERROR(st))
		st = read_kernel_anywhere(ld);
	if (!EFI_ERROR(st))
		st = load_kernel(ld);
	if (!EFI_ERROR(st))
		st = ld->from_fwcfg ? fwcfg_read_cmdline(ld) : read_cmdline(ld);
	if (EFI_ERROR(st))
		return st;
	ld->rsdp = find_rsdp();
	st = build_page_tables(ld);
	if (!EFI_ERROR(st))
		st = alloc_handoff(ld);
	return st;
}

/* Gives back everything allocated; allowed even after a failed
 * ExitBootServices (memory services keep working). */
static void cleanup(struct loader *ld)
{
	if (ld->file)
		BS->FreePool(ld->file);
	ld->file = NULL;
	if (ld->root)
		ld->root->Close(ld->root);
	ld->root = NULL;
	free_pages(&ld->kernel);
	free_pages(&ld->cmdline);
	free_pages(&ld->tables);
	free_pages(&ld->stack);
	free_pages(&ld->info);
	free_pages(&ld->mmap);
}

/* Drops what the kernel does not need before the final memory map. */
static void release_loader_only(struct loader *ld)
{
	BS->FreePool(ld->file);
	ld->file = NULL;
	ld->root->Close(ld->root);
	ld->root = NULL;
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab)
{
	static struct loader ld;
	EFI_STATUS st;

	InitializeLib(image, systab);
	con_init();
	con_printf("boot: loader started");
	ld.image = image;
	st = prepare(&ld);
	if (!EFI_ERROR(st)) {
		release_loader_only(&ld);
		con_printf("boot: %s %llu bytes, entry 0x%llx, loaded at "
		           "phys 0x%llx",
		           ld.kernel_name, (unsigned long long)ld.file_size,
		           (unsigned long long)ld.elf.entry,
		           (unsigned long long)ld.kernel.phys);
		st = exit_and_enter(&ld); /* returns only on failure */
	}
	cleanup(&ld);
	return st;
}

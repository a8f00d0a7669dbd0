/* The kernel and its command line from QEMU's fw_cfg device, read by DMA:
 * how the test harness's boots restored from a firmware snapshot get
 * theirs (tools/snapshot), and a way to boot a kernel without rebuilding
 * the ESP. Boot services only. */
#include <efi.h>
#include <efilib.h>

#include "cmdline.h"
#include "console.h"
#include "fwcfg.h"
#include "loader.h"

#define PORT_SELECTOR 0x510
#define PORT_DATA     0x511
#define PORT_DMA_HIGH 0x514
#define PORT_DMA_LOW  0x518

#define POLL_US 1000

/* A DMA request, big-endian fields, read by the device in guest memory. */
struct fwcfg_dma {
	uint32_t control;
	uint32_t length;
	uint64_t address;
} __attribute__((aligned(16)));

static void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

/* The 4 bytes of key, read a byte at a time from the data port. */
static void read_key_bytes(uint16_t key, uint8_t out[4])
{
	outw(PORT_SELECTOR, key);
	for (int i = 0; i < 4; i++)
		out[i] = inb(PORT_DATA);
}

/* Whether CPUID says we run under a hypervisor (leaf 1, ECX bit 31). */
static int under_hypervisor(void)
{
	uint32_t a = 1, b, c = 0, d;

	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	return (c >> 31) & 1;
}

/* Whether the machine has fw_cfg with its DMA interface. Only a virtual
 * machine is asked: on real hardware ports 0x510 and 0x511 may belong to
 * a device that a write to them would upset. Without fw_cfg the ports
 * read as 0xff, which is no signature. */
static int fwcfg_usable(void)
{
	uint8_t sig[4], id[4];

	if (!under_hypervisor())
		return 0;
	read_key_bytes(FWCFG_KEY_SIGNATURE, sig);
	if (sig[0] != 'Q' || sig[1] != 'E' || sig[2] != 'M' || sig[3] != 'U')
		return 0;
	read_key_bytes(FWCFG_KEY_ID, id);
	return (id[0] & FWCFG_ID_DMA) != 0;
}

/* Reads len bytes into buf: from the start of item select when do_select,
 * else on from where the last read of the selected item ended. Returns
 * EFI_SUCCESS or EFI_DEVICE_ERROR (the device set the error bit). */
static EFI_STATUS dma_read(uint16_t select, int do_select, void *buf,
                           uint32_t len)
{
	static struct fwcfg_dma req;
	uint32_t ctl = FWCFG_DMA_READ;
	uint64_t addr = (uint64_t)(UINTN)&req;

	if (do_select)
		ctl |= FWCFG_DMA_SELECT | (uint32_t)select << 16;
	req.control = __builtin_bswap32(ctl);
	req.length = __builtin_bswap32(len);
	req.address = __builtin_bswap64((uint64_t)(UINTN)buf);
	/* The write of the low half starts the transfer. */
	outl(PORT_DMA_HIGH, __builtin_bswap32((uint32_t)(addr >> 32)));
	outl(PORT_DMA_LOW, __builtin_bswap32((uint32_t)addr));
	while (__builtin_bswap32(*(volatile uint32_t *)&req.control) &
	       ~FWCFG_DMA_ERROR)
		__asm__ volatile("pause" ::: "memory");
	if (__builtin_bswap32(*(volatile uint32_t *)&req.control) &
	    FWCFG_DMA_ERROR)
		return EFI_DEVICE_ERROR;
	return EFI_SUCCESS;
}

/* Finds name in the directory. Returns EFI_SUCCESS with *f filled,
 * EFI_NOT_FOUND, or another error after printing it. */
static EFI_STATUS lookup(const char *name, struct fwcfg_file *f)
{
	uint8_t count[4];
	uint32_t n;
	void *dir;
	EFI_STATUS st;
	int found;

	st = dma_read(FWCFG_KEY_FILE_DIR, 1, count, sizeof(count));
	if (EFI_ERROR(st)) {
		con_printf("boot: fw_cfg: cannot read its directory");
		return st;
	}
	n = fwcfg_be32(count);
	if (n == 0)
		return EFI_NOT_FOUND;
	if (n > 4096) {
		con_printf("boot: fw_cfg: a directory of %u files?", n);
		return EFI_DEVICE_ERROR;
	}
	st = BS->AllocatePool(EfiLoaderData, n * FWCFG_ENTRY_SIZE, &dir);
	if (EFI_ERROR(st)) {
		con_printf("boot: fw_cfg: out of memory for its directory");
		return st;
	}
	st = dma_read(0, 0, dir, n * FWCFG_ENTRY_SIZE);
	found = !EFI_ERROR(st) && fwcfg_find(dir, n, name, f) == 0;
	BS->FreePool(dir);
	if (EFI_ERROR(st)) {
		con_printf("boot: fw_cfg: cannot read its directory");
		return st;
	}
	return found ? EFI_SUCCESS : EFI_NOT_FOUND;
}

/* Finds the kernel, waiting up to wait_s seconds for it. */
static EFI_STATUS find_kernel(unsigned wait_s, struct fwcfg_file *f)
{
	EFI_STATUS st = lookup(FWCFG_KERNEL, f);

	if (st != EFI_NOT_FOUND || !wait_s)
		return st;
	con_printf("boot: waiting for the kernel in fw_cfg " FWCFG_KERNEL);
	for (UINT64 us = 0; us < wait_s * 1000000ull; us += POLL_US) {
		BS->Stall(POLL_US);
		st = lookup(FWCFG_KERNEL, f);
		if (st != EFI_NOT_FOUND)
			return st;
	}
	con_printf("boot: no kernel in fw_cfg " FWCFG_KERNEL " after %u s",
	           wait_s);
	return EFI_NOT_FOUND;
}

EFI_STATUS fwcfg_read_kernel(struct loader *ld, unsigned wait_s)
{
	struct fwcfg_file f;
	EFI_STATUS st;

	if (!fwcfg_usable()) {
		if (wait_s)
			con_printf(
			        "boot: told to wait for fw_cfg (\\fwcfg-wait)"
			        " on a machine without fw_cfg DMA");
		return wait_s ? EFI_UNSUPPORTED : EFI_NOT_FOUND;
	}
	st = find_kernel(wait_s, &f);
	if (EFI_ERROR(st))
		return st;
	ld->kernel_name = "fw_cfg " FWCFG_KERNEL;
	/* A zero-byte pool request may fail; elf_check reports the size. */
	st = BS->AllocatePool(EfiLoaderData, f.size ? f.size : 1, &ld->file);
	if (EFI_ERROR(st)) {
		ld->file = NULL;
		con_printf("boot: out of memory reading %s (%u bytes)",
		           ld->kernel_name, f.size);
		return st;
	}
	st = dma_read(f.select, 1, ld->file, f.size);
	if (EFI_ERROR(st)) {
		con_printf("boot: %s: DMA read failed", ld->kernel_name);
		return st;
	}
	ld->file_size = f.size;
	ld->from_fwcfg = 1;
	return EFI_SUCCESS;
}

EFI_STATUS fwcfg_read_cmdline(struct loader *ld)
{
	struct fwcfg_file f;
	struct cmdline_trim_result r;
	uint32_t size;
	char *s;
	EFI_STATUS st;

	st = lookup(FWCFG_CMDLINE, &f);
	if (st == EFI_NOT_FOUND)
		return EFI_SUCCESS;
	if (EFI_ERROR(st))
		return st;
	/* One byte past the limit says whether the cut splits a word. */
	size = f.size > CMDLINE_MAX + 1 ? CMDLINE_MAX + 1 : f.size;
	st = alloc_pages(&ld->cmdline, 1);
	if (EFI_ERROR(st)) {
		con_printf("boot: out of memory reading " FWCFG_CMDLINE);
		return st;
	}
	s = (char *)(UINTN)ld->cmdline.phys;
	st = size ? dma_read(f.select, 1, s, size) : EFI_SUCCESS;
	if (EFI_ERROR(st)) {
		con_printf("boot: " FWCFG_CMDLINE ": DMA read failed");
		return st;
	}
	/* QEMU's string= gives the text with its NUL; file= without. */
	if (size && size == f.size && s[size - 1] == 0)
		size--;
	r = cmdline_trim(s, size);
	report_cmdline_trim(FWCFG_CMDLINE, &r);
	ld->cmdline_len = r.len;
	return EFI_SUCCESS;
}

/*
 * What the kernel keeps from the loader's boot_info: a copy of the memory
 * map, the command line and the physical placement of the image, taken
 * before the loader's memory is reclaimed.
 */
#ifndef KERNEL_BOOTINFO_H
#define KERNEL_BOOTINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/layout.h"

#define BOOT_MMAP_MAX    512
#define BOOT_CMDLINE_MAX 4096

/* One region of the memory map, half-open [base, limit). */
struct mem_region {
	paddr_t base, limit;
	uint32_t type; /* enum efi_memory_type */
};

struct boot_state {
	struct mem_region regions[BOOT_MMAP_MAX];
	size_t nregions;
	char cmdline[BOOT_CMDLINE_MAX];
	paddr_t kernel_phys_base, kernel_phys_limit;
	uint64_t kernel_virt_base;
	paddr_t rsdp;
	paddr_t ram_top; /* end of the highest RAM region */
};

/* Immutable after bootinfo_copy(). */
extern struct boot_state boot_state;

/* Validates and copies the loader's handoff; panics naming what is wrong. */
void bootinfo_copy(paddr_t boot_info_phys);

/* True for memory the kernel may use once boot is over. */
bool mem_type_usable(uint32_t type);
const char *mem_type_name(uint32_t type);

/* The map's bytes by what the kernel does with them, for the boot's
 * memory line. */
struct mem_totals {
	uint64_t usable;       /* mem_type_usable: the pool's, or after the
	                          reclaim of boot memory */
	uint64_t conventional; /* free when the kernel started */
	/* UEFI 2.9's type 15, which the firmware leaves to a confidential
	 * guest (TDX, SEV-SNP) to accept: never used, since a touch before
	 * accepting it faults and the kernel makes no accept calls */
	uint64_t unaccepted;
	/* ACPI tables: kept, never the pool's (docs/DESIGN.md) */
	uint64_t acpi_reclaim;
};

struct mem_totals mem_totals(const struct boot_state *b);

/* The region of boot_state holding pa, or NULL for a hole (the regions
 * are sorted and disjoint: a binary search). Any context, after
 * bootinfo_copy. */
const struct mem_region *mem_region_of(paddr_t pa);

/*
 * Finds "key=value" (or a bare "key") among the command line's words
 * (separated by spaces, tabs and line ends); copies the value
 * into buf (size bytes, NUL-terminated; "" for a bare key). Returns false
 * when the key is absent, and when its value does not fit in buf: that is
 * printed, naming the option, and the caller keeps its default (a value
 * cut short could read as another valid one). size 0 asks for no value.
 */
bool cmdline_get(const char *key, char *buf, size_t size);

/*
 * "key=N" with N a decimal number in [lo, hi]: stores N in *out and
 * returns true. Returns false when the key is absent, and when its value
 * is empty, not all digits or out of range: that is printed, naming the
 * option, and *out is left alone (the caller keeps its default).
 */
bool cmdline_get_uint(const char *key, uint64_t lo, uint64_t hi, uint64_t *out);

/*
 * cmdline_get_uint for an option that may also be written bare: a bare
 * "key" stores flag in *out and returns true; "key=N" is read as
 * cmdline_get_uint reads it ("key=", an empty value, is refused).
 */
bool cmdline_get_uint_or_flag(const char *key, uint64_t flag, uint64_t lo,
                              uint64_t hi, uint64_t *out);

/*
 * True for a bare "key" (an on/off option such as acpi.no_madt). Returns
 * false when the key is absent, and when it is given a value ("key=0",
 * "key="): that is printed, naming the option, and the option stays off
 * (a value such as "=0" or "=no" must not turn it on).
 */
bool cmdline_flag(const char *key);

/*
 * Prints each word of the command line whose key (the part before any
 * '=') no option of this kernel reads, as "cmdline: unknown option
 * 'word'; ignored", so that a misspelt option does not leave its default
 * in force unsaid, and each that repeats the key of a word before it
 * (options are read from their first word); returns how many words it
 * printed. Boot calls it once.
 */
unsigned cmdline_check_known(void);

#endif

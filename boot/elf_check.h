/* Validation of the kernel's ELF64 image before the loader trusts any of it. */
#ifndef BOOT_ELF_CHECK_H
#define BOOT_ELF_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The subset of the ELF64 format the loader reads (System V gABI). Our own
 * definitions: <elf.h> is a libc header and the loader is freestanding. */
#define ELF_EI_NIDENT  16
#define ELF_EI_CLASS   4
#define ELF_EI_DATA    5
#define ELF_EI_VERSION 6

#define ELF_CLASS64    2
#define ELF_DATA2LSB   1
#define ELF_EV_CURRENT 1
#define ELF_ET_EXEC    2
#define ELF_ET_DYN     3
#define ELF_EM_X86_64  62
#define ELF_PN_XNUM    0xffff

#define ELF_PT_NULL 0
#define ELF_PT_LOAD 1

#define ELF_PF_X 1
#define ELF_PF_W 2
#define ELF_PF_R 4

struct elf64_ehdr {
	uint8_t e_ident[ELF_EI_NIDENT];
	uint16_t e_type;
	uint16_t e_machine;
	uint32_t e_version;
	uint64_t e_entry;
	uint64_t e_phoff;
	uint64_t e_shoff;
	uint32_t e_flags;
	uint16_t e_ehsize;
	uint16_t e_phentsize;
	uint16_t e_phnum;
	uint16_t e_shentsize;
	uint16_t e_shnum;
	uint16_t e_shstrndx;
};

struct elf64_phdr {
	uint32_t p_type;
	uint32_t p_flags;
	uint64_t p_offset;
	uint64_t p_vaddr;
	uint64_t p_paddr;
	uint64_t p_filesz;
	uint64_t p_memsz;
	uint64_t p_align;
};

_Static_assert(sizeof(struct elf64_ehdr) == 64, "ELF64 header layout");
_Static_assert(sizeof(struct elf64_phdr) == 56, "ELF64 phdr layout");

/* More PT_LOADs than this is not a kernel we built; a fixed array keeps the
 * checker free of allocation. */
#define ELF_MAX_LOADS 16

#define ELF_PAGE_SIZE 4096ull

/* One PT_LOAD segment, already checked against the file and the window. */
struct elf_segment {
	uint64_t offset; /* file offset of the first byte */
	uint64_t filesz; /* bytes to copy from the file */
	uint64_t vaddr;  /* link address of the first byte */
	uint64_t memsz;  /* bytes in memory; [filesz, memsz) is zeroed */
	uint32_t flags;  /* ELF_PF_* */
	unsigned phdr;   /* index in the program header table */
};

struct elf_image {
	uint64_t entry;
	/* [min_vaddr, max_vaddr) spans every segment, page-aligned outward. */
	uint64_t min_vaddr;
	uint64_t max_vaddr;
	size_t nsegs; /* non-empty PT_LOADs, in program header order */
	struct elf_segment segs[ELF_MAX_LOADS];
	/* On failure: the program header index the reason is about, or -1
	 * when the reason concerns the file as a whole. */
	int bad_phdr;
};

/*
 * Checks that file[0, size) is an x86_64 ELF64 executable whose PT_LOAD
 * segments all lie inside [window_base, window_limit) and describes it in
 * *out. PT_LOADs with p_memsz == 0 are ignored, wherever they point (but
 * one with file bytes is refused: p_filesz > p_memsz). A p_align other
 * than 0 or a power of two is refused; the loader places segments at
 * their link addresses' page offsets, so a valid one asks nothing more.
 *
 * Returns 0 on success. Returns -1 when the image is unusable, with *why a
 * short static reason (e.g. "not an x86_64 ELF64 executable") and
 * out->bad_phdr naming the offending program header, or -1. Never reads
 * outside file[0, size); the file needs no particular alignment.
 */
int elf_check(const void *file, size_t size, uint64_t window_base,
              uint64_t window_limit, struct elf_image *out, const char **why);

#endif

/*
 * tests/host/fuzz/elf_check_fuzz.c: libFuzzer target for the loader's ELF
 * checks (boot/elf_check.c, elf_check).
 *
 * Input: the image file, checked against the kernel's window in a heap
 * block of exactly its size (ASan catches a byte read past it; the copy
 * is at an odd address, since the file needs no alignment). Checked: a
 * refusal gives a reason and names a program header of the table or
 * none; an accepted image keeps the promises of elf_check.h: 1 to
 * ELF_MAX_LOADS segments, each a PT_LOAD of the table with memory, its
 * file bytes inside the file and no more than its memory, its memory
 * inside the window; no two segments share a byte of memory; the span
 * is page-aligned and covers them all; the entry lies among the file
 * bytes of an executable segment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../boot/elf_check.h"

#define WIN_BASE  0xffffffff80000000ull
#define WIN_LIMIT 0xffffffffc0000000ull

static void fail(const char *why, size_t i)
{
	fprintf(stderr, "elf_check_fuzz: accepted image: segment %zu: %s\n", i,
	        why);
	abort();
}

static struct elf64_phdr phdr_of(const uint8_t *file, unsigned i)
{
	struct elf64_ehdr eh;
	struct elf64_phdr ph;
	memcpy(&eh, file, sizeof(eh));
	memcpy(&ph, file + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
	return ph;
}

static void check_segment(const uint8_t *file, size_t size,
                          const struct elf_image *im, size_t i)
{
	const struct elf_segment *s = &im->segs[i];
	struct elf64_ehdr eh;
	memcpy(&eh, file, sizeof(eh));
	if (s->phdr >= eh.e_phnum)
		fail("names no program header", i);
	struct elf64_phdr ph = phdr_of(file, s->phdr);
	if (ph.p_type != ELF_PT_LOAD || ph.p_offset != s->offset ||
	    ph.p_filesz != s->filesz || ph.p_vaddr != s->vaddr ||
	    ph.p_memsz != s->memsz || ph.p_flags != s->flags)
		fail("is not its program header's PT_LOAD", i);
	if (s->memsz == 0 || s->filesz > s->memsz)
		fail("has no memory, or more file bytes than memory", i);
	if (s->offset > size || s->filesz > size - s->offset)
		fail("file bytes lie outside the file", i);
	if (s->vaddr < WIN_BASE || s->vaddr > WIN_LIMIT ||
	    s->memsz > WIN_LIMIT - s->vaddr)
		fail("memory lies outside the window", i);
	if (s->vaddr < im->min_vaddr || s->vaddr + s->memsz > im->max_vaddr)
		fail("lies outside the span", i);
	for (size_t j = 0; j < i; j++) {
		const struct elf_segment *o = &im->segs[j];
		if (s->vaddr < o->vaddr + o->memsz &&
		    o->vaddr < s->vaddr + s->memsz)
			fail("overlaps an earlier segment", i);
		if (o->phdr >= s->phdr)
			fail("out of program header order", i);
	}
}

static void check_accepted(const uint8_t *file, size_t size,
                           const struct elf_image *im)
{
	if (im->nsegs == 0 || im->nsegs > ELF_MAX_LOADS)
		fail("count out of range", im->nsegs);
	if (im->min_vaddr % ELF_PAGE_SIZE || im->max_vaddr % ELF_PAGE_SIZE ||
	    im->min_vaddr >= im->max_vaddr)
		fail("span not page-aligned or empty", 0);
	bool entry_ok = false;
	for (size_t i = 0; i < im->nsegs; i++) {
		const struct elf_segment *s = &im->segs[i];
		check_segment(file, size, im, i);
		if ((s->flags & ELF_PF_X) && im->entry >= s->vaddr &&
		    im->entry - s->vaddr < s->filesz)
			entry_ok = true;
	}
	if (!entry_ok)
		fail("the entry is in no executable segment's file bytes", 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An odd address: the checker must copy headers byte by byte. */
	uint8_t *block = malloc(size + 1);
	uint8_t *file = block + 1;
	memcpy(file, data, size);
	struct elf_image im;
	const char *why = (const char *)1;
	int rc = elf_check(file, size, WIN_BASE, WIN_LIMIT, &im, &why);
	if (rc == 0) {
		if (why)
			fail("accepted with a reason", 0);
		check_accepted(file, size, &im);
	} else if (rc != -1 || !why || !*why || im.bad_phdr < -1) {
		fprintf(stderr,
		        "elf_check_fuzz: refusal %d without a reason "
		        "or with a bad program header index\n",
		        rc);
		abort();
	} else if (im.bad_phdr >= 0) {
		struct elf64_ehdr eh;
		memcpy(&eh, file, sizeof(eh));
		if ((unsigned)im.bad_phdr >= eh.e_phnum) {
			fprintf(stderr,
			        "elf_check_fuzz: '%s' names program header "
			        "%d of %u\n",
			        why, im.bad_phdr, eh.e_phnum);
			abort();
		}
	}
	free(block);
	return 0;
}

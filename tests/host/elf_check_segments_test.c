/* Host tests of boot/elf_check.c's rules for program headers and segments:
 * one mutation of the reference image (elf_check_test_util.h) per rule.
 * The file-level rules are in elf_check_test.c. */
#include "../../boot/elf_check.h"
#include "../../kernel/ktest.h"
#include "elf_check_test_util.h"

#include <stdlib.h>
#include <string.h>

KTEST(elf, offset_plus_filesz_overflow)
{
	EXPECT_EACH(PFIELD(1, p_offset), "truncated (extends past end of file)",
	            1, UINT64_MAX - 4, UINT64_MAX, IMAGE_SIZE + 1,
	            IMAGE_SIZE - 1);
}

KTEST(elf, filesz_above_memsz)
{
	EXPECT_EACH(PFIELD(0, p_memsz), "file size larger than memory size", 0,
	            TEXT_SIZE - 1);
}

KTEST(elf, vaddr_plus_memsz_overflow)
{
	struct image im;
	struct elf64_phdr data;

	EXPECT_EACH(PFIELD(1, p_memsz), "address range wraps around", 1,
	            UINT64_MAX);

	/* Ends just below 2^64: rounding the end up to a page would wrap. */
	build_valid(&im);
	data = get_phdr(&im, 1);
	data.p_vaddr = UINT64_MAX - 0x100;
	data.p_memsz = 0x80;
	put_phdr(&im, 1, &data);
	EXPECT_REJECT(&im, "address range wraps around", 1);
}

KTEST(elf, segment_outside_window)
{
	EXPECT_EACH(PFIELD(1, p_vaddr), "outside the kernel window", 1,
	            WIN_BASE - 0x1000, WIN_BASE - 1, WIN_LIMIT,
	            WIN_LIMIT - DATA_MEM + 1, 0x100000, 0);
}

KTEST(elf, segment_touching_window_edges_accepted)
{
	struct image im;
	struct elf_image out;
	const char *why;
	struct elf64_phdr text, data;

	build_valid(&im);
	text = get_phdr(&im, 0);
	data = get_phdr(&im, 1);
	text.p_vaddr = WIN_BASE;
	data.p_vaddr = WIN_LIMIT - DATA_MEM;
	put_phdr(&im, 0, &text);
	put_phdr(&im, 1, &data);
	{
		struct elf64_ehdr eh = get_ehdr(&im);

		eh.e_entry = WIN_BASE;
		put_ehdr(&im, &eh);
	}
	KEXPECT_EQ(check(&im, &out, &why), 0);
	KEXPECT_EQ(out.min_vaddr, WIN_BASE);
	KEXPECT_EQ(out.max_vaddr, WIN_LIMIT);
}

KTEST(elf, overlapping_segments)
{
	EXPECT_EACH(PFIELD(1, p_vaddr), "overlaps an earlier segment", 1,
	            TEXT_VADDR, TEXT_VADDR + TEXT_SIZE - 1,
	            TEXT_VADDR - DATA_MEM + 1);
}

/* Segments may share a page as long as their bytes do not overlap. */
KTEST(elf, adjacent_segments_accepted)
{
	EXPECT_EACH(PFIELD(1, p_vaddr), NULL, -1, TEXT_VADDR + TEXT_SIZE,
	            TEXT_VADDR - DATA_MEM);
}

KTEST(elf, no_pt_load)
{
	struct image im;
	struct elf64_phdr ph;

	build_valid(&im);
	for (unsigned i = 0; i < 2; i++) {
		ph = get_phdr(&im, i);
		ph.p_type = ELF_PT_NULL;
		put_phdr(&im, i, &ph);
	}
	EXPECT_REJECT(&im, "no PT_LOAD segment", -1);

	EXPECT_EACH(EFIELD(e_phnum), "no PT_LOAD segment", -1, 0);

	/* A PT_LOAD that loads nothing does not count. */
	build_valid(&im);
	ph = get_phdr(&im, 1);
	ph.p_type = ELF_PT_NULL;
	put_phdr(&im, 1, &ph);
	ph = get_phdr(&im, 0);
	ph.p_filesz = 0;
	ph.p_memsz = 0;
	put_phdr(&im, 0, &ph);
	EXPECT_REJECT(&im, "no PT_LOAD segment", -1);
}

KTEST(elf, empty_pt_load_ignored)
{
	struct image im;
	struct elf_image out;
	const char *why;
	struct elf64_phdr ph;

	build_valid(&im);
	ph = get_phdr(&im, 2);
	ph = (struct elf64_phdr){
	        .p_type = ELF_PT_LOAD, .p_vaddr = TEXT_VADDR, .p_offset = 0};
	put_phdr(&im, 2, &ph);
	KASSERT_EQ(check(&im, &out, &why), 0);
	KEXPECT_EQ(out.nsegs, 2);

	/* Ignored wherever it points: it places nothing, reads nothing. */
	ph = (struct elf64_phdr){.p_type = ELF_PT_LOAD,
	                         .p_vaddr = 0,
	                         .p_offset = IMAGE_SIZE + 4096};
	put_phdr(&im, 2, &ph);
	KEXPECT_EQ(check(&im, &out, &why), 0);
	KEXPECT_EQ(out.nsegs, 2);

	/* But file bytes with no memory are still refused. */
	ph.p_offset = 0;
	ph.p_filesz = 8;
	put_phdr(&im, 2, &ph);
	EXPECT_REJECT(&im, "file size larger than memory size", 2);
}

KTEST(elf, entry_outside_executable_segment)
{
	EXPECT_EACH(EFIELD(e_entry),
	            "entry point not inside an executable segment", -1,
	            DATA_VADDR,             /* in a non-executable segment */
	            TEXT_VADDR + TEXT_SIZE, /* one past the text */
	            TEXT_VADDR - 1,         /* just below it */
	            DATA_VADDR + DATA_MEM + 16, /* in no segment */
	            0);
}

/* An entry in the zero-filled part of an executable segment (past its
 * file bytes) would run zeros: refused, naming why. */
KTEST(elf, entry_in_zero_fill_rejected)
{
	struct image im;
	struct elf64_ehdr eh;
	struct elf64_phdr ph;

	build_valid(&im);
	ph = get_phdr(&im, 0);
	ph.p_memsz = 0x1000; /* text: 64 file bytes, then zeros */
	put_phdr(&im, 0, &ph);
	eh = get_ehdr(&im);
	eh.e_entry = TEXT_VADDR + TEXT_SIZE; /* the first zero-filled byte */
	put_ehdr(&im, &eh);
	EXPECT_REJECT(&im, "entry point lies past its segment's file bytes",
	              -1);

	eh.e_entry = TEXT_VADDR + TEXT_SIZE - 1; /* the last file byte */
	put_ehdr(&im, &eh);
	{
		struct elf_image out;
		const char *why;

		KEXPECT_EQ(check(&im, &out, &why), 0);
	}
}

KTEST(elf, too_many_loads)
{
	enum { N = ELF_MAX_LOADS + 1 };
	unsigned char *buf = calloc(1, 64 + N * 56);
	struct elf64_ehdr eh;
	struct image im;
	struct elf_image out;
	const char *why;

	build_valid(&im);
	eh = get_ehdr(&im);
	eh.e_phnum = N;
	memcpy(buf, &eh, sizeof(eh));
	for (unsigned i = 0; i < N; i++) {
		struct elf64_phdr ph = {.p_type = ELF_PT_LOAD,
		                        .p_flags = ELF_PF_R | ELF_PF_X,
		                        .p_vaddr = TEXT_VADDR + i * 0x1000ull,
		                        .p_memsz = 0x1000};
		/* The entry's segment has file bytes (any will do). */
		if (i == 0)
			ph.p_filesz = 64;

		memcpy(buf + 64 + i * 56, &ph, sizeof(ph));
	}
	KEXPECT_EQ(elf_check(buf, 64 + N * 56, WIN_BASE, WIN_LIMIT, &out, &why),
	           -1);
	KEXPECT_STREQ(why, "too many PT_LOAD segments");
	KEXPECT_EQ(out.bad_phdr, ELF_MAX_LOADS);

	/* One fewer fits. */
	eh.e_phnum = N - 1;
	memcpy(buf, &eh, sizeof(eh));
	KEXPECT_EQ(elf_check(buf, 64 + (N - 1) * 56, WIN_BASE, WIN_LIMIT, &out,
	                     &why),
	           0);
	KEXPECT_EQ(out.nsegs, ELF_MAX_LOADS);
	free(buf);
}

KTEST(elf, empty_window)
{
	struct image im;
	struct elf_image out;
	const char *why;

	build_valid(&im);
	KEXPECT_EQ(
	        elf_check(im.bytes, IMAGE_SIZE, WIN_BASE, WIN_BASE, &out, &why),
	        -1);
	KEXPECT_STREQ(why, "empty kernel window");
}

/* gABI: p_align is 0 or 1 (no alignment) or a power of two. Any other value
 * (a corrupt header) was taken without a word; powers of two, up to 2^63,
 * are still accepted. */
KTEST(elf, alignment_not_a_power_of_two)
{
	EXPECT_EACH(PFIELD(1, p_align), "alignment is not a power of two", 1, 3,
	            0x1001, 0x3000, UINT64_MAX);
	EXPECT_EACH(PFIELD(1, p_align), NULL, -1, 0, 1, 2, 0x200000,
	            1ull << 63);
}

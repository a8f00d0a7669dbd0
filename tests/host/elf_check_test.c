/* Host tests of boot/elf_check.c: a valid kernel image, then one mutation per
 * rule it must enforce on the file and its header. The rules for program
 * headers and segments are in elf_check_segments_test.c; the reference
 * image is built by elf_check_test_util.h. */
#include "../../boot/elf_check.h"
#include "../../kernel/ktest.h"

#include <stdlib.h>
#include <string.h>

#include "elf_check_test_util.h"

KTEST(elf, valid_image_accepted)
{
	struct image im;
	struct elf_image out;
	const char *why = "unset";

	build_valid(&im);
	KASSERT_EQ(check(&im, &out, &why), 0);
	KEXPECT(why == NULL);
	KEXPECT_EQ(out.bad_phdr, -1);
	KEXPECT_EQ(out.entry, ENTRY);
	KEXPECT_EQ(out.min_vaddr, TEXT_VADDR);
	KEXPECT_EQ(out.max_vaddr, DATA_VADDR + DATA_MEM);
	KASSERT_EQ(out.nsegs, 2);
	KEXPECT_EQ(out.segs[0].offset, TEXT_OFF);
	KEXPECT_EQ(out.segs[0].filesz, TEXT_SIZE);
	KEXPECT_EQ(out.segs[0].vaddr, TEXT_VADDR);
	KEXPECT_EQ(out.segs[0].memsz, TEXT_SIZE);
	KEXPECT_EQ(out.segs[0].flags, ELF_PF_R | ELF_PF_X);
	KEXPECT_EQ(out.segs[0].phdr, 0);
	KEXPECT_EQ(out.segs[1].offset, DATA_OFF);
	KEXPECT_EQ(out.segs[1].filesz, DATA_FILE);
	KEXPECT_EQ(out.segs[1].vaddr, DATA_VADDR);
	KEXPECT_EQ(out.segs[1].memsz, DATA_MEM);
	KEXPECT_EQ(out.segs[1].flags, ELF_PF_R | ELF_PF_W);
	KEXPECT_EQ(out.segs[1].phdr, 1);
}

KTEST(elf, unaligned_buffer_accepted)
{
	struct image im;
	struct elf_image out;
	const char *why;
	unsigned char *buf = malloc(IMAGE_SIZE + 1);

	build_valid(&im);
	memcpy(buf + 1, im.bytes, IMAGE_SIZE);
	KEXPECT_EQ(
	        elf_check(buf + 1, IMAGE_SIZE, WIN_BASE, WIN_LIMIT, &out, &why),
	        0);
	KEXPECT_EQ(out.entry, ENTRY);
	free(buf);
}

/* Unaligned vaddr and end: the span is widened to whole pages. */
KTEST(elf, span_is_page_aligned)
{
	struct image im;
	struct elf_image out;
	const char *why;
	struct elf64_phdr text, data;

	build_valid(&im);
	text = get_phdr(&im, 0);
	data = get_phdr(&im, 1);
	text.p_vaddr = TEXT_VADDR + 0x10;
	data.p_memsz = DATA_FILE + 1;
	put_phdr(&im, 0, &text);
	put_phdr(&im, 1, &data);
	KASSERT_EQ(check(&im, &out, &why), 0);
	KEXPECT_EQ(out.min_vaddr, TEXT_VADDR);
	KEXPECT_EQ(out.max_vaddr, DATA_VADDR + 0x1000);
}

KTEST(elf, truncated_every_prefix)
{
	struct image im;

	build_valid(&im);
	for (size_t len = 0; len < IMAGE_SIZE; len++) {
		struct elf_image out;
		const char *why = NULL;
		const char *want;
		int phdr = -1;

		if (len < 64) {
			want = "truncated (file smaller than the ELF header)";
		} else if (len < PHDRS_END) {
			want = "truncated (program header table extends past "
			       "end of file)";
		} else {
			want = "truncated (extends past end of file)";
			phdr = len < TEXT_OFF + TEXT_SIZE ? 0 : 1;
		}
		KEXPECT_EQ(check_len(&im, len, &out, &why), -1);
		if (!why) {
			ktest_fail_at(__FILE__, __LINE__, "len %zu: no why",
			              len);
			continue;
		}
		if (strcmp(why, want) != 0 || out.bad_phdr != phdr)
			ktest_fail_at(__FILE__, __LINE__,
			              "len %zu: \"%s\" phdr %d", len, why,
			              out.bad_phdr);
	}
}

KTEST(elf, wrong_magic)
{
	for (unsigned i = 0; i < 4; i++) {
		struct image im;

		build_valid(&im);
		im.bytes[i] ^= 0x20;
		EXPECT_REJECT(&im, "not an ELF file (bad magic)", -1);
	}
}

KTEST(elf, elfclass32)
{
	EXPECT_EACH(IDENT(ELF_EI_CLASS), "not an ELF64 file (wrong class)", -1,
	            1);
}

KTEST(elf, big_endian)
{
	EXPECT_EACH(IDENT(ELF_EI_DATA), "not a little-endian ELF file", -1, 2);
}

KTEST(elf, bad_version)
{
	EXPECT_EACH(IDENT(ELF_EI_VERSION), "unsupported ELF version", -1, 2);
	EXPECT_EACH(EFIELD(e_version), "unsupported ELF version", -1, 0);
}

KTEST(elf, wrong_machine)
{
	EXPECT_EACH(EFIELD(e_machine),
	            "not an x86_64 executable (wrong machine)", -1,
	            3 /* EM_386 */);
}

KTEST(elf, et_dyn)
{
	EXPECT_EACH(EFIELD(e_type),
	            "not a static executable (type is not ET_EXEC)", -1,
	            ELF_ET_DYN);
}

KTEST(elf, bad_phentsize)
{
	EXPECT_EACH(EFIELD(e_phentsize), "bad program header entry size", -1, 0,
	            32, 55, 57, 64);
}

KTEST(elf, phdr_table_past_eof)
{
	EXPECT_EACH(EFIELD(e_phoff),
	            "truncated (program header table extends past end of "
	            "file)",
	            -1, IMAGE_SIZE - 56 * NPHDR + 1, IMAGE_SIZE, IMAGE_SIZE + 1,
	            UINT64_MAX - 8, UINT64_MAX);
}

KTEST(elf, pn_xnum_rejected)
{
	EXPECT_EACH(EFIELD(e_phnum), "too many program headers", -1,
	            ELF_PN_XNUM);
}

/*
 * Segments that touch, in ascending order, are spanned to the last one's
 * end: the loader allocates [min_vaddr, max_vaddr) and copies every
 * segment into it. With compute_span raising the end only for a segment
 * that starts past it (s->vaddr > hi), data right after a page of text
 * was left out of the span (max_vaddr the text's end).
 */
KTEST(elf, span_covers_touching_segments)
{
	struct image im;
	struct elf_image out;
	const char *why;
	struct elf64_phdr text;

	build_valid(&im);
	text = get_phdr(&im, 0);
	text.p_memsz = DATA_VADDR - TEXT_VADDR;
	put_phdr(&im, 0, &text);
	KASSERT_EQ(check(&im, &out, &why), 0);
	KEXPECT_EQ(out.min_vaddr, TEXT_VADDR);
	KEXPECT_EQ(out.max_vaddr, DATA_VADDR + DATA_MEM);
}

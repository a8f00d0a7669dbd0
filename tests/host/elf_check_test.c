/* Host tests of boot/elf_check.c: a valid kernel image, then one mutation per
 * rule it must enforce. */
#include "../../boot/elf_check.h"
#include "../../kernel/ktest.h"

#include <stdlib.h>
#include <string.h>

#define WIN_BASE  0xffffffff80000000ull
#define WIN_LIMIT 0xffffffffc0000000ull

/*
 * The reference image: ELF header, three program headers (text, data+bss and
 * a non-load PT_GNU_STACK that must be skipped), then the segments' bytes.
 */
#define TEXT_OFF          256u
#define TEXT_SIZE         64u
#define TEXT_VADDR        0xffffffff80100000ull
#define DATA_OFF          320u
#define DATA_FILE         32u
#define DATA_MEM          0x2000u
#define DATA_VADDR        0xffffffff80101000ull
#define ENTRY             (TEXT_VADDR + 0x10)
#define IMAGE_SIZE        (DATA_OFF + DATA_FILE)
#define NPHDR             3u
#define PHDRS_END         (64u + NPHDR * 56u)
#define PT_GNU_STACK_TYPE 0x6474e551u

struct image {
	unsigned char bytes[IMAGE_SIZE];
};

static struct elf64_ehdr get_ehdr(const struct image *im)
{
	struct elf64_ehdr eh;

	memcpy(&eh, im->bytes, sizeof(eh));
	return eh;
}

static void put_ehdr(struct image *im, const struct elf64_ehdr *eh)
{
	memcpy(im->bytes, eh, sizeof(*eh));
}

static struct elf64_phdr get_phdr(const struct image *im, unsigned i)
{
	struct elf64_phdr ph;

	memcpy(&ph, im->bytes + 64 + i * sizeof(ph), sizeof(ph));
	return ph;
}

static void put_phdr(struct image *im, unsigned i, const struct elf64_phdr *ph)
{
	memcpy(im->bytes + 64 + i * sizeof(*ph), ph, sizeof(*ph));
}

static void build_valid(struct image *im)
{
	struct elf64_ehdr eh = {
	        .e_ident = {0x7f, 'E', 'L', 'F', ELF_CLASS64, ELF_DATA2LSB,
	                    ELF_EV_CURRENT},
	        .e_type = ELF_ET_EXEC,
	        .e_machine = ELF_EM_X86_64,
	        .e_version = ELF_EV_CURRENT,
	        .e_entry = ENTRY,
	        .e_phoff = 64,
	        .e_ehsize = 64,
	        .e_phentsize = 56,
	        .e_phnum = NPHDR,
	};
	struct elf64_phdr text = {
	        ELF_PT_LOAD, ELF_PF_R | ELF_PF_X, TEXT_OFF,  TEXT_VADDR,
	        TEXT_VADDR,  TEXT_SIZE,           TEXT_SIZE, 0x1000};
	struct elf64_phdr data = {
	        ELF_PT_LOAD, ELF_PF_R | ELF_PF_W, DATA_OFF, DATA_VADDR,
	        DATA_VADDR,  DATA_FILE,           DATA_MEM, 0x1000};
	struct elf64_phdr stack = {.p_type = PT_GNU_STACK_TYPE,
	                           .p_flags = ELF_PF_R | ELF_PF_W};

	memset(im, 0xcc, sizeof(*im));
	put_ehdr(im, &eh);
	put_phdr(im, 0, &text);
	put_phdr(im, 1, &data);
	put_phdr(im, 2, &stack);
}

/* Checks len bytes copied to an exact-size heap block, so that ASan catches
 * any read past the end. Returns elf_check's result. */
static int check_len(const struct image *im, size_t len, struct elf_image *out,
                     const char **why)
{
	unsigned char *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, im->bytes, len);
	r = elf_check(copy, len, WIN_BASE, WIN_LIMIT, out, why);
	free(copy);
	return r;
}

static int check(const struct image *im, struct elf_image *out,
                 const char **why)
{
	return check_len(im, sizeof(im->bytes), out, why);
}

/* Expects the image to be rejected for reason want about program header
 * want_phdr (-1: the file as a whole). */
#define EXPECT_REJECT(im, want, want_phdr)               \
	do {                                             \
		struct elf_image out_;                   \
		const char *why_ = NULL;                 \
		KEXPECT_EQ(check(im, &out_, &why_), -1); \
		KEXPECT(why_ != NULL);                   \
		if (why_)                                \
			KEXPECT_STREQ(why_, want);       \
		KEXPECT_EQ(out_.bad_phdr, want_phdr);    \
	} while (0)

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
	struct image im;

	build_valid(&im);
	im.bytes[ELF_EI_CLASS] = 1;
	EXPECT_REJECT(&im, "not an ELF64 file (wrong class)", -1);
}

KTEST(elf, big_endian)
{
	struct image im;

	build_valid(&im);
	im.bytes[ELF_EI_DATA] = 2;
	EXPECT_REJECT(&im, "not a little-endian ELF file", -1);
}

KTEST(elf, bad_version)
{
	struct image im;
	struct elf64_ehdr eh;

	build_valid(&im);
	im.bytes[ELF_EI_VERSION] = 2;
	EXPECT_REJECT(&im, "unsupported ELF version", -1);

	build_valid(&im);
	eh = get_ehdr(&im);
	eh.e_version = 0;
	put_ehdr(&im, &eh);
	EXPECT_REJECT(&im, "unsupported ELF version", -1);
}

KTEST(elf, wrong_machine)
{
	struct image im;
	struct elf64_ehdr eh;

	build_valid(&im);
	eh = get_ehdr(&im);
	eh.e_machine = 3; /* EM_386 */
	put_ehdr(&im, &eh);
	EXPECT_REJECT(&im, "not an x86_64 executable (wrong machine)", -1);
}

KTEST(elf, et_dyn)
{
	struct image im;
	struct elf64_ehdr eh;

	build_valid(&im);
	eh = get_ehdr(&im);
	eh.e_type = ELF_ET_DYN;
	put_ehdr(&im, &eh);
	EXPECT_REJECT(&im, "not a static executable (type is not ET_EXEC)", -1);
}

KTEST(elf, bad_phentsize)
{
	static const uint16_t sizes[] = {0, 32, 55, 57, 64};

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct image im;
		struct elf64_ehdr eh;

		build_valid(&im);
		eh = get_ehdr(&im);
		eh.e_phentsize = sizes[i];
		put_ehdr(&im, &eh);
		EXPECT_REJECT(&im, "bad program header entry size", -1);
	}
}

KTEST(elf, phdr_table_past_eof)
{
	static const uint64_t offs[] = {IMAGE_SIZE - 56 * NPHDR + 1, IMAGE_SIZE,
	                                IMAGE_SIZE + 1, UINT64_MAX - 8,
	                                UINT64_MAX};

	for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		struct image im;
		struct elf64_ehdr eh;

		build_valid(&im);
		eh = get_ehdr(&im);
		eh.e_phoff = offs[i];
		put_ehdr(&im, &eh);
		EXPECT_REJECT(&im,
		              "truncated (program header table extends past "
		              "end of file)",
		              -1);
	}
}

KTEST(elf, pn_xnum_rejected)
{
	struct image im;
	struct elf64_ehdr eh;

	build_valid(&im);
	eh = get_ehdr(&im);
	eh.e_phnum = ELF_PN_XNUM;
	put_ehdr(&im, &eh);
	EXPECT_REJECT(&im, "too many program headers", -1);
}

KTEST(elf, offset_plus_filesz_overflow)
{
	static const uint64_t offs[] = {UINT64_MAX - 4, UINT64_MAX,
	                                IMAGE_SIZE + 1, IMAGE_SIZE - 1};

	for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		struct image im;
		struct elf64_phdr data;

		build_valid(&im);
		data = get_phdr(&im, 1);
		data.p_offset = offs[i];
		put_phdr(&im, 1, &data);
		EXPECT_REJECT(&im, "truncated (extends past end of file)", 1);
	}
}

KTEST(elf, filesz_above_memsz)
{
	struct image im;
	struct elf64_phdr text;

	build_valid(&im);
	text = get_phdr(&im, 0);
	text.p_memsz = text.p_filesz - 1;
	put_phdr(&im, 0, &text);
	EXPECT_REJECT(&im, "file size larger than memory size", 0);
}

KTEST(elf, vaddr_plus_memsz_overflow)
{
	struct image im;
	struct elf64_phdr data;

	build_valid(&im);
	data = get_phdr(&im, 1);
	data.p_memsz = UINT64_MAX;
	put_phdr(&im, 1, &data);
	EXPECT_REJECT(&im, "address range wraps around", 1);

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
	static const uint64_t vaddrs[] = {
	        WIN_BASE - 0x1000,        WIN_BASE - 1, WIN_LIMIT,
	        WIN_LIMIT - DATA_MEM + 1, 0x100000,     0};

	for (unsigned i = 0; i < sizeof(vaddrs) / sizeof(vaddrs[0]); i++) {
		struct image im;
		struct elf64_phdr data;

		build_valid(&im);
		data = get_phdr(&im, 1);
		data.p_vaddr = vaddrs[i];
		put_phdr(&im, 1, &data);
		EXPECT_REJECT(&im, "outside the kernel window", 1);
	}
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
	static const uint64_t vaddrs[] = {TEXT_VADDR,
	                                  TEXT_VADDR + TEXT_SIZE - 1,
	                                  TEXT_VADDR - DATA_MEM + 1};

	for (unsigned i = 0; i < sizeof(vaddrs) / sizeof(vaddrs[0]); i++) {
		struct image im;
		struct elf64_phdr data;

		build_valid(&im);
		data = get_phdr(&im, 1);
		data.p_vaddr = vaddrs[i];
		put_phdr(&im, 1, &data);
		EXPECT_REJECT(&im, "overlaps an earlier segment", 1);
	}
}

/* Segments may share a page as long as their bytes do not overlap. */
KTEST(elf, adjacent_segments_accepted)
{
	static const uint64_t vaddrs[] = {TEXT_VADDR + TEXT_SIZE,
	                                  TEXT_VADDR - DATA_MEM};

	for (unsigned i = 0; i < sizeof(vaddrs) / sizeof(vaddrs[0]); i++) {
		struct image im;
		struct elf_image out;
		const char *why;
		struct elf64_phdr data;

		build_valid(&im);
		data = get_phdr(&im, 1);
		data.p_vaddr = vaddrs[i];
		put_phdr(&im, 1, &data);
		KEXPECT_EQ(check(&im, &out, &why), 0);
	}
}

KTEST(elf, no_pt_load)
{
	struct image im;
	struct elf64_phdr ph;
	struct elf64_ehdr eh;

	build_valid(&im);
	for (unsigned i = 0; i < 2; i++) {
		ph = get_phdr(&im, i);
		ph.p_type = ELF_PT_NULL;
		put_phdr(&im, i, &ph);
	}
	EXPECT_REJECT(&im, "no PT_LOAD segment", -1);

	build_valid(&im);
	eh = get_ehdr(&im);
	eh.e_phnum = 0;
	put_ehdr(&im, &eh);
	EXPECT_REJECT(&im, "no PT_LOAD segment", -1);

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
	static const uint64_t entries[] = {
	        DATA_VADDR,                 /* in a non-executable segment */
	        TEXT_VADDR + TEXT_SIZE,     /* one past the text */
	        TEXT_VADDR - 1,             /* just below it */
	        DATA_VADDR + DATA_MEM + 16, /* in no segment */
	        0,
	};

	for (unsigned i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
		struct image im;
		struct elf64_ehdr eh;

		build_valid(&im);
		eh = get_ehdr(&im);
		eh.e_entry = entries[i];
		put_ehdr(&im, &eh);
		EXPECT_REJECT(&im,
		              "entry point not inside an executable segment",
		              -1);
	}
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

/*
 * tests/host/elf_check_test_util.h: the reference kernel image the tests
 * of boot/elf_check.c mutate (elf_check_test.c: the file and its header;
 * elf_check_segments_test.c: the program headers and segments), its
 * accessors, and elf_check run on a copy of exactly the image's size, so
 * that ASan catches a read past its end.
 */
#ifndef TESTS_HOST_ELF_CHECK_TEST_UTIL_H
#define TESTS_HOST_ELF_CHECK_TEST_UTIL_H

#include "../../boot/elf_check.h"
#include "../../kernel/ktest.h"

#include <stddef.h>
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

static inline struct elf64_ehdr get_ehdr(const struct image *im)
{
	struct elf64_ehdr eh;

	memcpy(&eh, im->bytes, sizeof(eh));
	return eh;
}

static inline void put_ehdr(struct image *im, const struct elf64_ehdr *eh)
{
	memcpy(im->bytes, eh, sizeof(*eh));
}

static inline struct elf64_phdr get_phdr(const struct image *im, unsigned i)
{
	struct elf64_phdr ph;

	memcpy(&ph, im->bytes + 64 + i * sizeof(ph), sizeof(ph));
	return ph;
}

static inline void put_phdr(struct image *im, unsigned i,
                            const struct elf64_phdr *ph)
{
	memcpy(im->bytes + 64 + i * sizeof(*ph), ph, sizeof(*ph));
}

static inline void build_valid(struct image *im)
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
static inline int check_len(const struct image *im, size_t len,
                            struct elf_image *out, const char **why)
{
	unsigned char *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, im->bytes, len);
	r = elf_check(copy, len, WIN_BASE, WIN_LIMIT, out, why);
	free(copy);
	return r;
}

static inline int check(const struct image *im, struct elf_image *out,
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

/* A field of the reference image: its byte offset and width. */
struct field {
	size_t at, width;
};
#define EFIELD(f)                                       \
	((struct field){offsetof(struct elf64_ehdr, f), \
	                sizeof(((struct elf64_ehdr *)0)->f)})
#define PFIELD(i, f)                                            \
	((struct field){64 + (i) * sizeof(struct elf64_phdr) +  \
	                        offsetof(struct elf64_phdr, f), \
	                sizeof(((struct elf64_phdr *)0)->f)})
#define IDENT(i) ((struct field){(i), 1})

/* For each value: the reference image with the field set to it (little
 * endian, cut to the field's width) must be refused for why, naming
 * program header phdr (-1: the file as a whole); with why NULL, accepted.
 * A failure names the caller's line and the value. */
static inline void expect_each(struct field f, const uint64_t *vals, size_t n,
                               const char *why, int phdr, const char *file,
                               int line)
{
	for (size_t i = 0; i < n; i++) {
		struct image im;
		struct elf_image out;
		const char *got = NULL;
		int r;

		build_valid(&im);
		for (size_t b = 0; b < f.width; b++)
			im.bytes[f.at + b] =
			        (unsigned char)(vals[i] >> (8 * b));
		r = check(&im, &out, &got);
		if (why ? r == -1 && got && strcmp(got, why) == 0 &&
		                    out.bad_phdr == phdr
		        : r == 0)
			continue;
		ktest_fail_at(file, line,
		              "field at byte %zu = 0x%llx: %s (header %d), "
		              "expected %s (header %d)",
		              f.at, (unsigned long long)vals[i],
		              r == 0 ? "accepted"
		              : got  ? got
		                     : "no reason",
		              r == 0 ? -1 : out.bad_phdr,
		              why ? why : "accepted", why ? phdr : -1);
	}
}
#define EXPECT_EACH(f, why, phdr, ...)                        \
	expect_each(f, (const uint64_t[]){__VA_ARGS__},       \
	            sizeof((const uint64_t[]){__VA_ARGS__}) / \
	                    sizeof(uint64_t),                 \
	            why, phdr, __FILE__, __LINE__)

#endif

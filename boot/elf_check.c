/* Validation of the kernel's ELF64 image: portable C, tested on the host. */
#include "elf_check.h"

/* The file buffer has no alignment guarantee, so headers are copied out byte
 * by byte instead of being read through casted pointers. */
static void copy_bytes(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
}

/* Returns the reason the ELF header is unusable, or NULL when it is fine. */
static const char *check_ehdr(const struct elf64_ehdr *eh, size_t size)
{
	const uint8_t *id = eh->e_ident;
	uint64_t table;

	if (id[0] != 0x7f || id[1] != 'E' || id[2] != 'L' || id[3] != 'F')
		return "not an ELF file (bad magic)";
	if (id[ELF_EI_CLASS] != ELF_CLASS64)
		return "not an ELF64 file (wrong class)";
	if (id[ELF_EI_DATA] != ELF_DATA2LSB)
		return "not a little-endian ELF file";
	if (id[ELF_EI_VERSION] != ELF_EV_CURRENT ||
	    eh->e_version != ELF_EV_CURRENT)
		return "unsupported ELF version";
	if (eh->e_machine != ELF_EM_X86_64)
		return "not an x86_64 executable (wrong machine)";
	if (eh->e_type != ELF_ET_EXEC)
		return "not a static executable (type is not ET_EXEC)";
	if (eh->e_phentsize != sizeof(struct elf64_phdr))
		return "bad program header entry size";
	/* PN_XNUM moves the real count into section 0: never in a kernel. */
	if (eh->e_phnum == ELF_PN_XNUM)
		return "too many program headers";
	/* At most 0xfffe * 56 bytes: the product cannot overflow. */
	table = (uint64_t)eh->e_phnum * sizeof(struct elf64_phdr);
	if (eh->e_phoff > size || table > size - eh->e_phoff)
		return "truncated (program header table extends past end of "
		       "file)";
	return NULL;
}

/* Returns the reason one PT_LOAD is unusable on its own, or NULL. */
static const char *check_load(const struct elf64_phdr *ph, size_t size,
                              uint64_t window_base, uint64_t window_limit)
{
	uint64_t end;

	if (ph->p_filesz > ph->p_memsz)
		return "file size larger than memory size";
	/* 0 and 1 mean none (gABI); any other value not a power of two says
	 * the header is not what a linker wrote. */
	if (ph->p_align & (ph->p_align - 1))
		return "alignment is not a power of two";
	if (ph->p_offset > size || ph->p_filesz > size - ph->p_offset)
		return "truncated (extends past end of file)";
	/* The end is rounded up to a page later: that must not wrap either. */
	if (ph->p_memsz > UINT64_MAX - ph->p_vaddr)
		return "address range wraps around";
	end = ph->p_vaddr + ph->p_memsz;
	if (end > UINT64_MAX - (ELF_PAGE_SIZE - 1))
		return "address range wraps around";
	if (ph->p_vaddr < window_base || end > window_limit)
		return "outside the kernel window";
	return NULL;
}

/* True when [a, a + alen) and [b, b + blen) share a byte; no wrap-around
 * (the ranges were checked against the window). */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Records ph as the next segment of out. Returns the reason it cannot be
 * recorded (overlap, too many), or NULL. */
static const char *add_segment(struct elf_image *out,
                               const struct elf64_phdr *ph, unsigned index)
{
	struct elf_segment *seg;

	for (size_t i = 0; i < out->nsegs; i++) {
		const struct elf_segment *o = &out->segs[i];

		if (ranges_overlap(o->vaddr, o->memsz, ph->p_vaddr,
		                   ph->p_memsz))
			return "overlaps an earlier segment";
	}
	if (out->nsegs == ELF_MAX_LOADS)
		return "too many PT_LOAD segments";
	seg = &out->segs[out->nsegs++];
	seg->offset = ph->p_offset;
	seg->filesz = ph->p_filesz;
	seg->vaddr = ph->p_vaddr;
	seg->memsz = ph->p_memsz;
	seg->flags = ph->p_flags;
	seg->phdr = index;
	return NULL;
}

/* Walks the program header table into out. Returns the reason the first bad
 * PT_LOAD is unusable (out->bad_phdr names it), or NULL. */
static const char *collect_loads(const unsigned char *file, size_t size,
                                 const struct elf64_ehdr *eh,
                                 uint64_t window_base, uint64_t window_limit,
                                 struct elf_image *out)
{
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		struct elf64_phdr ph;
		const char *why;

		copy_bytes(&ph, file + eh->e_phoff + i * sizeof(ph),
		           sizeof(ph));
		/* An empty segment loads nothing and reads nothing: its
		 * addresses and offset do not matter (file bytes with no
		 * memory are refused by check_load). */
		if (ph.p_type != ELF_PT_LOAD ||
		    (ph.p_memsz == 0 && ph.p_filesz == 0))
			continue;
		why = check_load(&ph, size, window_base, window_limit);
		if (!why)
			why = add_segment(out, &ph, i);
		if (why) {
			out->bad_phdr = (int)i;
			return why;
		}
	}
	return NULL;
}

/* Fills the page-aligned span of out's segments; out has at least one. */
static void compute_span(struct elf_image *out)
{
	uint64_t lo = UINT64_MAX, hi = 0;

	for (size_t i = 0; i < out->nsegs; i++) {
		const struct elf_segment *s = &out->segs[i];

		if (s->vaddr < lo)
			lo = s->vaddr;
		if (s->vaddr + s->memsz > hi)
			hi = s->vaddr + s->memsz;
	}
	out->min_vaddr = lo & ~(ELF_PAGE_SIZE - 1);
	out->max_vaddr = (hi + ELF_PAGE_SIZE - 1) & ~(ELF_PAGE_SIZE - 1);
}

/* Returns the reason entry cannot start the kernel, or NULL: it must lie
 * in an executable segment, among the bytes the file gives it (past them
 * the loader leaves zeros, which would run as code). */
static const char *check_entry(const struct elf_image *out, uint64_t entry)
{
	for (size_t i = 0; i < out->nsegs; i++) {
		const struct elf_segment *s = &out->segs[i];

		if (!(s->flags & ELF_PF_X) || entry < s->vaddr ||
		    entry - s->vaddr >= s->memsz)
			continue;
		if (entry - s->vaddr >= s->filesz)
			return "entry point lies past its segment's file bytes";
		return NULL;
	}
	return "entry point not inside an executable segment";
}

int elf_check(const void *file, size_t size, uint64_t window_base,
              uint64_t window_limit, struct elf_image *out, const char **why)
{
	struct elf64_ehdr eh;

	*out = (struct elf_image){.bad_phdr = -1};
	*why = NULL;
	if (window_base >= window_limit)
		*why = "empty kernel window";
	else if (size < sizeof(eh))
		*why = "truncated (file smaller than the ELF header)";
	if (*why)
		return -1;
	copy_bytes(&eh, file, sizeof(eh));
	*why = check_ehdr(&eh, size);
	if (!*why)
		*why = collect_loads(file, size, &eh, window_base, window_limit,
		                     out);
	if (!*why && out->nsegs == 0)
		*why = "no PT_LOAD segment";
	if (*why)
		return -1;
	compute_span(out);
	out->entry = eh.e_entry;
	*why = check_entry(out, eh.e_entry);
	return *why ? -1 : 0;
}

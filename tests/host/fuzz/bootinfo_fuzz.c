/*
 * tests/host/fuzz/bootinfo_fuzz.c: libFuzzer target for what the kernel
 * reads from the loader (kernel/bootinfo.c): the command line's options
 * and the UEFI memory map.
 *
 * Input: a control byte, then bytes. Bit 0 picks the mode:
 *   - options: the bytes up to the first blank are a key (one with '='
 *     or a NUL is no key an option could have: the input is passed over),
 *     the rest, up to BOOT_CMDLINE_MAX - 1 bytes and a NUL, the command
 *     line. cmdline_find (a value buffer of (control >> 1) % 32 bytes),
 *     cmdline_find_uint (bounds picked by control >> 6) and
 *     cmdline_find_flag must agree with a model that splits the words on
 *     its own: the first word naming the key decides; a value found is
 *     that word's, byte for byte (it round-trips); a number read is the
 *     value's digits, in range. cmdline_find_unknown must not crash.
 *   - memory map: 16 bytes place the kernel image; the rest are
 *     descriptors, 40 + (control >> 1) % 32 bytes apart (any stride
 *     bootinfo_handoff_problem lets through, unaligned ones too), in
 *     an 8-aligned block of exactly their bytes. The kernel must not
 *     refuse a map for an entry the loader's paging_direct_map_limit
 *     ignores (past 2^52, or wrapping past 2^64, aligned or not). An
 *     accepted map's regions
 *     are its descriptors with pages but not those the loader ignores
 *     (no CPU reaches past 2^52), those of a type that touch joined
 *     (each descriptor inside a region of its type, no page more or
 *     fewer, no two touching regions of a type), sorted, page-aligned
 *     and disjoint,
 *     usable memory inside the direct map, some free memory but none
 *     over the kernel image, and ram_top the end of the highest usable one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../boot/paging.h"
#include "../../../kernel/bootinfo_testing.h"
#include "../kernel_stubs.h"

static void fail(const char *what, const char *key)
{
	fprintf(stderr, "bootinfo_fuzz: key '%s': %s\n", key, what);
	abort();
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The model: the first word of s naming key (bare, or key=...); NULL
 * if none. *vlen gets its value's length, or -1 for a bare key. */
static const char *model_find(const char *s, const char *key, long *vlen)
{
	size_t klen = strlen(key);
	while (*s) {
		while (*s && blank(*s))
			s++;
		size_t w = 0;
		while (s[w] && !blank(s[w]))
			w++;
		if (w == klen && memcmp(s, key, klen) == 0) {
			*vlen = -1;
			return s + w;
		}
		if (w > klen && memcmp(s, key, klen) == 0 && s[klen] == '=') {
			*vlen = (long)(w - klen - 1);
			return s + klen + 1;
		}
		s += w;
	}
	return NULL;
}

static void check_find(const char *line, const char *key, size_t size)
{
	char buf[32];
	long vlen;
	const char *v = model_find(line, key, &vlen);
	bool want = v && (size == 0 || vlen < (long)size);
	if (cmdline_find(line, key, size ? buf : NULL, size) != want)
		fail(want ? "cmdline_find missed it" : "cmdline_find found it",
		     key);
	if (want && size &&
	    (vlen < 0 ? buf[0] != 0
	              : strlen(buf) != (size_t)vlen || memcmp(buf, v, vlen)))
		fail("the value found is not the word's", key);
}

static void check_uint(const char *line, const char *key, unsigned pick)
{
	static const uint64_t bounds[4][2] = {
	        {0, UINT64_MAX}, {1, 1000}, {0, 0}, {7, 18446744073709551614u}};
	uint64_t lo = bounds[pick][0], hi = bounds[pick][1], out = 12345;
	long vlen;
	const char *v = model_find(line, key, &vlen);
	bool ok = cmdline_find_uint(line, key, lo, hi, &out);
	bool digits = v && vlen > 0 && vlen < 24;
	for (long i = 0; digits && i < vlen; i++)
		digits = v[i] >= '0' && v[i] <= '9';
	if (!ok) {
		if (out != 12345)
			fail("a refused number was stored", key);
		uint64_t n = 0;
		bool over = false;
		for (long i = 0; digits && i < vlen; i++) {
			unsigned d = (unsigned)(v[i] - '0');
			over |= n > (UINT64_MAX - d) / 10;
			n = n * 10 + d;
		}
		if (digits && !over && n >= lo && n <= hi)
			fail("a number in range refused", key);
		return;
	}
	if (!digits || out < lo || out > hi)
		fail("a value that is no number in range accepted", key);
	char back[32];
	snprintf(back, sizeof(back), "%llu", (unsigned long long)out);
	const char *sig = v;
	while (sig < v + vlen - 1 && *sig == '0')
		sig++;
	if (strlen(back) != (size_t)(v + vlen - sig) ||
	    memcmp(back, sig, strlen(back)))
		fail("the number read is not the value's", key);
}

static void options(const uint8_t *data, size_t size, uint8_t ctl)
{
	static char line[BOOT_CMDLINE_MAX];
	char key[64];
	size_t k = 0;
	while (k < size && k < sizeof(key) - 1 && data[k] != ' ')
		k++;
	memcpy(key, data, k);
	key[k] = 0;
	if (k == 0 || strlen(key) != k || strpbrk(key, "=\t\r\n"))
		return;
	size_t n = size - k < sizeof(line) - 1 ? size - k : sizeof(line) - 1;
	memcpy(line, data + k, n);
	line[n] = 0;
	check_find(line, key, (ctl >> 1) % 32);
	check_uint(line, key, ctl >> 6);
	long vlen;
	bool flag = model_find(line, key, &vlen) && vlen < 0;
	if (cmdline_find_flag(line, key) != flag)
		fail("cmdline_find_flag disagrees with the model", key);
	cmdline_find_unknown(line);
}

/* The entries the loader's paging_direct_map_limit ignores, in map
 * order: the kernel must leave out the same ones. */
static struct efi_memory_descriptor ignored[2 * BOOT_MMAP_MAX];
static size_t nignored;

static void note_ignored(void *ctx, const struct efi_memory_descriptor *e)
{
	ignored[nignored++] = *e;
}

static bool same_entry(const struct efi_memory_descriptor *a,
                       const struct efi_memory_descriptor *b)
{
	return a->physical_start == b->physical_start &&
	       a->number_of_pages == b->number_of_pages && a->type == b->type;
}

/* True when the kernel refused the map for an entry the loader ignores. */
static bool refused_ignored(const struct mmap_diag *d)
{
	struct efi_memory_descriptor e = {.type = d->type,
	                                  .physical_start = d->base,
	                                  .number_of_pages = d->npages};
	if (d->whole_map)
		return false;
	for (size_t i = 0; i < nignored; i++)
		if (same_entry(&ignored[i], &e))
			return true;
	return false;
}

/*
 * Checks that each of the n descriptors at map the kernel keeps lies in a
 * region of its type; returns their pages.
 */
static uint64_t check_descriptors(const uint8_t *map, size_t n, size_t dsz,
                                  const struct boot_state *b)
{
	size_t next_ignored = 0;
	uint64_t desc_pages = 0;
	for (size_t i = 0; i < n; i++) {
		struct efi_memory_descriptor e;
		memcpy(&e, map + i * dsz, sizeof(e));
		if (e.number_of_pages == 0)
			continue;
		/* Past 2^52 no CPU reaches: the loader ignores it, and the
		 * kernel prints it and leaves it out. */
		if (next_ignored < nignored &&
		    same_entry(&e, &ignored[next_ignored])) {
			next_ignored++;
			continue;
		}
		paddr_t lim = e.physical_start + e.number_of_pages * PAGE_SIZE;
		/* Usable memory past the direct map is left out; an entry
		 * across its end keeps the part below. */
		if (mem_type_usable(e.type) && lim > DIRECT_MAP_SIZE) {
			if (e.physical_start >= DIRECT_MAP_SIZE)
				continue;
			lim = DIRECT_MAP_SIZE;
		}
		desc_pages += (lim - e.physical_start) / PAGE_SIZE;
		size_t k = 0;
		while (k < b->nregions &&
		       !(b->regions[k].type == e.type &&
		         b->regions[k].base <= e.physical_start &&
		         lim <= b->regions[k].limit))
			k++;
		if (k == b->nregions)
			fail("a descriptor in no region of its type", "mmap");
	}
	return desc_pages;
}

/*
 * Checks each region alone and against the one before; returns their
 * pages, with the end of the highest usable one in *top and the number of
 * free ones in *nfree.
 */
static uint64_t check_region_list(const struct boot_state *b, paddr_t *top,
                                  size_t *nfree)
{
	uint64_t region_pages = 0;
	for (size_t i = 0; i < b->nregions; i++) {
		const struct mem_region *r = &b->regions[i];
		region_pages += (r->limit - r->base) / PAGE_SIZE;
		if (i && r->base == r[-1].limit && r->type == r[-1].type)
			fail("touching regions of a type not joined", "mmap");
		if (r->base % PAGE_SIZE || r->limit <= r->base ||
		    (r->limit - r->base) % PAGE_SIZE)
			fail("a region unaligned or empty", "mmap");
		if (i && r->base < r[-1].limit)
			fail("regions unsorted or overlapping", "mmap");
		if (r->limit > 1ull << 52)
			fail("a region past 2^52", "mmap");
		if (mem_type_usable(r->type) && r->limit > DIRECT_MAP_SIZE)
			fail("usable memory past the direct map", "mmap");
		if (r->type == EFI_CONVENTIONAL_MEMORY &&
		    r->base < b->kernel_phys_limit &&
		    b->kernel_phys_base < r->limit)
			fail("free memory over the kernel image", "mmap");
		if (mem_type_usable(r->type) && r->limit > *top)
			*top = r->limit;
		*nfree += r->type == EFI_CONVENTIONAL_MEMORY;
	}
	return region_pages;
}

/* Checks what bootinfo_read_mmap made of the n descriptors at map. */
static void check_regions(const uint8_t *map, size_t n, size_t dsz,
                          const struct boot_state *b)
{
	size_t nfree = 0;
	paddr_t top = 0;
	uint64_t desc_pages = check_descriptors(map, n, dsz, b);
	uint64_t region_pages = check_region_list(b, &top, &nfree);
	if (region_pages != desc_pages)
		fail("regions are not the descriptors' pages", "mmap");
	if (nfree == 0)
		fail("a map with no free memory accepted", "mmap");
	if (b->ram_top != top)
		fail("ram_top is not the end of the highest usable region",
		     "mmap");
}

static void memory_map(const uint8_t *data, size_t size, uint8_t ctl)
{
	static struct boot_state b;
	size_t dsz = (ctl >> 1) % 32 + sizeof(struct efi_memory_descriptor);
	if (size < 16)
		return;
	memset(&b, 0, sizeof(b));
	memcpy(&b.kernel_phys_base, data, 8);
	memcpy(&b.kernel_phys_limit, data + 8, 8);
	size_t n = (size - 16) / dsz;
	if (n > 2 * BOOT_MMAP_MAX)
		n = 2 * BOOT_MMAP_MAX;
	/* An aligned copy of exactly the map, as the loader's buffer is. */
	void *block;
	if (posix_memalign(&block, 8, n * dsz ? n * dsz : 1))
		abort();
	uint8_t *map = block;
	memcpy(map, data + 16, n * dsz);
	nignored = 0;
	paging_direct_map_limit(map, n * dsz, dsz, note_ignored, NULL);
	struct mmap_diag d = {0};
	if (bootinfo_read_mmap(map, n * dsz, dsz, &b, &d))
		check_regions(map, n, dsz, &b);
	else if (!d.why)
		fail("a map refused without a reason", "mmap");
	else if (refused_ignored(&d))
		fail("a map refused for an entry the loader ignores", "mmap");
	free(map);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		memory_map(data + 1, size - 1, data[0]);
	else
		options(data + 1, size - 1, data[0]);
	return 0;
}
